#!/usr/bin/env bash
# `proctor dev` as a new user meets it: start it, connect with psql and ssh exactly as it
# prints, get a statement held and approve it, verify the evidence, stop it cleanly.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/debug/proctor
data=$(mktemp -d /tmp/proctor-dev-smoke.XXXXXX)
log="$data.log"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data" "$log"; }
trap cleanup EXIT
"$bin" dev --data "$data" --postgres-listen 127.0.0.1:0 --ssh-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do [ -s "$data/dev.json" ] && break; sleep 0.5; done
[ -s "$data/dev.json" ] || { cat "$log"; echo "dev.json never appeared"; exit 1; }
dsn=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["postgres_dsn"])' "$data/dev.json")
out=$(psql "$dsn" -XAtc "select count(*) from accounts")
[ "$out" = 5 ] || { echo "unexpected: $out"; exit 1; }
# A held statement, approved from the CLI while psql waits.
psql "$dsn" -XAtc "update accounts set balance = balance + 1" >"$data/held.out" 2>&1 &
held=$!
for _ in $(seq 1 50); do
  id=$("$bin" approvals list --data "$data" --json | python3 -c 'import json,sys; l=json.load(sys.stdin); print(l[0]["id"] if l else "")')
  [ -n "$id" ] && break; sleep 0.2
done
[ -n "$id" ] || { echo "no held statement"; exit 1; }
"$bin" approvals approve "$id" --reason "smoke test" --data "$data"
wait "$held"
grep -q "UPDATE 5" "$data/held.out" || { cat "$data/held.out"; exit 1; }
if python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["ssh_args"] else 1)' "$data/dev.json"; then
  mapfile -t args < <(python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["ssh_args"]))' "$data/dev.json")
  out=$(ssh -o BatchMode=yes "${args[@]}" 'echo proctor-$((6*7))')
  [ "$out" = proctor-42 ] || { echo "ssh said: $out"; exit 1; }
fi
kill -TERM "$pid"; wait "$pid"; pid=
"$bin" verify --data "$data"
"$bin" sessions list --data "$data" | grep -q completed
echo "dev smoke test passed"
