#!/usr/bin/env python3
"""Benchmark jupyter-bootstrap: how soon `wait` returns after the agent is ready.

Over N fresh converges (default 20): the agent (`jupyter-agent run`, in the
foreground) and `jupyter-bootstrap wait` start together; the delay is from
the moment the agent published `ready` (the state's `updated_at` at ready)
to the moment the bootstrap process has exited with the URL. Also prints
the bootstrap binary's size. Prints figures; asserts nothing (target: median
under 20 ms).

Usage: scripts/bench-bootstrap.py [--runs N] [--release-dir DIR]
Needs: a running Docker engine, the image of scripts/build-test-image.sh, and
release builds of both binaries (cargo build --release --workspace).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.environ.get("JUPYTER_TEST_IMAGE", "jupyter-agent/notebook:local")

# The percentiles and timestamps every bench script shares (scripts/benchlib.py).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--release-dir", default=os.path.join(ROOT, "target/release"))
    args = ap.parse_args()
    agent_bin = os.path.join(args.release_dir, "jupyter-agent")
    boot_bin = os.path.join(args.release_dir, "jupyter-bootstrap")
    for b in (agent_bin, boot_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench-bootstrap: no binary at {b}: cargo build --release --workspace")

    work = tempfile.mkdtemp(prefix="ja-bench-boot.")
    name = f"ja-bench-boot-{os.getpid()}"
    socket = os.path.join(work, "agent.sock")
    config = os.path.join(work, "config.toml")
    with open(config, "w") as f:
        f.write(
            f'state_dir = "{work}/state"\nsocket = "{socket}"\n\n[image]\nname = "{IMAGE}"\npull = "never"\n\n'
            f'[container]\nname = "{name}"\npublish = "127.0.0.1:0"\nrestart = "no"\n\n'
            f'[jupyter]\nready_timeout = "2m"\nurl_host = "127.0.0.1"\n'
        )
    delays = []
    try:
        for i in range(args.runs):
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
            agent = subprocess.Popen([agent_bin, "--config", config, "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            boot = subprocess.Popen(
                [boot_bin, "wait", "--socket", socket, "--timeout", "2m"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            boot.wait()
            returned = time.time()
            agent.send_signal(signal.SIGTERM)
            agent.wait()
            if boot.returncode != 0:
                sys.exit(f"bench-bootstrap: run {i + 1}: wait exited {boot.returncode}")
            with open(os.path.join(work, "state", "state.json")) as f:
                state = json.load(f)
            if state["phase"] != "ready":
                sys.exit(f"bench-bootstrap: run {i + 1}: the agent ended {state['phase']}")
            delays.append((returned - benchlib.parse_ts(state["updated_at"]).timestamp()) * 1000)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["rm", "-rf", work])

    size = os.path.getsize(boot_bin)
    print(f"jupyter-bootstrap benchmark ({args.runs} converges, image {IMAGE})")
    print(
        f"agent ready -> bootstrap wait returned: {benchlib.summary(delays)}   (target: median < 20 ms)"
    )
    print(f"binary size: {size / 1e6:.2f} MB ({boot_bin})")


if __name__ == "__main__":
    main()
