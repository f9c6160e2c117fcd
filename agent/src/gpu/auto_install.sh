#!/bin/sh
# Starts Alibaba's GPU driver auto-install beside the agent, as the console's
# "Auto-install GPU Driver" does (docs/gpu.md#the-templates-gpu-option).
# `jupyter-agent gpu-auto-install` prints this script; the user data runs it:
#   jupyter-agent gpu-auto-install | sh -s "<driver> <cuda> <cudnn>" "$0" <metadata endpoint>
# $1: the versions, $2: the user data script, $3: the metadata service.
#
# Alibaba's script reboots the instance when it is done, which cuts the user
# data's hand-over to jupyter-bootstrap: so the user data is kept and run
# again by cloud-init at each boot (scripts/per-boot) until one run has
# signalled the stack (/root/.jupyter-signalled, written by the user data).
# On such a run the install has started already and is not started again.
# JA_GPU_ROOT (tests only) puts every path below another directory.
set -u
R=${JA_GPU_ROOT:-}
A=$R/root/auto_install
B=$R/var/lib/cloud/scripts/per-boot
# Copied beside then renamed: at boot $2 is that copy itself.
U=$R/root/.jupyter-userdata.sh
mkdir -p "$B" "$R/root" && cp "$2" "$U.new" && mv -f "$U.new" "$U" &&
    printf '#!/bin/sh\n[ -e %s/root/.jupyter-signalled ] || exec sh %s/root/.jupyter-userdata.sh\n' "$R" "$R" >"$B/jupyter.sh" &&
    chmod 0700 "$U" "$B/jupyter.sh" || exit 1
[ -d "$A" ] && exit 0
mkdir -p "$A" && cd "$A" || exit 1
# The instance's mirror, then Alibaba's script from it, as its own user data
# wrapper does.
mirror=$(curl -fsS "$3/latest/meta-data/source-address" | head -n 1)
if ! curl -fsSL --retry 5 -o auto_install.sh "$mirror/opsx/ecs/linux/binary/script/auto_install_v4.0.sh"; then
    echo "cannot download Alibaba's GPU driver install script from the instance's mirror" >&2
    rm -rf "$A"
    exit 1
fi
# Driver, CUDA, cuDNN, then no RDMA, no eRDMA. Detached: it outlives us and reboots.
# shellcheck disable=SC2086 # three words
setsid bash auto_install.sh $1 FALSE FALSE </dev/null >/dev/null 2>&1 &
echo "started Alibaba's GPU driver install ($1); its log: $A/auto_install.log" >&2
