#!/usr/bin/env bash
# What the nginx module's build and tests need (nginx/build.sh, nginx/tests/): Debian's nginx,
# its headers and build flags (nginx-dev), clang for the bindings, and nginx's libraries.
set -euo pipefail
missing=()
for package in nginx nginx-dev clang libclang-dev build-essential libpcre2-dev libssl-dev zlib1g-dev; do
  dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
