#!/usr/bin/env bash
# Dependency policy with cargo-deny (deny.toml): licenses, bans and sources of
# the main workspace and of fuzz/'s. Installs cargo-deny (cargo install --locked,
# about 5 minutes on 2 cores) when it is missing.
#   scripts/deny.sh                 # licenses bans sources (what CI runs)
#   scripts/deny.sh advisories      # needs the RustSec database: see README "Security checks"
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deny --version >/dev/null 2>&1; then
    echo "deny.sh: installing cargo-deny…"
    cargo install cargo-deny --locked
fi
checks=("$@")
[[ ${#checks[@]} -gt 0 ]] || checks=(licenses bans sources)
# fuzz/ is its own workspace whose Cargo.lock follows the path crates' dependencies
# (scripts/fuzz.sh builds it without --locked): not --locked either.
for manifest in Cargo.toml fuzz/Cargo.toml; do
    locked=()
    [[ $manifest == Cargo.toml ]] && locked=(--locked)
    echo "deny.sh: cargo deny check ${checks[*]} ($manifest)…"
    cargo deny "${locked[@]}" --config deny.toml --manifest-path "$manifest" \
        check --hide-inclusion-graph "${checks[@]}"
done
