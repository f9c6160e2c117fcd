#!/bin/sh
# The hands-on instance's user data (POSIX sh; userdata/README.md): starts
# jupyter-agent; jupyter-bootstrap signals ROS; errors before send a FAILURE.

set -u
umask 077
STEP=start
HANDED_OVER=0

# --- Filled in by the template ---
BUNDLE_URL=$(cat <<'END'
@@BundleUrl@@
END
)
BUNDLE_SHA256=$(cat <<'END'
@@BundleSha256@@
END
)
ROS_NOTIFY=$(cat <<'END'
@@WaitConditionCurlCli@@
END
)
MATERIALS_SOURCE=$(cat <<'END'
@@MaterialsSource@@
END
)
MATERIALS_REF=$(cat <<'END'
@@MaterialsRef@@
END
)
JUPYTER_IMAGE=$(cat <<'END'
@@JupyterImage@@
END
)
IMAGE_SOURCE=$(cat <<'END'
@@ImageSource@@
END
)
IMAGE_ARCHIVE_URL=$(cat <<'END'
@@ImageArchiveUrl@@
END
)
IMAGE_ARCHIVE_SHA256=$(cat <<'END'
@@ImageArchiveSha256@@
END
)
REGISTRY_IMAGE=$(cat <<'END'
@@RegistryImage@@
END
)
REGISTRY_USERNAME=$(cat <<'END'
@@RegistryUsername@@
END
)
REGISTRY_PASSWORD=$(cat <<'END'
@@RegistryPassword@@
END
)
ACCESS_KEY_ID=$(cat <<'END'
@@AccessKeyId@@
END
)
ACCESS_KEY_SECRET=$(cat <<'END'
@@AccessKeySecret@@
END
)
REGION=$(cat <<'END'
@@Region@@
END
)
BUCKET_NAME=$(cat <<'END'
@@BucketName@@
END
)
IMAGESEARCH_INSTANCE_NAME=$(cat <<'END'
@@ImageSearchInstanceName@@
END
)
# The signal's id (the participant's name in a room) and the room's mode:
# single (one participant, milestones), tolerant or strict (docs/ros.md#a-room).
SIGNAL_ID=$(cat <<'END'
@@SignalId@@
END
)
ROOM_MODE=$(cat <<'END'
@@RoomMode@@
END
)
WAIT_TIMEOUT=$(cat <<'END'
@@WaitTimeout@@
END
)
TLS_MODE=$(cat <<'END'
@@TlsMode@@
END
)
GPU_DRIVER='@@GpuDriver@@' GPU_VERSIONS='@@GpuDriverVersions@@'

