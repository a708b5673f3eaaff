#!/usr/bin/env bash
# The API docs build without a rustdoc warning (broken intra-doc links, bare URLs, …), on stable
# and as docs.rs builds them (nightly, `--cfg docsrs`, every feature, Cargo.toml's
# [package.metadata.docs.rs]), and there every feature-gated item says which feature it needs.
# Run from the repository's root by .ci/run; `--no-deps` keeps it to this crate's docs.
set -euo pipefail

doc=${CARGO_TARGET_DIR:-target}/doc/apim_sas

echo "-- cargo doc (stable, warnings denied)"
started=$SECONDS
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
echo "-- stable docs: $((SECONDS - started)) s"

echo "-- cargo +nightly doc, as docs.rs builds it (--cfg docsrs, warnings denied)"
started=$SECONDS
RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo +nightly doc --no-deps --all-features
echo "-- docs.rs docs: $((SECONDS - started)) s"

# Each gated item's page, and the feature its note must name: the keystore types, and the
# modules of the tower layer and of ext_authz with every page in them.
pages=(struct.Keystore.html:keystore struct.KeyPair.html:keystore layer/index.html:tower
  ext_authz/index.html:ext-authz)
for file in "$doc"/layer/*.*.html; do pages+=("layer/${file##*/}:tower"); done
for file in "$doc"/ext_authz/*.*.html; do pages+=("ext_authz/${file##*/}:ext-authz"); done
failed=0
for page in "${pages[@]}"; do
  file=$doc/${page%%:*}
  feature=${page##*:}
  if [ ! -f "$file" ]; then
    echo "no page $file"
    failed=1
  elif ! grep -q "Available on <strong>crate feature <code>$feature</code></strong> only" "$file"; then
    echo "$file does not say it needs the feature $feature"
    failed=1
  fi
done
[ "$failed" = 0 ] || exit 1
echo "-- ${#pages[@]} pages of gated items name their feature"
