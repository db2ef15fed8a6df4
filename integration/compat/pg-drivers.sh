#!/usr/bin/env bash
# Stock PostgreSQL drivers against proctor: psycopg 3, psycopg2, asyncpg, node-postgres
# (pg, pg-cursor) and pgjdbc, each running its program under integration/compat/pg/ through
# `proctor dev` (a real local PostgreSQL behind proctor, TLS verify-full, SCRAM), then
# `proctor verify` and a check that every driver's sessions and statements were recorded.
#
#   integration/compat/pg-drivers.sh                       # builds target/debug/proctor
#   PROCTOR_BIN=/path/to/proctor integration/compat/pg-drivers.sh
#
# Installs what it needs (Debian packages, PyPI into a venv, npm into a cache dir; kept in
# $COMPAT_CACHE, default /tmp/proctor-compat-cache); a driver whose install fails is reported
# as SKIP. Prints PASS/FAIL/SKIP per driver and exits non-zero on any FAIL. Runs unattended.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/integration/compat/pg
CACHE=${COMPAT_CACHE:-/tmp/proctor-compat-cache}
DRIVER_TIMEOUT=${COMPAT_DRIVER_TIMEOUT:-150}
export DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1
exec </dev/null

log() { printf '%s\n' "pg-drivers: $*"; }
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    apt_updated=1
  fi
  $SUDO apt-get install -y -qq "$@" >/dev/null 2>&1
}

# --- what proctor dev itself needs -----------------------------------------------------------
need=()
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt_install "${need[@]}" || { log "FAIL: could not install ${need[*]}"; exit 1; }
fi

if [ -z "${PROCTOR_BIN:-}" ]; then
  log "building proctor"
  cargo build --locked --bin proctor >/dev/null || { log "FAIL: cargo build"; exit 1; }
  PROCTOR_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/proctor
fi
[ -x "$PROCTOR_BIN" ] || { log "FAIL: no proctor binary at $PROCTOR_BIN"; exit 1; }

# --- drivers -----------------------------------------------------------------------------------
declare -A SKIP=()
mkdir -p "$CACHE"
VENV=$CACHE/venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" >/dev/null 2>&1 || rm -rf "$VENV"
fi
PY=$VENV/bin/python
pip_install() { # driver import-name pip-spec
  if [ ! -x "$PY" ]; then SKIP[$1]="no python venv"; return; fi
  "$PY" -c "import $2" >/dev/null 2>&1 && return
  "$PY" -m pip install -q --disable-pip-version-check "$3" >"$CACHE/pip-$1.log" 2>&1 \
    || SKIP[$1]="pip install $3 failed (see $CACHE/pip-$1.log)"
}
pip_install psycopg3 psycopg 'psycopg[binary]'
pip_install psycopg2 psycopg2 psycopg2-binary
pip_install asyncpg asyncpg asyncpg

NODE_DIR=$CACHE/node
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm || true
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  SKIP[nodepg]="node/npm not installed"
elif [ ! -d "$NODE_DIR/node_modules/pg" ] || [ ! -d "$NODE_DIR/node_modules/pg-cursor" ]; then
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && { [ -f package.json ] || echo '{"private":true}' >package.json; } \
    && npm install --no-audit --no-fund --silent pg pg-cursor) >"$CACHE/npm.log" 2>&1 \
    || SKIP[nodepg]="npm install pg pg-cursor failed (see $CACHE/npm.log)"
fi

JDBC_JAR=/usr/share/java/postgresql.jar
[ -f "$JDBC_JAR" ] || apt_install libpostgresql-jdbc-java || true
command -v javac >/dev/null 2>&1 || apt_install default-jdk-headless || true
if [ ! -f "$JDBC_JAR" ]; then
  SKIP[jdbc]="libpostgresql-jdbc-java not installed"
elif ! command -v javac >/dev/null 2>&1; then
  SKIP[jdbc]="no javac"
