#!/usr/bin/env bash
# kubernetes-validate (PyPI, offline schemas) for the Secrets renew writes
# (tests/it/renew_secret.rs), in target/ci-venv. Idempotent: an installed one is left as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -x target/ci-venv/bin/kubernetes-validate ]; then
  if ! python3 -m venv target/ci-venv; then
    # Debian's python3 keeps venv (ensurepip) in a package of its own.
    sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get install -y -qq python3-venv >/dev/null \
      || { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq python3-venv >/dev/null; }
    python3 -m venv target/ci-venv
  fi
  target/ci-venv/bin/pip install -q kubernetes-validate==1.37.0
  # build.rs saw no validator when the tests were last built: have Cargo run it again.
  touch build.rs
fi
