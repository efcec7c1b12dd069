#!/usr/bin/env bash
# Runs lanyard-bench (README "Benchmarks"): installs what it needs, builds the
# release binaries it drives, then runs one benchmark with any extra options.
#   scripts/bench.sh token [--duration-secs 3] [--json bench/results/token.json] …
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-}
[ $# -gt 0 ] && shift
case "$what" in
  token)
    # softhsm2 (SoftHSM2 and softhsm2-util), p11-kit and p11-kit-modules
    # (p11-kit server, p11-kit-client.so), openssl.
    if [ "$(id -u)" = 0 ]; then scripts/install-deps.sh; fi
    cargo build --release -p lanyard-bench -p lanyard-daemon -p lanyard-pkcs11 -p lanyard-ca
    exec target/release/lanyard-bench token "$@"
    ;;
  *)
    echo "usage: scripts/bench.sh token [options]   (options: target/release/lanyard-bench token --help)" >&2
    exit 2
    ;;
esac
