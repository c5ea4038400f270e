#!/usr/bin/env bash
# The container image and the compose cluster, end to end, with podman and
# nothing from a container registry (docs/container.md):
#
#  1. builds the release binary on the host (cargo build --release);
#  2. builds two base images from Debian packages with mmdebstrap + podman
#     import, once (cached by tag; `podman rmi` them to rebuild):
#       localhost/shardcast-base:bookworm      minbase + curl, ca-certificates
#                                              (stands in for debian:bookworm-slim)
#       localhost/shardcast-services:bookworm  + etcd-server, etcd-client,
#                                              nginx-light (stands in for the
#                                              etcd and nginx images)
#  3. builds the image from the Dockerfile with BINARY=prebuilt on that base;
#  4. starts compose.yaml with podman-compose (from PyPI, in a venv under
#     target/container-test; it works here with `--runtime runc`), the images
#     swapped for the local ones through ETCD_IMAGE, NGINX_IMAGE and
#     SHARDCAST_IMAGE, the ulimits lowered to what this host allows;
#  5. checks through nginx (scripts/container_check.py, python `websockets`):
#     a client on one node gets pushes entering on the others, a group send
#     reaches members on all three nodes, a stopped node's clients are closed
#     and reported offline; plus the image's HEALTHCHECK, the I/O driver the
#     nodes log (epoll under the default seccomp profile) and io_uring under
#     conf/seccomp-io_uring.json;
#  6. removes every container, network and volume it started, on any exit.
#
# Usage: scripts/container-test.sh      (root or rootful podman; 3-6 min, more
# the first time). Not part of .ci/run. The last line is
# `container-test: N passed, M failed`; the exit status is non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

BASE_IMAGE=localhost/shardcast-base:bookworm
SERVICES_IMAGE=localhost/shardcast-services:bookworm
IMAGE=localhost/shardcast:container-test
PROJECT=shardcast-ctest-$$
SUITE=bookworm
MIRRORS=(
  "deb http://deb.debian.org/debian $SUITE main"
  "deb http://deb.debian.org/debian $SUITE-updates main"
  "deb http://deb.debian.org/debian-security $SUITE-security main"
)

PASSED=0
FAILED=0
ok() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }
check() { # check DESCRIPTION COMMAND...: ok when COMMAND succeeds
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

WORK=$(mktemp -d /tmp/container-test.XXXXXX)
COMPOSE_UP=0
STANDALONE=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then
    FAILED=1
    echo "FAIL - aborted (exit $rc); logs in the lines above"
  fi
  if [ "$COMPOSE_UP" = 1 ]; then
    if [ "$FAILED" -ne 0 ]; then
      for c in etcd node1 node2 node3 nginx; do
        echo "--- ${PROJECT}_${c}_1 (last lines)"
        podman logs --tail 15 "${PROJECT}_${c}_1" 2>&1 | grep -v systemd || true
      done
    fi
    compose down -v >>"$WORK/compose.log" 2>&1 || true
    # Whatever `down` left behind (a failed `up` half way).
    podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" |
      xargs -r podman rm -f -t 0 >/dev/null 2>&1 || true
    podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
    podman volume rm -f "${PROJECT}_etcd-data" >/dev/null 2>&1 || true
  fi
  [ -z "$STANDALONE" ] || podman rm -f -t 0 "$STANDALONE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  echo "container-test: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] || exit 1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# podman 4.3 here: crun refuses the host's hybrid cgroups, runc works; the
# default ulimits (nofile 1048576, …) are above what the host lets it set.
NOFILE=$(ulimit -Hn)
if [ "$NOFILE" = unlimited ] || [ "$NOFILE" -gt 65536 ]; then NOFILE=65536; fi
export SHARDCAST_NOFILE=$NOFILE SHARDCAST_NPROC=4096
export SHARDCAST_IMAGE=$IMAGE ETCD_IMAGE=$SERVICES_IMAGE NGINX_IMAGE=$SERVICES_IMAGE
SHARDCAST_PORT=$(free_port)
export SHARDCAST_PORT
SHARDCAST_CLUSTER_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
SHARDCAST_SERVER_CRYPTO_KEY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SHARDCAST_CLUSTER_SECRET SHARDCAST_SERVER_CRYPTO_KEY
RUN_FLAGS=(--runtime runc --ulimit "nofile=$NOFILE:$NOFILE" --ulimit nproc=4096:4096)

echo "== build deps, the release binary"
scripts/setup.sh podman runc mmdebstrap python3-venv
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --quiet --bin shardcast

