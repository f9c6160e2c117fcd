#!/usr/bin/env python3
"""Benchmark jupyter-agent on this machine and print the figures.

Measures, against the real engine and the local Jupyter image:

1. token latency, over N fresh container starts (default 20): from the
   moment Docker timestamps the log line holding the login URL to the moment
   the agent had the token (`jupyter.token_seen_at` in its state). The
   original hands-on waited a fixed 10 s instead.
2. the agent's peak memory (max RSS) during each converge.
3. CPU time and peak memory of `jupyter-agent status`, over M runs: asking
   the running agent on its socket (how it runs on an instance), and reading
   the state file (no agent running).
4. the same for `cloud-init status`, in the same run: Debian's cloud-init
   package in a Debian root of this machine's release, run through chroot
   (made once with scripts/make-debian-root.sh and kept in --cloud-init-root).

Prints figures and the ratios; asserts nothing (targets: median latency
< 50 ms, converge peak < 20 MiB, status at most 1.5 ms CPU and 3 MiB).

Usage: scripts/bench-agent.py [--starts N] [--status-runs M] [--agent PATH]
                           [--cloud-init-root DIR]
Needs: a running Docker engine, the image of scripts/build-test-image.sh, and
a built agent (default: target/release/jupyter-agent).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.environ.get("JUPYTER_TEST_IMAGE", "jupyter-agent/notebook:local")

# The percentiles and timestamps every bench script shares (scripts/benchlib.py).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

GNU_TIME = "/usr/bin/time"


CGROUP_V1 = "/sys/fs/cgroup/memory"
CGROUP_V2 = "/sys/fs/cgroup"


def charged_peak_kib(argv):
    """Peak memory charged to argv's process by the kernel's memory cgroup, KiB.

    Max RSS also counts the pages of the program's own file that the kernel
    maps in (64 KiB around each page touched), shared with the page cache
    and charged to whoever read the file first; a memory cgroup counts what
    the call itself allocates: heap, stack, written data. None when no
    memory cgroup can be made here.
    """
    if os.path.isdir(CGROUP_V1):
        base, peak = CGROUP_V1, "memory.max_usage_in_bytes"
    elif os.path.exists(os.path.join(CGROUP_V2, "cgroup.controllers")):
        base, peak = CGROUP_V2, "memory.peak"
    else:
        return None
    group = os.path.join(base, f"ja-bench-{os.getpid()}")
    try:
        os.mkdir(group)
    except OSError:
        return None
    try:
        procs = os.path.join(group, "cgroup.procs")

        def enter():
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=enter)
        with open(os.path.join(group, peak)) as f:
            return int(f.read()) // 1024
    finally:
        os.rmdir(group)


def run_measured(argv, any_exit=False):
    """Runs argv; returns (exit code, user+sys CPU seconds, max RSS KiB).

    CPU comes from wait4() on the child itself. The peak memory comes from
    GNU time around a second run: a child forked from this Python process
    carries Python's resident pages until it execs, and Linux counts them
    in its max RSS, whereas GNU time's own image is about 1 MiB.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 and not any_exit:
        return code, 0.0, 0
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run([GNU_TIME, "-f", "%M", "-o", out.name] + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rss = int(out.read().split()[-1])
    return code, usage.ru_utime + usage.ru_stime, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=20, help="fresh container starts to measure (default 20)")
    ap.add_argument("--status-runs", type=int, default=50, help="runs of `status` to measure (default 50)")
    ap.add_argument("--agent", default=os.path.join(ROOT, "target/release/jupyter-agent"))
    ap.add_argument(
        "--cloud-init-root",
        default="/var/tmp/ja-bench-cloud-init-root",
        help="a Debian root with cloud-init; made (and kept) if missing",
    )
    args = ap.parse_args()
    if not os.access(GNU_TIME, os.X_OK):
        sys.exit("bench-agent: GNU time is needed for peak memory: apt-get install time")
    if not os.access(args.agent, os.X_OK):
        sys.exit(f"bench-agent: no agent binary at {args.agent}: cargo build --release -p jupyter-agent")

    cloud_init = ensure_cloud_init_root(args.cloud_init_root)
    work = tempfile.mkdtemp(prefix="ja-bench.")
    name = f"ja-bench-{os.getpid()}"
    config = os.path.join(work, "config.toml")
    with open(config, "w") as f:
        f.write(
            f'state_dir = "{work}/state"\n\n[image]\nname = "{IMAGE}"\npull = "never"\n\n'
            f'[container]\nname = "{name}"\npublish = "127.0.0.1:0"\nrestart = "no"\n\n'
            f'[jupyter]\nready_timeout = "2m"\nurl_host = "127.0.0.1"\n'
        )
    agent = [args.agent, "--config", config]
    latencies_ms, proven_ms, converge_rss = [], [], []
    try:
        for i in range(args.starts):
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
            proc = subprocess.Popen(
                [GNU_TIME, "-f", "%M", "-o", os.path.join(work, "rss")] + agent + ["run", "--once"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            code = proc.wait()
            if code != 0:
                sys.exit(f"bench-agent: converge {i + 1} failed (exit {code}); see: {' '.join(agent)} status")
            with open(os.path.join(work, "rss")) as f:
                converge_rss.append(int(f.read().split()[-1]))
            with open(os.path.join(work, "state", "state.json")) as f:
                state = json.load(f)
            seen = benchlib.parse_ts(state["jupyter"]["token_seen_at"])
            logs = subprocess.run(["docker", "logs", "--timestamps", name], capture_output=True, text=True)
            lines = (logs.stdout + logs.stderr).splitlines()
            stamped = [benchlib.parse_ts(l.split(" ", 1)[0]) for l in lines if "?token=" in l]
            if not stamped:
                sys.exit("bench-agent: no URL line in the container log")
            first = min(stamped)
            latencies_ms.append(benchlib.ms_between(first, seen))
            proven_ms.append(benchlib.ms_between(first, state["jupyter"]["proven_at"]))
        from_file = measure(agent + ["status"], args.status_runs)
        serving = subprocess.Popen(agent + ["run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait = subprocess.run(agent + ["wait", "--timeout", "2m"], capture_output=True)
            if wait.returncode != 0:
                sys.exit(f"bench-agent: the serving agent did not get ready (wait exited {wait.returncode})")
            from_socket = measure(agent + ["status"], args.status_runs)
            url = measure(agent + ["url"], args.status_runs)
        finally:
            serving.terminate()
            serving.wait()
        cloud = measure(["chroot", cloud_init, "cloud-init", "status"], args.status_runs, any_exit=True)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["rm", "-rf", work])

    mib = lambda kib: kib / 1024
    print(f"jupyter-agent benchmark ({args.starts} container starts, {args.status_runs} status runs, image {IMAGE})")
    print(
        f"token latency (Docker's log timestamp -> agent has token): {benchlib.summary(latencies_ms)}"
        "   (target: median < 50 ms; hands-on: fixed 10000 ms sleep)"
    )
    print(
        f"  ... to the token proven against /api/status: {benchlib.summary(proven_ms)}"
    )
    print(
        f"converge peak memory (max RSS): median {mib(benchlib.median(converge_rss)):.1f} MiB, "
        f"max {mib(max(converge_rss)):.1f} MiB   (target < 20 MiB)"
    )
    for label, (cpu_ms, rss, charged) in [
        ("status, asking the running agent", from_socket),
        ("url, asking the running agent", url),
        ("status, no agent (state file)", from_file),
        ("cloud-init status (chroot, same run)", cloud),
    ]:
        line = (
            f"{label}: CPU median {benchlib.median(cpu_ms):.2f} ms (max {max(cpu_ms):.2f} ms); "
            f"max RSS median {mib(benchlib.median(rss)):.1f} MiB (max {mib(max(rss)):.1f} MiB)"
        )
        if charged:
            line += f"; charged peak median {mib(benchlib.median(charged)):.2f} MiB"
        print(line)
    ratio_cpu = benchlib.median(cloud[0]) / benchlib.median(from_socket[0])
    ratio_rss = benchlib.median(cloud[1]) / benchlib.median(from_socket[1])
    ratios = f"status vs cloud-init status: {ratio_cpu:.0f}x less CPU, {ratio_rss:.0f}x less max RSS"
    if cloud[2] and from_socket[2]:
        ratios += f", {benchlib.median(cloud[2]) / benchlib.median(from_socket[2]):.0f}x less charged memory"
    print(f"{ratios}   (targets: status <= 1.5 ms CPU, <= 3 MiB)")


def measure(argv, runs, any_exit=False):
    """CPU ms, max RSS KiB and charged peak KiB (or None) of `runs` runs of argv."""
    cpu_ms, rss, charged = [], [], []
    for _ in range(runs):
        code, cpu, peak = run_measured(argv, any_exit)
        if code != 0 and not any_exit:
            sys.exit(f"bench-agent: {' '.join(argv)} exited {code}")
        cpu_ms.append(cpu * 1000)
        rss.append(peak)
        charged.append(charged_peak_kib(argv))
    return cpu_ms, rss, None if None in charged else charged


def ensure_cloud_init_root(root):
    """A Debian root with Debian's cloud-init package, made once and kept."""
    if os.access(os.path.join(root, "usr/bin/cloud-init"), os.X_OK):
        return root
    print(f"bench-agent: making {root} with cloud-init (once; kept for later runs)", file=sys.stderr)
    subprocess.run(["rm", "-rf", root], check=True)
    subprocess.run([os.path.join(ROOT, "scripts/make-debian-root.sh"), root], check=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(
        ["chroot", root, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "cloud-init"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return root


if __name__ == "__main__":
    main()
