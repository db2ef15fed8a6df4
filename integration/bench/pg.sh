#!/usr/bin/env bash
# PostgreSQL front end benchmark (issues 3 and 15): pgbench, 8 clients, three workloads: select-only
# (`-S`) with `-M simple` and with `-M prepared`, and the built-in `tpcb-like` script (a
# transaction of three updates, a read and an insert; `-M simple`). Each runs against a local
# PostgreSQL directly, through `proctor serve` (its real durable recorder, the shipped policies,
# a `routine` grant so nothing is held; records durable under the rule of issue 15: reads and
# writes inside a transaction block are forwarded at once and their answers held until their
# records are fdatasync'd, everything else is durable before it is forwarded), through Debian's
# pgbouncer (session pooling), and through two builds of `relay/durable_relay.c`: the least a
# relay can do, copying bytes and writing them to a file, without (`relay`) and with
# (`durable`) an fdatasync before client bytes are forwarded, and (`overlap`) with the
# fdatasync overlapping the target's work and the answers held until it returns. The last three
# measure what durability itself costs on this machine, in the same run: `durable` is the
# ceiling of a relay that syncs before forwarding, `overlap` of one under issue 15's rule. Runs are interleaved (the order rotates each round) to spread
# drift; prints TPS and mean latency per run, the means, the ratios of proctor to each other
# path, the ceiling (the bare relays against pgbouncer), the events per second proctor recorded
# during its runs, and the load average. Ends with `proctor verify` over everything recorded.
#
# Env: PROCTOR_BIN (default: build target/release/proctor), DURATION (s per run, default 12),
# ROUNDS (default 3), CLIENTS (default 8), SCALE (default 10), MODES (default "simple prepared
# tpcb-like"), VIAS (default "direct proctor pgbouncer relay durable overlap"; add `searched` for
# proctor with an auditor's `GET /api/sessions?q=` text search in a loop, on one kept-alive
# connection; SEARCH_CLIENT=per-request starts a curl per search instead), KEEP=1 keeps the work
# directory. SERVE_ONLY=1 sets everything up, prints the connection strings and proctor's pid,
# and waits (for profiling by hand; Ctrl-C cleans up).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
duration=${DURATION:-12}
rounds=${ROUNDS:-3}
clients=${CLIENTS:-8}
scale=${SCALE:-10}
modes=${MODES:-simple prepared tpcb-like}
vias=${VIAS:-direct proctor pgbouncer relay durable overlap}
if [[ -z "${PROCTOR_BIN:-}" ]]; then
  cargo build --release --locked --bin proctor >/dev/null
  PROCTOR_BIN=$repo/target/release/proctor
