#!/usr/bin/env bash
# The speed of verification behind HAProxy: HAProxy → SPOE → `apim-sas serve --spoe-listen`,
# configured with the rules of examples/haproxy.cfg and examples/spoe-apim-sas.conf, against
# HAProxy answering alone.
#
#   benches/haproxy.sh [ROUNDS=3] [DURATION=10s] [CONNECTIONS=32]
#
# Each round runs every variant once (the order rotates from round to round), so ratios are taken
# within a round; a shared machine drifts too much between runs for anything else. Every HAProxy
# is Debian's /usr/sbin/haproxy with `nbthread 1`, on a free loopback port, and answers the
# request itself (`http-request return status 200`, a 3-byte body), so that what is timed is
# HAProxy's own work and the check's:
#   a  HAProxy alone: no check at all (the limit)
#   b  the example's rules (identity headers removed, `send-spoe-group`, the two fail-closed
#      returns, the four identity headers set) → SPOE → serve, verdict cache on (1024 tokens)
#   c  the same → a second serve with `--cache off` (every check verifies: parse, HMAC-SHA512)
#   d  as b, 1,000 distinct valid tokens round-robin (within the cache)
#   e  as c, 1,000 distinct valid tokens round-robin
# The SPOE file is examples/spoe-apim-sas.conf as it stands, its port and path put in place.
#
# Before timing, every variant answers 200 to the valid token (and to one of the secondary key);
# b to e answer 401 with serve's challenge to a forged signature, an expired token, a token of an
# unknown gateway and none, and 200 to the first and last of the 1,000. A timed run with any socket
# error or non-2xx answer, or a process that died, fails the script.
#
# CPU per request: utime + stime from /proc/PID/stat of HAProxy and of the variant's serve, read
# before and after the timed run, divided by the requests wrk completed; serve's alone is its
# CPU per check. wrk's own CPU share is printed to show when the load generator is the limit.
#
# Environment:
#   BIN=PATH      the apim-sas binary (default: `cargo build --release --bin apim-sas`)
#   PIN=1         wrk on CPU 0, HAProxy and serve on CPU 1 (default 0: nothing pinned)
#   NICE=N        run wrk, HAProxy and serve at `nice -n N` (default 0)
#   KEEP=1        keep the temporary directory (configurations, logs, raw results)
# Needs: haproxy and wrk (installed with apt-get when missing, as .ci/deps/haproxy.sh does),
# curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
command_line="$0 $*"

rounds=${1:-3}
duration=${2:-10s}
conns=${3:-32}
pin=${PIN:-0}
prio=${NICE:-0}
ntokens=1000

die() { echo "haproxy.sh: $*" >&2; exit 1; }

# --- tools ---------------------------------------------------------------------------------------
bash .ci/deps/haproxy.sh
haproxy=/usr/sbin/haproxy
for tool in wrk curl python3 taskset; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done

if [[ $pin == 1 ]]; then
  load=(taskset -c 0) # the load generator
  sut=(taskset -c 1)  # the system under test
else
  load=() sut=()
fi
if [[ $prio != 0 ]]; then
  [[ $prio =~ ^-?[0-9]+$ ]] || die "NICE is a number"
  load=(nice -n "$prio" "${load[@]}")
  sut=(nice -n "$prio" "${sut[@]}")
fi

if [[ -n ${BIN:-} ]]; then
  bin=$(realpath "$BIN")
else
  cargo build --release --quiet --bin apim-sas
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release/apim-sas
fi
"$bin" serve --help | grep -q -- --spoe-listen || die "$bin has no \`serve --spoe-listen\`"

# --- machine and command -------------------------------------------------------------------------
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(uname -sr)"
echo "software: HAProxy $("$haproxy" -v | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "apim-sas: $bin ($(stat -c %y "$bin" | cut -d. -f1))"
echo "command: ${BIN:+BIN=$BIN }${PIN:+PIN=$PIN }${NICE:+NICE=$NICE }$command_line" \
  "(rounds $rounds, duration $duration, wrk -t1 -c$conns)"
