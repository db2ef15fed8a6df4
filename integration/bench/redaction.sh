#!/usr/bin/env bash
# Cost of redaction and field encryption (AG-305 4.8) on pgbench through proctor.
#
# A local PostgreSQL (initdb in a temp dir), pgbench's tpcb-like workload through proctor's
# PostgreSQL listener, run twice per protocol mode with the same policies:
#   off: [redaction] enabled = false (nothing scanned, nothing sealed)
#   scan: every built-in detector and the shipped [[redact]] rules, nothing sealed
#   on:  every built-in detector, the shipped [[redact]] rules, an auditor key, and
#        public.pgbench_accounts.abalance as a sensitive column, so every SELECT's result
#        sample and every UPDATE's literal or parameter is sealed (one HPKE seal each).
# Prints transactions per second for each and the ratios to off.
#
# Env: PROCTOR_BIN (default: build target/release/proctor), DURATION (s, default 15),
# CLIENTS (default 4), SCALE (default 4), MODES (default "simple extended").
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
duration=${DURATION:-15}
clients=${CLIENTS:-4}
scale=${SCALE:-4}
modes=${MODES:-simple extended}
if [[ -z "${PROCTOR_BIN:-}" ]]; then
  cargo build --release --locked --bin proctor >/dev/null
  PROCTOR_BIN=$repo/target/release/proctor
fi
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x "$pgbin/initdb" ]] || { echo "needs PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 2; }
command -v pgbench >/dev/null || { echo "needs pgbench (apt-get install postgresql-contrib)" >&2; exit 2; }

dir=$(mktemp -d /var/tmp/proctor-redaction-bench.XXXXXX)
chmod 755 "$dir"
as_pg=()
if [[ $(id -u) == 0 ]]; then
  chown postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
proctor_pid=
cleanup() {
  [[ -n "$proctor_pid" ]] && kill "$proctor_pid" 2>/dev/null && wait "$proctor_pid" 2>/dev/null || true
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
"${as_pg[@]}" "$pgbin/initdb" -D "$dir/pg" -U postgres --auth=trust >/dev/null
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
  -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$pg_port user=postgres dbname=$1" -c "$2"; }
psql_admin postgres "CREATE DATABASE bench"
pgbench -q -i -s "$scale" "host=127.0.0.1 port=$pg_port user=postgres dbname=bench" >/dev/null 2>&1
psql_admin bench "CREATE ROLE bench_rw NOLOGIN; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO bench_rw;"

secret=bench-agent-secret
verifier=$(printf '%s\n' "$secret" | "$PROCTOR_BIN" agent-secret | sed -n 's/^verifier: //p')
"$PROCTOR_BIN" keys auditor-init --out "$dir/auditor.key" >/dev/null 2>&1

write_config() { # $1 = name, $2 = [redaction] body
  mkdir -p "$dir/$1"
  cat >"$dir/$1/proctor.toml" <<EOF
data_dir = "$dir/$1/data"
policies = ["$repo/policies"]

[listen]
postgres = "127.0.0.1:$3"

[postgres]
require_tls = false

[redaction]
$2

[[agents]]
name = "bench-agent"
postgres_scram = "$verifier"

[[targets]]
name = "bench"
kind = "postgres"
host = "127.0.0.1"
port = $pg_port
dbname = "bench"
admin_dsn = "host=127.0.0.1 port=$pg_port user=postgres dbname=bench"

[[grants]]
name = "bench"
agent = "bench-agent"
target = "bench"
privilege = "routine"
role = "bench_rw"
connection_limit = 1000
EOF
}

run() { # $1 = config name, $2 = pgbench protocol mode; prints tps
  local port; port=$(free_port)
  write_config "$1" "$3" "$port"
  "$PROCTOR_BIN" serve --config "$dir/$1/proctor.toml" >"$dir/$1/proctor.log" 2>&1 &
  proctor_pid=$!
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  PGPASSWORD=$secret pgbench -n -M "$2" -T "$duration" -c "$clients" -j "$clients" \
    "host=127.0.0.1 port=$port user=bench-agent dbname=bench sslmode=disable" 2>/dev/null \
    | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
  kill "$proctor_pid"; wait "$proctor_pid" 2>/dev/null || true; proctor_pid=
}

off='enabled = false'
on="auditor_key = \"$dir/auditor.key.pub\"
sensitive_columns = [\"public.pgbench_accounts.abalance\"]
detectors = [\"us-ssn\", \"uk-nino\", \"email\"]"

# Detectors only: redaction without any sealing (no sensitive column, no key).
scan='detectors = ["us-ssn", "uk-nino", "email"]'

printf '%-9s %10s %10s %10s %10s %10s\n' mode "off tps" "scan tps" "on tps" "scan/off" "on/off"
for mode in $modes; do
  # Alternate to spread drift (autovacuum, cache warm-up) over all three.
  a1=$(run "off-$mode-1" "$mode" "$off"); c1=$(run "scan-$mode-1" "$mode" "$scan"); b1=$(run "on-$mode-1" "$mode" "$on")
  b2=$(run "on-$mode-2" "$mode" "$on"); c2=$(run "scan-$mode-2" "$mode" "$scan"); a2=$(run "off-$mode-2" "$mode" "$off")
  python3 - "$mode" "$a1" "$a2" "$c1" "$c2" "$b1" "$b2" <<'EOF'
import sys
mode, a1, a2, c1, c2, b1, b2 = sys.argv[1], *map(float, sys.argv[2:])
off, scan, on = (a1 + a2) / 2, (c1 + c2) / 2, (b1 + b2) / 2
print("%-9s %10.0f %10.0f %10.0f %10.3f %10.3f" % (mode, off, scan, on, scan / off, on / off))
EOF
  # The sealed values really are there (and nothing in the clear says otherwise).
  grep -qa 'SEALED:v1:public.pgbench_accounts.abalance' "$dir/on-$mode-1/data/segments/"* \
    || { echo "no sealed abalance in the 'on' recording" >&2; exit 1; }
done
