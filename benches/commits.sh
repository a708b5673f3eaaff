#!/usr/bin/env bash
# Two commits' sign and uncached verify against the SHA-512 floor, in one session: the same
# harness (benches/commits/harness.rs, the public API only) built against each commit with the
# same release profile (fat LTO, one codegen unit), then run alternately, A B, B A, A B, …, so
# that the machine's load hits both alike. Prints the load before every run and each run's
# ratios (10th percentile of ROUNDS rounds of ITERS calls, median beside it), then a summary.
#
#   benches/commits.sh OLD [NEW=.] [RUNS=4] [ROUNDS=80] [ITERS=20000]
#
# OLD and NEW are commits (anything `git rev-parse` reads) or directories holding a checkout;
# `.` is the working tree, uncommitted changes included. A commit is checked out in a temporary
# `git worktree`, removed at the end. FEATURES (default: none) are the crate features the harness
# builds with; TARGET_DIR keeps the builds between calls (default: a temporary directory).
#
#   benches/commits.sh 65ac82b          # that commit against the working tree
#   RUNS=6 benches/commits.sh v0.1.0 main
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

old=${1:?usage: benches/commits.sh OLD [NEW=.] [RUNS=4] [ROUNDS=80] [ITERS=20000]}
new=${2:-.}
runs=${3:-${RUNS:-4}}
rounds=${4:-80}
iters=${5:-20000}
features=${FEATURES:-}
feature_list=""
for f in ${features//,/ }; do feature_list+="${feature_list:+, }\"$f\""; done

tmp=$(mktemp -d)
worktrees=()
cleanup() {
  for w in "${worktrees[@]}"; do git -C "$repo" worktree remove --force "$w" || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
target=${TARGET_DIR:-$tmp/target}

# A directory as it is, or a commit in a worktree of its own: sets $tree (not run in a
# subshell, so that the cleanup knows every worktree).
tree_of() {
  local spec=$1 label=$2
  if [[ -d $spec ]]; then
    tree=$(cd "$spec" && pwd)
  else
    local rev
    rev=$(git -C "$repo" rev-parse --verify "$spec^{commit}")
    tree=$tmp/tree-$label
    worktrees+=("$tree")
    git -C "$repo" worktree add --quiet --detach "$tree" "$rev"
  fi
}

# The harness as a crate of its own that depends on the tree by path, with the tree's lock file
# (the same sha2, hmac and base64 versions the tree is tested with) and the profile in one place.
build() {
  local tree=$1 label=$2
  local dir=$tmp/crate-$label
  mkdir -p "$dir"
  cat > "$dir/Cargo.toml" <<EOF
[package]
name = "harness-$label"
version = "0.0.0"
edition = "2021"
publish = false

[[bin]]
name = "harness"
path = "$repo/benches/commits/harness.rs"

[dependencies]
apim-sas = { path = "$tree", default-features = false, features = [$feature_list] }
sha2 = { version = "0.11", default-features = false }

[profile.release]
lto = "fat"
codegen-units = 1

[workspace]
EOF
  cp "$tree/Cargo.lock" "$dir/Cargo.lock"
  cargo build --quiet --release --manifest-path "$dir/Cargo.toml" --target-dir "$target/$label"
  echo "$target/$label/release/harness"
}

tree_of "$old" a
old_tree=$tree
tree_of "$new" b
new_tree=$tree
echo "A = $old ($(git -C "$old_tree" rev-parse --short HEAD 2>/dev/null || echo "$old_tree"))"
echo "B = $new ($(git -C "$new_tree" rev-parse --short HEAD 2>/dev/null || echo "$new_tree")$(
  [[ -n $(git -C "$new_tree" status --porcelain --untracked-files=no -- src 2>/dev/null) ]] && echo ", src/ modified"))"
echo "building both (fat LTO, one codegen unit, features: ${features:-none})"
bin_a=$(build "$old_tree" a)
bin_b=$(build "$new_tree" b)
grep -m1 'model name' /proc/cpuinfo || true

for run in $(seq "$runs"); do
  if (( run % 2 )); then order="a b"; else order="b a"; fi
  for side in $order; do
    bin=bin_$side
    printf 'run %d %s  load %s\n' "$run" "${side^^}" "$(cut -d' ' -f1-3 /proc/loadavg)"
    "${!bin}" "$rounds" "$iters" | sed 's/^/    /' | tee -a "$tmp/out-$side"
  done
done

echo "summary: ratio to the floor, 10th percentile, each run"
for side in a b; do
  [[ -f $tmp/out-$side ]] || continue
  for op in verify sign; do
    printf '%s %-7s %s\n' "${side^^}" "$op" \
      "$(awk -v op="$op" '$1 == op { printf "%s ", $3 }' "$tmp/out-$side")"
  done
done
