#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ on the stable toolchain:
#   scripts/fuzz.sh [TARGET|all] [SECONDS]     (default: all targets, 60 s each)
# Targets (fuzz/src/bin/): agent_frame, card_file, ca_der, pkcs11_args. Seeds are
# fuzz/corpus/<target>/ (small, committed); findings go to target/afl/out/<target>/.
# Uses Debian's AFL++ (package afl++: afl-fuzz and its runtime afl-compiler-rt.o)
# and rustc's own SanitizerCoverage pass (-C passes=sancov-module, trace-pc-guard),
# which is what `cargo afl` does on the stable toolchain without building AFL++.
# The targets are built in their own workspace (fuzz/, outside the normal build),
# with clippy -D warnings as the compiler of fuzz/'s own code and rustfmt --check
# first. Each target runs for SECONDS; the script prints executions and crashes
# per target and in total, and exits 1 when any target saved a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

TARGETS=(agent_frame card_file ca_der pkcs11_args)
WANT=${1:-all}
SECONDS_EACH=${2:-60}
if [[ $WANT != all ]]; then
    [[ " ${TARGETS[*]} " == *" $WANT "* ]] || { echo "fuzz.sh: unknown target $WANT (one of: ${TARGETS[*]})" >&2; exit 2; }
    TARGETS=("$WANT")
fi
[[ $SECONDS_EACH =~ ^[0-9]+$ && $SECONDS_EACH -gt 0 ]] || { echo "fuzz.sh: SECONDS must be a positive integer" >&2; exit 2; }

AFL_RT=${AFL_RT:-/usr/lib/afl/afl-compiler-rt.o}
if ! command -v afl-fuzz >/dev/null || [[ ! -f $AFL_RT ]]; then
    echo "fuzz.sh: needs AFL++ (afl-fuzz and $AFL_RT): apt-get install afl++ (scripts/install-deps.sh installs it)" >&2
    exit 1
fi

echo "fuzz.sh: rustfmt --check of fuzz/…"
(cd fuzz && cargo fmt --check)

# The flags `cargo afl build` gives on stable: coverage guards on every edge,
# comparison tracing, the checks of a debug build; `fuzzing` as the cfg the afl
# crate expects; the AFL++ runtime linked in.
export RUSTFLAGS="--cfg fuzzing -C debug-assertions -C overflow-checks \
-C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3 \
-C llvm-args=-sanitizer-coverage-trace-pc-guard -C llvm-args=-sanitizer-coverage-prune-blocks=0 \
-C llvm-args=-sanitizer-coverage-trace-compares -C link-arg=$AFL_RT"
export CARGO_TARGET_DIR=$ROOT/target/afl
# clippy-driver compiles fuzz/'s own crate (as `cargo clippy` does), so the lint
# costs no second build of the dependencies.
export RUSTC_WORKSPACE_WRAPPER=${RUSTC_WORKSPACE_WRAPPER-$(command -v clippy-driver)}
export CLIPPY_ARGS="-Dwarnings__CLIPPY_HACKERY__"
echo "fuzz.sh: building ${TARGETS[*]} with coverage instrumentation (and clippy -D warnings)…"
(cd fuzz && cargo build --release $(printf -- '--bin %s ' "${TARGETS[@]}"))
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

# Plain output, no CPU-governor or core-pattern checks (shared CI machine),
# stop on time, no wait for a terminal.
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
# pkcs11_args's agent socket (one per fork server) goes here, not in /tmp.
export TMPDIR=$CARGO_TARGET_DIR/tmp
rm -rf "$TMPDIR"
mkdir -p "$TMPDIR"
total_execs=0
total_crashes=0
for t in "${TARGETS[@]}"; do
    out=$CARGO_TARGET_DIR/out/$t
    rm -rf "$out"
    mkdir -p "$out"
    echo "fuzz.sh: $t for ${SECONDS_EACH}s…"
    afl-fuzz -i "fuzz/corpus/$t" -o "$out" -V "$SECONDS_EACH" \
        -- "$CARGO_TARGET_DIR/release/$t" > "$out/afl.log" 2>&1 \
        || { echo "fuzz.sh: afl-fuzz failed for $t, see $out/afl.log" >&2; tail -20 "$out/afl.log" >&2; exit 1; }
    stats=$out/default/fuzzer_stats
    execs=$(awk -F' *: *' '$1=="execs_done"{print $2}' "$stats")
    crashes=$(awk -F' *: *' '$1=="saved_crashes"{print $2}' "$stats")
    hangs=$(awk -F' *: *' '$1=="saved_hangs"{print $2}' "$stats")
    edges=$(awk -F' *: *' '$1=="edges_found"{print $2}' "$stats")
    where=""
    [[ $crashes -eq 0 ]] || where=" (inputs in $out/default/crashes/)"
    echo "fuzz.sh: $t: $execs executions, $edges edges, $crashes crashes$where, $hangs hangs"
    total_execs=$((total_execs + execs))
    total_crashes=$((total_crashes + crashes))
done
echo "fuzz.sh: total: $total_execs executions, $total_crashes crashes"
[[ $total_crashes -eq 0 ]]
