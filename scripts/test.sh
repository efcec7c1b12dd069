#!/usr/bin/env bash
# The project's test command (README, and .ci/run calls exactly this): installs what
# the tests need, builds the workspace once in the release profile, starts PostgreSQL,
# runs every test, then the Debian packages test (alone: it installs them), then the
# CA's tests again on PostgreSQL instead of SQLite; then greps the fixtures' kept logs
# for the secrets they handled, checks the dependency policy (cargo deny) and runs
# each fuzz target for 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL first: postgres.sh runs install-deps (every package) so that a server
# that apt or pg_ctlcluster starts inherits none of this script's descriptors. One
# that cannot be started fails the run here (set -e): never a skip.
echo "test.sh: installing packages and starting PostgreSQL for the CA's tests…"
LANYARD_TEST_PG_URL=$(scripts/postgres.sh)
export LANYARD_TEST_PG_URL

# The CA and daemon fixtures keep their logs here, with the list of secrets they
# handled, for scripts/check-test-logs.sh after the tests.
LANYARD_TEST_LOG_DIR=$PWD/target/test-logs
rm -rf "$LANYARD_TEST_LOG_DIR"
export LANYARD_TEST_LOG_DIR

echo "test.sh: building the workspace (release profile, shared by all tests)…"
cargo build --release --workspace --locked

# The crash harness's daemon and CA: the same sources with the LANYARD_FAULT points
# compiled in, as separate binaries (target/release/lanyardd and lanyard-ca stay the
# shipped, feature-free builds; the system test `crash` checks that).
echo "test.sh: building the fault-injection test builds (lanyardd-fault, lanyard-ca-fault)…"
cargo build --release --locked -p lanyard-daemon -p lanyard-ca \
    --features lanyard-daemon/fault-injection,lanyard-ca/fault-injection \
    --bin lanyardd-fault --bin lanyard-ca-fault

echo "test.sh: running the tests…"
cargo test --release --workspace --locked

# Alone, after the rest: it installs the .debs on this machine (an installed
# lanyard.module makes p11-kit load the module in every other program), runs the
# demo from the installed paths and purges them again, even when it fails.
echo "test.sh: building, installing, using and purging the Debian packages…"
cargo test --release --locked -p lanyard-system-tests --test packages -- --ignored --test-threads 1

echo "test.sh: running the CA's tests again with LANYARD_TEST_DB=postgres…"
LANYARD_TEST_DB=postgres cargo test --release --locked -p lanyard-ca

echo "test.sh: grepping the kept test logs for the PINs and codes the fixtures handled…"
scripts/check-test-logs.sh "$LANYARD_TEST_LOG_DIR"

echo "test.sh: dependency policy: cargo deny check licenses bans sources…"
scripts/deny.sh

echo "test.sh: fuzz smoke run, 30 s per target (a saved crash fails the run)…"
scripts/fuzz.sh all 30
