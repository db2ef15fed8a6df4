#!/usr/bin/env bash
# Floods benchmark (issue 18): another agent's `SELECT 1` round trip through a release `proctor
# serve` (its real durable recorder, the shipped policies) while one agent or strangers try to
# wear the bastion down, beside the same round trip straight to PostgreSQL in the same run:
#
#   idle      nothing else runs;
#   huge      four sessions of a flooding agent send 63 MB statements, over and over (each is
#             over `statement_bytes`, refused with SQLSTATE 54000 and recorded whole);
#   large     the same with 12 MB statements, under `statement_bytes`: they run, and each is
#             recorded whole (a record of megabytes in the shared recorder);
#   unauth-pg strangers from 250 loopback sources: bare connects and failed SCRAM logins
#             (integration/bench/flood.py);
#   unauth-ssh strangers from 250 sources: bare connects and SSH banners (flood.py), and
#             OpenSSH clients offering a key no agent owns.
#
# The round trips are pgbench's (one client, `-M simple`, a Poisson schedule of RATE per
# second, per-transaction log): the figure is the time from sending to the answer (pgbench's
# schedule lag taken out). Prints p50/p99/max per phase and path, proctor's peak RSS during the
# phase (VmHWM, reset before each phase), what the flooders did, and the load average. Ends with
# `proctor verify` over everything recorded.
#
# Env: PROCTOR_BIN (default: build target/release/proctor), DURATION (s per phase, default 15),
# RATE (round trips per second, default 100), PHASES (default "idle huge large unauth-pg
# unauth-ssh"),
# KEEP=1 keeps the work directory, PERF=PREFIX records proctor with `perf record -g` during each
# phase's probes into PREFIX.PHASE (read it with `perf report -i PREFIX.PHASE`).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
duration=${DURATION:-15}
rate=${RATE:-100}
phases=${PHASES:-idle huge large unauth-pg unauth-ssh}
if [[ -z "${PROCTOR_BIN:-}" ]]; then
  cargo build --release --locked --bin proctor >/dev/null
  PROCTOR_BIN=$repo/target/release/proctor