fi

# --- proctor dev on free loopback ports --------------------------------------------------------
WORK=$(mktemp -d /tmp/proctor-pg-drivers.XXXXXX)
DATA=$WORK/data
PROCTOR_PID=""
cleanup() {
  if [ -n "$PROCTOR_PID" ] && kill -0 "$PROCTOR_PID" 2>/dev/null; then
    kill -INT "$PROCTOR_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$PROCTOR_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$PROCTOR_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r PG_PORT SSH_PORT API_PORT < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)
"$PROCTOR_BIN" dev --data "$DATA" --postgres-listen "127.0.0.1:$PG_PORT" \
  --ssh-listen "127.0.0.1:$SSH_PORT" --api-listen "127.0.0.1:$API_PORT" --no-ssh \
  >"$WORK/proctor.log" 2>&1 &
PROCTOR_PID=$!
for _ in $(seq 1 300); do
  [ -s "$DATA/dev.json" ] && break
  kill -0 "$PROCTOR_PID" 2>/dev/null || break
  sleep 0.2
done
if [ ! -s "$DATA/dev.json" ]; then
  log "FAIL: proctor dev did not start"
  tail -n 30 "$WORK/proctor.log"
  exit 1
fi
json() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); [v:=v[k] for k in sys.argv[2:]]; print(v)' "$DATA/dev.json" "$@"; }
DSN=$(json postgres_dsn)
ADMIN_DSN=$(json targets postgres admin_dsn)
log "proctor dev on 127.0.0.1:$PG_PORT (data $DATA)"
# The tables, created on the target directly: through proctor the DDL would be held.
psql -X -q -v ON_ERROR_STOP=1 "$ADMIN_DSN" -f "$HERE/schema.sql" >"$WORK/schema.log" 2>&1 \
  || { log "FAIL: creating the test tables"; cat "$WORK/schema.log"; exit 1; }

# --- run the drivers -------------------------------------------------------------------------
DRIVERS=(${COMPAT_DRIVERS:-psycopg3 psycopg2 asyncpg nodepg jdbc})
declare -A RESULT=()
# Runs a driver program with a deadline; when it passes, names what proctor holds (a statement
# waiting for an approver looks like a hang to the driver) before stopping the program.
with_deadline() {
  "$@" &
  local pid=$! i
  for ((i = 0; i < DRIVER_TIMEOUT * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$1 still running after ${DRIVER_TIMEOUT}s; held at proctor: $("$PROCTOR_BIN" approvals list --data "$DATA" --json 2>&1 | tr -s ' \n' ' ')"
    kill -TERM "$pid" 2>/dev/null
    sleep 1
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 124
  fi
  wait "$pid"
}
export COMPAT_PROCTOR="$PROCTOR_BIN $DATA"
run_driver() {
  local d=$1 dsn="$DSN&application_name=compat-$1"
  case $d in
    psycopg3) with_deadline "$PY" "$HERE/psycopg3_test.py" "$dsn" ;;
    psycopg2) with_deadline "$PY" "$HERE/psycopg2_test.py" "$dsn" ;;
    asyncpg) with_deadline "$PY" "$HERE/asyncpg_test.py" "$dsn" ;;
    nodepg) with_deadline env NODE_PATH="$NODE_DIR/node_modules" node "$HERE/nodepg_test.js" "$dsn" ;;
    jdbc)
      mkdir -p "$WORK/jdbc" && javac -d "$WORK/jdbc" -cp "$JDBC_JAR" "$HERE/JdbcTest.java" || return 1
      local user pass
      user=$(python3 -c 'import sys, urllib.parse as u; print(u.unquote(u.urlsplit(sys.argv[1]).username))' "$DSN")
      pass=$(python3 -c 'import sys, urllib.parse as u; print(u.unquote(u.urlsplit(sys.argv[1]).password))' "$DSN")
      local url="jdbc:postgresql://127.0.0.1:$PG_PORT/appdb?sslmode=verify-full&sslrootcert=$DATA/tls/ca.pem&ApplicationName=compat-jdbc"
      with_deadline java -cp "$JDBC_JAR:$WORK/jdbc" JdbcTest "$url" "$user" "$pass" ;;
  esac
}
for d in "${DRIVERS[@]}"; do
  if [ -n "${SKIP[$d]:-}" ]; then
    RESULT[$d]=SKIP
    continue
  fi
  log "--- $d"
  if run_driver "$d"; then
    RESULT[$d]=PASS
  else
    RESULT[$d]=FAIL
  fi
