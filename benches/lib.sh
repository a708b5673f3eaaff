# shellcheck shell=bash
# What benches/envoy.sh, benches/nginx.sh and benches/serve.sh share: sourced by each after `set
# -euo pipefail` and the `cd` to the repository, with `bench` set to the script's name (for its
# messages). What reads them wants the script's `dir` (its temporary directory), `conns`,
# `duration`, `pin` and `prio` set first.

die() { echo "$bench: $*" >&2; exit 1; }

# install_missing PACKAGE…: apt-get install, as root or with sudo; the package lists are updated
# only if that fails.
install_missing() {
  (($#)) || return 0
  local sudo=()
  [[ $EUID -ne 0 ]] && sudo=(sudo)
  "${sudo[@]}" apt-get install -y "$@" >/dev/null 2>&1 || {
    "${sudo[@]}" apt-get update >/dev/null && "${sudo[@]}" apt-get install -y "$@" >/dev/null; }
}

# install_wrk_and_nginx: wrk and Debian's nginx, installed where missing; `nginx` is its path.
install_wrk_and_nginx() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
  install_missing "${missing[@]}"
  nginx=/usr/sbin/nginx
}

# need TOOL…: each on PATH, or the script stops.
need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool is needed"
  done
}

# placement: the arrays `load` (goes before wrk) and `sut` (before everything under test). With
# PIN=1 (`pin`), wrk on CPU 0 and the rest on CPU 1; with NICE=N (`prio`), both at `nice -n N`.
placement() {
  load=() sut=()
  if [[ ${pin:-0} == 1 ]]; then
    load=(taskset -c 0)
    sut=(taskset -c 1)
  fi
  if [[ ${prio:-0} != 0 ]]; then
    [[ $prio =~ ^-?[0-9]+$ ]] || die "NICE is a number"
    load=(nice -n "$prio" "${load[@]}")
    sut=(nice -n "$prio" "${sut[@]}")
  fi
}

key() { head -c 48 /dev/urandom | base64 -w0; }

# forge TOKEN: the token with one signature character changed (the last data character, so still
# canonical base64).
forge() {
  local token=$1 sig last swap forged
  sig=${token: -88}
  last=${sig:85:1}
  [[ $last == A ]] && swap=Q || swap=A
  forged="${token:0:${#token}-3}$swap=="
  [[ $forged != "$token" ]] || die "could not forge"
  echo "$forged"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# listening_port LOG: the port of the first "listening on http://ADDR:PORT" line in the log file
# LOG, waited for 10 s.
listening_port() {
  local log=$1 port
  for _ in $(seq 100); do
    port=$(sed -n 's|.*listening on http://[^ ]*:\([0-9][0-9]*\).*|\1|p' "$log" 2>/dev/null | head -1) || true
    [[ -n $port ]] && { echo "$port"; return; }
    sleep 0.1
  done
  cat "$log" >&2
  die "nothing listening, see $log"
}

# machine: one line on the machine the figures come from.
machine() {
  echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(uname -sr)"
}

# load_average before|after: the machine's load around the run.
load_average() {
  case $1 in
    before) echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) before the run: other work on this machine skews every figure; the ratios within a round are what count" ;;
    *) echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) after the run" ;;
  esac
}

# write_report_lua FILE: wrk's script. Every request carries APIM_BENCH_TOKEN, or, where
# APIM_BENCH_TOKENS names a file of several, each of its tokens in turn (which costs wrk a Lua call
# per request); at the end it writes `RESULT requests duration_us p50_us p99_us errors` (errors:
# socket errors, timeouts and non-2xx answers).
write_report_lua() {
  cat >"$1" <<'EOF'
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
}

# ticks PID…: utime + stime of processes, in clock ticks (all threads of each); an empty PID
# counts 0.
ticks() {
  local t=0 pid
  for pid in "$@"; do
    [[ -n $pid ]] || continue
    t=$((t + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)

# warm_up URL: a second of wrk against URL, not timed.
warm_up() {
  "${load[@]}" wrk -t1 -c"$conns" -d1s -s "$dir/report.lua" "$1" >/dev/null
}

# timed_wrk URL: wrk against URL for the run's duration, its output in $dir/wrk.out and its own
# CPU (bash's `time`: user, system, real) in $dir/wrk.time, to show when the load generator is
# the limit.
timed_wrk() {
  local TIMEFORMAT='%U %S %R'
  { time "${load[@]}" wrk -t1 -c"$conns" -d"$duration" --latency -s "$dir/report.lua" "$1" \
    >"$dir/wrk.out"; } 2>"$dir/wrk.time"
}

# wrk_result WHAT: the timed run's figures in `requests`, `dur_us`, `p50`, `p99` and `wrk_time`
# (user system real); the script stops, naming WHAT, if any request failed or was answered with
# other than 2xx.
wrk_result() {
  local out errors
  out=$(cat "$dir/wrk.out")
  read -r requests dur_us p50 p99 errors < <(sed -n 's/^RESULT //p' <<<"$out")
  if ((errors > 0)); then
    echo "$out" >&2
    die "$1: $errors errors or non-2xx answers while timing"
  fi
  wrk_time=$(tail -1 "$dir/wrk.time")
}