fi
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x "$pgbin/initdb" ]] || { echo "needs PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 2; }
command -v pgbench >/dev/null || { echo "needs pgbench (apt-get install postgresql-contrib)" >&2; exit 2; }

# The recorder's store must be on a real disk (fdatasync is the point), not a tmpfs.
dir=$(mktemp -d /var/tmp/proctor-floods.XXXXXX)
chmod 755 "$dir"
as_pg=()
if [[ $(id -u) == 0 ]]; then
  chown postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
proctor_pid=
bg_pids=()
stop_bg() {
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  bg_pids=()
}
cleanup() {
  stop_bg
  [[ -n "$proctor_pid" ]] && kill "$proctor_pid" 2>/dev/null && wait "$proctor_pid" 2>/dev/null || true
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
  -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$pg_port user=postgres dbname=$1" -c "$2"; }
psql_admin postgres "CREATE DATABASE bench"
psql_admin bench "CREATE ROLE bench_app NOLOGIN"

# --- proctor (PostgreSQL and SSH listeners) -----------------------------------------------------
probe_secret=floods-probe-secret
flood_secret=floods-flood-secret
verifier() { printf '%s\n' "$1" | "$PROCTOR_BIN" agent-secret | sed -n 's/^verifier: //p'; }
proctor_port=$(free_port)
ssh_port=$(free_port)
mkdir -p "$dir/proctor"
ssh-keygen -q -t ed25519 -N '' -C floods-proctor -f "$dir/proctor/host"
ssh-keygen -q -t ed25519 -N '' -C floods-agent -f "$dir/proctor/agent"
ssh-keygen -q -t ed25519 -N '' -C stranger -f "$dir/stranger"
cat >"$dir/proctor/proctor.toml" <<EOF
data_dir = "$dir/proctor/data"
policies = ["$repo/policies"]

[listen]
postgres = "127.0.0.1:$proctor_port"
ssh = "127.0.0.1:$ssh_port"

[ssh]
host_key = "$dir/proctor/host"

[postgres]
require_tls = false

[[agents]]
name = "probe-agent"
postgres_scram = "$(verifier "$probe_secret")"

[[agents]]
name = "flood-agent"
postgres_scram = "$(verifier "$flood_secret")"
ssh_keys = ["$(cut -d' ' -f1,2 "$dir/proctor/agent.pub")"]

[[targets]]
name = "bench"
kind = "postgres"
host = "127.0.0.1"
port = $pg_port
dbname = "bench"
admin_dsn = "host=127.0.0.1 port=$pg_port user=postgres dbname=bench"

[[grants]]
name = "probe"
agent = "probe-agent"
target = "bench"
privilege = "routine"
role = "bench_app"

[[grants]]
name = "flood"
agent = "flood-agent"
target = "bench"
privilege = "routine"
role = "bench_app"
EOF
chmod 600 "$dir/proctor/host" "$dir/proctor/agent" "$dir/stranger"
PROCTOR_LOG=${PROCTOR_LOG:-warn} "$PROCTOR_BIN" serve --config "$dir/proctor/proctor.toml" \
  >"$dir/proctor/proctor.log" 2>&1 &
proctor_pid=$!
wait_port "$proctor_port" && wait_port "$ssh_port" ||
  { echo "proctor did not start" >&2; cat "$dir/proctor/proctor.log" >&2; exit 1; }

direct="host=127.0.0.1 port=$pg_port user=postgres dbname=bench sslmode=disable"
through="host=127.0.0.1 port=$proctor_port user=probe-agent dbname=bench sslmode=disable"
flood="host=127.0.0.1 port=$proctor_port user=flood-agent dbname=bench sslmode=disable"
echo 'SELECT 1;' >"$dir/select1.sql"
# One 63 MB statement (under the 64 MiB message limit, over the 16 MiB statement_bytes).
python3 -c 'import sys; sys.stdout.write("select length(%s%s%s);\n" % (chr(39), "x" * 63000000, chr(39)))' \
  >"$dir/huge.sql"
python3 -c 'import sys; sys.stdout.write("select length(%s%s%s);\n" % (chr(39), "y" * 12000000, chr(39)))' \
  >"$dir/large.sql"

# VmHWM (peak RSS) is reset through clear_refs so each phase reports its own peak.
reset_peak() { echo 5 >"/proc/$proctor_pid/clear_refs" 2>/dev/null || true; }
vm_mib() { awk -v f="$1:" '$1 == f {printf "%.0f", $2 / 1024}' "/proc/$proctor_pid/status"; }

start_flood() { # phase -> background flooders, their reports in $dir/flood-*.out
  case $1 in
    huge | large)
      for i in 1 2 3 4; do
        # The client is killed with the loop (the trap), or it would go on into the next phase.
        ( trap 'kill $c 2>/dev/null; exit 0' TERM
          while :; do
            PGPASSWORD=$flood_secret psql -X -q "$flood" -v VERBOSITY=verbose \
              -f "$dir/$1.sql" -f "$dir/$1.sql" >>"$dir/$1-$i.out" 2>>"$dir/$1-$i.err" &
            c=$!; wait $c || true
          done ) &
        bg_pids+=($!)
      done ;;
    unauth-pg)
      python3 "$repo/integration/bench/flood.py" pg 127.0.0.1 "$proctor_port" "$duration" 4 \
        flood-agent nobody >"$dir/flood-pg.out" 2>&1 &
      bg_pids+=($!) ;;
    unauth-ssh)
      python3 "$repo/integration/bench/flood.py" ssh 127.0.0.1 "$ssh_port" "$duration" 4 \
        >"$dir/flood-ssh.out" 2>&1 &
      bg_pids+=($!)
      for i in 1 2; do
        ( trap 'kill $c 2>/dev/null; exit 0' TERM
          n=0
          while :; do
            ssh -F /dev/null -b "127.0.2.$i" -i "$dir/stranger" -o IdentitiesOnly=yes -o BatchMode=yes \
              -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=QUIET \
              -o ConnectTimeout=5 -p "$ssh_port" bench@127.0.0.1 true </dev/null &
            c=$!; wait $c || true
            n=$((n + 1)); echo "$n" >"$dir/ssh-$i.count"
          done ) &
        bg_pids+=($!)
      done ;;
  esac
}

open_flood_sessions() {
  "$PROCTOR_BIN" sessions list --agent flood-agent --open --json --data "$dir/proctor/data" \
    2>/dev/null | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0
}

