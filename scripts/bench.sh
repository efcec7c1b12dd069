#!/usr/bin/env bash
# Runs lanyard-bench on this machine and writes bench/results/. Not part of the
# test suite (scripts/test.sh runs only a smoke run of each bench).
#   scripts/bench.sh ca [lanyard-bench ca options]   CA issuance + renewal storm
#   scripts/bench.sh token [lanyard-bench token options]   C_Sign: Lanyard, SoftHSM2, p11-kit
# Installs what it needs (Debian 12, as root): the packages of install-deps.sh and,
# for --db postgres|both, the local PostgreSQL of scripts/postgres.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'bench.sh: error: %s\n' "$*" >&2; exit 1; }

what=${1:-}
[[ -n $what ]] || die "usage: scripts/bench.sh ca|token [OPTIONS…] (see lanyard-bench ca|token --help)"
shift

case $what in
    ca)
        if [[ $(id -u) -eq 0 ]]; then
            scripts/install-deps.sh >&2
            # PostgreSQL unless the caller gave a server or asked for SQLite only.
            if [[ -z ${LANYARD_TEST_PG_URL:-} && " $* " != *" --db sqlite "* ]]; then
                LANYARD_TEST_PG_URL=$(scripts/postgres.sh)
                export LANYARD_TEST_PG_URL
            fi
        fi
        # lanyard-bench links the CA library; the lanyard-ca it starts must be the same build.
        cargo build --release -p lanyard-ca -p lanyard-bench
        exec target/release/lanyard-bench ca "$@"
        ;;
    token)
        # softhsm2, p11-kit, p11-kit-modules (p11-kit-client.so), openssl.
        if [[ $(id -u) -eq 0 ]]; then
            scripts/install-deps.sh >&2
        fi
        # The daemon, CA and module it drives come from target/release, beside the bench.
        cargo build --release -p lanyard-bench -p lanyard-daemon -p lanyard-pkcs11 -p lanyard-ca
        exec target/release/lanyard-bench token "$@"
        ;;
    *)
        die "unknown benchmark '$what' (ca, token)"
        ;;
esac
