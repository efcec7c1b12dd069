#!/usr/bin/env bash
# After a test run with LANYARD_TEST_LOG_DIR=DIR: the CA and daemon fixtures
# kept their logs in DIR and listed every secret they handled (enrolment and
# reset codes, PINs of 8 characters or more) in DIR/secrets.txt. Fails when a
# log holds any of them.   scripts/check-test-logs.sh DIR
set -euo pipefail
DIR=${1:?usage: scripts/check-test-logs.sh DIR}
shopt -s nullglob
logs=("$DIR"/*.log)
[[ ${#logs[@]} -gt 0 ]] || { echo "check-test-logs.sh: no logs in $DIR: were the tests run with LANYARD_TEST_LOG_DIR?" >&2; exit 1; }
[[ -s $DIR/secrets.txt ]] || { echo "check-test-logs.sh: no secrets listed in $DIR/secrets.txt" >&2; exit 1; }
secrets=$(sort -u "$DIR/secrets.txt" | wc -l)
if grep -H -i -F -o -f <(sort -u "$DIR/secrets.txt") "${logs[@]}" >"$DIR/found.txt"; then
    echo "check-test-logs.sh: secrets found in the test logs (file:secret):" >&2
    sort -u "$DIR/found.txt" >&2
    exit 1
fi
echo "check-test-logs.sh: ${#logs[@]} logs, $(cat "${logs[@]}" | wc -c) bytes: none of the $secrets PINs and codes the fixtures handled"
