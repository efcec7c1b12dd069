#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ on the stable toolchain (`cargo afl`):
#   scripts/fuzz.sh [TARGET|all] [SECONDS]     (default: all targets, 60 s each)
# Targets (fuzz/src/bin/): agent_frame, card_file, ca_der, pkcs11_args. Seeds are
# fuzz/corpus/<target>/ (small, committed); findings go to target/afl/out/<target>/.
# Installs cargo-afl (which builds AFL++) when missing, builds the targets with
# AFL instrumentation in their own workspace (fuzz/, outside the normal build),
# runs each for SECONDS and prints executions and crashes per target and in
# total. Exits 1 when any target saved a crash.
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

# cargo-afl builds AFL++ from its bundled source when it is installed; an
# AFL++ for this rustc is built on first use otherwise.
if ! cargo afl --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-afl…"
    cargo install cargo-afl --locked
fi
# Already built for this toolchain answers an error that says so: fine.
if ! built=$(cargo afl config --build 2>&1) && ! grep -q "already built" <<<"$built"; then
    echo "fuzz.sh: cannot build AFL++:" >&2
    echo "$built" >&2
    exit 1
fi

export CARGO_TARGET_DIR=$ROOT/target/afl
echo "fuzz.sh: building ${TARGETS[*]} with AFL instrumentation…"
(cd fuzz && cargo afl build --release --locked $(printf -- '--bin %s ' "${TARGETS[@]}"))

# Plain output, no CPU-governor or core-pattern checks (shared CI machine),
# stop on time, no wait for a terminal.
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
total_execs=0
total_crashes=0
for t in "${TARGETS[@]}"; do
    out=$CARGO_TARGET_DIR/out/$t
    rm -rf "$out"
    mkdir -p "$out"
    echo "fuzz.sh: $t for ${SECONDS_EACH}s…"
    cargo afl fuzz -i "fuzz/corpus/$t" -o "$out" -V "$SECONDS_EACH" \
        -- "$CARGO_TARGET_DIR/release/$t" > "$out/afl.log" 2>&1 \
        || { echo "fuzz.sh: afl-fuzz failed for $t, see $out/afl.log" >&2; tail -20 "$out/afl.log" >&2; exit 1; }
    stats=$out/default/fuzzer_stats
    execs=$(awk -F' *: *' '$1=="execs_done"{print $2}' "$stats")
    crashes=$(awk -F' *: *' '$1=="saved_crashes"{print $2}' "$stats")
    where=""
    [[ $crashes -eq 0 ]] || where=" (inputs in $out/default/crashes/)"
    echo "fuzz.sh: $t: $execs executions, $crashes crashes$where"
    total_execs=$((total_execs + execs))
    total_crashes=$((total_crashes + crashes))
done
echo "fuzz.sh: total: $total_execs executions, $total_crashes crashes"
[[ $total_crashes -eq 0 ]]
