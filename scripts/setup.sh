#!/usr/bin/env bash
# Installs what building and testing shardcast needs on Debian: a C toolchain,
# protoc (etcd-client generates its gRPC code at build time), and a Rust
# toolchain new enough for the crate (Debian 12's packaged cargo is too old;
# where none is found, rustup installs the stable one).
set -euo pipefail

MIN_RUST_MINOR=85
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need_pkgs=()
for pkg in build-essential pkg-config protobuf-compiler curl ca-certificates "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
rust_ok() {
  command -v cargo >/dev/null 2>&1 || return 1
  local minor
  minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
  [ "$minor" -ge "$MIN_RUST_MINOR" ]
}
if ! rust_ok; then
  echo "setup: installing the stable Rust toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
  . "$HOME/.cargo/env"
fi
