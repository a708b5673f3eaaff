#!/usr/bin/env bash
# `apim-sas verify --batch` against the plain Python peer (benches/peer_verify.py), same file,
# same run: makes a token file, times both (best of RUNS), checks they agree on every line, and
# prints the ratio.
#
#   benches/compare.sh [COUNT=400000] [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."

count=${1:-400000}
runs=${2:-3}
now=2026-04-21T00:00:00Z
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

cargo build --release --quiet
bin=target/release/apim-sas
python3 benches/peer_verify.py make --count "$count" --keystore "$dir/ks.json" --out "$dir/tokens.txt" --now "$now"
chmod 600 "$dir/ks.json"

best() { # best wall time of $runs runs of "$@", output to $dir/out
  local best=""
  for _ in $(seq "$runs"); do
    local start end t
    start=$(date +%s.%N)
    "$@" > "$dir/out" 2>/dev/null || true
    end=$(date +%s.%N)
    t=$(echo "$end - $start" | bc -l)
    if [[ -z $best ]] || (( $(echo "$t < $best" | bc -l) )); then best=$t; fi
  done
  echo "$best"
}

rust=$(best "$bin" verify --batch --keystore "$dir/ks.json" --input "$dir/tokens.txt" --now "$now")
cp "$dir/out" "$dir/rust.jsonl"
python=$(best python3 benches/peer_verify.py verify --keystore "$dir/ks.json" --input "$dir/tokens.txt" --now "$now")
cp "$dir/out" "$dir/python.jsonl"

python3 - "$dir/rust.jsonl" "$dir/python.jsonl" "$count" <<'PY'
import json, sys
rust = [json.loads(l) for l in open(sys.argv[1])]
py = [json.loads(l) for l in open(sys.argv[2])]
count = int(sys.argv[3])
assert len(rust) == len(py) == count, (len(rust), len(py), count)
valid = 0
for r, p in zip(rust, py):
    assert r["line"] == p["line"], (r, p)
    assert r["valid"] == p["valid"], (r, p)
    if r["valid"]:
        valid += 1
        assert (r["id"], r["keyType"]) == (p["id"], p["keyType"]), (r, p)
    else:
        assert r["error"]["code"] == p["error"]["code"], (r, p)
print(f"agree on all {count} lines ({valid} valid, {count - valid} refused)")
PY

ratio=$(echo "$python / $rust" | bc -l)
printf 'apim-sas verify --batch: %.3f s (%.0f tokens/s)\n' "$rust" "$(echo "$count / $rust" | bc -l)"
printf 'python peer:             %.3f s (%.0f tokens/s)\n' "$python" "$(echo "$count / $python" | bc -l)"
printf 'ratio: %.1fx\n' "$ratio"