# --- Fixed for the hands-on (the environment may override, for tests) ---
WORKSPACE=${JA_WORKSPACE:-/root/imagesearchhandson}
RESULT_FILE=${JA_RESULT_FILE:-/root/userdata-result.txt}
METADATA_ENDPOINT=${JA_METADATA_ENDPOINT:-http://100.100.100.200}
PUBLISH=${JA_PUBLISH:-0.0.0.0:8888}
BIN_DIR=/usr/local/bin
CONFIG=/etc/jupyter-agent/config.toml
LOG_DIR=/var/log/jupyter-agent

say() { printf 'jupyter-userdata: %s\n' "$*" >&2; }

# A URL for `curl -K -`, quoted: on stdin, a signed URL is not in the process list.
url_config() {
    printf 'url = "%s"\n' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"
}

# Sends a ROS signal with the handle's URL (on stdin) and headers (parsed from
# CurlCli, shell quoting and all), with curl or else wget, retried a few times.
ros_signal() {
    status=$1
    # JSON-safe: no quotes, backslashes or control characters in the reason.
    reason=$(printf '%s' "$2" | tr -d "\"\\\\" | tr '\n\r\t' '   ' | cut -c1-900)
    body=$(printf '{"status":"%s","id":"%s","reason":"%s"}' "$status" "$SIGNAL_ID" "$reason")
    if [ "$status" = FAILURE ] && [ "$ROOM_MODE" = tolerant ]; then
        # The room completes: the failure goes as SUCCESS with {error, step} as data.
        body=$(printf '{"status":"SUCCESS","id":"%s","data":"{\\"error\\":\\"%s\\",\\"step\\":\\"%s\\"}","reason":"setup failed in %s"}' \
            "$SIGNAL_ID" "$reason" "${3:-userdata}" "${3:-userdata}")
    fi
    # Not eval: the signed URL is often unquoted, and its & would split a command.
    # ROS writes each & of the URL as \& for the shell (docs/ros.md): unescape.
    url=$(printf '%s\n' "$ROS_NOTIFY" | grep -oE "https?://[^'\" ]+" | head -n 1 | tr -d '\134')
    headers=$(printf '%s\n' "$ROS_NOTIFY" | grep -oE "(-H|--header) ('[^']*'|\"[^\"]*\")" |
        sed -E "s/^(-H|--header) ['\"]//; s/['\"]\$//")
    if [ -z "$url" ]; then
        say "no URL in the wait condition's CurlCli: cannot signal $status"
        return 1
    fi
    n=0
    while [ $n -lt 5 ]; do
        n=$((n + 1))
        if command -v curl >/dev/null 2>&1; then
            set -- curl -fsS --connect-timeout 10 --max-time 30 -X POST
            oldifs=$IFS
            IFS='
'
            for h in $headers; do set -- "$@" -H "$h"; done
            IFS=$oldifs
            url_config "$url" | "$@" -d "$body" -K - >/dev/null && return 0
        elif command -v wget >/dev/null 2>&1; then
            set -- wget -q -O /dev/null --timeout=30 --post-data="$body"
            oldifs=$IFS
            IFS='
'
            for h in $headers; do set -- "$@" --header="$h"; done
            IFS=$oldifs
            printf '%s\n' "$url" | "$@" -i - && return 0
        else
            say "neither curl nor wget: cannot signal $status"
            return 1
        fi
        sleep $((n * 2))
    done
    say "could not deliver the $status signal"
    return 1
}

# Any exit before the hand-over is a failure the stack must hear about.
# shellcheck disable=SC2317 # called by the EXIT trap
on_exit() {
    rc=$?
    if [ "$HANDED_OVER" != 1 ]; then
        [ -n "${FAILURE:-}" ] || FAILURE="the user data script stopped (exit code $rc)"
        say "FAILED at $STEP: $FAILURE"
        printf '# jupyter-userdata: FAILED at %s: %s\n' "$STEP" "$FAILURE" >>"$RESULT_FILE"
        ros_signal FAILURE "$STEP: $FAILURE" "$STEP" || true
    fi
    [ -n "${TMP:-}" ] && rm -rf "$TMP"
}
trap on_exit EXIT
trap 'FAILURE="interrupted"; exit 130' INT TERM HUP

fail() {
    FAILURE=$1
    exit 1
}

case $SIGNAL_ID in
    '' | *[!a-z0-9-]*) SIGNAL_ID=invalid ROOM_MODE=strict
        fail "the signal id (the participant's name) must be lowercase letters, digits and -" ;;
esac
case $TLS_MODE in
    acme | self-signed | off) ;;
    *) fail "TlsMode must be acme, self-signed or off, not $TLS_MODE" ;;
esac
GPUS=
case $GPU_DRIVER in
    none) ;;
    image | auto-install) GPUS='gpus = "all"' ;;
    *) fail "GpuDriver must be none, image or auto-install, not $GPU_DRIVER" ;;
esac

# --- This instance can run the bundle ---
STEP=arch
ARCH=$(uname -m)
case "$ARCH" in
    x86_64 | amd64) ;;
    *) fail "this instance is $ARCH; the jupyter-agent bundle is built for x86_64 only: choose an x86_64 instance type (not the arm64 g8y, c8y or r8y families)" ;;
esac

