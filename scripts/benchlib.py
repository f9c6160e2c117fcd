"""The figures the bench scripts print, defined once (scripts/bench-*).

Percentiles are nearest-rank: the p-th percentile of n values is the value
at rank ceil(p / 100 * n) in ascending order (rank 1 at least), one of the
values measured, never an interpolation. The median is the middle value, or
the mean of the two middle ones (Python's statistics.median). Timestamps are
RFC 3339 as Docker and the agent write them, with up to nanoseconds.

From Python (the bench scripts put scripts/ on sys.path):

    import benchlib
    benchlib.summary([1.2, 0.9, 3.4])   # "median 1.2 ms, p90 3.4 ms, max 3.4 ms"

From a shell (scripts/bench-front.sh):

    python3 scripts/benchlib.py stats --scale 1000 FILE   # "MEDIAN P90", one value a line in FILE
"""

import argparse
import datetime as dt
import itertools
import math
import statistics
import sys


def percentile(values, p):
    """The p-th percentile (0 < p <= 100) of values, nearest-rank."""
    if not values:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p}: expected 0 < p <= 100")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values):
    return statistics.median(values)


def summary(values, unit="ms", digits=1):
    """`median X ms, p90 Y ms, max Z ms`: how the bench scripts print a series."""
    f = f"{{:.{digits}f}} {unit}"
    return (
        f"median {f.format(median(values))}, p90 {f.format(percentile(values, 90))}, "
        f"max {f.format(max(values))}"
    )


def parse_ts(text):
    """An RFC 3339 timestamp (`2026-12-07T02:57:46.618404123Z`, or with an
    offset) as an aware datetime; digits beyond microseconds are dropped."""
    text = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        frac = "".join(itertools.takewhile(str.isdigit, rest))
        tz = rest[len(frac):]
        text = f"{head}.{frac[:6].ljust(6, '0')}{tz}"
    return dt.datetime.fromisoformat(text)


def ms_between(start, end):
    """Milliseconds from one RFC 3339 timestamp (or datetime) to another."""
    start = parse_ts(start) if isinstance(start, str) else start
    end = parse_ts(end) if isinstance(end, str) else end
    return (end - start).total_seconds() * 1000


def _self_test():
    assert percentile([5], 90) == 5
    assert percentile(list(range(1, 21)), 90) == 18
    assert percentile(list(range(1, 11)), 90) == 9
    assert percentile(list(range(1, 101)), 90) == 90
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([3, 1, 2, 4], 100) == 4
    assert median([1, 2, 3, 4]) == 2.5
    assert summary([1.25, 0.5, 3.0]) == "median 1.2 ms, p90 3.0 ms, max 3.0 ms"
    t = parse_ts("2026-12-07T02:57:46.618404123Z")
    assert t == dt.datetime(2026, 12, 7, 2, 57, 46, 618404, tzinfo=dt.timezone.utc)
    assert parse_ts("2026-12-07T10:57:46+08:00") == dt.datetime(2026, 12, 7, 2, 57, 46, tzinfo=dt.timezone.utc)
    assert parse_ts("2026-12-07T02:57:46Z").tzinfo is not None
    assert round(ms_between("2026-12-07T02:57:46.5Z", "2026-12-07T02:57:47.75Z"), 3) == 1250.0


def main():
    ap = argparse.ArgumentParser(description="Median and p90 (nearest rank) of the numbers in FILE, one a line.")
    sub = ap.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="print `MEDIAN P90`")
    stats.add_argument("--scale", type=float, default=1.0, help="multiply each value first (1000: seconds to ms)")
    stats.add_argument("--digits", type=int, default=3)
    stats.add_argument("file", nargs="?", default="-")
    sub.add_parser("self-test", help="check the definitions")
    args = ap.parse_args()
    if args.command == "self-test":
        _self_test()
        print("benchlib: ok")
        return
    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    with stream:
        values = [float(line) * args.scale for line in stream if line.strip()]
    if not values:
        sys.exit(f"benchlib: no values in {args.file}")
    print(f"{median(values):.{args.digits}f} {percentile(values, 90):.{args.digits}f}")


if __name__ == "__main__":
    main()