echo "date: $(date -u +%Y-%m-%d)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) before the run: other work on this machine skews every figure; the ratios within a round are what count"

# --- keys, tokens --------------------------------------------------------------------------------
dir=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT

key() { head -c 48 /dev/urandom | base64 -w0; }
printf '{"gw1":{"primary":"%s","secondary":"%s"},"gw2":{"primary":"%s","secondary":"%s"}}\n' \
  "$(key)" "$(key)" "$(key)" "$(key)" >"$dir/gateways.json"
chmod 600 "$dir/gateways.json"

mint() { "$bin" mint --id gw1 --keystore "$dir/gateways.json" --scheme gateway-key "$@"; }
token=$(mint --ttl 29d)
secondary=$(mint --ttl 29d --key-type secondary)
expired=$(mint --now 2020-01-01T00:00:00Z --expiry 2020-01-02T00:00:00Z)
echo '{"gw3":{"primary":"a-key-of-a-gateway-nobody-knows"}}' >"$dir/other.json"
chmod 600 "$dir/other.json"
unknown=$("$bin" mint --id gw3 --keystore "$dir/other.json" --ttl 1d --scheme gateway-key)
# forged: one signature character changed (the last data character, so still canonical base64)
sig=${token: -88}
last=${sig:85:1}
[[ $last == A ]] && swap=Q || swap=A
forged="${token:0:${#token}-3}$swap=="
[[ $forged != "$token" ]] || die "could not forge"

# 1,000 valid tokens of gw1, one expiry minute apart, signed by Python (the command is too slow
# for thousands); the checks below try the first and the last on every variant.
python3 - "$dir/gateways.json" "$ntokens" >"$dir/tokens.txt" <<'PY'
import base64, datetime, hashlib, hmac, json, sys
key = json.load(open(sys.argv[1]))["gw1"]["primary"].encode()
base = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0) + datetime.timedelta(days=29)
for i in range(int(sys.argv[2])):
    e = base - datetime.timedelta(minutes=i)
    mac = hmac.new(key, f"gw1\n{e:%Y-%m-%dT%H:%M}:00.0000000Z".encode(), hashlib.sha512).digest()
    print(f"GatewayKey gw1&{e:%Y%m%d%H%M}&{base64.b64encode(mac).decode()}")
