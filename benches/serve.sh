#!/usr/bin/env bash
# The speed of `apim-sas serve` as a gateway's auth service, against the plain Node peer
# (benches/peer_serve.js) and against the ceiling of nginx's auth_request architecture.
#
#   benches/serve.sh [ROUNDS=3] [DURATION=10s] [CONNECTIONS=32]
#
# Each round runs every variant once (the order rotates from round to round), so ratios are taken
# within a round; a shared machine drifts too much between runs for anything else. Variants:
#   a  wrk -> serve                                  (direct)
#   b  wrk -> node peer                              (direct)
#   c  wrk -> nginx auth_request -> serve
#   d  wrk -> nginx auth_request -> a second nginx that only compares the header with the one
#      valid token and returns 200 (or 401): the ceiling of the architecture
#   e  wrk -> nginx auth_request -> node peer
# Before timing, every variant must answer 200 to the valid token and 401 to a forged one and to
# none; a timed run with any error or non-2xx answer fails the script.
#
# Environment:
#   PIN=0 (default)  the scheduler places everything on both cores. PIN=1 puts wrk on CPU 0 and
#                    everything under test (serve, node, both nginx) on CPU 1: cleaner on an idle
#                    machine, but on a shared one a pinned process cannot flee a busy core.
#   SERVE_ARGS=""    extra flags for `apim-sas serve` (e.g. "--workers 1").
#   BIN=PATH         time this apim-sas binary instead of building target/release/apim-sas.
#   KEEP=1           keep the temporary directory (configs, logs, raw results).
# Needs: cargo, node, curl, python3; installs wrk and nginx with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=serve.sh
# shellcheck source=benches/lib.sh
. benches/lib.sh

rounds=${1:-3}
duration=${2:-10s}
conns=${3:-32}
pin=${PIN:-0}
serve_args=${SERVE_ARGS:-}

# --- tools ---------------------------------------------------------------------------------------
install_wrk_and_nginx
need node curl python3 taskset
nginx -V 2>&1 | grep -q -- --with-http_auth_request_module || die "this nginx has no auth_request module"
placement

# --- build, keys, tokens -------------------------------------------------------------------------
if [[ -n ${BIN:-} ]]; then
  bin=$(realpath "$BIN")
else
  cargo build --release --quiet
  bin=$PWD/target/release/apim-sas
fi
have_serve=1
"$bin" serve --help >/dev/null 2>&1 || {
  have_serve=0
  echo "note: this build has no \`apim-sas serve\`; running the peer and ceiling variants only" >&2
}

dir=$(mktemp -d)
chmod 755 "$dir" # nginx workers (user nobody) read the static page under it
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT

printf '{"gw1":{"primary":"%s","secondary":"%s"},"gw2":{"primary":"%s","secondary":"%s"}}\n' \
  "$(key)" "$(key)" "$(key)" "$(key)" >"$dir/keystore.json"
chmod 600 "$dir/keystore.json"
token=$("$bin" mint --id gw1 --keystore "$dir/keystore.json" --ttl 29d --scheme gateway-key)
forged=$(forge "$token")

# --- the services --------------------------------------------------------------------------------
if ((have_serve)); then
  # shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
  "${sut[@]}" "$bin" serve --keystore "$dir/keystore.json" --listen 127.0.0.1:0 $serve_args \
    2>"$dir/serve.log" &
  serve_pid=$!
  pids+=("$serve_pid")
  serve_port=$(listening_port "$dir/serve.log")
fi

"${sut[@]}" node benches/peer_serve.js --keystore "$dir/keystore.json" --listen 127.0.0.1:0 \
  2>"$dir/peer.log" &
peer_pid=$!
pids+=("$peer_pid")
peer_port=$(listening_port "$dir/peer.log")

mkdir -p "$dir/html" "$dir/front" "$dir/ceiling"
printf 'ok\n' >"$dir/html/ok.txt"
chmod -R a+rX "$dir/html"

# The ceiling: an nginx whose whole "verification" is comparing the header with the one token.
ceiling_port=$(free_port)
cat >"$dir/ceiling/nginx.conf" <<EOF
worker_processes 1;
error_log $dir/ceiling/error.log warn;
pid $dir/ceiling/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$ceiling_port;
        location / {
            if (\$http_authorization = "$token") { return 200; }
            return 401;
        }
    }
}
EOF

