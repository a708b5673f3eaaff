#!/usr/bin/env bash
# The speed of verification inside nginx: the module (nginx/, ngx_http_apim_sas_module) against
# nginx with no auth at all, against today's route (auth_request -> `apim-sas serve`) and against
# what an nginx user writes instead (njs, benches/peer.njs). Issue 18, item 6.
#
#   benches/nginx.sh [ROUNDS=3] [DURATION=10s] [CONNECTIONS=32]
#
# Each round runs every variant once (the order rotates from round to round), so ratios are taken
# within a round; a shared machine drifts too much between runs for anything else. Every variant
# is its own nginx (Debian's /usr/sbin/nginx, `worker_processes 1`, `access_log off`,
# `keepalive_requests 1000000`) on a free loopback port, serving the same 3-byte file
# (`ok\n`, `root`, nginx's static handler) at /ok.txt; only what stands in front of it differs:
#   a  no auth: the file alone, no module loaded (the limit for anything inside nginx)
#   b  the module, `apim_sas on`, verdict cache on (the default, 1024 tokens)
#   c  the module, `apim_sas_cache off` (every request verifies: parse, HMAC-SHA512, clock)
#   d  `auth_request` -> `apim-sas serve` over a keepalive upstream, the subrequest as docs/serve.md's
#      nginx section writes it (GET /verify, the token header alone, no body)
#   e  njs, `js_content peer.content`: verifies with WebCrypto, then `r.internalRedirect('@file')`
#      to a named location serving the file (no subrequest); the keystore is a
#      `js_preload_object`, read once per configuration, as the module reads its own
#   f  njs, `auth_request` to a `js_content peer.auth` location (the shape of nginx's own njs
#      token examples); see benches/peer.njs for why njs can do no better (no SHA-512 in
#      createHmac, WebCrypto is async so no js_set, a fresh VM per request)
# The timed path of every variant is the bare check: no identity headers added. That the identity
# comes out right is checked before timing, on /id/ok.txt, where each variant hands its gateway id
# to `add_header X-Apim-Gateway-Id` ($apim_sas_gateway_id, auth_request_set from serve's or njs's
# answer, the js_var njs sets).
#
# Before timing, every variant answers /ok.txt with 200 and `ok` to the valid token (and each
# verifying one to a token of the secondary key), and each verifying variant answers 401 to a
# forged signature (one character changed), an expired token, a token of an unknown gateway and
# none; the 401 of the module and of njs's js_content carries `WWW-Authenticate:
# SharedAccessSignature error="…"` (njs's auth_request shape cannot: auth_request copies the
# subrequest's challenge from headers_out.www_authenticate, which njs 0.7.9's r.headersOut does not
# set, so f's 401 is nginx's bare one; serve's challenge is not checked, benches/serve.sh does).
# A timed run with any socket error or non-2xx answer, or a worker that died (its pid changed),
# fails the script.
#
# CPU per request: utime + stime from /proc/PID/stat of every server process of the variant (the
# nginx master and its worker; serve too for d), read before and after the timed run, divided by
# the requests wrk completed. wrk's own CPU share is printed to show when the load generator,
# not the server, is the limit (one wrk thread near 100 % of a core is the ceiling of a and b).
#
# Environment:
#   MODULE=PATH   the module to time (default target/nginx-module/ngx_http_apim_sas_module.so,
#                 built by nginx/build.sh when missing)
#   BIN=PATH      the apim-sas binary for d (default: `cargo build --release --bin apim-sas`)
#   TOKENS=N      (default 1) send N distinct valid tokens round-robin instead of one, e.g. 4096
#                 to overflow the module's 1024-token cache; with N > 1 wrk calls Lua for every
#                 request, which costs it some speed
#   PIN=1         wrk on CPU 0, everything under test on CPU 1 (default 0: nothing pinned)
#   NICE=N        run wrk, nginx and serve at `nice -n N` (default 0); on a machine shared with
#                 compilers NICE=-10 (as root) gives them a larger share of the CPU, at the
#                 others' expense for the minutes of the run
#   KEEP=1        keep the temporary directory (configs, logs, raw results)
# Needs: nginx (Debian's, with auth_request), libnginx-mod-http-js, wrk, curl, python3 (the first
# three installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
command_line="$0 $*"
bench=nginx.sh
# shellcheck source=benches/lib.sh
. benches/lib.sh

