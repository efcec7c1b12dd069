#!/usr/bin/env bash
# The project's test command (README, and .ci/run calls exactly this): installs what
# the tests need, builds the workspace once in the release profile, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "test.sh: building the workspace (release profile, shared by all tests)…"
cargo build --release --workspace --locked

echo "test.sh: running the tests…"
cargo test --release --workspace --locked
