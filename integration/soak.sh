#!/usr/bin/env bash
# Soak test: mixed load through proctor for DURATION (seconds, or 10m / 1h), then a report:
# sessions, statements and bytes recorded, client errors, proctor's peak RSS, open file
# descriptors at the start and the end (a leak shows as growth), and `proctor verify`.
#
#   integration/soak.sh 600
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-60}
case "$dur" in
  *h) secs=$(( ${dur%h} * 3600 )) ;;
  *m) secs=$(( ${dur%m} * 60 )) ;;
  *s) secs=${dur%s} ;;
  *) secs=$dur ;;
esac
cargo build --release --locked --bin proctor >/dev/null
bin=$PWD/target/release/proctor
work=$(mktemp -d /var/tmp/proctor-soak.XXXXXX)
data=$work/data
log=$work/proctor.log
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${proctor:-}" ] && kill -TERM "$proctor" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" dev --data "$data" --postgres-listen 127.0.0.1:0 --ssh-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 >"$log" 2>&1 &
proctor=$!
for _ in $(seq 1 120); do [ -s "$data/dev.json" ] && break; sleep 0.5; done
[ -s "$data/dev.json" ] || { cat "$log"; echo "proctor dev did not start"; exit 1; }
json() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(eval("v"+sys.argv[2]))' "$data/dev.json" "$1"; }
dsn=$(json '["postgres_dsn"]')
mapfile -t ssh_args < <(python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["ssh_args"] or []; print("\n".join(a))' "$data/dev.json")
# The server process is the child of `proctor dev` itself (same pid: dev serves in-process).
pid=$proctor
fds() { ls /proc/"$pid"/fd 2>/dev/null | wc -l; }
rss_kb() { awk '/VmRSS/ {print $2}' /proc/"$pid"/status 2>/dev/null || echo 0; }
fd_start=$(fds)
errors=$work/errors
: >"$errors"
end=$(( $(date +%s) + secs ))

# The elevated dev grant holds DDL; pgbench's tables are created directly on the target.
admin=$(json '["targets"]["postgres"]["admin_dsn"]')
pgbench -i -q -s 2 "$admin" >/dev/null 2>&1
psql "$admin" -qc "grant select, insert, update, delete on all tables in schema public to app_write" >/dev/null

# 1. pgbench (mixed read/write, prepared statements) in rounds.
( while [ "$(date +%s)" -lt "$end" ]; do
    pgbench -n -c 4 -T 10 -M prepared "$dsn" >/dev/null 2>>"$errors" || echo "pgbench failed" >>"$errors"
  done ) & pids+=($!)
# 2. psql one-shot sessions with simple queries.
( while [ "$(date +%s)" -lt "$end" ]; do
    psql "$dsn" -XAtqc "select count(*) from accounts; select now()" >/dev/null 2>>"$errors" || echo "psql failed" >>"$errors"
  done ) & pids+=($!)
if [ ${#ssh_args[@]} -gt 0 ]; then
  # 3. exec loops.
  ( while [ "$(date +%s)" -lt "$end" ]; do
      ssh -o BatchMode=yes "${ssh_args[@]}" 'uname -a; ls /etc | head -20' >/dev/null 2>>"$errors" || echo "ssh exec failed" >>"$errors"
    done ) & pids+=($!)
  # 4. scp of a 4 MiB file both ways.
  head -c 4194304 /dev/urandom >"$work/blob"
  port=${ssh_args[1]}
  key=${ssh_args[3]}
  ( while [ "$(date +%s)" -lt "$end" ]; do
      scp -q -P "$port" -i "$key" -o IdentitiesOnly=yes -o "${ssh_args[7]}" -o BatchMode=yes "$work/blob" "devbox@127.0.0.1:/tmp/proctor-soak-blob" 2>>"$errors" &&
      scp -q -P "$port" -i "$key" -o IdentitiesOnly=yes -o "${ssh_args[7]}" -o BatchMode=yes "devbox@127.0.0.1:/tmp/proctor-soak-blob" "$work/blob.back" 2>>"$errors" &&
      cmp -s "$work/blob" "$work/blob.back" || echo "scp round trip failed" >>"$errors"
    done ) & pids+=($!)
  # 5. interactive shells typing commands.
  ( while [ "$(date +%s)" -lt "$end" ]; do
      { for i in 1 2 3 4 5; do echo "echo soak-$i; date"; sleep 0.2; done; echo exit; } |
        ssh -tt -o BatchMode=yes "${ssh_args[@]}" >/dev/null 2>>"$work/stderr" || echo "ssh shell failed" >>"$errors"
    done ) & pids+=($!)
fi

peak=0
while [ "$(date +%s)" -lt "$end" ]; do
  r=$(rss_kb); [ "$r" -gt "$peak" ] && peak=$r
  sleep 1
done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
sleep 2
fd_end=$(fds)
r=$(rss_kb); [ "$r" -gt "$peak" ] && peak=$r
kill -TERM "$proctor"; wait "$proctor" || true; proctor=

"$bin" sessions list --data "$data" --json >"$work/sessions.json"
python3 - "$work/sessions.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"sessions:    {len(s)} ({sum(1 for x in s if x.get('protocol')=='postgres')} postgres, {sum(1 for x in s if x.get('protocol')=='ssh')} ssh)")
print(f"statements:  {sum(x.get('statements',0) for x in s)}")
print(f"commands:    {sum(x.get('commands',0) for x in s)}")
print(f"records:     {sum(x.get('events',0) for x in s)}, {sum(x.get('record_bytes',0) for x in s)/1e6:.1f} MB recorded")
outcomes = {}
for x in s: outcomes[x.get('outcome')] = outcomes.get(x.get('outcome'), 0) + 1
print(f"outcomes:    {outcomes}")
EOF
echo "errors:      $(grep -c 'failed' "$errors" || true) client failures"
grep 'failed' "$errors" | sort | uniq -c | sort -rn | head -5 || true
echo "peak RSS:    $((peak / 1024)) MiB"
echo "open fds:    $fd_start at start, $fd_end at the end"
"$bin" verify --data "$data" | tail -1