rounds=${1:-3}
duration=${2:-10s}
conns=${3:-32}
pin=${PIN:-0}
ntokens=${TOKENS:-1}
prio=${NICE:-0}
njs_so=/usr/lib/nginx/modules/ngx_http_js_module.so

# --- tools ---------------------------------------------------------------------------------------
install_wrk_and_nginx
[[ -e $njs_so ]] || install_missing libnginx-mod-http-js
need curl python3 taskset
"$nginx" -V 2>&1 | grep -q -- --with-http_auth_request_module || die "this nginx has no auth_request module"
[[ $ntokens =~ ^[1-9][0-9]*$ && $ntokens -le 40000 ]] || die "TOKENS is 1 to 40000"
placement

# --- the module and apim-sas ---------------------------------------------------------------------
if [[ -n ${MODULE:-} ]]; then
  module=$(realpath "$MODULE")
else
  module=$PWD/target/nginx-module/ngx_http_apim_sas_module.so
  if [[ ! -e $module ]]; then
    echo "building the module (nginx/build.sh)" >&2
    module=$(nginx/build.sh | tail -1)
  fi
fi
[[ -f $module ]] || die "no module at $module"
if [[ -n ${BIN:-} ]]; then
  bin=$(realpath "$BIN")
else
  cargo build --release --quiet --bin apim-sas
  bin=$PWD/target/release/apim-sas
fi
"$bin" serve --help >/dev/null 2>&1 || die "$bin has no \`serve\`"

# --- machine and command -------------------------------------------------------------------------
machine
echo "software: $("$nginx" -v 2>&1 | sed 's/.*version: //'), njs $(dpkg-query -W -f '${Version}' libnginx-mod-http-js 2>/dev/null || echo '?'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "module: $module ($(stat -c %y "$module" | cut -d. -f1), sha256 $(sha256sum "$module" | cut -c1-12))"
echo "apim-sas: $bin"
echo "command: ${MODULE:+MODULE=$MODULE }${BIN:+BIN=$BIN }${TOKENS:+TOKENS=$TOKENS }${PIN:+PIN=$PIN }${NICE:+NICE=$NICE }$command_line" \
  "(rounds $rounds, duration $duration, wrk -t1 -c$conns)"
load_average before

# --- keys, tokens, files -------------------------------------------------------------------------
dir=$(mktemp -d)
chmod 755 "$dir" # nginx workers (nobody) read the static file under it
masters=() serve_pid=
cleanup() {
  local pid
  for pid in "${masters[@]}"; do kill -QUIT "$pid" 2>/dev/null || true; done # graceful, workers too
  [[ -n $serve_pid ]] && kill -TERM "$serve_pid" 2>/dev/null
  for _ in $(seq 50); do
    local alive=0
    for pid in "${masters[@]}" $serve_pid; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${masters[@]}" $serve_pid; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT

printf '{"gw1":{"primary":"%s","secondary":"%s"},"gw2":{"primary":"%s","secondary":"%s"}}\n' \
  "$(key)" "$(key)" "$(key)" "$(key)" >"$dir/keystore.json"
chmod 600 "$dir/keystore.json" # the module's master and serve read it as root
user_line=
[[ $EUID -eq 0 ]] && user_line="user nobody nogroup;"

mint() { "$bin" mint --id gw1 --keystore "$dir/keystore.json" --scheme gateway-key "$@"; }
token=$(mint --ttl 29d)
secondary=$(mint --ttl 29d --key-type secondary)
expired=$(mint --now 2020-01-01T00:00:00Z --expiry 2020-01-02T00:00:00Z)
echo '{"gw3":{"primary":"a-key-of-a-gateway-nobody-knows"}}' >"$dir/other.json"
chmod 600 "$dir/other.json"
unknown=$("$bin" mint --id gw3 --keystore "$dir/other.json" --ttl 1d --scheme gateway-key)
forged=$(forge "$token")

# TOKENS=N: N valid tokens of gw1, one expiry minute apart (29 days ahead and less), minted by
# the library's CLI is too slow for thousands, so by Python; the sanity checks below try the first
# and the last on every variant
: >"$dir/tokens.txt"
if ((ntokens > 1)); then
  python3 - "$dir/keystore.json" "$ntokens" >"$dir/tokens.txt" <<'PY'
import base64, datetime, hashlib, hmac, json, sys
key = json.load(open(sys.argv[1]))["gw1"]["primary"].encode()
base = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0) + datetime.timedelta(days=29)
for i in range(int(sys.argv[2])):
    e = base - datetime.timedelta(minutes=i)
    mac = hmac.new(key, f"gw1\n{e:%Y-%m-%dT%H:%M}:00.0000000Z".encode(), hashlib.sha512).digest()
    print(f"GatewayKey gw1&{e:%Y%m%d%H%M}&{base64.b64encode(mac).decode()}")
