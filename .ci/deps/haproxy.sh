#!/usr/bin/env bash
# What tests/it/haproxy.rs and benches/haproxy.sh need: Debian's haproxy (2.6 on Debian 12), the
# HAProxy that the examples are written for, and wrk for the benchmark. Installed only when
# missing; the tests start their own haproxy on free ports, beside any the package started.
set -euo pipefail
missing=()
for package in haproxy wrk; do
  dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq -o DPkg::Lock::Timeout=600
  # Another install may hold dpkg's lock (the other .ci/deps scripts, a person): wait for it.
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
    "${missing[@]}" >/dev/null
fi
