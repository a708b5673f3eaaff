#!/usr/bin/env bash
# Builds apim_sas_filter.wasm, the proxy-wasm filter Envoy loads (envoy.filters.http.wasm), with
# whatever this machine has, and prints the file's path as the last line of stdout.
#
#   wasm/build.sh
#
# Toolchains, the first one present:
# - rustup's wasm32-wasip1 target (`rustup target add wasm32-wasip1`): its prebuilt standard
#   library;
# - Debian 12's Rust for Firefox and Chromium, from bookworm-security: apt-get install rustc-web
#   cargo-web rust-web-src rust-web-llvm (.ci/deps/wasm.sh does). It has no prebuilt wasm32
#   library, so the standard library is built from rust-web-src's source for
#   wasm32-unknown-unknown (`-Zbuild-std`, allowed on this stable compiler by
#   RUSTC_BOOTSTRAP=1), and linked with rust-web-llvm's rust-lld.
# Both give a filter that behaves the same: it reads its environment variable through WASI's
# environ_get itself, which Envoy provides to either.
#
# The build lives in target/wasm (or $CARGO_TARGET_DIR/wasm), so a second run only relinks what
# changed; the file is copied to target/wasm/apim_sas_filter.wasm.
set -euo pipefail

usage() { sed -n '2,20s/^# \{0,1\}//p' "$0"; }
case "${1:-}" in
  "") ;;
  -h | --help) usage; exit 0 ;;
  *) echo "build.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac

die() { echo "build.sh: $*" >&2; exit 1; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
target="${CARGO_TARGET_DIR:-$root/target}/wasm"
mkdir -p "$target"
target=$(cd "$target" && pwd)
out="$target/apim_sas_filter.wasm"
build=(build --locked --profile wasm -p apim-sas-filter --manifest-path "$root/Cargo.toml"
  --target-dir "$target")

debian_rustc=/usr/bin/rustc
debian_cargo=/usr/bin/cargo
debian_src=/usr/lib/rustlib/src/rust/library
if command -v rustup >/dev/null 2>&1 &&
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  triple=wasm32-wasip1
  echo "== cargo build --profile wasm --target $triple (rustup's $(rustc --version))" >&2
  cargo "${build[@]}" --target "$triple" >&2
elif [ -x "$debian_cargo" ] && [ -x "$debian_rustc" ] && [ -d "$debian_src/std" ] &&
  command -v rust-lld >/dev/null 2>&1 &&
  "$debian_rustc" --print target-list | grep -qx wasm32-unknown-unknown; then
  triple=wasm32-unknown-unknown
  echo "== cargo build -Zbuild-std --profile wasm --target $triple" \
    "($("$debian_rustc" --version))" >&2
  # Debian's compiler and cargo, not rustup's proxies earlier in PATH; the standard library from
  # the compiler's own source (rust-web-src), whose dependencies are vendored beside it.
  env -u RUSTUP_TOOLCHAIN -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER \
    RUSTC="$debian_rustc" RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
    "$debian_cargo" "${build[@]}" --target "$triple" -Zbuild-std=std,panic_abort >&2
else
  die "no Rust for wasm32 here: rustup target add wasm32-wasip1, or on Debian 12
bash .ci/deps/wasm.sh (apt-get install rustc-web cargo-web rust-web-src rust-web-llvm lld-22,
from bookworm-security)"
fi

built="$target/$triple/wasm/apim_sas_filter.wasm"
[ -f "$built" ] || die "cargo built no $built"
cp "$built" "$out.tmp"
mv "$out.tmp" "$out"
echo "== $(wc -c <"$out") bytes, for $triple" >&2
echo "$out"
