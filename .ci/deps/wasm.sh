#!/usr/bin/env bash
# A Rust that builds for wasm32, for the Envoy filter (wasm/build.sh) and its tests
# (tests/it/envoy_wasm.rs): nothing when rustup already has the wasm32-wasip1 target; otherwise
# Debian 12's Rust for Firefox and Chromium from bookworm-security (rustc-web and cargo-web 1.96,
# rust-web-src: the standard library's source, which wasm/build.sh builds for
# wasm32-unknown-unknown; rust-web-llvm: rust-lld, which links it, with the lld it points at).
# Idempotent. The tests that need it are ignored (build.rs: skip_wasm) until this has run.
set -euo pipefail
cd "$(dirname "$0")/../.."

if command -v rustup >/dev/null 2>&1 &&
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  exit 0
fi

sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
apt_install() {
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null ||
    { "${sudo[@]}" apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null; }
}
installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

changed=false
missing=()
for package in rustc-web cargo-web rust-web-src rust-web-llvm; do
  installed "$package" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
  changed=true
fi
# rust-lld is a link to the lld of rust-web-llvm's LLVM (lld-22), which it does not depend on.
lld=$(readlink /usr/bin/rust-lld || true)
if [ -n "$lld" ] && [ ! -e /usr/bin/rust-lld ]; then
  apt_install "$lld"
  changed=true
fi

# Debian 12's own rustc-web (1.85) is older than the crate's rust-version: the packages must come
# from bookworm-security.
version=$(/usr/bin/rustc --version | sed -n 's/^rustc \([0-9]*\.[0-9]*\).*/\1/p')
case $version in
  1.[0-9] | 1.[0-7][0-9] | 1.8[0-7] | "")
    echo "wasm.sh: /usr/bin/rustc is $(/usr/bin/rustc --version), older than 1.88: add" \
      "bookworm-security (deb http://deb.debian.org/debian-security bookworm-security main)" \
      "to apt's sources" >&2
    exit 1
    ;;
esac
[ -x /usr/bin/rust-lld ] || { echo "wasm.sh: /usr/bin/rust-lld does not run" >&2; exit 1; }
[ -d /usr/lib/rustlib/src/rust/library/std ] ||
  { echo "wasm.sh: no standard library source at /usr/lib/rustlib/src/rust/library" >&2; exit 1; }

# build.rs (skip_wasm) looks for the toolchain when the tests are built: have Cargo run it again.
if $changed; then
  touch build.rs
fi
