#!/usr/bin/env python3
"""Benchmark the image step three ways, in one run (docs/images.md):

1. build on the instance: a hands-on-shaped Dockerfile (FROM the local
   Jupyter image, then a pip install of the scientific stack a hands-on
   notebook imports: numpy, pandas, pillow and their dependencies, as wheels
   in the build context) built by the agent through /build;
2. archive: the image that build made, written once by `jupyter-agent image
   export` (gzip), served over HTTP on 127.0.0.1 with a signed-URL-shaped
   query, downloaded, verified and loaded by the agent;
3. registry: the same image pushed to a real registry (Debian's
   docker-registry on 127.0.0.1 with an htpasswd login) and pulled by the
   agent with [image] credentials.

Each is a `jupyter-agent run --once` on a fresh state directory with the
image absent; the figure is the `image` step's duration from the agent's own
state (start to done), best of --runs. The base image's layers are present
for all three (on a real instance they would be for none: the build would
also pull its base, the archive and the pull would carry it), so the figures
compare what differs: the materials' layer made or fetched. Prints the
figures and the ratios; asserts nothing.

Usage: scripts/bench-image.py [--agent PATH] [--runs N]
Needs: root, a running Docker engine, the image of scripts/build-test-image.sh,
docker-registry (Debian's package), python3 with pip (wheels are downloaded
with pip from the machine's configured index).
"""

import argparse
import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings

# bcrypt hashes for the registry's htpasswd file (the only kind it takes):
# crypt is deprecated since 3.11 but present in Debian 12's python3.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.environ.get("JUPYTER_TEST_IMAGE", "jupyter-agent/notebook:local")
PIP_VERSION = "26.3"
PACKAGES = ["numpy==2.1.3", "pandas==2.2.3", "pillow==11.0.0"]
WHEELS = "/var/tmp/jupyter-agent-bench-image-wheels"
TAG = "jupyter-agent/bench-image:handson"

# The percentiles and timestamps every bench script shares (scripts/benchlib.py).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wheels():
    os.makedirs(WHEELS, exist_ok=True)
    sh(sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
       "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
       "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
       "--platform", "manylinux2014_x86_64", "--platform", "any", "-d", WHEELS, *PACKAGES)
    sh(sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
       "--only-binary=:all:", "-d", WHEELS, f"pip=={PIP_VERSION}")


def context(work):
    ctx = os.path.join(work, "materials")
    os.makedirs(ctx)
    shutil.copytree(WHEELS, os.path.join(ctx, "wheels"))
    names = " ".join(p.split("==")[0] for p in PACKAGES)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(
            f"FROM {BASE}\n"
            "COPY wheels /wheels\n"
            f"RUN python3 /wheels/pip-{PIP_VERSION}-py3-none-any.whl/pip install --quiet --no-index "
            f"--no-cache-dir --break-system-packages --find-links /wheels {names} && rm -rf /wheels\n"
        )
    return ctx


def config(work, name, image):
    state = os.path.join(work, name, "state")
    os.makedirs(os.path.dirname(state), mode=0o700)
    path = os.path.join(work, name, "config.toml")
    with open(path, "w") as f:
        f.write(
            f'state_dir = "{state}"\nsocket = "{work}/{name}/agent.sock"\n\n{image}\n'
            f'[container]\nname = "bench-image-{name}"\npublish = "127.0.0.1:0"\n\n'
            '[jupyter]\nurl_host = "127.0.0.1"\nready_timeout = "3m"\n'
        )
    return path, state


def remove_containers():
    subprocess.run(["docker", "rm", "-f"] + [f"bench-image-{n}" for n in ("build", "archive", "registry")],
                   capture_output=True)


def image_step(agent, cfg, state, *absent):
    """One converge with the images `absent` removed first (and the containers
    that would keep them, and with them the build cache, alive)."""
    remove_containers()
    remove(*absent)
    shutil.rmtree(state, ignore_errors=True)
    run = subprocess.run([agent, "--config", cfg, "run", "--once"], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"bench-image: the converge failed:\n{run.stderr[-3000:]}")
    with open(os.path.join(state, "state.json")) as f:
        steps = json.load(f)["steps"]
    step = [s for s in steps if s["name"] == "image"][-1]
    return benchlib.ms_between(step["started_at"], step["ended_at"]) / 1000, step.get("detail", "")


def remove(*refs):
    subprocess.run(["docker", "rmi", "-f", *refs], capture_output=True)