# The gateway: one nginx, one server (port) per auth backend, keepalive upstreams.
front_server() { # NAME PORT UPSTREAM
  cat <<EOF
    upstream $3 {
        server 127.0.0.1:$2;
        keepalive 32;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$(free_port | tee "$dir/front/$1.port");
        location / {
            auth_request /_auth;
            auth_request_set \$apim_gateway \$upstream_http_x_apim_gateway_id;
            add_header X-Apim-Gateway-Id \$apim_gateway;
            root $dir/html;
        }
        location = /_auth {
            internal;
            proxy_pass http://$3/verify;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI \$request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
}
{
  cat <<EOF
worker_processes 1;
error_log $dir/front/error.log warn;
pid $dir/front/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
EOF
  ((have_serve)) && front_server serve "$serve_port" auth_serve
  front_server ceiling "$ceiling_port" auth_ceiling
  front_server peer "$peer_port" auth_peer
  echo "}"
} >"$dir/front/nginx.conf"

start_nginx() { # DIR
  "${sut[@]}" nginx -p "$1" -c "$1/nginx.conf" -e "$1/error.log" -g 'daemon off;' &
  pids+=($!)
  for _ in $(seq 100); do [[ -s $1/nginx.pid ]] && break; sleep 0.1; done
  [[ -s $1/nginx.pid ]] || { cat "$1/error.log" >&2; die "nginx did not start"; }
  sleep 0.2
}
start_nginx "$dir/ceiling"
start_nginx "$dir/front"
nginx_worker() { pgrep -P "$(cat "$1/nginx.pid")" | head -1; } # the single worker's pid
front_worker=$(nginx_worker "$dir/front")
ceiling_worker=$(nginx_worker "$dir/ceiling")

echo "front nginx config ($dir/front/nginx.conf):"
sed 's/^/    /' "$dir/front/nginx.conf"
echo "ceiling nginx config (token elided):"
sed "s|$token|<token>|; s/^/    /" "$dir/ceiling/nginx.conf"

# --- variants: name, URL, backend pid, front pid -------------------------------------------------
names=() urls=() backs=() fronts=()
variant() { names+=("$1"); urls+=("$2"); backs+=("$3"); fronts+=("$4"); }
((have_serve)) && variant "a serve" "http://127.0.0.1:$serve_port/verify" "$serve_pid" ""
variant "b node peer" "http://127.0.0.1:$peer_port/verify" "$peer_pid" ""
((have_serve)) && variant "c nginx+serve" "http://127.0.0.1:$(cat "$dir/front/serve.port")/ok.txt" "$serve_pid" "$front_worker"
variant "d nginx+return-200" "http://127.0.0.1:$(cat "$dir/front/ceiling.port")/ok.txt" "$ceiling_worker" "$front_worker"
variant "e nginx+node peer" "http://127.0.0.1:$(cat "$dir/front/peer.port")/ok.txt" "$peer_pid" "$front_worker"

# --- every variant answers right before anything is timed ----------------------------------------
status() { curl -s -o /dev/null -w '%{http_code}' "${@:2}" "$1"; }
for i in "${!names[@]}"; do
  url=${urls[$i]}
  ok=$(status "$url" -H "Authorization: $token")
  bad=$(status "$url" -H "Authorization: $forged")
  none=$(status "$url")
  printf 'check %-20s valid %s, forged %s, none %s\n' "${names[$i]}" "$ok" "$bad" "$none"
  [[ $ok == 200 && $bad == 401 && $none == 401 ]] || die "${names[$i]} answers wrong"
done
# the identity reaches the gateway (c, e): nginx copies X-Apim-Gateway-Id from the auth answer
for i in "${!names[@]}"; do
  [[ ${names[$i]} == *serve* || ${names[$i]} == *peer* ]] || continue
  got=$(curl -s -D - -o /dev/null -H "Authorization: $token" "${urls[$i]}" | tr -d '\r' |
    sed -n 's/^[Xx]-[Aa]pim-[Gg]ateway-[Ii]d: //p')
  [[ $got == gw1 ]] || die "${names[$i]} gives gateway id '$got', not gw1"
done

# --- timing --------------------------------------------------------------------------------------
write_report_lua "$dir/report.lua"
export APIM_BENCH_TOKEN=$token

echo "round variant rps p50_us p99_us backend_cpu_us_per_req front_cpu_us_per_req wrk_cpu_share" >"$dir/results.txt"
n=${#names[@]}
for round in $(seq "$rounds"); do
  echo "round $round/$rounds"
  for k in $(seq 0 $((n - 1))); do
    i=$(((k + round - 1) % n))
    url=${urls[$i]}
    warm_up "$url"
    b0=$(ticks "${backs[$i]}") f0=$(ticks "${fronts[$i]}")
    timed_wrk "$url"
    b1=$(ticks "${backs[$i]}") f1=$(ticks "${fronts[$i]}")
    wrk_result "${names[$i]}"
    line=$(python3 -c '
import sys
name, req, dur, p50, p99, b, f, hz, front, wrk_time = sys.argv[1:]
user, system, real = map(float, wrk_time.split())
req, dur, hz = int(req), int(dur), int(hz)
rps = req / (dur / 1e6)
bcpu = int(b) / hz / req * 1e6
fcpu = (int(f) / hz / req * 1e6) if front else float("nan")
print(f"{rps:.0f} {p50} {p99} {bcpu:.2f} {fcpu:.2f} {(user + system) / real:.2f}")
' "${names[$i]}" "$requests" "$dur_us" "$p50" "$p99" $((b1 - b0)) $((f1 - f0)) "$hz" "${fronts[$i]}" \
      "$wrk_time")
    echo "$round ${names[$i]// /_} $line" >>"$dir/results.txt"
    read -r rps _ p99us bcpu fcpu wrkcpu <<<"$line"
    [[ $fcpu == nan ]] && fcpu=-
    printf '  %-20s %7s req/s  p99 %6s us  CPU per request: backend %6s us, nginx %6s us  (wrk %s of a core)\n' \
      "${names[$i]}" "$rps" "$p99us" "$bcpu" "$fcpu" "$wrkcpu"
  done
done

# --- summary -------------------------------------------------------------------------------------
echo
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(nginx -v 2>&1 | sed 's/.*version: //'), node $(node --version), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "command: ${PIN:+PIN=$PIN }${SERVE_ARGS:+SERVE_ARGS=\"$SERVE_ARGS\" }benches/serve.sh $rounds $duration $conns"
python3 - "$dir/results.txt" "$duration" "$conns" "$pin" "$serve_args" <<'PY'
import statistics, sys
from collections import defaultdict

path, duration, conns, pin, serve_args = sys.argv[1:]
by = defaultdict(dict)  # round -> variant -> (rps, p50 µs, p99 µs, backend CPU µs, nginx CPU µs, wrk share)
for line in open(path).read().splitlines()[1:]:
    r, v, rps, p50, p99, b, f, w = line.split()
    by[int(r)][v] = (float(rps), int(p50), int(p99), float(b), float(f), float(w))
variants = sorted({v for r in by for v in by[r]})
label = {
    "a_serve": "a. wrk → `apim-sas serve`",
    "b_node_peer": "b. wrk → Node peer",
    "c_nginx+serve": "c. wrk → nginx `auth_request` → `apim-sas serve`",
    "d_nginx+return-200": "d. wrk → nginx `auth_request` → nginx `return 200` (ceiling)",
    "e_nginx+node_peer": "e. wrk → nginx `auth_request` → Node peer",
}
# name -> (numerator, denominator, field, goal, higher is better)
ratios = {
    "serve / peer, direct, requests/s": ("a_serve", "b_node_peer", 0, 5.0),
    "nginx+serve / nginx+return-200, requests/s": ("c_nginx+serve", "d_nginx+return-200", 0, 0.9),
    "nginx+serve / nginx+peer, requests/s": ("c_nginx+serve", "e_nginx+node_peer", 0, 1.8),
    "nginx+return-200 / nginx+peer, requests/s (the bound of the line above)": ("d_nginx+return-200", "e_nginx+node_peer", 0, None),
    "peer / serve, CPU per request, direct": ("b_node_peer", "a_serve", 3, None),
}
med = statistics.median
per_round = defaultdict(list)

print()
print("per round: requests/s (p99)")
for r in sorted(by):
    cells = "  ".join(f"{v.split('_')[0]} {by[r][v][0]:,.0f} ({by[r][v][2] / 1000:.2f} ms)" for v in variants if v in by[r])
    got = []
    for name, (num, den, field, _) in ratios.items():
        if num in by[r] and den in by[r]:
            per_round[name].append(by[r][num][field] / by[r][den][field])
            got.append(f"{num.split('_')[0]}/{den.split('_')[0]} {per_round[name][-1]:.2f}")
    print(f"  round {r}: {cells}" + (f"\n           ratios: {'  '.join(got)}" if got else ""))

print()
print(f"Medians over {len(by)} rounds of {duration} each, `wrk -t1 -c{conns} --latency`, "
      + ("wrk pinned to CPU 0 and everything under test to CPU 1" if pin == "1" else "nothing pinned")
      + (f", `serve {serve_args}`" if serve_args else "") + ":")
print()
print("| variant | requests/s | p99 latency | auth backend CPU per request | nginx CPU per request | wrk busy |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for v in variants:
    xs = [by[r][v] for r in by if v in by[r]]
    nginx = med(x[4] for x in xs)
    print(f"| {label.get(v, v)} | {med(x[0] for x in xs):,.0f} | {med(x[2] for x in xs) / 1000:.2f} ms "
          f"| {med(x[3] for x in xs):.1f} µs | {'–' if nginx != nginx else f'{nginx:.1f} µs'} "
          f"| {med(x[5] for x in xs) * 100:.0f} % |")
print()
print("| ratio (median of the rounds' ratios; range) | value | goal |")
print("| --- | ---: | --- |")
for name, (num, den, field, goal) in ratios.items():
    xs = per_round[name]
    if xs:
        verdict = "" if goal is None else f"≥ {goal}: **{'met' if med(xs) >= goal else 'missed'}**"
        print(f"| {name} | {med(xs):.2f} ({min(xs):.2f}–{max(xs):.2f}) | {verdict} |")
if "a_serve" in variants:
    m = med(by[r]["a_serve"][3] for r in by if "a_serve" in by[r])
    print(f"| serve CPU per verified request, direct | {m:.1f} µs | ≤ 10 µs: **{'met' if m <= 10 else 'missed'}** |")
PY
