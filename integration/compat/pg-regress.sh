#!/usr/bin/env bash
# PostgreSQL's own regression suite, run twice on one fresh target and compared:
#   direct:  as a login role that is a member of the grant's role (NOSUPERUSER, like the
#            role proctor issues), on a database prepared like the dev target;
#   proctor: as the dev agent through `proctor dev` (TLS verify-full, SCRAM) with a policy
#            that allows everything, so the only difference is proctor in the path.
# Every test's output must be identical after normalising names that differ by construction
# (login role, database, output directory, OID-derived names); then `proctor verify` must pass
# over everything recorded. (Statement-by-statement agreement with the target's own log is
# the job of protocols/postgres/tests/oracle.rs, over random protocol sequences.)
#
#   integration/compat/pg-regress.sh                     # builds target/debug/proctor
#   PROCTOR_BIN=/path/to/proctor integration/compat/pg-regress.sh
#   PG_REGRESS_SCHEDULE=parallel integration/compat/pg-regress.sh   # the whole suite (default)
#   PG_REGRESS_TESTS="boolean char ..." integration/compat/pg-regress.sh  # some tests only
#
# The suite's SQL and expected files come from the Debian source tarball of the installed
# PostgreSQL (the same version), fetched once from deb.debian.org into $COMPAT_CACHE.
# Exits non-zero when a test's output differs, verify fails, or something could not be set up.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=${COMPAT_CACHE:-/tmp/proctor-compat-cache}
export DEBIAN_FRONTEND=noninteractive
exec </dev/null

log() { printf '%s\n' "pg-regress: $*"; }
fail() { log "FAIL: $*"; exit 1; }

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$PG_BIN/pg_config" ] || fail "no PostgreSQL server installation under /usr/lib/postgresql"
VERSION=$("$PG_BIN/pg_config" --version | sed -E 's/^PostgreSQL ([0-9.]+).*/\1/')
MAJOR=${VERSION%%.*}
PG_REGRESS=$("$PG_BIN/pg_config" --pkglibdir)/pgxs/src/test/regress/pg_regress
[ -x "$PG_REGRESS" ] || fail "no pg_regress at $PG_REGRESS"

# --- the suite's files ---------------------------------------------------------------------------
SRC=$CACHE/pg-regress-$VERSION
if [ ! -f "$SRC/parallel_schedule" ]; then
  mkdir -p "$CACHE"
  tarball=$CACHE/postgresql-${MAJOR}_$VERSION.orig.tar.bz2
  if [ ! -s "$tarball" ]; then
    log "fetching the PostgreSQL $VERSION source tarball"
    for pool in debian debian-security; do
      sub=main
      [ "$pool" = debian-security ] && sub=updates/main
      curl -fsS --retry 3 -o "$tarball.part" \
        "http://deb.debian.org/$pool/pool/$sub/p/postgresql-$MAJOR/postgresql-${MAJOR}_$VERSION.orig.tar.bz2" \
        && mv "$tarball.part" "$tarball" && break
    done
  fi
  [ -s "$tarball" ] || fail "could not fetch postgresql-${MAJOR}_$VERSION.orig.tar.bz2"
  rm -rf "$SRC.tmp" && mkdir -p "$SRC.tmp"
  tar -xjf "$tarball" -C "$SRC.tmp" --strip-components=4 "postgresql-$VERSION/src/test/regress" \
    || fail "could not unpack the regression suite"
  rm -rf "$SRC" && mv "$SRC.tmp" "$SRC"
fi

if [ -z "${PROCTOR_BIN:-}" ]; then
  log "building proctor"
  cargo build --locked --bin proctor >/dev/null || fail "cargo build"
  PROCTOR_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/proctor
fi
[ -x "$PROCTOR_BIN" ] || fail "no proctor binary at $PROCTOR_BIN"

# --- which tests -------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/proctor-pg-regress.XXXXXX)
chmod 755 "$WORK"
SCHEDULE=$WORK/schedule
if [ -n "${PG_REGRESS_TESTS:-}" ]; then
  for t in $PG_REGRESS_TESTS; do echo "test: $t"; done >"$SCHEDULE"
else
  cp "$SRC/parallel_schedule" "$SCHEDULE"
fi
# Tests that need the C functions of regress.so (built from the server's headers, which a
# stock installation does not have) fail the same way on both paths; they still run.

