#!/usr/bin/env bash
# The Lanyard demo (the README's first command): installs packages, builds, starts a CA
# and a daemon on this machine, enrols a virtual card, signs a file through the PKCS#11
# module, verifies it with OpenSSL and prints ready-to-paste commands. Ctrl-C cleans up.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/demo.sh [--dir DIR] [--pin-stdin] [--no-wait] [--no-build]

  --dir DIR    keep everything (CA, card store, logs) in DIR (must be empty or absent)
               and leave it there afterwards; default: a temporary directory, removed
  --pin-stdin  read the card PIN (6-8 digits) from the first line of standard input
               instead of generating a random 6-digit one
  --no-wait    exit (and clean up) right after the demo signature is verified
  --no-build   skip install-deps and cargo build (the binaries must already be built)
EOF
}

DIR_ARG=""
PIN_STDIN=0
NO_WAIT=0
NO_BUILD=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dir) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; DIR_ARG=$2; shift 2 ;;
        --dir=*) DIR_ARG=${1#--dir=}; shift ;;
        --pin-stdin) PIN_STDIN=1; shift ;;
        --no-wait) NO_WAIT=1; shift ;;
        --no-build) NO_BUILD=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "demo: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)

PIN=""
if [[ $PIN_STDIN -eq 1 ]]; then
    IFS= read -r PIN || [[ -n "$PIN" ]] || die "--pin-stdin: no PIN on standard input"
    [[ "$PIN" =~ ^[0-9]{6,8}$ ]] || die "--pin-stdin: the PIN must be 6 to 8 digits"
fi

if [[ $NO_BUILD -eq 0 ]]; then
    say "installing packages (scripts/install-deps.sh)…"
    "$ROOT/scripts/install-deps.sh"
    command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup) first"
    say "building (cargo build --release, a few minutes the first time)…"
    (cd "$ROOT" && cargo build --release --workspace --locked)
fi

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BIN="$TARGET_DIR/release"
MODULE="$BIN/liblanyard_pkcs11.so"
for f in lanyard-ca lanyardd lanyard; do
    [[ -x "$BIN/$f" ]] || die "$BIN/$f is missing: run without --no-build"
done
[[ -f "$MODULE" ]] || die "$MODULE is missing: run without --no-build"
for tool in pkcs11-tool openssl jq setpriv; do
    command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh as root"
done

KEEP=0
if [[ -n "$DIR_ARG" ]]; then
    mkdir -p "$DIR_ARG"
    D=$(cd "$DIR_ARG" && pwd)
    [[ -z "$(ls -A "$D")" ]] || die "--dir $D is not empty"
    KEEP=1
else
    D=$(mktemp -d "${TMPDIR:-/tmp}/lanyard-demo.XXXXXX")
fi

CA_PID=""
DAEMON_PID=""

# shellcheck disable=SC2317  # called from the EXIT trap
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$DAEMON_PID" ]] && stop_pid "$DAEMON_PID"
    [[ -n "$CA_PID" ]] && stop_pid "$CA_PID"
    if [[ $KEEP -eq 0 ]]; then
        rm -rf "$D"
        say "stopped the daemon and the CA, removed $D"
    else
        say "stopped the daemon and the CA; kept $D"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() {
    echo "---- $1 ----" >&2
    tail -n 30 "$1" >&2 || true
}

mkdir -p "$D/logs" "$D/data" "$D/config" "$D/run"
chmod 700 "$D/run"

# Children get SIGTERM if this script dies, whatever killed it.
start_child() {
    setpriv --pdeathsig TERM -- "$@" &
}

say "starting the CA (lanyard-ca init + serve on 127.0.0.1)…"
"$BIN/lanyard-ca" init --dir "$D/ca" >"$D/logs/ca-init.log" 2>&1 \
    || { show_log "$D/logs/ca-init.log"; die "lanyard-ca init failed"; }
start_child "$BIN/lanyard-ca" serve --dir "$D/ca" --listen 127.0.0.1:0 \
    >"$D/logs/ca.stdout" 2>"$D/logs/ca.log" </dev/null
