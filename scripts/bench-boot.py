#!/usr/bin/env python3
"""Benchmark a first boot: user data start to the ROS SUCCESS signal.

Runs, on this machine and in one run:

1. the rendered user data (userdata/userdata.sh) as root, as an instance
   would: it downloads the bundle from a local HTTP server, verifies and
   installs it, configures and starts the agent, which fetches the materials
   (a local git repository whose Dockerfile builds FROM the local Jupyter
   image), builds the notebook image, starts the container and proves the
   token; jupyter-bootstrap then signals a local endpoint playing the ROS
   wait condition. Measured: from the script's start to the SUCCESS request.
2. what the original hands-on's user data did: a full system upgrade (done in
   a fresh Debian root from scripts/make-debian-root.sh, so that this machine is
   not upgraded; Docker is already installed on the host for both), git
   clone, docker build, docker run, a fixed `sleep 10`, and a grep of the
   log for the token. Measured: start to the end of the grep.

Prints both, their ratio, and whether the hands-on way found a token at all.
Asserts nothing. Uses this host's /usr/local/bin, /etc/jupyter-agent and a
container named `notebook` (published on loopback), and removes them afterwards.

Usage: scripts/bench-boot.py [--bundle TARBALL]   (default: built here from target/release)
Needs: root, a running Docker engine, the image of scripts/build-test-image.sh,
release builds (cargo build --release --workspace), git, debootstrap.
"""

import argparse
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.environ.get("JUPYTER_TEST_IMAGE", "jupyter-agent/notebook:local")


def serve(handler_factory):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_factory)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def quiet(cls):
    cls.log_message = lambda *a: None
    return cls


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ja-bench-boot.")
    try:
        run(work, args.bundle)
    finally:
        clean_host()
        subprocess.run(["rm", "-rf", "--one-file-system", work])


def clean_host():
    subprocess.run(["pkill", "-TERM", "-f", "jupyter-agent --config /etc/jupyter-agent/config.toml run"], capture_output=True)
    time.sleep(0.5)
    subprocess.run(["docker", "rm", "-f", "notebook", "handson-notebook"], capture_output=True)
    for p in ["/etc/jupyter-agent", "/var/lib/jupyter-agent", "/var/log/jupyter-agent"]:
        shutil.rmtree(p, ignore_errors=True)
    for b in ["jupyter-agent", "jupyter-bootstrap"]:
        try:
            os.remove(f"/usr/local/bin/{b}")
        except FileNotFoundError:
            pass