fi
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x "$pgbin/initdb" ]] || { echo "needs PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 2; }
command -v pgbench >/dev/null || { echo "needs pgbench (apt-get install postgresql-contrib)" >&2; exit 2; }
pgbouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
if [[ ! -x "$pgbouncer" ]]; then
  if [[ $(id -u) == 0 ]]; then
    apt-get install -y pgbouncer >/dev/null
  else
    echo "needs pgbouncer (apt-get install pgbouncer)" >&2; exit 2
  fi
fi

# The recorder's store must be on a real disk (fdatasync is the point), not a tmpfs.
dir=$(mktemp -d /var/tmp/proctor-pg-bench.XXXXXX)
chmod 755 "$dir"
as_pg=()
if [[ $(id -u) == 0 ]]; then
  chown postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
proctor_pid=
bouncer_pid=
relay_pids=()
cleanup() {
  for p in "${relay_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n "$proctor_pid" ]] && kill "$proctor_pid" 2>/dev/null && wait "$proctor_pid" 2>/dev/null || true
  [[ -n "$bouncer_pid" ]] && kill "$bouncer_pid" 2>/dev/null || true
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/pg" -m immediate stop >/dev/null 2>&1 || true
  if [[ -z "${KEEP:-}" ]]; then rm -rf "$dir"; else echo "kept $dir" >&2; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# --- the target -------------------------------------------------------------------------------
pg_port=$(free_port)
"${as_pg[@]}" "$pgbin/initdb" -D "$dir/pg" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
  -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=128MB" \
  start >/dev/null
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$pg_port user=postgres dbname=$1" -c "$2"; }
psql_admin postgres "CREATE DATABASE bench"
pgbench -q -i -s "$scale" "host=127.0.0.1 port=$pg_port user=postgres dbname=bench" >/dev/null 2>&1
# The grant's role: proctor's just-in-time role for each session is a member of it.
psql_admin bench "CREATE ROLE bench_app NOLOGIN; GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO bench_app;"
psql_admin bench "VACUUM ANALYZE"

# --- pgbouncer (session pooling, trust towards it as towards the target) -----------------------
bouncer_port=$(free_port)
mkdir -p "$dir/bouncer"
cat >"$dir/bouncer/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $dir/bouncer/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = $dir/bouncer/pgbouncer.log
pidfile = $dir/bouncer/pgbouncer.pid
EOF
echo '"postgres" ""' >"$dir/bouncer/userlist.txt"
[[ $(id -u) == 0 ]] && chown -R postgres "$dir/bouncer"
"${as_pg[@]}" "$pgbouncer" -q "$dir/bouncer/pgbouncer.ini" &
bouncer_pid=$!
wait_port "$bouncer_port" || { echo "pgbouncer did not start" >&2; cat "$dir/bouncer/pgbouncer.log" >&2; exit 1; }

# --- the reference relays (see relay/durable_relay.c) -----------------------------------------
cc -O2 -Wall -o "$dir/durable_relay" "$repo/integration/bench/relay/durable_relay.c"
relay_port=$(free_port)
durable_port=$(free_port)
overlap_port=$(free_port)
"$dir/durable_relay" "$relay_port" "$pg_port" "$dir/relay.rec" plain &
relay_pids+=($!)
"$dir/durable_relay" "$durable_port" "$pg_port" "$dir/durable.rec" durable &
relay_pids+=($!)
"$dir/durable_relay" "$overlap_port" "$pg_port" "$dir/overlap.rec" overlap &
relay_pids+=($!)
wait_port "$relay_port" && wait_port "$durable_port" && wait_port "$overlap_port" ||
  { echo "the reference relays did not start" >&2; exit 1; }

# --- proctor --------------------------------------------------------------------------------
secret=bench-agent-secret
verifier=$(printf '%s\n' "$secret" | "$PROCTOR_BIN" agent-secret | sed -n 's/^verifier: //p')
proctor_port=$(free_port)
api_port=$(free_port)
auditor_token=bench-auditor-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
auditor_sha=$(printf '%s' "$auditor_token" | sha256sum | cut -d' ' -f1)
mkdir -p "$dir/proctor"
cat >"$dir/proctor/proctor.toml" <<EOF
data_dir = "$dir/proctor/data"
policies = ["$repo/policies"]

[listen]
postgres = "127.0.0.1:$proctor_port"
api = "127.0.0.1:$api_port"

[[api.tokens]]
name = "bench-auditor"
role = "auditor"
sha256 = "$auditor_sha"

[postgres]
require_tls = false   # the reference relays are plaintext too: like for like

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
role = "bench_app"
connection_limit = 1000
EOF
PROCTOR_LOG=${PROCTOR_LOG:-warn} "$PROCTOR_BIN" serve --config "$dir/proctor/proctor.toml" \
  >"$dir/proctor/proctor.log" 2>&1 &
proctor_pid=$!
wait_port "$proctor_port" || { echo "proctor did not start" >&2; cat "$dir/proctor/proctor.log" >&2; exit 1; }

conninfo() { # $1 = direct | proctor | pgbouncer
  case $1 in
    direct) echo "host=127.0.0.1 port=$pg_port user=postgres dbname=bench sslmode=disable" ;;
    proctor | searched) echo "host=127.0.0.1 port=$proctor_port user=bench-agent dbname=bench sslmode=disable" ;;
    pgbouncer) echo "host=127.0.0.1 port=$bouncer_port user=postgres dbname=bench sslmode=disable" ;;
    relay) echo "host=127.0.0.1 port=$relay_port user=postgres dbname=bench sslmode=disable" ;;
    durable) echo "host=127.0.0.1 port=$durable_port user=postgres dbname=bench sslmode=disable" ;;
    overlap) echo "host=127.0.0.1 port=$overlap_port user=postgres dbname=bench sslmode=disable" ;;
  esac
}

# Events recorded so far, over every session in the store.
recorded_events() {
  "$PROCTOR_BIN" sessions list --json --data "$dir/proctor/data" 2>/dev/null \
    | python3 -c 'import json,sys; print(sum(s.get("events",0) for s in json.load(sys.stdin)))'
}

if [[ -n "${SERVE_ONLY:-}" ]]; then
  for via in direct proctor pgbouncer relay durable overlap; do echo "$via: $(conninfo $via)"; done
  echo "proctor pid $proctor_pid, agent password $secret"
  wait "$proctor_pid"
  exit 0
fi

