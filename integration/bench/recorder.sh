#!/usr/bin/env bash
# Recorder benchmark: durable events per second (200-byte events, each session waiting for its
# own event to be fdatasync'd, as protocols do) for 1, 8 and 64 concurrent sessions, then
# `proctor verify` throughput over everything written. Release build with the `bench` feature
# (`proctor bench-recorder` is not in the default build). EVENTS=N and VERIFY_EVENTS=N shrink a
# trial run (events per session in the timed runs and in the store grown for verify).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked --features bench --bin proctor >/dev/null
bin=target/release/proctor
dir=$(mktemp -d /var/tmp/proctor-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
printf '%-10s %12s %14s\n' sessions events "events/s"
for s in 1 8 64; do
  ev=${EVENTS:-$(( s == 1 ? 5000 : (s == 8 ? 5000 : 2500) ))}
  for run in 1 2 3; do
    "$bin" bench-recorder --data "$dir/store" --sessions "$s" --events "$ev" --size 200 2>&1 >/dev/null \
      | python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print("%-10d %12d %14.0f" % (d["sessions"], d["events"], d["events_per_second"]))'
  done
done
# Grow the store to a size where verify's throughput is meaningful.
"$bin" bench-recorder --data "$dir/store" --sessions 64 --events "${VERIFY_EVENTS:-20000}" --size 1024 >/dev/null 2>&1
echo
"$bin" verify --data "$dir/store" | tail -1
