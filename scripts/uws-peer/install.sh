#!/usr/bin/env bash
# Installs the uWebSockets.js peer of scripts/bench-vs-nchan.sh (server.js beside this file)
# outside the repo, in ${UWS_PEER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shardcast/uws-peer},
# from the npm registry only, and prints that directory on stdout (progress goes to stderr):
#
#   DIR/node_modules/@btc-vision/uwebsockets.js   uWebSockets.js 20.57.0 (pinned below): a
#        republish of uNetworking's uWebSockets.js with its prebuilt binaries,
#        uws_<os>_<arch>_<abi>.node for the Node.js ABIs 115/127/137/141 (Node.js 20/22/24/25)
#   DIR/node   the Node.js that server.js runs on: the machine's own when the package has a
#        binary for its ABI, else node-linux-<arch> $NODE_VERSION from the npm registry
#        (Debian 12's own nodejs 18 has none)
#
# glibc: those binaries are linked against glibc 2.38 for three imports only (__isoc23_strtol,
# __isoc23_strtoul, __isoc23_sscanf, the C23 variants that also read "0b" literals), and Debian
# 12 has glibc 2.36. When the binary fails to load for that reason, isoc23-compat.js (beside this
# file) rewrites the installed copy to import strtol, strtoul and sscanf instead, and the file as
# published is kept beside it as <name>.node.orig. Nothing else in it changes.
#
# Idempotent: a run that finds the pinned version loading does nothing more (a fraction of a
# second). Needs npm: apt-get installs nodejs and npm when it is missing (sudo when not root).
#
# Usage: scripts/uws-peer/install.sh          (then: DIR/node scripts/uws-peer/server.js --help)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

PKG=@btc-vision/uwebsockets.js
PKG_VERSION=20.57.0
NODE_VERSION=20.20.2
DIR=${UWS_PEER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shardcast/uws-peer}
MOD=$DIR/node_modules/$PKG

log() { printf '[uws-peer %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { echo "uws-peer install: $*" >&2; exit 1; }

case "$(uname -m)" in
  x86_64) ARCH=x64 ;;
  aarch64) ARCH=arm64 ;;
  *) die "uWebSockets.js ships no binary for $(uname -m)" ;;
esac

# The version of PKG installed in DIR (empty when none).
installed() { sed -n 's/^ *"version": *"\(.*\)",*$/\1/p' "$MOD/package.json" 2>/dev/null | head -n 1; }
# loads NODE: NODE requires PKG; its error (if any) on stderr.
loads() { "$1" -e 'require(process.argv[1])' "$MOD"; }
# binary NODE: the path of the .node file PKG has for NODE's ABI.
binary() { echo "$MOD/uws_linux_${ARCH}_$("$1" -p process.versions.modules).node"; }
# summary: one line saying what is installed.
summary() {
  local bin
  bin=$(binary "$DIR/node")
  log "$PKG $(installed) on Node.js $("$DIR/node" --version) in $DIR$([ -f "$bin.orig" ] && echo ' (imports made glibc 2.36 compatible)')"
}

if [ "$(installed)" = "$PKG_VERSION" ] && [ -x "$DIR/node" ] && loads "$DIR/node" 2>/dev/null; then
  echo "$DIR"
  exit 0
fi

# --- npm, and the package --------------------------------------------------------------
if ! command -v npm >/dev/null 2>&1; then
  log "npm missing: installing Debian's nodejs and npm"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
npm_install() { # npm_install DIR PACKAGE VERSION: PACKAGE@VERSION, exactly, in DIR/node_modules
  mkdir -p "$1"
  # A package.json of its own, or npm would install into the first one above DIR.
  printf '{ "private": true, "dependencies": { "%s": "%s" } }\n' "$2" "$3" >"$1/package.json"
  (cd "$1" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
}
if [ "$(installed)" != "$PKG_VERSION" ]; then
  log "npm install $PKG@$PKG_VERSION into $DIR"
  npm_install "$DIR" "$PKG" "$PKG_VERSION"
fi
[ "$(installed)" = "$PKG_VERSION" ] || die "$PKG $PKG_VERSION not in $MOD after npm install"

# --- the Node.js to run it on -----------------------------------------------------------
NODE=$(command -v node || true)
if [ -z "$NODE" ] || [ ! -f "$(binary "$NODE")" ]; then
  NODE=$DIR/node-$NODE_VERSION/node_modules/node-linux-$ARCH/bin/node
  if [ ! -x "$NODE" ]; then
    log "no Node.js whose ABI $PKG has a binary for: npm install node-linux-$ARCH@$NODE_VERSION"
    npm_install "$DIR/node-$NODE_VERSION" "node-linux-$ARCH" "$NODE_VERSION"
  fi
  [ -f "$(binary "$NODE")" ] || die "$PKG has no binary for Node.js $("$NODE" --version)"
fi
ln -sfn "$NODE" "$DIR/node"

# --- glibc older than the binary's ------------------------------------------------------
if ! err=$(loads "$DIR/node" 2>&1); then
  case "$err" in
    *"version \`GLIBC_"*"not found"*)
      BIN=$(binary "$DIR/node")
      log "$(basename "$BIN") wants a newer glibc than $(ldd --version | awk 'NR == 1 { print $NF }'): rewriting its C23 imports"
      [ -f "$BIN.orig" ] || cp -p "$BIN" "$BIN.orig"
      "$DIR/node" "$HERE/isoc23-compat.js" "$BIN.orig" "$BIN" >&2
      ;;
  esac
  loads "$DIR/node" || die "$PKG does not load on $("$DIR/node" --version) (the error is above)"
fi
summary
echo "$DIR"