# --- proctor dev, with a policy that allows everything -------------------------------------------
DATA=$WORK/data
mkdir -p "$DATA/policies"
cat >"$DATA/policies/00-allow-all.toml" <<'EOF'
# pg-regress.sh: the differential run compares the target's behaviour with and without
# proctor in the path, so nothing is held.
[[rule]]
name = "allow-all"
action = "allow"
protocol = "postgres"
EOF
PROCTOR_PID=""
cleanup() {
  if [ -n "$PROCTOR_PID" ] && kill -0 "$PROCTOR_PID" 2>/dev/null; then
    kill -INT "$PROCTOR_PID" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$PROCTOR_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$PROCTOR_PID" 2>/dev/null
  fi
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r PG_PORT API_PORT < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)
"$PROCTOR_BIN" dev --data "$DATA" --postgres-listen "127.0.0.1:$PG_PORT" \
  --api-listen "127.0.0.1:$API_PORT" --no-ssh >"$WORK/proctor.log" 2>&1 &
PROCTOR_PID=$!
for _ in $(seq 1 300); do
  [ -s "$DATA/dev.json" ] && break
  kill -0 "$PROCTOR_PID" 2>/dev/null || break
  sleep 0.2
done
[ -s "$DATA/dev.json" ] || { tail -n 30 "$WORK/proctor.log"; fail "proctor dev did not start"; }
json() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); [v:=v[k] for k in sys.argv[2:]]; print(v)' "$DATA/dev.json" "$@"; }
DSN=$(json postgres_dsn)
ADMIN_DSN=$(json targets postgres admin_dsn)
part() { python3 -c 'import sys, urllib.parse as u; s=u.urlsplit(sys.argv[1]); print(u.unquote(str(getattr(s, sys.argv[2]) or "")))' "$1" "$2"; }
AGENT=$(part "$DSN" username)
AGENT_PASS=$(part "$DSN" password)
ADMIN_USER=$(part "$ADMIN_DSN" username)
ADMIN_HOST=$(part "$ADMIN_DSN" hostname)
ADMIN_PORT=$(part "$ADMIN_DSN" port)
ADMIN_PASS=$(part "$ADMIN_DSN" password)
TARGET_DB=$(part "$ADMIN_DSN" path | tr -d /)
[ -n "$TARGET_DB" ] || TARGET_DB=app
log "proctor dev on 127.0.0.1:$PG_PORT, target PostgreSQL $VERSION on ${ADMIN_HOST:-socket}:$ADMIN_PORT"