# --- Download ---
# The network may come up late (an EIP is associated after the instance
# exists): tried again for NETWORK_WAIT seconds.
STEP=download
TMP=$(mktemp -d /tmp/jupyter-userdata.XXXXXX) || fail "cannot create a temporary directory"
NETWORK_WAIT=${JA_NETWORK_WAIT:-300}
# The URL on stdin too (it may be signed); messages omit its query.
download() {
    if command -v curl >/dev/null 2>&1; then
        url_config "$BUNDLE_URL" | curl -fsSL --retry 5 --retry-delay 2 --retry-connrefused --connect-timeout 10 \
            --max-time 600 -o "$TMP/bundle.tar.gz" -K -
    elif command -v wget >/dev/null 2>&1; then
        printf '%s\n' "$BUNDLE_URL" |
            wget -q --tries=5 --waitretry=2 --retry-connrefused --timeout=30 -O "$TMP/bundle.tar.gz" -i -
    else
        fail "neither curl nor wget is installed"
    fi
}
started=$(date +%s)
until download; do
    waited=$(( $(date +%s) - started ))
    [ "$waited" -lt "$NETWORK_WAIT" ] ||
        fail "could not download the bundle ${BUNDLE_URL%%\?*} (tried for ${waited}s, 5 attempts each time)"
    say "the bundle could not be downloaded yet (${waited}s); trying again in 10s"
    sleep 10
done

# --- Verify before anything is unpacked or run ---
STEP=verify
actual=$(sha256sum "$TMP/bundle.tar.gz" | cut -d' ' -f1)
expected=$(printf '%s' "$BUNDLE_SHA256" | tr 'A-F' 'a-f')
[ "$actual" = "$expected" ] ||
    fail "the bundle's SHA-256 checksum is $actual, the template expects $expected; nothing was installed"

# --- Install ---
STEP=install
mkdir -p "$TMP/bundle" || fail "cannot create $TMP/bundle"
tar -xzf "$TMP/bundle.tar.gz" -C "$TMP/bundle" || fail "cannot unpack the bundle"
for bin in jupyter-agent jupyter-bootstrap; do
    found=$(find "$TMP/bundle" -type f -name "$bin" | head -n 1)
    [ -n "$found" ] || fail "the bundle holds no $bin"
    if ! { mkdir -p "$BIN_DIR" && cp "$found" "$BIN_DIR/$bin.new" && chmod 0755 "$BIN_DIR/$bin.new" &&
        mv -f "$BIN_DIR/$bin.new" "$BIN_DIR/$bin"; }; then
        fail "cannot install $BIN_DIR/$bin"
    fi
done

# --- Configure ---
STEP=configure
# TOML literal strings take anything but a single quote or a line break.
for value in "$MATERIALS_SOURCE" "$MATERIALS_REF" "$JUPYTER_IMAGE" "$ACCESS_KEY_ID" "$ACCESS_KEY_SECRET" \
    "$REGION" "$BUCKET_NAME" "$IMAGESEARCH_INSTANCE_NAME" "$IMAGE_ARCHIVE_URL" "$IMAGE_ARCHIVE_SHA256" \
    "$REGISTRY_IMAGE" "$REGISTRY_USERNAME" "$REGISTRY_PASSWORD"; do
    case $value in
        *"'"* | *'
'*) fail "a template parameter holds a single quote or a line break, which the configuration cannot take" ;;
    esac
done
case $MATERIALS_REF in
    sha256:*) materials_key="sha256 = '${MATERIALS_REF#sha256:}'" ;;
    *) materials_key="ref = '$MATERIALS_REF'" ;;
esac
mkdir -p "$(dirname "$CONFIG")" || fail "cannot create $(dirname "$CONFIG")"
# The image: built from the materials, an archive, or a registry (docs/images.md).
case $IMAGE_SOURCE in
    build) image_keys="tag = '$JUPYTER_IMAGE'

[image.build]
context = \"workspace\"" ;;
    archive)
        if [ -z "$IMAGE_ARCHIVE_URL" ] || [ -z "$IMAGE_ARCHIVE_SHA256" ]; then
            fail "ImageSource archive needs ImageArchiveUrl and ImageArchiveSha256"
        fi
        image_keys="archive = '$IMAGE_ARCHIVE_URL'
sha256 = '$IMAGE_ARCHIVE_SHA256'
tag = '$JUPYTER_IMAGE'" ;;
    registry)
        [ -n "$REGISTRY_IMAGE" ] || fail "ImageSource registry needs RegistryImage"
        image_keys="name = '$REGISTRY_IMAGE'"
        if [ -n "$REGISTRY_USERNAME" ]; then
            # umask 077: root-only, as the agent requires.
            printf "username = '%s'\npassword = '%s'\n" "$REGISTRY_USERNAME" "$REGISTRY_PASSWORD" \
                >"$(dirname "$CONFIG")/registry.toml" || fail "cannot write the registry login"
            image_keys="$image_keys
