#!/usr/bin/env bash
# Checks per second and serve's CPU per Check on the gRPC side (Envoy's ext_authz), with h2load
# (Debian's nghttp2-client): CONNS HTTP/2 connections with STREAMS Checks in flight on each, for
# DURATION seconds, once with a valid token and once with none.
#
#   benches/grpc_h2load.sh [DURATION=10] [CONNS=4] [STREAMS=16]
#
# The CheckRequests are encoded by Envoy's own protos (tests/grpc/check.py in the venv of
# .ci/deps/grpc.sh). h2load sees only HTTP status 200 (a gRPC answer, whatever its verdict), so
# the verdicts are checked afterwards in serve's metrics: every valid Check counted `valid`,
# every other `EmptyToken`. CPU per Check is serve's utime + stime (/proc/PID/stat) over the run.
#   BIN=PATH   time this apim-sas binary instead of building target/release/apim-sas.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10}
conns=${2:-4}
streams=${3:-16}

command -v h2load >/dev/null || apt-get install -y -qq nghttp2-client >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null; }
bash .ci/deps/grpc.sh
if [[ -n ${BIN:-} ]]; then
  bin=$(realpath "$BIN")
else
  cargo build --release --quiet
  bin=$PWD/target/release/apim-sas
fi

dir=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

key=$(head -c 48 /dev/urandom | base64 -w0)
(umask 077 && printf '%s' "$key" >"$dir/key" && printf '{"gw1": {"primary": "%s"}}' "$key" >"$dir/keystore.json")
token=$("$bin" mint --key-file "$dir/key" --id gw1 | tail -1)
target/grpc-venv/bin/python - "$token" "$dir" <<'EOF'
import struct, sys
sys.path.insert(0, "tests/grpc")
from check import check_request
token, out = sys.argv[1], sys.argv[2]
for name, headers in [("valid", {"authorization": token}), ("none", {})]:
    headers["user-agent"] = "bench/1.0"
    message = check_request({"headers": headers, "method": "GET", "path": "/api/orders/7"})
    data = message.SerializeToString()
    # gRPC's framing: not compressed, then the length, then the message.
    open(f"{out}/{name}.grpc", "wb").write(b"\0" + struct.pack(">I", len(data)) + data)
EOF

port=$((20000 + RANDOM % 20000))
"$bin" serve --keystore "$dir/keystore.json" --listen "127.0.0.1:$port" 2>/dev/null &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
clk=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

echo "h2load -c$conns -m$streams -D$duration; serve $("$bin" --version 2>/dev/null | head -1)"
echo "| Check | Checks/s | serve CPU per Check |"
echo "| --- | ---: | ---: |"
for variant in valid none; do
  before=$(cpu)
  out=$(h2load -c"$conns" -m"$streams" -D"$duration" -d "$dir/$variant.grpc" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$port/envoy.service.auth.v3.Authorization/Check")
  after=$(cpu)
  done_=$(grep -oE '[0-9]+ done' <<<"$out" | grep -oE '[0-9]+')
  rate=$(grep -oE 'finished in [0-9.]+s, [0-9.]+ req/s' <<<"$out" | awk '{print $4}')
  # Every answer 200, none failed or errored (a few streams cut by the deadline are not done).
  grep -q ' 0 3xx, 0 4xx, 0 5xx' <<<"$out" && grep -qE ' 0 failed, 0 errored' <<<"$out" &&
    [[ $done_ -gt 0 ]] || { echo "$out" >&2; echo "failed or non-200 answers" >&2; exit 1; }
  per=$(awk -v a="$before" -v b="$after" -v n="$done_" -v c="$clk" 'BEGIN {printf "%.1f", (b - a) * 1e6 / c / n}')
  case $variant in valid) name="valid token";; none) name="no token (refused)";; esac
  echo "| $name | ${rate%.*} | $per µs |"
done
# h2load may start a few streams more than it counts as done: at least as many verdicts each.
valid=$(metric 'apim_sas_verifications_total{result="valid"}')
empty=$(metric 'apim_sas_verifications_total{result="EmptyToken"}')
others=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^apim_sas_verifications_total/ && !/"valid"|"EmptyToken"/ {s += $2} END {print s + 0}')
echo "verdicts counted by serve: valid $valid, EmptyToken $empty, any other $others"
[[ $others == 0 ]] || { echo "unexpected verdicts" >&2; exit 1; }
