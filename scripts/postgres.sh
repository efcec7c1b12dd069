#!/usr/bin/env bash
# Starts the local PostgreSQL server the CA's tests run against (Debian 12, as root, no
# systemd): installs `postgresql`, starts cluster 15/main with pg_ctlcluster, makes the
# role `lanyard` (CREATEDB, a random password kept in a root-only file) and the database
# `lanyard_test`. Idempotent and safe to run concurrently. Prints, and only prints, the
# base URL on stdout: postgres://lanyard:PASSWORD@127.0.0.1:PORT/
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=15
CLUSTER=main
ROLE=lanyard
DATABASE=lanyard_test
STATE_DIR=/var/lib/lanyard-test
PASSWORD_FILE=$STATE_DIR/postgres-password
LOCK_FILE=/run/lanyard-postgres.lock
READY_TIMEOUT_SECS=60

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { printf 'postgres.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (it installs and starts PostgreSQL)"

# The server outlives this script: it must not inherit a caller's descriptors (a
# test's or CI's pipe would then stay open for as long as PostgreSQL runs). 255 is
# bash's own copy of this script.
for fd in "/proc/$$/fd"/*; do
    fd=${fd##*/}
    if [[ $fd =~ ^[0-9]+$ && $fd -gt 2 && $fd -ne 255 ]]; then
        eval "exec $fd>&-"
    fi
done

# One run at a time: test processes may call this concurrently.
exec 9>"$LOCK_FILE"
flock 9

# Everything but the URL goes to stderr. apt may start a server (postinst): it must not
# inherit the lock or a caller's pipe, so the output goes through a file.
install -d -m 0700 "$STATE_DIR"
if ! scripts/install-deps.sh </dev/null >"$STATE_DIR/install-deps.out" 2>&1 9>&-; then
    cat "$STATE_DIR/install-deps.out" >&2
    die "scripts/install-deps.sh failed"
fi
cat "$STATE_DIR/install-deps.out" >&2

cluster_field() { # $1: column of pg_lsclusters (3 port, 4 status)
    pg_lsclusters --no-header 2>/dev/null \
        | awk -v v="$VERSION" -v c="$CLUSTER" -v f="$1" '$1 == v && $2 == c { print $f }'
}

if [[ -z $(cluster_field 2) ]]; then
    say "creating cluster $VERSION/$CLUSTER"
    pg_createcluster "$VERSION" "$CLUSTER" >&2
fi
# Without systemd nothing recreates the socket directory after a reboot.
install -d -o postgres -g postgres -m 2775 /var/run/postgresql
if [[ $(cluster_field 4) != online* ]]; then
    say "starting cluster $VERSION/$CLUSTER"
    # The server must inherit neither the lock (fd 9) nor a caller's pipe, or whoever
    # waits on them waits for as long as PostgreSQL runs.
    if ! pg_ctlcluster "$VERSION" "$CLUSTER" start </dev/null >"$STATE_DIR/pg_ctlcluster.out" 2>&1 9>&-; then
        cat "$STATE_DIR/pg_ctlcluster.out" >&2
        die "pg_ctlcluster $VERSION $CLUSTER start failed; see /var/log/postgresql/postgresql-$VERSION-$CLUSTER.log"
    fi
fi
PORT=$(cluster_field 3)
[[ $PORT =~ ^[0-9]+$ ]] || die "cannot read the port of cluster $VERSION/$CLUSTER"

ready=0
for _ in $(seq "$READY_TIMEOUT_SECS"); do
    if pg_isready -q -h 127.0.0.1 -p "$PORT"; then
        ready=1
        break
    fi
    sleep 1
done
[[ $ready -eq 1 ]] || die "PostgreSQL on 127.0.0.1:$PORT did not accept connections within ${READY_TIMEOUT_SECS}s"

if [[ ! -s $PASSWORD_FILE ]]; then
    # Hex only: nothing to escape in SQL or in a URL.
    (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$PASSWORD_FILE")
fi
PASSWORD=$(<"$PASSWORD_FILE")
[[ $PASSWORD =~ ^[0-9a-f]{48}$ ]] || die "$PASSWORD_FILE is corrupt; delete it and run again"

# The password goes through stdin, never on a command line.
runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres >&2 <<SQL
SELECT 'CREATE ROLE $ROLE' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE')\gexec
ALTER ROLE $ROLE WITH LOGIN CREATEDB PASSWORD '$PASSWORD';
SELECT 'CREATE DATABASE $DATABASE OWNER $ROLE'
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DATABASE')\gexec
SQL

URL="postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/"
# Prove the role can log in over TCP with its password, as the CA will.
PGPASSWORD=$PASSWORD psql -X -q -w -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$DATABASE" \
    -c 'SELECT 1' >/dev/null \
    || die "role $ROLE cannot log in to 127.0.0.1:$PORT/$DATABASE with its password"
echo "$URL"
