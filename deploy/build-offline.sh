#!/usr/bin/env bash
# Build deploy/Dockerfile with podman on a machine that cannot reach an image registry (only
# Debian's packages, crates.io and PyPI), then start the image and ask it for music.
#
# The Dockerfile's three base images are replaced by local stand-ins, built here:
#   debian:bookworm-slim       -> Debian bookworm (minbase) from debootstrap
#   rust:1.95-bookworm         -> that Debian, gcc, and this machine's Rust toolchain
#   python:3.12-slim-bookworm  -> that Debian with Debian's python3 and pip
# Everything else in the Dockerfile runs as written. Needs root, podman, runc and debootstrap
# (installed with apt when missing).
#
#   bash deploy/build-offline.sh            # build, then the smoke test
#   SMOKE=0 bash deploy/build-offline.sh    # build only
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-pianoroll-serve:offline}
WORK=${WORK:-/tmp/pianoroll-offline-bases}

need() { command -v "$1" >/dev/null || apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
need podman podman
need runc runc
need debootstrap debootstrap

# Containers here run without cgroup controllers or raised limits: runc with cgroupfs, no
# default ulimits. Builds use chroot isolation, which needs neither.
export CONTAINERS_CONF="$WORK/containers.conf"
mkdir -p "$WORK"
printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n' \
    >"$CONTAINERS_CONF"
# --skip-unused-stages=false: the runtime stage names its ONNX Runtime stage through an ARG,
# which buildah does not follow when it looks for the stages in use.
build() { podman build --isolation=chroot --network=host --pull=never --skip-unused-stages=false "$@"; }
exists() { podman image exists "$1"; }

if ! exists localhost/standin/debian:bookworm; then
    echo "offline: Debian bookworm from debootstrap" >&2
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$WORK/rootfs" \
        http://deb.debian.org/debian >"$WORK/debootstrap.log"
    # This machine's authorities: where registries are reached through a proxy with its own
    # authority, builds in the image need it as the host does.
    cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
    tar -C "$WORK/rootfs" -c . | podman import - localhost/standin/debian:bookworm >/dev/null
    rm -rf "$WORK/rootfs"
fi

if ! exists localhost/standin/rust:bookworm; then
    echo "offline: the Rust stand-in (this machine's toolchain: $(rustc --version))" >&2
    toolchain="$(rustc --print sysroot)"
    rm -rf "$WORK/rust" && mkdir -p "$WORK/rust"
    cp -a "$toolchain/bin" "$toolchain/lib" "$toolchain/libexec" "$WORK/rust/"
    build -t localhost/standin/rust:bookworm -f - "$WORK/rust" <<'EOF'
FROM localhost/standin/debian:bookworm
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . /usr/local/rust/
ENV PATH=/usr/local/rust/bin:$PATH
EOF
    rm -rf "$WORK/rust"
fi

if ! exists localhost/standin/python:bookworm; then
    echo "offline: the Python stand-in (Debian's python3)" >&2
    build -t localhost/standin/python:bookworm -f - "$WORK" <<'EOF'
FROM localhost/standin/debian:bookworm
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-pip \
    && rm -rf /var/lib/apt/lists/* && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
EOF
fi

echo "offline: building $IMAGE from deploy/Dockerfile" >&2
start=$SECONDS
# Docker's image format: buildah's default (OCI) has no place for the HEALTHCHECK and drops it.
build -f deploy/Dockerfile -t "$IMAGE" --format docker \
    --build-arg RUNTIME=localhost/standin/debian:bookworm \
    --build-arg RUST_IMAGE=localhost/standin/rust:bookworm \
    --build-arg PYTHON_IMAGE=localhost/standin/python:bookworm .
echo "offline: built $IMAGE in $((SECONDS - start)) s; $(podman image inspect "$IMAGE" --format '{{.Size}}') bytes" >&2

[ "${SMOKE:-1}" = 1 ] || exit 0
# The smoke test: the image's own command, as its non-root user, on a free port of this
# machine; a health check, the model list, and a piece through the Open Inference Protocol.
source scripts/env.sh
ensure_python_readers
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name=pianoroll-smoke-$$
podman run -d --rm --name "$name" --network=host "$IMAGE" \
    --models /models --addr "127.0.0.1:$port" --device auto >/dev/null
trap 'podman stop -t 5 "$name" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 50); do
    podman logs "$name" 2>&1 | grep -q '"listening on' && break
    sleep 0.2
done
podman exec "$name" id -u | grep -qx 10001 || { echo "offline: not running as uid 10001" >&2; exit 1; }
# The image's HEALTHCHECK command (on this run's port), inside the image as its user.
podman exec "$name" /usr/local/bin/serve health --addr "127.0.0.1:$port" >&2 ||
    { echo "offline: serve health failed in the image" >&2; exit 1; }
podman image inspect "$IMAGE" | grep -qi '"healthcheck"' ||
    { echo "offline: the image lost its HEALTHCHECK" >&2; exit 1; }
"$PIANOROLL_PYTHON" - "$port" <<'EOF'
import sys
import grpc
import numpy as np
import tritonclient.grpc as triton
url = f"127.0.0.1:{sys.argv[1]}"
# grpc.health.v1.Health/Check, its two messages written by hand: {service: "..."} -> {status: 1}
service = b"pianoroll.v1.Composer"
check = grpc.insecure_channel(url).unary_unary("/grpc.health.v1.Health/Check")
answer = check(b"\x0a" + bytes([len(service)]) + service, timeout=10)
assert answer == b"\x08\x01", f"health: {answer!r}, not SERVING"
client = triton.InferenceServerClient(url=url)
assert client.is_server_ready()
frames = triton.InferInput("frames", [1], "INT32")
frames.set_data_from_numpy(np.array([32], np.int32))
for model in ["lstm-nade", "rwkv-nade"]:
    result = client.infer(model, [frames])
    roll, midi = result.as_numpy("roll"), result.as_numpy("midi")[0]
    assert roll.shape == (32, 88) and midi[:4] == b"MThd", (roll.shape, midi[:4])
    print(f"offline smoke: {model}: {int(roll.sum())} notes in 32 frames, {len(midi)} MIDI bytes")
EOF
echo "offline: the image serves (health, serve health, ModelInfer on both shipped models, uid 10001)" >&2