def serve(directory):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=directory, **kw)

        def log_message(self, *a):
            pass

        def translate_path(self, path):
            return super().translate_path(path.split("?", 1)[0])

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", default=os.path.join(ROOT, "target/release/jupyter-agent"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not os.path.exists(args.agent):
        args.agent = os.path.join(ROOT, "target/debug/jupyter-agent")
    work = tempfile.mkdtemp(prefix="bench-image-", dir="/var/tmp")
    os.chmod(work, 0o700)
    registry = None
    try:
        print("== wheels and the materials' context")
        wheels()
        ctx = context(work)

        build_cfg = config(work, "build", f'[image]\ntag = "{TAG}"\n\n[image.build]\ncontext = "{ctx}"\n')
        builds = []
        for _ in range(args.runs):
            builds.append(image_step(args.agent, *build_cfg, TAG)[0])
        print(f"build on the instance: {min(builds):.1f} s (runs: {', '.join(f'{b:.1f}' for b in builds)})")

        print("== image export")
        out = os.path.join(work, "www", "notebook.tar.gz")
        os.makedirs(os.path.dirname(out))
        export = subprocess.run([args.agent, "--config", build_cfg[0], "image", "export", "--out", out, "--json"],
                                capture_output=True, text=True, check=True)
        sha256 = json.loads(export.stdout)["sha256"]
        size = os.path.getsize(out)
        www = serve(os.path.dirname(out))
        url = f"http://127.0.0.1:{www.server_address[1]}/notebook.tar.gz?Expires=1&Signature=bench"
        archive_cfg = config(work, "archive", f'[image]\narchive = "{url}"\nsha256 = "{sha256}"\ntag = "{TAG}"\n')
        loads = []
        for _ in range(args.runs):
            loads.append(image_step(args.agent, *archive_cfg, TAG)[0])
        print(f"archive ({size / 1e6:.1f} MB gzip): {min(loads):.1f} s (runs: {', '.join(f'{b:.1f}' for b in loads)})")

        print("== registry with an htpasswd login")
        port = free_port()
        password = base64.b32encode(os.urandom(10)).decode()
        regdir = os.path.join(work, "registry-server")
        os.makedirs(regdir)
        with open(os.path.join(regdir, "htpasswd"), "w") as f:
            f.write(f"organiser:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
        with open(os.path.join(regdir, "config.yml"), "w") as f:
            f.write(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {regdir}/data\n"
                    f"http:\n  addr: 127.0.0.1:{port}\n"
                    f"auth:\n  htpasswd:\n    realm: bench\n    path: {regdir}/htpasswd\n")
        registry = subprocess.Popen(["docker-registry", "serve", f"{regdir}/config.yml"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        remote = f"127.0.0.1:{port}/workshop/notebook:handson"
        image_step(args.agent, *build_cfg, TAG)
        sh("docker", "tag", TAG, remote)
        cli = os.path.join(work, "docker-cli")
        subprocess.run(["docker", "--config", cli, "login", "-u", "organiser", "--password-stdin", f"127.0.0.1:{port}"],
                       input=password, text=True, capture_output=True, check=True)
        sh("docker", "--config", cli, "push", remote)
        creds = os.path.join(work, "registry.toml")
        with open(os.open(creds, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(f'username = "organiser"\npassword = "{password}"\n')
        pull_cfg = config(work, "registry",
                          f'[image]\nname = "{remote}"\npull = "always"\ncredentials = "{creds}"\n')
        pulls = []
        for _ in range(args.runs):
            pulls.append(image_step(args.agent, *pull_cfg, TAG, remote)[0])
        print(f"registry pull: {min(pulls):.1f} s (runs: {', '.join(f'{b:.1f}' for b in pulls)})")

        b, a, p = min(builds), min(loads), min(pulls)
        print()
        print("| image step (best of %d) | seconds | vs build |" % args.runs)
        print("|---|---|---|")
        print(f"| build on the instance | {b:.1f} | 1.00 |")
        print(f"| archive over HTTP (download, verify, load) | {a:.1f} | {b / a:.2f}x faster |")
        print(f"| pull from a registry with a login | {p:.1f} | {b / p:.2f}x faster |")
    finally:
        if registry:
            registry.kill()
        remove_containers()
        remove(TAG)
        subprocess.run("docker images --format '{{.Repository}}:{{.Tag}}' | grep '/workshop/notebook:handson'"
                       " | xargs -r docker rmi -f", shell=True, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