done

# --- the recording: verify, and every driver's statements are there --------------------------
VERIFY_OK=""
for _ in $(seq 1 20); do
  "$PROCTOR_BIN" verify --data "$DATA" >"$WORK/verify.log" 2>&1
  if tail -n 1 "$WORK/verify.log" | grep -q '^OK'; then VERIFY_OK=1; break; fi
  sleep 0.5
done
log "verify: $(tail -n 1 "$WORK/verify.log")"
"$PROCTOR_BIN" sessions list --data "$DATA" --json >"$WORK/sessions.json" 2>"$WORK/sessions.err"
RECORDED=$(python3 - "$PROCTOR_BIN" "$DATA" "$WORK/sessions.json" <<'EOF'
# For each application_name compat-DRIVER: sessions, statements counted by the index, and
# statement records in the export that name the driver's own table.
import collections, json, re, subprocess, sys
binary, data, listing = sys.argv[1:4]
stats = collections.defaultdict(lambda: [0, 0, 0])
for s in json.load(open(listing)):
    if s["protocol"] != "postgres":
        continue
    out = subprocess.run([binary, "export", s["id"], "--format", "jsonl", "--data", data],
                         capture_output=True, text=True, check=True).stdout
    app, own = None, 0
    for line in out.splitlines():
        r = json.loads(line)
        if r.get("kind") == "client_params":
            app = dict(r["params"]).get("application_name")
        elif r.get("kind") == "statement":
            # pgjdbc sends ApplicationName as a SET after login unless assumeMinServerVersion.
            m = re.search(r"application_name\s*(?:=|TO)\s*'(compat-[a-z0-9]+)'", r["text"], re.I)
            if m:
                app = m.group(1)
            if app and app.startswith("compat-"):
                own += ("compat_" + app[len("compat-"):].replace("psycopg3", "psycopg")) in r["text"]
    if app and app.startswith("compat-"):
        st = stats[app[len("compat-"):]]
        st[0] += 1
        st[1] += s["statements"]
        st[2] += own
for d, (n, st, own) in stats.items():
    print(d, n, st, own)
EOF
)
declare -A REC=()
while read -r d n st own; do
  [ -n "$d" ] && REC[$d]="$n $st $own"
done <<<"$RECORDED"

failed=0
for d in "${DRIVERS[@]}"; do
  r=${RESULT[$d]}
  if [ "$r" = SKIP ]; then
    echo "SKIP $d: ${SKIP[$d]}"
    continue
  fi
  read -r n st own <<<"${REC[$d]:-0 0 0}"
  note="$n sessions, $st statements recorded ($own on its table compat_${d/psycopg3/psycopg})"
  if [ "$r" = PASS ] && { [ "$n" -eq 0 ] || [ "$st" -eq 0 ] || [ "$own" -eq 0 ]; }; then
    r=FAIL
    note="$note: its statements are missing from the recording"
  fi
  [ "$r" = FAIL ] && failed=$((failed + 1))
  echo "$r $d: $note"
done
if [ -z "$VERIFY_OK" ]; then
  failed=$((failed + 1))
  echo "FAIL verify:"
  cat "$WORK/verify.log"
else
  echo "PASS verify"
fi
exit $((failed > 0))