PY
fi

mkdir -p "$dir/html/id"
printf 'ok\n' >"$dir/html/ok.txt" # 3 bytes
cp "$dir/html/ok.txt" "$dir/html/id/ok.txt"
chmod -R a+rX "$dir/html"

# --- apim-sas serve (d) --------------------------------------------------------------------------
"${sut[@]}" "$bin" serve --keystore "$dir/keystore.json" --listen 127.0.0.1:0 2>"$dir/serve.log" &
serve_pid=$!
serve_port=$(listening_port "$dir/serve.log")

# --- the nginx configurations --------------------------------------------------------------------
# conf NAME PORT LOAD_MODULE HTTP SERVER: one nginx, one server; SERVER holds its locations
conf() {
  local d=$dir/$1
  mkdir -p "$d"
  cat >"$d/nginx.conf" <<EOF
${3:+load_module $3;
}$user_line
worker_processes 1;
error_log $d/error.log warn;
pid $d/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
$4
    server {
        listen 127.0.0.1:$2;
        root $dir/html;
$5
    }
}
EOF
}

port_a=$(free_port) port_b=$(free_port) port_c=$(free_port) port_d=$(free_port) port_e=$(free_port) port_f=$(free_port)

conf a "$port_a" "" "" "        location / { }"

module_server() { # EXTRA: the module at server level, the file behind it
  cat <<EOF
        apim_sas_keystore $dir/keystore.json;
$1
        location / {
            apim_sas on;
        }
        location /id/ {
            apim_sas on;
            add_header X-Apim-Gateway-Id \$apim_sas_gateway_id;
        }
EOF
}
conf b "$port_b" "$module" "" "$(module_server "")"
conf c "$port_c" "$module" "" "$(module_server "        apim_sas_cache off;")"

conf d "$port_d" "" "$(cat <<EOF
    map \$http_authorization \$apim_sas_authorization {
        "~[\\x00-\\x08\\x0a-\\x1f\\x7f]" "malformed";
        default \$http_authorization;
    }
    upstream apim_sas {
        server 127.0.0.1:$serve_port;
        keepalive 32;
        keepalive_requests 1000000;
    }
EOF
)" "$(cat <<'EOF'
        location / {
            auth_request /_apim_sas;
        }
        location /id/ {
            auth_request /_apim_sas;
            auth_request_set $apim_gateway_id $upstream_http_x_apim_gateway_id;
            add_header X-Apim-Gateway-Id $apim_gateway_id;
        }
        location = /_apim_sas {
            internal;
            proxy_pass http://apim_sas/verify;
            proxy_method GET;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_headers off;
            proxy_set_header Authorization $apim_sas_authorization;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
EOF
)"

njs_http="    js_import peer from $PWD/benches/peer.njs;
    js_preload_object keystore from $dir/keystore.json;
    js_var \$peer_next @file;
    js_var \$peer_gateway_id;
    js_var \$peer_key_type;
    js_var \$peer_token_expiry;
    js_var \$peer_token_format;"
conf e "$port_e" "$njs_so" "$njs_http" "$(cat <<'EOF'
        location / {
            js_content peer.content;
        }
        location @file { }
        location /id/ {
            set $peer_next @id;
            js_content peer.content;
        }
        location @id {
            add_header X-Apim-Gateway-Id $peer_gateway_id;
        }
EOF
)"
conf f "$port_f" "$njs_so" "$njs_http" "$(cat <<'EOF'
        location / {
            auth_request /_peer;
        }
        location /id/ {
            auth_request /_peer;
            auth_request_set $apim_gateway_id $sent_http_x_apim_gateway_id;
            add_header X-Apim-Gateway-Id $apim_gateway_id;
        }
        location = /_peer {
            internal;
            js_content peer.auth;
        }