flood_report() {
  case $1 in
    huge)
      local refused
      refused=$(cat "$dir"/huge-*.err 2>/dev/null | grep -c '54000' || true)
      echo "63 MB statements refused with 54000 (4 sessions): $refused" ;;
    large)
      local ran
      ran=$(cat "$dir"/large-*.out 2>/dev/null | grep -c '12000000' || true)
      echo "12 MB statements run (4 sessions): $ran" ;;
    unauth-pg) echo "postgres: $(cat "$dir/flood-pg.out")" ;;
    unauth-ssh)
      local n=0
      for i in 1 2; do n=$((n + $(cat "$dir/ssh-$i.count" 2>/dev/null || echo 0))); done
      echo "ssh: $(cat "$dir/flood-ssh.out"); $n OpenSSH logins with a stranger's key" ;;
  esac
}

results=$dir/results.txt
: >"$results"
for phase in $phases; do
  rm -f "$dir"/huge-*.err "$dir"/large-*.out "$dir"/large-*.err "$dir"/ssh-*.count
  reset_peak
  rss0=$(vm_mib VmRSS)
  start_flood "$phase"
  [[ $phase == idle ]] || sleep 1 # the flood under way before measuring
  for via in through direct; do
    conn=$through; [[ $via == direct ]] && conn=$direct
    PGPASSWORD=$probe_secret pgbench -n -M simple -f "$dir/select1.sql" -c 1 -j 1 -R "$rate" \
      -T "$duration" -l --log-prefix="$dir/lat-$phase-$via" "$conn" >"$dir/pgbench-$phase-$via.out" 2>&1 &
    bg_pids+=($!)
  done
  if [[ -n "${PERF:-}" ]]; then
    perf record -q -F 499 -g -p "$proctor_pid" -o "$PERF.$phase" -- sleep "$duration" >/dev/null 2>&1 &
  fi
  # Both probes run at once; wait for them (the flooders run on until stopped).
  for p in "${bg_pids[@]: -2}"; do wait "$p" || { cat "$dir/pgbench-$phase-"*.out >&2; exit 1; }; done
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  stop_bg
  # What the flood left in flight (a 63 MB statement being read, recorded) still counts to
  # this phase: wait until the flooding agent has no session open (at most 2 minutes).
  for _ in $(seq 240); do
    [[ $(open_flood_sessions) == 0 ]] && break
    sleep 0.5
  done
  peak=$(vm_mib VmHWM)
  report=$(flood_report "$phase")
  echo "$phase|$rss0|$peak|$load|$report" >>"$results"
  echo "$phase done: $report (load $load)" >&2
done

python3 - "$dir" "$results" <<'EOF'
import glob, sys
d, results = sys.argv[1], sys.argv[2]
def lat(phase, via):
    out = []
    for f in glob.glob(f"{d}/lat-{phase}-{via}.*"):
        for line in open(f):
            p = line.split()
            # client tx time script epoch us [lag]: time minus the schedule lag = round trip.
            if len(p) >= 7 and p[2] not in ("skipped",):
                out.append((int(p[2]) - int(p[6])) / 1000.0)
    return sorted(out)
def q(v, f):
    return v[min(len(v) - 1, int(len(v) * f))] if v else float("nan")
print()
print("%-11s %-8s %6s %8s %8s %8s   %s" % ("phase", "path", "n", "p50 ms", "p99 ms", "max ms", "proctor RSS / load average / flood"))
for row in open(results):
    phase, rss0, peak, load, report = row.rstrip("\n").split("|")
    for via in ("through", "direct"):
        v = lat(phase, via)
        extra = ""
        if via == "through":
            extra = "RSS %s MiB before, peak %s MiB; load %s" % (rss0, peak, load)
        else:
            extra = report
        name = "proctor" if via == "through" else "direct"
        print("%-11s %-8s %6d %8.2f %8.2f %8.2f   %s" % (phase, name, len(v), q(v, .5), q(v, .99), v[-1] if v else float("nan"), extra))
EOF
kill "$proctor_pid"; wait "$proctor_pid" 2>/dev/null || true; proctor_pid=
echo
"$PROCTOR_BIN" verify --data "$dir/proctor/data" | tail -1