CA_PID=$!
CA_URL=""
for ((i = 0; i < 300; i++)); do
    line=$(grep -m1 '^listening on ' "$D/logs/ca.stdout" 2>/dev/null || true)
    if [[ -n "$line" ]]; then
        CA_URL=${line#listening on }
        break
    fi
    kill -0 "$CA_PID" 2>/dev/null || { show_log "$D/logs/ca.log"; die "lanyard-ca serve exited"; }
    sleep 0.1
done
[[ -n "$CA_URL" ]] || { show_log "$D/logs/ca.log"; die "lanyard-ca serve did not start within 30 s"; }
say "CA listening on $CA_URL"

say "issuing a card for Dr Ada Smith (lanyard-ca admin issue-card)…"
ISSUED=$("$BIN/lanyard-ca" admin issue-card --dir "$D/ca" --name "Dr Ada Smith" \
    --user-id 555123456789 --role "R8000 Clinical Practitioner" --json 2>"$D/logs/issue-card.log") \
    || { show_log "$D/logs/issue-card.log"; die "issue-card failed"; }
CODE=$(jq -er '.code' <<<"$ISSUED") || die "issue-card --json printed no code"
CARD_ID=$(jq -er '.card_id' <<<"$ISSUED") || die "issue-card --json printed no card_id"

export XDG_DATA_HOME="$D/data" XDG_CONFIG_HOME="$D/config" LANYARD_AGENT_SOCK="$D/run/agent.sock"

say "starting the daemon (lanyardd)…"
start_child "$BIN/lanyardd" >"$D/logs/lanyardd.log" 2>&1 </dev/null
DAEMON_PID=$!
ready=0
for ((i = 0; i < 300; i++)); do
    if "$BIN/lanyard" status --json >/dev/null 2>&1; then
        ready=1
        break
    fi
    kill -0 "$DAEMON_PID" 2>/dev/null || { show_log "$D/logs/lanyardd.log"; die "lanyardd exited"; }
    sleep 0.1
done
[[ $ready -eq 1 ]] || { show_log "$D/logs/lanyardd.log"; die "lanyardd did not answer within 30 s"; }

if [[ -z "$PIN" ]]; then
    n=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
    PIN=$(printf '%06d' $((n % 1000000)))
fi

say "enrolling the card (key generated in the daemon, certificate from the CA)…"
printf '%s\n' "$PIN" | "$BIN/lanyard" enroll --ca "$CA_URL" --ca-cert "$D/ca/root.pem" \
    --code "$CODE" --pin-stdin >"$D/logs/enroll.log" 2>&1 \
    || { show_log "$D/logs/enroll.log"; die "lanyard enroll failed"; }

P11=(pkcs11-tool --module "$MODULE")

# The certificate, public key and private key of the card share one CKA_ID.
KEY_ID=$("${P11[@]}" -O 2>/dev/null | awk '
    /^Public Key Object/ { inkey = 1; next }
    /^[^ \t]/ { inkey = 0 }
    inkey && $1 == "ID:" { print $2; exit }')
[[ -n "$KEY_ID" ]] || die "pkcs11-tool -O shows no public key object"
"${P11[@]}" --read-object --type cert --id "$KEY_ID" -o "$D/card.der" >"$D/logs/read-cert.log" 2>&1 \
    || { show_log "$D/logs/read-cert.log"; die "cannot read the card certificate"; }
openssl x509 -inform DER -in "$D/card.der" -out "$D/card.pem"
SUBJECT=$(openssl x509 -in "$D/card.pem" -noout -subject -nameopt oneline)

say "signing a file through the PKCS#11 module and verifying it with OpenSSL…"
printf 'Discharge summary for patient 943 476 5919, signed with a Lanyard virtual card.\n' >"$D/hello.txt"
"${P11[@]}" --login --pin "$PIN" --sign -m SHA256-RSA-PKCS --id "$KEY_ID" \
    -i "$D/hello.txt" -o "$D/sig.bin" >"$D/logs/sign.log" 2>&1 \
    || { show_log "$D/logs/sign.log"; die "pkcs11-tool --sign failed"; }
openssl x509 -in "$D/card.pem" -pubkey -noout >"$D/pub.pem"
openssl dgst -sha256 -verify "$D/pub.pem" -signature "$D/sig.bin" "$D/hello.txt" >"$D/logs/verify.log" 2>&1 \
    || { show_log "$D/logs/verify.log"; die "openssl could not verify the signature"; }
say "signature verified"

q() { printf '%q' "$1"; }
ENV="LANYARD_AGENT_SOCK=$(q "$LANYARD_AGENT_SOCK")"
TOOL="$ENV pkcs11-tool --module $(q "$MODULE")"

cat <<EOF

==================== Lanyard demo is ready ====================
Card holder : Dr Ada Smith, card $CARD_ID
Certificate : $SUBJECT
PIN         : $PIN   (shown only this once)
Module      : $MODULE
CA          : $CA_URL (trust anchor $D/ca/root.pem)
Directory   : $D

Paste these into another shell on this machine (as $(id -un)):

    # slots and tokens: the card is a token labelled with the holder's name
    $TOOL -L
    # objects: certificate, public key and private key sharing one ID
    $TOOL --login --pin $PIN -O
    # sign a file with the card (the key never leaves the daemon)
    $TOOL --login --pin $PIN --sign -m SHA256-RSA-PKCS -i $(q "$D/hello.txt") -o $(q "$D/sig.bin")
    # verify the signature with the public key of the card's certificate
    openssl x509 -in $(q "$D/card.pem") -pubkey -noout > $(q "$D/pub.pem") && openssl dgst -sha256 -verify $(q "$D/pub.pem") -signature $(q "$D/sig.bin") $(q "$D/hello.txt")
    # check the certificate chains to the CA
    openssl verify -CAfile $(q "$D/ca/root.pem") -untrusted $(q "$D/ca/issuing.pem") $(q "$D/card.pem")
    # pkcs11-tool's own self-test against the card
    $TOOL --test --login --pin $PIN
    # the card as the daemon sees it
    $ENV $(q "$BIN/lanyard") status

Logs: $D/logs/
EOF

if [[ $NO_WAIT -eq 1 ]]; then
    say "--no-wait: stopping"
    exit 0
fi

say "running; press Ctrl-C to stop the daemon and the CA and clean up"
while kill -0 "$CA_PID" 2>/dev/null && kill -0 "$DAEMON_PID" 2>/dev/null; do
    sleep 1 &
    wait $! || true
done
kill -0 "$CA_PID" 2>/dev/null || show_log "$D/logs/ca.log"
kill -0 "$DAEMON_PID" 2>/dev/null || show_log "$D/logs/lanyardd.log"
die "the CA or the daemon exited unexpectedly"