echo "== base images from Debian packages (mmdebstrap; cached by tag)"
# rootfs_image TAG PACKAGES: a minbase $SUITE with PACKAGES, imported as TAG.
rootfs_image() {
  if podman image exists "$1"; then
    echo "$1: present"
    return
  fi
  echo "$1: mmdebstrap $SUITE + $2"
  # shellcheck disable=SC2016 # $1 is the hook's, not ours
  mmdebstrap --quiet --variant=minbase --include="$2" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -f "$1"/etc/nginx/sites-enabled/default' \
    --format=tar "$SUITE" "$WORK/rootfs.tar" "${MIRRORS[@]}"
  podman import --quiet --change 'CMD ["/bin/bash"]' "$WORK/rootfs.tar" "$1" >/dev/null
  rm -f "$WORK/rootfs.tar"
}
rootfs_image "$BASE_IMAGE" ca-certificates,curl
rootfs_image "$SERVICES_IMAGE" ca-certificates,curl,etcd-server,etcd-client,nginx-light

echo "== the shardcast image (Dockerfile, BINARY=prebuilt, RUNTIME_IMAGE=$BASE_IMAGE)"
old_id=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
# --format docker: the OCI format has no HEALTHCHECK.
build_image() {
  podman build --quiet --format docker --build-arg BINARY=prebuilt \
    --build-arg RUNTIME_IMAGE="$BASE_IMAGE" -t "$IMAGE" . >/dev/null
}
check "podman build of the Dockerfile on the mmdebstrap base" build_image
new_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then podman rmi "$old_id" >/dev/null 2>&1 || true; fi
check "the image runs as the unprivileged user shardcast" \
  test "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" = shardcast

echo "== python venv: podman-compose, websockets (PyPI)"
VENV=target/container-test/venv
if [ ! -x "$VENV/bin/podman-compose" ] || ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check podman-compose==1.6.0 websockets==17.4
fi

compose() {
  "$VENV/bin/podman-compose" --podman-args="--runtime runc" -p "$PROJECT" -f compose.yaml "$@"
}
node_ip() {
  podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${PROJECT}_$1_1"
}

echo "== compose up ($PROJECT: etcd, node1-3, nginx on 127.0.0.1:$SHARDCAST_PORT)"
COMPOSE_UP=1
compose up -d >"$WORK/compose.log" 2>&1 || { cat "$WORK/compose.log"; exit 1; }
NODES=()
for n in node1 node2 node3; do
  ip=$(node_ip "$n")
  NODES+=("http://$ip:7800")
  ready=0
  for _ in $(seq 120); do
    if curl -sf "http://$ip:7800/readyz" >/dev/null; then ready=1; break; fi
    sleep 0.5
  done
  check "$n ($ip) ready" test "$ready" = 1
done
NGINX=http://127.0.0.1:$SHARDCAST_PORT
ready=0
for _ in $(seq 40); do
  if curl -sf "$NGINX/api/get_group_list" -H 'SystemId: demo' -d '{}' >/dev/null; then ready=1; break; fi
  sleep 0.5
done
check "nginx ($NGINX) answers /api through conf/nginx-cluster.example.conf" test "$ready" = 1
# No systemd here to run health checks on a timer: run the image's once.
check "the image's HEALTHCHECK (curl /healthz) passes on node1" \
  podman healthcheck run "${PROJECT}_node1_1"
driver=$(podman logs "${PROJECT}_node1_1" 2>&1 | grep -o 'driver="[a-z_]*"' | head -1)
check "node1 logs its I/O driver under the default seccomp profile: $driver" \
  test "$driver" = 'driver="epoll"'

echo "== through nginx: cross-node pushes, a group on three nodes, a stopped node"
if "$VENV/bin/python" scripts/container_check.py "$NGINX" \
  "podman stop -t 20 ${PROJECT}_node3_1 2>/dev/null" "${NODES[@]}" | tee "$WORK/check.log"; then :; fi
summary=$(grep -E '^checks: [0-9]+ passed, [0-9]+ failed$' "$WORK/check.log" || echo "checks: 0 passed, 1 failed")
read -r p f < <(echo "$summary" | sed -E 's/checks: ([0-9]+) passed, ([0-9]+) failed/\1 \2/')
PASSED=$((PASSED + p))
FAILED=$((FAILED + f))

echo "== io_uring under conf/seccomp-io_uring.json"
check "compose.io_uring.yaml puts the profile on the three nodes" \
  test "$(compose -f compose.io_uring.yaml config 2>/dev/null | grep -c 'seccomp=./conf/seccomp-io_uring.json')" = 3
STANDALONE=${PROJECT}_uring
podman run -d --name "$STANDALONE" "${RUN_FLAGS[@]}" --health-cmd none \
  --security-opt seccomp="$PWD/conf/seccomp-io_uring.json" "$IMAGE" >/dev/null 2>>"$WORK/compose.log"
driver=""
for _ in $(seq 40); do
  driver=$(podman logs "$STANDALONE" 2>&1 | grep -o 'driver="[a-z_]*"' | head -1 || true)
  [ -n "$driver" ] && break
  sleep 0.25
done
check "a node under conf/seccomp-io_uring.json logs $driver" test "$driver" = 'driver="io_uring"'
