#!/usr/bin/env bash
# Debian's caddy (2.6 on Debian 12) for tests/it/caddy.rs, which runs examples/Caddyfile in it.
# Idempotent. The package enables a system caddy.service serving /etc/caddy/Caddyfile on :80 with
# its admin endpoint on localhost:2019; the tests start their own caddy (on free ports, `admin
# off`), so where systemd runs that service is stopped and disabled, leaving the binary alone.
set -euo pipefail
sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
if ! dpkg-query -W -f '${Status}' caddy 2>/dev/null | grep -q 'install ok installed'; then
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq caddy >/dev/null
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  if systemctl is-enabled --quiet caddy.service 2>/dev/null || systemctl is-active --quiet caddy.service 2>/dev/null; then
    "${sudo[@]}" systemctl disable --now caddy.service >/dev/null 2>&1
  fi
fi
/usr/bin/caddy version