EOF
)"

# --- start them ----------------------------------------------------------------------------------
declare -A master
for v in a b c d e f; do
  d=$dir/$v
  "$nginx" -p "$d" -c "$d/nginx.conf" -t -q 2>"$d/test.log" || { cat "$d/test.log" >&2; die "nginx -t fails for $v"; }
  "${sut[@]}" "$nginx" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" -g 'daemon off;' 2>>"$d/stderr.log" &
  master[$v]=$!
  masters+=($!)
done
for v in a b c d e f; do
  d=$dir/$v
  for _ in $(seq 100); do [[ -s $d/nginx.pid ]] && pgrep -P "${master[$v]}" >/dev/null && break; sleep 0.1; done
  [[ -s $d/nginx.pid ]] || { cat "$d/stderr.log" "$d/error.log" >&2; die "nginx $v did not start"; }
done
sleep 0.3
workers() { pgrep -P "${master[$1]}" | sort | tr '\n' ' '; } # the worker of one nginx

# --- variants ------------------------------------------------------------------------------------
vs=(a b c d e f)
declare -A label port
label[a]="a no auth (static file)"
label[b]="b module, cache on"
label[c]="c module, cache off"
label[d]="d auth_request -> serve"
label[e]="e njs js_content"
label[f]="f njs auth_request"
for v in "${vs[@]}"; do port[$v]=$(eval echo "\$port_$v"); done

echo
echo "configurations ($dir/*/nginx.conf), the module's (b) and njs's (e):"
sed 's/^/    /' "$dir/b/nginx.conf"
sed -n '/js_import/,$p' "$dir/e/nginx.conf" | sed 's/^/    /'

# --- every variant answers right before anything is timed ----------------------------------------
get() { # URL [TOKEN]: "status body www-authenticate x-apim-gateway-id"
  local h=()
  [[ -n ${2:-} ]] && h=(-H "Authorization: $2")
  curl -s -D "$dir/headers" -o "$dir/body" -w '%{http_code}' "${h[@]}" "$1" || echo 000
  printf ' %s' "$(tr -d '\n' <"$dir/body" | head -c 60)"
  printf ' [%s]' "$(tr -d '\r' <"$dir/headers" | sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: //p')"
  printf ' [%s]\n' "$(tr -d '\r' <"$dir/headers" | sed -n 's/^[Xx]-[Aa]pim-[Gg]ateway-[Ii]d: //p')"
}
checks=("valid:$token" "secondary:$secondary")
if ((ntokens > 1)); then
  checks+=("first of TOKENS:$(head -1 "$dir/tokens.txt")" "last of TOKENS:$(tail -1 "$dir/tokens.txt")")
fi
for v in "${vs[@]}"; do
  url=http://127.0.0.1:${port[$v]}
  for c in "${checks[@]}"; do
    got=$(get "$url/ok.txt" "${c#*:}")
    [[ $got == "200 ok "* ]] || die "${label[$v]}: ${c%%:*} token: $got"
  done
  [[ $v == a ]] && { printf 'check %-26s 200 ok to every request (no auth)\n' "${label[$v]}"; continue; }
  got=$(get "$url/id/ok.txt" "$token")
  [[ $got == "200 ok [] [gw1]" ]] || die "${label[$v]}: /id/ok.txt gives '$got', not 200 ok with gateway gw1"
  for c in "forged:$forged:SignatureMismatch" "expired:$expired:TokenExpired" \
    "unknown gateway:$unknown:GatewayNotExist" "none::EmptyToken"; do
    IFS=: read -r what tok code <<<"$c"
    got=$(get "$url/ok.txt" "$tok")
    [[ $got == 401* ]] || die "${label[$v]}: $what token: $got, not 401"
    case $v in
      b | c | e) [[ $got == *"[SharedAccessSignature error=\"$code\"]"* ]] ||
        die "${label[$v]}: $what token: no challenge error=\"$code\": $got" ;;
    esac
  done
  printf 'check %-26s valid 200, secondary 200, identity gw1, forged/expired/unknown/none 401\n' "${label[$v]}"