PY

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { # utime + stime of processes, in clock ticks (all threads of each)
  local t=0 pid
  for pid in "$@"; do
    t=$((t + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)

# --- serve, cache on and off ---------------------------------------------------------------------
declare -A serve_pid spoe_port
for cache in on off; do
  flags=()
  [[ $cache == off ]] && flags=(--cache off)
  "${sut[@]}" "$bin" serve --keystore "$dir/gateways.json" --listen 127.0.0.1:0 \
    --spoe-listen 127.0.0.1:0 "${flags[@]}" 2>"$dir/serve-$cache.log" &
  serve_pid[$cache]=$!
  pids+=($!)
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's|.*listening on spop://[^ ]*:\([0-9][0-9]*\).*|\1|p' "$dir/serve-$cache.log" | head -1)
    [[ -n $port ]] && break
    sleep 0.1
  done
  [[ -n $port ]] || { cat "$dir/serve-$cache.log" >&2; die "serve (cache $cache) is not listening"; }
  spoe_port[$cache]=$port
done

# --- the HAProxy configurations ------------------------------------------------------------------
# The example frontend's rules, as they stand: from the first `http-request` to the last.
rules=$(sed -n '/^frontend /,/^backend /p' examples/haproxy.cfg | grep -E '^    http-request ')
[[ $(grep -c 'send-spoe-group' <<<"$rules") == 1 ]] || die "examples/haproxy.cfg: no send-spoe-group rule"
agent_backend=$(sed -n '/^backend apim-sas-agent/,/^$/p' examples/haproxy.cfg | grep -vE '^\s*#')

# conf NAME PORT [SERVE_CACHE]: one HAProxy answering 200 itself, behind the example's check when
# a serve is named
conf() {
  local d=$dir/$1 check=""
  mkdir -p "$d"
  if [[ -n ${3:-} ]]; then
    sed -e "s#/etc/haproxy/spoe-apim-sas.conf#$d/spoe.conf#" examples/spoe-apim-sas.conf >"$d/spoe.conf"
    check="    filter spoe engine apim-sas config $d/spoe.conf
$rules"
  fi
  cat >"$d/haproxy.cfg" <<EOF
global
    nbthread 1
    tune.bufsize 16384

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend bench
    bind 127.0.0.1:$2
$check
    http-request return status 200 content-type text/plain string "ok\n"
EOF
  if [[ -n ${3:-} ]]; then
    printf '\n%s\n' "${agent_backend//127.0.0.1:12345/127.0.0.1:${spoe_port[$3]}}" >>"$d/haproxy.cfg"
  fi
}

declare -A port hap_pid serve_of label
port[a]=$(free_port) port[on]=$(free_port) port[off]=$(free_port)
conf a "${port[a]}"
conf on "${port[on]}" on
conf off "${port[off]}" off
for h in a on off; do
  "$haproxy" -c -q -f "$dir/$h/haproxy.cfg" || die "haproxy -c fails for $h"
  "${sut[@]}" "$haproxy" -db -f "$dir/$h/haproxy.cfg" >"$dir/$h/haproxy.log" 2>&1 &
  hap_pid[$h]=$!
  pids+=($!)
done

vs=(a b c d e)
declare -A haproxy_of tokens_of
haproxy_of=([a]=a [b]=on [c]=off [d]=on [e]=off)
serve_of=([a]= [b]=on [c]=off [d]=on [e]=off)
tokens_of=([a]=1 [b]=1 [c]=1 [d]=$ntokens [e]=$ntokens)
label[a]="a HAProxy alone"
label[b]="b SPOE, cache on"
label[c]="c SPOE, cache off"
label[d]="d SPOE, cache on, 1000 tk"
label[e]="e SPOE, cache off, 1000 tk"

echo
echo "configuration ($dir/on/haproxy.cfg, b and d):"
sed 's/^/    /' "$dir/on/haproxy.cfg"

# --- every variant answers right before anything is timed ----------------------------------------
get() { # URL [TOKEN]: "status body [www-authenticate]"
  local h=()
  [[ -n ${2:-} ]] && h=(-H "Authorization: $2")
  curl -s -D "$dir/headers" -o "$dir/body" -w '%{http_code}' "${h[@]}" "$1" || echo 000
  printf ' %s' "$(tr -d '\n' <"$dir/body" | head -c 60)"
  printf ' [%s]\n' "$(tr -d '\r' <"$dir/headers" | sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: //p')"
}
# Ready once a valid token gets through (the agent's health check passed).
for h in on off; do
  for _ in $(seq 100); do
    [[ $(get "http://127.0.0.1:${port[$h]}/" "$token") == "200 ok"* ]] && break
    sleep 0.1
  done
done
for v in "${vs[@]}"; do
  url=http://127.0.0.1:${port[${haproxy_of[$v]}]}/
  for c in "valid:$token" "secondary:$secondary" "first of 1000:$(head -1 "$dir/tokens.txt")" \
    "last of 1000:$(tail -1 "$dir/tokens.txt")"; do
    got=$(get "$url" "${c#*:}")
    [[ $got == "200 ok "* ]] || die "${label[$v]}: ${c%%:*} token: $got"
  done
  [[ $v == a ]] && { printf 'check %-28s 200 ok to every request (no check)\n' "${label[$v]}"; continue; }
  for c in "forged:$forged:SignatureMismatch" "expired:$expired:TokenExpired" \
    "unknown gateway:$unknown:GatewayNotExist" "none::EmptyToken"; do
    IFS=: read -r what tok code <<<"$c"
    got=$(get "$url" "$tok")
    [[ $got == "401 {\"error\":{\"code\":\"$code\""*"[SharedAccessSignature error=\"$code\"]" ]] ||
      die "${label[$v]}: $what token: $got, not 401 $code with its challenge"
  done
  printf 'check %-28s valid, secondary, first and last of 1000: 200; forged, expired, unknown, none: 401\n' "${label[$v]}"
done

# --- timing --------------------------------------------------------------------------------------
cat >"$dir/report.lua" <<'EOF'
local path = os.getenv("APIM_BENCH_TOKENS")
local tokens = {}
if path ~= nil and path ~= "" then
  for line in io.lines(path) do tokens[#tokens + 1] = line end
end
if #tokens <= 1 then
  wrk.headers["Authorization"] = os.getenv("APIM_BENCH_TOKEN")
else
  local reqs, i = {}, 0
  init = function(args)
    for k, t in ipairs(tokens) do reqs[k] = wrk.format(nil, nil, { Authorization = t }) end
  end
  request = function()
    i = i % #reqs + 1
    return reqs[i]
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
export APIM_BENCH_TOKEN=$token

echo "round variant rps p50_us p99_us haproxy_cpu_us serve_cpu_us total_cpu_us wrk_share" >"$dir/results.txt"
TIMEFORMAT='%U %S %R' # bash's `time`: wrk's own CPU
n=${#vs[@]}
for round in $(seq "$rounds"); do
  echo
  echo "round $round/$rounds:"
  printf '  %-28s %9s %9s %9s %14s %12s %12s %6s\n' variant req/s p50_us p99_us "haproxy_us/req" "serve_us/req" "total_us/req" wrk
  for k in $(seq 0 $((n - 1))); do
    v=${vs[$(((k + round - 1) % n))]}
    h=${haproxy_of[$v]}
    s=${serve_of[$v]}
    url=http://127.0.0.1:${port[$h]}/
    if ((${tokens_of[$v]} > 1)); then export APIM_BENCH_TOKENS=$dir/tokens.txt; else export APIM_BENCH_TOKENS=; fi
    "${load[@]}" wrk -t1 -c"$conns" -d1s -s "$dir/report.lua" "$url" >/dev/null # warm up
    procs=("${hap_pid[$h]}")
    [[ -n $s ]] && procs+=("${serve_pid[$s]}")
    for pid in "${procs[@]}"; do kill -0 "$pid" 2>/dev/null || die "${label[$v]}: process $pid died"; done
    h0=$(ticks "${hap_pid[$h]}")
    s0=0; [[ -n $s ]] && s0=$(ticks "${serve_pid[$s]}")
    { time "${load[@]}" wrk -t1 -c"$conns" -d"$duration" --latency -s "$dir/report.lua" "$url" \
      >"$dir/wrk.out"; } 2>"$dir/wrk.time"
    for pid in "${procs[@]}"; do kill -0 "$pid" 2>/dev/null || die "${label[$v]}: process $pid died while timing"; done
    h1=$(ticks "${hap_pid[$h]}")
    s1=0; [[ -n $s ]] && s1=$(ticks "${serve_pid[$s]}")
    out=$(cat "$dir/wrk.out")
    read -r requests dur_us p50 p99 errors < <(sed -n 's/^RESULT //p' <<<"$out")
    if ((errors > 0)); then
      echo "$out" >&2
      die "${label[$v]}: $errors errors or non-2xx answers while timing"
    fi
    line=$(python3 -c '
import sys
req, dur, p50, p99, ht, st, hz, wrk_time = sys.argv[1:]
user, system, real = map(float, wrk_time.split())
req, dur, hz = int(req), int(dur), int(hz)
rps = req / (dur / 1e6)
hcpu = int(ht) / hz / req * 1e6
scpu = int(st) / hz / req * 1e6
print(f"{rps:.0f} {p50} {p99} {hcpu:.2f} {scpu:.2f} {hcpu + scpu:.2f} {(user + system) / real:.2f}")
' "$requests" "$dur_us" "$p50" "$p99" $((h1 - h0)) $((s1 - s0)) "$hz" "$(tail -1 "$dir/wrk.time")")
    echo "$round $v $line" >>"$dir/results.txt"
    read -r rps p50 p99 hcpu scpu tcpu wshare <<<"$line"
    [[ -n $s ]] || scpu=-
    printf '  %-28s %9s %9s %9s %14s %12s %12s %5.0f%%\n' "${label[$v]}" "$rps" "$p50" "$p99" "$hcpu" "$scpu" "$tcpu" \
      "$(python3 -c "print($wshare * 100)")"
  done
  python3 - "$dir/results.txt" "$round" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
r = {v: (float(rps), float(s)) for rd, v, rps, _, _, _, s, _, _ in rows if rd == sys.argv[2]}
print("  ratios to a, req/s: " + "  ".join(f"{v}/a {r[v][0] / r['a'][0]:.3f}" for v in "bcde")
      + "   (≥ 0.6)  serve µs per check: " + "  ".join(f"{v} {r[v][1]:.2f}" for v in "bcde") + "   (≤ 3)")
PY
done

# --- summary -------------------------------------------------------------------------------------
echo
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) after the run"
python3 - "$dir/results.txt" "$duration" "$conns" "$pin" "$prio" <<'PY'
import statistics, sys
from collections import defaultdict

path, duration, conns, pin, prio = sys.argv[1:]
by = defaultdict(dict)  # round -> variant -> fields
for line in open(path).read().splitlines()[1:]:
    r, v, rps, p50, p99, hcpu, scpu, tcpu, w = line.split()
    by[int(r)][v] = dict(rps=float(rps), p99=int(p99), haproxy=float(hcpu), serve=float(scpu),
                         cpu=float(tcpu), wrk=float(w))
label = {
    "a": "a. HAProxy alone, no check (the limit)",
    "b": "b. **HAProxy → SPOE → serve, cache on**",
    "c": "c. HAProxy → SPOE → serve, `--cache off`",
    "d": "d. as b, 1,000 tokens round-robin",
    "e": "e. as c, 1,000 tokens round-robin",
}
med = statistics.median

print()
print(f"Medians over {len(by)} rounds of {duration} each, `wrk -t1 -c{conns} --latency`, "
      + ("wrk pinned to CPU 0 and HAProxy and serve to CPU 1" if pin == "1" else "nothing pinned")
      + ("" if prio == "0" else f", wrk, HAProxy and serve at nice {prio}") + ", HAProxy `nbthread 1`:")
print()
print("| variant | requests/s | ÷ a (range) | p99 latency | CPU µs per request (HAProxy + serve) | wrk busy |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for v in "abcde":
    xs = [by[r][v] for r in by if v in by[r]]
    ratios = [by[r][v]["rps"] / by[r]["a"]["rps"] for r in by if v in by[r] and "a" in by[r]]
    ratio = f"{med(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if v != "a" else "1"
    split = f" ({med(x['haproxy'] for x in xs):.2f} + {med(x['serve'] for x in xs):.2f})" if v != "a" else ""
    print(f"| {label[v]} | {med(x['rps'] for x in xs):,.0f} | {ratio} | {med(x['p99'] for x in xs) / 1000:.2f} ms "
          f"| {med(x['cpu'] for x in xs):.2f}{split} | {med(x['wrk'] for x in xs) * 100:.0f} % |")
print()
b = [by[r]["b"]["rps"] / by[r]["a"]["rps"] for r in by]
s = [by[r]["b"]["serve"] for r in by]
print(f"goals (b): requests/s ÷ HAProxy alone's {med(b):.3f} (≥ 0.6: {'met' if med(b) >= 0.6 else 'missed'}); "
      f"serve CPU per check {med(s):.2f} µs (≤ 3: {'met' if med(s) <= 3 else 'missed'})")
PY
