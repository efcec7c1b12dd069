#!/usr/bin/env bash
# The long crash-consistency run (issue 8): `scripts/crash.sh [CYCLES] [lanyard-crash options]`,
# default 1000 cycles. Builds the release workspace and the fault-injection test builds
# (lanyardd-fault, lanyard-ca-fault: the only binaries that honour LANYARD_FAULT), then
# runs lanyard-crash, which prints the table (and --json the report) and exits 1 on any
# invariant violation. CI runs the same harness for 30 cycles (system test `crash`).
set -euo pipefail
cd "$(dirname "$0")/.."

cycles=${1:-1000}
shift || true
case "$cycles" in
    ''|*[!0-9]*) echo "usage: scripts/crash.sh [CYCLES] [--seed N] [--json] [--keep] [--verbose]" >&2; exit 2 ;;
esac

echo "crash.sh: building the release workspace and the fault-injection builds…"
cargo build --release --workspace --locked
cargo build --release --locked -p lanyard-daemon -p lanyard-ca \
    --features lanyard-daemon/fault-injection,lanyard-ca/fault-injection \
    --bin lanyardd-fault --bin lanyard-ca-fault

echo "crash.sh: $cycles cycles…"
exec target/release/lanyard-crash --cycles "$cycles" "$@"