done

# --- timing --------------------------------------------------------------------------------------
write_report_lua "$dir/report.lua"
export APIM_BENCH_TOKEN=$token
((ntokens > 1)) && export APIM_BENCH_TOKENS=$dir/tokens.txt

echo "round variant rps p50_us p99_us nginx_cpu_us serve_cpu_us total_cpu_us wrk_share" >"$dir/results.txt"
n=${#vs[@]}
for round in $(seq "$rounds"); do
  echo
  echo "round $round/$rounds:"
  printf '  %-26s %9s %9s %9s %12s %12s %12s %6s\n' variant req/s p50_us p99_us "nginx_us/req" "serve_us/req" "total_us/req" wrk
  for k in $(seq 0 $((n - 1))); do
    v=${vs[$(((k + round - 1) % n))]}
    url=http://127.0.0.1:${port[$v]}/ok.txt
    warm_up "$url"
    before=$(workers "$v")
    # shellcheck disable=SC2086 # lists of pids
    n0=$(ticks "${master[$v]}" $before)
    s0=0; [[ $v == d ]] && s0=$(ticks "$serve_pid")
    timed_wrk "$url"
    after=$(workers "$v")
    [[ $after == "$before" ]] || die "${label[$v]}: the worker changed ($before -> $after) while timing: $(tail -3 "$dir/$v/error.log")"
    # shellcheck disable=SC2086
    n1=$(ticks "${master[$v]}" $after)
    s1=0; [[ $v == d ]] && s1=$(ticks "$serve_pid")
    wrk_result "${label[$v]}"
    line=$(python3 -c '
import sys
req, dur, p50, p99, nt, st, hz, wrk_time = sys.argv[1:]
user, system, real = map(float, wrk_time.split())
req, dur, hz = int(req), int(dur), int(hz)
rps = req / (dur / 1e6)
ncpu = int(nt) / hz / req * 1e6
scpu = int(st) / hz / req * 1e6
print(f"{rps:.0f} {p50} {p99} {ncpu:.2f} {scpu:.2f} {ncpu + scpu:.2f} {(user + system) / real:.2f}")
' "$requests" "$dur_us" "$p50" "$p99" $((n1 - n0)) $((s1 - s0)) "$hz" "$wrk_time")
    echo "$round $v $line" >>"$dir/results.txt"
    read -r rps p50 p99 ncpu scpu tcpu wshare <<<"$line"
    [[ $v == d ]] || scpu=-
    printf '  %-26s %9s %9s %9s %12s %12s %12s %5.0f%%\n' "${label[$v]}" "$rps" "$p50" "$p99" "$ncpu" "$scpu" "$tcpu" \
      "$(python3 -c "print($wshare * 100)")"
  done
  python3 - "$dir/results.txt" "$round" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
r = {v: (float(rps), float(t)) for rd, v, rps, _, _, _, _, t, _ in rows if rd == sys.argv[2]}
njs = max(r["e"][0], r["f"][0])
print(f"  ratios: b/a CPU {r['b'][1] / r['a'][1]:.3f} (≤ 1.06)  b/a req/s {r['b'][0] / r['a'][0]:.3f} (≥ 0.93)"
      f"  b/d req/s {r['b'][0] / r['d'][0]:.2f} (≥ 1.8)  b/njs req/s {r['b'][0] / njs:.2f} (≥ 5)"
      f"  c/a CPU {r['c'][1] / r['a'][1]:.3f}")
PY
done

# --- summary -------------------------------------------------------------------------------------
echo
load_average after
python3 - "$dir/results.txt" "$duration" "$conns" "$pin" "$ntokens" "$prio" <<'PY'
import statistics, sys
from collections import defaultdict

path, duration, conns, pin, ntokens, prio = sys.argv[1:]
by = defaultdict(dict)  # round -> variant -> fields
for line in open(path).read().splitlines()[1:]:
    r, v, rps, p50, p99, ncpu, scpu, tcpu, w = line.split()
    by[int(r)][v] = dict(rps=float(rps), p99=int(p99), nginx=float(ncpu), serve=float(scpu),
                         cpu=float(tcpu), wrk=float(w))
label = {
    "a": "a. nginx, the static file, no auth (the limit)",
    "b": "b. **the module, cache on**",
    "c": "c. the module, `apim_sas_cache off`",
    "d": "d. `auth_request` → `apim-sas serve`",
    "e": "e. njs, `js_content` + `internalRedirect`",
    "f": "f. njs, `auth_request` → `js_content`",
}
med = statistics.median
variants = [v for v in "abcdef" if any(v in by[r] for r in by)]

print()
print(f"Medians over {len(by)} rounds of {duration} each, `wrk -t1 -c{conns} --latency`, "
      + ("wrk pinned to CPU 0 and nginx and serve to CPU 1" if pin == "1" else "nothing pinned")
      + ("" if ntokens == "1" else f", {ntokens} distinct tokens round-robin")
      + ("" if prio == "0" else f", wrk, nginx and serve at nice {prio}") + ", nginx 1 worker:")
print()
print("| variant | requests/s | p99 latency | CPU µs per request (nginx + serve) | wrk busy |")
print("| --- | ---: | ---: | ---: | ---: |")
for v in variants:
    xs = [by[r][v] for r in by if v in by[r]]
    cpu = med(x["cpu"] for x in xs)
    split = f" ({med(x['nginx'] for x in xs):.2f} + {med(x['serve'] for x in xs):.2f})" if v == "d" else ""
    print(f"| {label[v]} | {med(x['rps'] for x in xs):,.0f} | {med(x['p99'] for x in xs) / 1000:.2f} ms "
          f"| {cpu:.2f}{split} | {med(x['wrk'] for x in xs) * 100:.0f} % |")

def njs(r):  # the faster njs shape of the round
    return max(by[r]["e"]["rps"], by[r]["f"]["rps"])

# name -> (function of a round, goal, "le" or "ge")
ratios = {
    "module (cache on) CPU per request ÷ no auth's": (lambda r: by[r]["b"]["cpu"] / by[r]["a"]["cpu"], 1.06, "le"),
    "module (cache on) requests/s ÷ no auth's": (lambda r: by[r]["b"]["rps"] / by[r]["a"]["rps"], 0.93, "ge"),
    "module (cache on) requests/s ÷ `auth_request` → serve's": (lambda r: by[r]["b"]["rps"] / by[r]["d"]["rps"], 1.8, "ge"),
    "module (cache on) requests/s ÷ njs's (the faster of e, f)": (lambda r: by[r]["b"]["rps"] / njs(r), 5.0, "ge"),
    "module, cache off, CPU per request ÷ no auth's": (lambda r: by[r]["c"]["cpu"] / by[r]["a"]["cpu"], None, ""),
    "module, cache off, requests/s ÷ no auth's": (lambda r: by[r]["c"]["rps"] / by[r]["a"]["rps"], None, ""),
    "`auth_request` → serve, CPU per request ÷ module's (cache on)": (lambda r: by[r]["d"]["cpu"] / by[r]["b"]["cpu"], None, ""),
    "njs `js_content` requests/s ÷ njs `auth_request`'s": (lambda r: by[r]["e"]["rps"] / by[r]["f"]["rps"], None, ""),
}
print()
print("| ratio, within each round (median of the rounds; range) | value | goal |")
print("| --- | ---: | --- |")
for name, (f, goal, way) in ratios.items():
    xs = [f(r) for r in by if all(v in by[r] for v in "abcdef")]
    if not xs:
        continue
    m = med(xs)
    if goal is None:
        verdict = ""
    else:
        ok = m <= goal if way == "le" else m >= goal
        verdict = f"{'≤' if way == 'le' else '≥'} {goal}: **{'met' if ok else 'missed'}**"
    print(f"| {name} | {m:.3f} ({min(xs):.3f}–{max(xs):.3f}) | {verdict} |")
PY