credentials = '$(dirname "$CONFIG")/registry.toml'"
        fi ;;
    *) fail "ImageSource must be build, archive or registry, not $IMAGE_SOURCE" ;;
esac
# umask 077: the file (which holds the access key) is 0600.
cat >"$CONFIG" <<EOF || fail "cannot write $CONFIG"
# Written by the hands-on's user data; see jupyter-agent --help.
state_dir = "/var/lib/jupyter-agent"
log_dir = "$LOG_DIR"

[docker]
ping_timeout = "5m"

[workspace]
source = '$MATERIALS_SOURCE'
$materials_key
path = '$WORKSPACE'
env_file = "env"

[workspace.env]
# The names the hands-on's notebooks read (its repository's env file).
ACCESS_KEY_ID = '$ACCESS_KEY_ID'
ACCESS_KEY_SECRET = '$ACCESS_KEY_SECRET'
REGION = '$REGION'
BUCKET_NAME = '$BUCKET_NAME'
IMAGESEARCH_INSTANCE_NAME = '$IMAGESEARCH_INSTANCE_NAME'

[image]
$image_keys

[container]
name = "notebook"
user = "root"
volumes = ["workspace:/home/jupyter/jupyter-working"]
publish = "$PUBLISH"
restart = "unless-stopped"
$GPUS

[jupyter]
ready_timeout = "30m"
url_host = "auto"
metadata_endpoint = "$METADATA_ENDPOINT"

[tls]
mode = "$TLS_MODE"
EOF
chmod 0600 "$CONFIG"

# --- GPU (docs/gpu.md) ---
STEP=gpu-driver
[ "$GPU_DRIVER" != auto-install ] || "$BIN_DIR/jupyter-agent" gpu-auto-install | sh -s "$GPU_VERSIONS" "$0" "$METADATA_ENDPOINT" ||
    fail "cannot start Alibaba's GPU driver install"

# --- Start the agent ---
STEP=start
if [ -d /run/systemd/system ]; then
    "$BIN_DIR/jupyter-agent" --config "$CONFIG" install || fail "jupyter-agent install failed"
else
    # No systemd (a container, a minimal image): the agent in the background.
    mkdir -p "$LOG_DIR"
    nohup "$BIN_DIR/jupyter-agent" --config "$CONFIG" run >>"$LOG_DIR/agent.log" 2>&1 </dev/null &
fi

# --- Hand over: jupyter-bootstrap signals ROS from here on ---
# The signed URL in the environment, not the process list. Exit 0, 1, 3, 4, 5:
# it signalled (docs/ros.md); else (2, a crash) the stack must hear a FAILURE.
STEP="wait"
HANDED_OVER=1
rm -rf "$TMP"
TMP=
rc=0
case $ROOM_MODE in
    single) set -- --ros-milestones ;;
    tolerant) set -- --ros-data json --ros-failure data ;;
    *) set -- --ros-data json ;;
esac
JUPYTER_BOOTSTRAP_ROS_NOTIFY=$ROS_NOTIFY "$BIN_DIR/jupyter-bootstrap" wait --timeout "$WAIT_TIMEOUT" \
    --ros-id "$SIGNAL_ID" --result-file "$RESULT_FILE" "$@" || rc=$?
case "$rc" in
    0 | 1 | 3 | 4 | 5) [ "$GPU_DRIVER" != auto-install ] || touch /root/.jupyter-signalled ;;
    *)
        # Killed by the GPU install's reboot: run again at boot.
        [ "$GPU_DRIVER" = auto-install ] && [ "$rc" -gt 128 ] && exit "$rc"
        say "jupyter-bootstrap exited $rc without signalling; sending the FAILURE itself"
        ros_signal FAILURE "wait: jupyter-bootstrap could not signal (exit $rc); see /var/log/cloud-init-output.log" wait || true
        ;;
esac
exit "$rc"