results=$dir/results.txt
: >"$results"
printf '%-9s %-10s %5s %10s %10s  %s\n' mode via run tps "lat ms" "load average"
for mode in $modes; do
  for r in $(seq "$rounds"); do
    # Rotate the order each round so no configuration always runs first.
    read -ra order <<<"$vias"
    shift_by=$(( (r - 1) % ${#order[@]} ))
    order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
    for via in "${order[@]}"; do
      [[ $via == proctor ]] && before=$(recorded_events)
      search_pid=
      if [[ $via == searched ]]; then
        # An auditor's text search over every recording, back to back, while proctor records.
        # One client on one kept-alive connection (curl reading 50 URLs from a config file),
        # as an auditor's tool would search: a new curl process per request cost the machine
        # more CPU than proctor's search did once the search was cheap, and that CPU is the
        # benchmark's, not proctor's. SEARCH_CLIENT=per-request restores the old loop.
        url="http://127.0.0.1:$api_port/api/sessions?q=pgbench_accounts&limit=1000"
        : >"$dir/searches.txt"
        if [[ ${SEARCH_CLIENT:-keepalive} == per-request ]]; then
          ( trap 'kill $c 2>/dev/null; exit 0' TERM
            while :; do
              curl -fsS -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $auditor_token" \
                "$url" >>"$dir/searches.txt" &
              c=$!; wait $c || sleep 0.2
            done ) &
        else
          # 50 searches per curl: curl writes its count when it exits.
          for _ in $(seq 50); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url"; done \
            >"$dir/search.curl"
          # The curl is killed with the loop (the trap), or it would search on into the next run.
          ( trap 'kill $c 2>/dev/null; exit 0' TERM
            while :; do
              curl -fsS -w '%{http_code}\n' -H "Authorization: Bearer $auditor_token" \
                -K "$dir/search.curl" >>"$dir/searches.txt" &
              c=$!; wait $c || sleep 0.2
            done ) &
        fi
        search_pid=$!
      fi
      case $mode in
        tpcb-like) script=(-b tpcb-like -M simple) ;;
        *) script=(-S -M "$mode") ;;
      esac
      out=$(PGPASSWORD=$secret pgbench -n "${script[@]}" -T "$duration" -c "$clients" -j "$clients" \
        "$(conninfo "$via")" 2>&1) || { echo "$out" >&2; exit 1; }
      if [[ -n $search_pid ]]; then kill "$search_pid"; wait "$search_pid" 2>/dev/null || true; fi
      tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
      lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
      events=0
      if [[ $via == proctor ]]; then
        # Sessions end (and their last events land) just after pgbench disconnects.
        sleep 1
        events=$(( $(recorded_events) - before ))
      fi
      searches=
      [[ $via == searched ]] && searches="  ($(grep -c '^200$' "$dir/searches.txt" || true) searches)"
      printf '%-9s %-10s %5d %10.0f %10.3f  %s%s\n' "$mode" "$via" "$r" "$tps" "$lat" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" "$searches"
      echo "$mode $via $r $tps $lat $events" >>"$results"
    done
  done
done

echo
python3 - "$results" "$duration" <<'EOF'
import sys, collections
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
duration = float(sys.argv[2])
tps, lat, ev = collections.defaultdict(list), collections.defaultdict(list), collections.defaultdict(list)
for mode, via, _r, t, l, e in rows:
    tps[mode, via].append(float(t)); lat[mode, via].append(float(l)); ev[mode, via].append(int(e))
mean = lambda v: sum(v) / len(v)
modes = list(dict.fromkeys(m for m, _ in tps))
vias = list(dict.fromkeys(v for _, v in tps))
print("mean TPS (mean latency ms)")
print("%-10s" % "mode" + "".join("%20s" % v for v in vias))
for mode in modes:
    print("%-10s" % mode + "".join("%12.0f (%5.3f)" % (mean(tps[mode, v]), mean(lat[mode, v])) for v in vias))
if "proctor" in vias:
    others = [v for v in vias if v != "proctor"]
    print()
    print("%-9s" % "mode" + "".join("%14s" % ("prx/" + v) for v in others))
    # `searched` is proctor with an auditor searching in a loop: prx/searched is what the
    # search costs the agents (issue 15: searched >= 0.9x proctor).
    for mode in modes:
        p = mean(tps[mode, "proctor"])
        print("%-9s" % mode + "".join("%14.3f" % (p / mean(tps[mode, v])) for v in others))
    if "pgbouncer" in vias:
        print()
        print("ceiling (x pgbouncer): " + "; ".join(
            "%s: %s" % (mode, ", ".join("%s %.3f" % (v, mean(tps[mode, v]) / mean(tps[mode, "pgbouncer"]))
                                       for v in ("relay", "durable", "overlap", "proctor") if (mode, v) in tps))
            for mode in modes))
    for mode in modes:
        # A pgbench -S transaction is one statement: its action event and its verdict, plus the
        # statement result; tpcb-like is seven statements.
        print("%-9s proctor recorded %.0f events/s (%.0f events per transaction)" % (
            mode, mean(ev[mode, "proctor"]) / duration,
            mean(ev[mode, "proctor"]) / (mean(tps[mode, "proctor"]) * duration)))
EOF
kill "$proctor_pid"; wait "$proctor_pid" 2>/dev/null || true; proctor_pid=
echo
"$PROCTOR_BIN" verify --data "$dir/proctor/data" | tail -1