def run(work, bundle_path):
    # The materials, as a git repository.
    repo = os.path.join(work, "materials")
    os.makedirs(repo)
    with open(os.path.join(repo, "Dockerfile"), "w") as f:
        f.write(f'FROM {IMAGE}\nRUN echo built > /built\nCMD ["jupyter-notebook", "--ip=0.0.0.0", "--port=8888", "--allow-root", "--no-browser"]\n')
    git = ["git", "-C", repo, "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
    subprocess.run(git + ["init", "-q", "-b", "master"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "m"], check=True)

    # The bundle.
    if not bundle_path:
        stage = os.path.join(work, "bundle", "jupyter-agent-bench-x86_64-linux")
        os.makedirs(stage)
        for b in ["jupyter-agent", "jupyter-bootstrap"]:
            shutil.copy(os.path.join(ROOT, "target/release", b), stage)
        bundle_path = os.path.join(work, "bundle.tar.gz")
        subprocess.run(["tar", "-C", os.path.join(work, "bundle"), "-czf", bundle_path, "."], check=True)
    data = open(bundle_path, "rb").read()
    sha = hashlib.sha256(data).hexdigest()

    @quiet
    class Bundle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    signals = []

    @quiet
    class Ros(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            signals.append((time.time(), json.loads(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    @quiet
    class Metadata(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            body = b"127.0.0.1" if self.path.endswith("/eipv4") else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    _, bundle_url = serve(Bundle)
    _, ros_url = serve(Ros)
    _, meta_url = serve(Metadata)
    curl_cli = (
        "curl -i -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' "
        f"{ros_url}/waitcondition?stackname=bench&stackid=1&resource=h&expire=9&signature=s"
    )
    values = {
        "BundleUrl": f"{bundle_url}/bundle.tar.gz",
        "BundleSha256": sha,
        "WaitConditionCurlCli": curl_cli,
        "MaterialsSource": f"file://{repo}",
        "MaterialsRef": "master",
        "JupyterImage": "ja-bench-notebook:latest",
        "AccessKeyId": "id",
        "AccessKeySecret": "secret",
        "Region": "cn-beijing",
        "BucketName": "bucket",
        "ImageSearchInstanceName": "imagesearchhandson",
        "WaitTimeout": "10m",
        "ImageSource": "build",
        "ImageArchiveUrl": "",
        "ImageArchiveSha256": "",
        "RegistryImage": "",
        "RegistryUsername": "",
        "RegistryPassword": "",
        "SignalId": "jupyter",
        "RoomMode": "single",
        "TlsMode": "off",
    }
    script = subprocess.run(
        [os.path.join(ROOT, "scripts/render-userdata.py"), "values"] + [f"{k}={v}" for k, v in values.items()],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    userdata = os.path.join(work, "userdata.sh")
    open(userdata, "w").write(script)

    clean_host()
    env = dict(os.environ, JA_WORKSPACE=os.path.join(work, "imagesearchhandson"),
               JA_RESULT_FILE=os.path.join(work, "result.txt"), JA_METADATA_ENDPOINT=meta_url,
               JA_PUBLISH="127.0.0.1:0")
    start = time.time()
    proc = subprocess.run(["sh", userdata], env=env, capture_output=True, text=True)
    # The verdict (id "jupyter"), not the milestones (docker, materials, ...) sent before it.
    verdicts = [(at, body) for at, body in signals if body.get("id") == "jupyter"]
    if proc.returncode != 0 or len(verdicts) != 1 or verdicts[0][1].get("status") != "SUCCESS":
        sys.exit(f"bench-boot: the user data did not succeed (exit {proc.returncode}): {signals}\n{proc.stderr[-2000:]}")
    t_agent = verdicts[0][0] - start
    clean_host()
    subprocess.run(["docker", "rmi", "-f", "ja-bench-notebook:latest"], capture_output=True)

    # The hands-on way. The upgrade runs in a fresh Debian root (not on this host).
    droot = os.path.join(work, "debian")
    subprocess.run([os.path.join(ROOT, "scripts/make-debian-root.sh"), droot], check=True, capture_output=True)
    clone = os.path.join(work, "handson-clone")
    handson = f"""
set -e
chroot {droot} /usr/bin/env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c 'apt-get update && apt-get -y upgrade' >/dev/null
git clone -q {repo} {clone}
cd {clone}
docker image build -q -t handson-notebook . >/dev/null
docker run --rm -d --name handson-notebook -p 127.0.0.1:18888:8888 -u root handson-notebook >/dev/null
sleep 10
docker logs handson-notebook 2>&1 | grep -o 'http://[^ ]*token=[0-9a-f]*' | tail -1
"""
    start = time.time()
    proc = subprocess.run(["sh", "-c", handson], capture_output=True, text=True)
    t_handson = time.time() - start
    found = bool(proc.stdout.strip())
    subprocess.run(["docker", "rm", "-f", "handson-notebook"], capture_output=True)
    subprocess.run(["docker", "rmi", "-f", "handson-notebook"], capture_output=True)

    print("first boot, user data start -> Jupyter usable and signalled (Docker already installed for both):")
    print(f"  jupyter-agent user data (to the SUCCESS signal, token proven): {t_agent:6.1f} s")
    print(f"  the hands-on's way (upgrade, clone, build, run, sleep 10, grep): {t_handson:6.1f} s"
          f"  (token {'found' if found else 'NOT found'} in the log; no signal sent)")
    print(f"  ratio (hands-on / agent): {t_handson / t_agent:.2f}")


if __name__ == "__main__":
    main()