admin() { PGPASSWORD=$ADMIN_PASS psql -X -q -v ON_ERROR_STOP=1 -h "$ADMIN_HOST" -p "$ADMIN_PORT" -U "$ADMIN_USER" "$@"; }
# The direct side: a database prepared as `proctor dev` prepares its target database, and a
# login role in the grant's role that acts as it (proctor's issued roles do the same).
# Names as long as the proctor side's (the target database; `proctor_<agent>_<8 hex>` for the
# role proctor issues), so that psql's column widths agree too.
DIRECT_DB=$(printf 'r%0*d' $((${#TARGET_DB} - 1)) 0)
DIRECT_USER=regress_direct_login_00000
DIRECT_PASS=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
admin -d postgres -c "CREATE DATABASE $DIRECT_DB" >/dev/null || fail "creating $DIRECT_DB"
admin -d "$DIRECT_DB" >/dev/null <<EOF || fail "preparing $DIRECT_DB"
CREATE TABLE IF NOT EXISTS accounts (id serial PRIMARY KEY, owner text NOT NULL, balance numeric(12,2) NOT NULL DEFAULT 0);
INSERT INTO accounts (owner, balance) SELECT 'owner ' || g, g * 100 FROM generate_series(1, 5) g;
GRANT USAGE ON SCHEMA public TO app_read;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_read;
GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app_write;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO app_read;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO app_write;
GRANT CREATE ON SCHEMA public TO app_admin;
GRANT CREATE, TEMPORARY ON DATABASE $DIRECT_DB TO app_write;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO app_read;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT INSERT, UPDATE, DELETE ON TABLES TO app_write;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON SEQUENCES TO app_read;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO app_write;
CREATE ROLE $DIRECT_USER LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '$DIRECT_PASS' IN ROLE app_admin;
ALTER ROLE $DIRECT_USER SET role = 'app_admin';
EOF
# What pg_regress sets on a database it creates itself (it does not with --use-existing).
for db in "$DIRECT_DB" "$TARGET_DB"; do
  admin -d postgres -c "ALTER DATABASE \"$db\" SET lc_messages TO 'C'; ALTER DATABASE \"$db\" SET lc_monetary TO 'C';
    ALTER DATABASE \"$db\" SET lc_numeric TO 'C'; ALTER DATABASE \"$db\" SET lc_time TO 'C';
    ALTER DATABASE \"$db\" SET bytea_output TO 'hex'; ALTER DATABASE \"$db\" SET timezone_abbreviations TO 'Default';" \
    >/dev/null || fail "setting up database $db"
done

run_suite() { # name host port user password dbname [ssl env...]
  local name=$1 host=$2 port=$3 user=$4 pass=$5 db=$6
  shift 6
  mkdir -p "$WORK/$name"
  local start=$SECONDS
  env PGPASSWORD="$pass" "$@" "$PG_REGRESS" --use-existing --bindir="$PG_BIN" \
    --inputdir="$SRC" --outputdir="$WORK/$name" --dlpath="$SRC" \
    --host="$host" --port="$port" --user="$user" --dbname="$db" \
    --schedule="$SCHEDULE" --max-connections="${PG_REGRESS_CONNECTIONS:-20}" \
    >"$WORK/$name.log" 2>&1
  log "$name: $(grep -cE '^(not )?ok|^test |^     ' "$WORK/$name.log") lines of results, $((SECONDS - start)) s"
}
run_suite out-d "$ADMIN_HOST" "$ADMIN_PORT" "$DIRECT_USER" "$DIRECT_PASS" "$DIRECT_DB"
run_suite out-p 127.0.0.1 "$PG_PORT" "$AGENT" "$AGENT_PASS" "$(part "$DSN" path | tr -d /)" \
  PGSSLMODE=verify-full PGSSLROOTCERT="$DATA/tls/ca.pem"
[ -d "$WORK/out-d/results" ] || { tail -n 20 "$WORK/out-d.log"; fail "the direct run produced no results"; }
[ -d "$WORK/out-p/results" ] || { tail -n 20 "$WORK/out-p.log"; fail "the run through proctor produced no results"; }

# --- compare --------------------------------------------------------------------------------
# Normalised: the login role's name (proctor issues one per session) and the database's name,
# keeping their lengths (psql's columns are as wide as their widest value); the output
# directory (the two runs write to $WORK/out-d and $WORK/out-p); and names made of OIDs, which
# differ between two runs on one cluster, even in their number of digits (toast tables, RI
# triggers, temporary schemas: they appear in messages, not in aligned columns).
normalise() {
  DIRECT_USER=$DIRECT_USER DIRECT_DB=$DIRECT_DB TARGET_DB=$TARGET_DB WORK=$WORK perl -pe '
    BEGIN { $u = $ENV{DIRECT_USER}; $d = $ENV{DIRECT_DB}; $t = $ENV{TARGET_DB}; $w = $ENV{WORK}; }
    sub same_length { my ($name, $len) = @_; substr($name . ("_" x $len), 0, $len) }
    s/\b(\Q$u\E|proctor_[a-z0-9_]+_[0-9a-f]{8})\b/same_length("LOGIN_ROLE", length($1))/ge;
    s/\b(\Q$d\E|\Q$t\E)\b/same_length("DB", length($1))/ge;
    s/\Q$w\E\/out-[dp]\b/OUTDIR/g;
    s/\b(pg_toast_|RI_ConstraintTrigger_[ac]_|pg_temp_)\d+/$1N/g;
  ' "$1"
}
# `stats` reads cumulative statistics that backends flush on their own schedule (its WAL
# byte count differs between two direct runs under load too): compared, but not counted.
UNSTABLE=" stats "
total=0 same=0 differ=() unstable=()
for out in "$WORK/out-d/results"/*.out; do
  t=$(basename "$out" .out)
  if [[ "$UNSTABLE" == *" $t "* ]]; then
    cmp -s <(normalise "$out") <(normalise "$WORK/out-p/results/$t.out" 2>/dev/null) || unstable+=("$t")
    continue
  fi
  total=$((total + 1))
  other=$WORK/out-p/results/$t.out
  if [ -f "$other" ] && cmp -s <(normalise "$out") <(normalise "$other"); then
    same=$((same + 1))
  else
    differ+=("$t")
    { echo "=== $t"; diff -u <(normalise "$out") <(normalise "$other" 2>/dev/null) | head -n 40; } >>"$WORK/differences"
  fi
done
log "$same of $total tests gave identical output${unstable:+ (timing-dependent, differed and not counted: ${unstable[*]})}"
failed=0
if [ ${#differ[@]} -gt 0 ]; then
  failed=1
  log "differ: ${differ[*]}"
  head -n 400 "$WORK/differences"
fi

# --- the recording --------------------------------------------------------------------------
VERIFY_OK=""
for _ in $(seq 1 20); do
  "$PROCTOR_BIN" verify --data "$DATA" >"$WORK/verify.log" 2>&1
  if tail -n 1 "$WORK/verify.log" | grep -q '^OK'; then VERIFY_OK=1; break; fi
  sleep 0.5
done
log "verify: $(tail -n 1 "$WORK/verify.log")"
if [ -z "$VERIFY_OK" ]; then
  failed=1
  tail -n 20 "$WORK/verify.log"
fi
if [ "$failed" = 0 ]; then
  echo "PASS pg-regress: $same/$total tests identical with and without proctor; verify OK"
else
  echo "FAIL pg-regress"
fi
exit "$failed"
