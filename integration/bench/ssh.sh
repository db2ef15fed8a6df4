#!/usr/bin/env bash
# SSH relay benchmark (issue 4): throughput of MIB MiB piped through `cat` on the target, and
# keystroke echo round trip (p50/p99) in an interactive shell, for
#   direct      ssh straight to a real sshd,
#   double hop  OpenSSH `ssh -J` through a second sshd (same cryptography as proctor, no recording),
#   proctor     a release `proctor serve` with its real durable recorder and the shipped policies
#               (a `record-only` grant: the target's shell, keys relayed raw),
#   judged      the same proctor, a `judged` grant: proctor edits and echoes the line itself
#               (keystroke echo only; the throughput run is an exec, the same as proctor's).
# Runs are interleaved (direct, double hop, proctor, direct, ...) so machine noise hits all three.
#
#   integration/bench/ssh.sh                     # 512 MiB, 3 runs each, 200 keystrokes per run
#   MIB=64 RUNS=5 SAMPLES=100 integration/bench/ssh.sh
#
# Goals (issue 4): proctor throughput >= double hop; keystroke p50 added by proctor < 1 ms.
# Goal (issue 13): keystroke p50 added in a judged shell < 200 us.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
MIB=${MIB:-512}
RUNS=${RUNS:-3}
SAMPLES=${SAMPLES:-200}

echo "building (release)..." >&2
cargo build --release --quiet --bin proctor
cargo build --release --quiet -p proctor-ssh --example echo_latency
bin=$root/target/release/proctor
lat=$root/target/release/examples/echo_latency
sshd_bin=$(command -v sshd || echo /usr/sbin/sshd)
[ -x "$sshd_bin" ] || { echo "sshd not found (apt-get install openssh-server)" >&2; exit 1; }

work=$(mktemp -d /tmp/proctor-bench-ssh.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
login=$(id -un)
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd

# proctor's data directory first: its SSH user CA is what the sshd targets trust.
data=$work/data
mkdir -p "$data"
"$bin" keys show --ssh-ca --data "$data" >"$work/user_ca.pub"
ssh-keygen -q -t ed25519 -N '' -C bench-agent -f "$work/agent"
ssh-keygen -q -t ed25519 -N '' -C bench-proctor -f "$work/proctor_host"
# The agent's key signed by the same CA lets plain OpenSSH log in to the targets directly.
cp "$data/keys/ssh_user_ca" "$work/ca" && chmod 600 "$work/ca"
ssh-keygen -q -s "$work/ca" -I bench -n "$login" -V -5m:+2h "$work/agent.pub"
rm -f "$work/ca"

start_sshd() { # name -> sets $port (no subshell: it records the pid for cleanup)
  local name=$1; port=$(free_port)
  mkdir -p "$work/$name"
  ssh-keygen -q -t ed25519 -N '' -f "$work/$name/host" -C "$name"
  cat >"$work/$name/config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/$name/host
PidFile $work/$name/pid
TrustedUserCAKeys $work/user_ca.pub
AuthorizedKeysFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowTcpForwarding yes
Subsystem sftp internal-sftp
MaxStartups 100:30:200
PrintMotd no
EOF
  "$sshd_bin" -D -e -f "$work/$name/config" 2>"$work/$name/log" &
  pids+=($!)
  wait_port "$port"
}
start_sshd target; target_port=$port
start_sshd jump; jump_port=$port
proctor_port=$(free_port)
cat >"$work/proctor.toml" <<EOF
data_dir = "$data"
policies = ["$root/policies"]
[listen]
ssh = "127.0.0.1:$proctor_port"
[ssh]
host_key = "$work/proctor_host"
[[agents]]
name = "bench-agent"
ssh_keys = ["$(cut -d' ' -f1,2 "$work/agent.pub")"]
[[targets]]
name = "box"
kind = "ssh"
host = "127.0.0.1"
port = $target_port
host_keys = ["$(cut -d' ' -f1,2 "$work/target/host.pub")"]
[[targets]]
name = "box-raw"
kind = "ssh"
host = "127.0.0.1"
port = $target_port
host_keys = ["$(cut -d' ' -f1,2 "$work/target/host.pub")"]
[[grants]]
name = "bench"
agent = "bench-agent"
target = "box"
privilege = "elevated"
shell = "judged"
logins = ["$login"]
max_session = "2h"
[[grants]]
name = "bench-raw"
agent = "bench-agent"
target = "box-raw"
privilege = "elevated"
shell = "record-only"
logins = ["$login"]
max_session = "2h"
EOF
PROCTOR_LOG=warn "$bin" serve --config "$work/proctor.toml" 2>"$work/proctor.log" &
proctor_pid=$!
pids+=("$proctor_pid")
wait_port "$proctor_port"
{
  echo "[127.0.0.1]:$target_port $(cut -d' ' -f1,2 "$work/target/host.pub")"
  echo "[127.0.0.1]:$jump_port $(cut -d' ' -f1,2 "$work/jump/host.pub")"
  echo "[127.0.0.1]:$proctor_port $(cut -d' ' -f1,2 "$work/proctor_host.pub")"
} >"$work/known_hosts"
opts=(-F /dev/null -i "$work/agent" -o IdentitiesOnly=yes -o BatchMode=yes
  -o "UserKnownHostsFile=$work/known_hosts" -o StrictHostKeyChecking=yes -o LogLevel=ERROR)
# ssh -J does not pass -F/-i to the jump connection; a ProxyCommand spelling of the same hop does.
jump="ssh ${opts[*]} -p $jump_port -W %h:%p $login@127.0.0.1"
direct_cmd=(ssh "${opts[@]}" -p "$target_port" "$login@127.0.0.1")
double_cmd=(ssh "${opts[@]}" -o "ProxyCommand=$jump" -p "$target_port" "$login@127.0.0.1")
proctor_cmd=(ssh "${opts[@]}" -p "$proctor_port" -l box-raw 127.0.0.1)
judged_cmd=(ssh "${opts[@]}" -p "$proctor_port" -l box 127.0.0.1)

bytes=$((MIB * 1024 * 1024))
throughput() { # ssh argv... -> MiB/s
  local t0 t1 got
  t0=$(date +%s.%N)
  got=$(head -c "$bytes" /dev/zero | "$@" cat | wc -c)
  t1=$(date +%s.%N)
  [ "$got" = "$bytes" ] || { echo "short transfer: $got of $bytes bytes ($*)" >&2; exit 1; }
  python3 -c "print(f'{$MIB/($t1-$t0):.1f}')"
}
latency() { # ssh argv... -> "p50 p99" in microseconds
  local line
  line=$("$lat" --samples "$SAMPLES" -- "$@" -tt)
  python3 -c 'import sys; d=dict(kv.split("=") for kv in sys.argv[1].split()); print(d["p50_us"], d["p99_us"])' "$line"
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$proctor_pid/status"; }

declare -A tp p50 p99
names=(direct double proctor)
for run in $(seq 1 "$RUNS"); do
  for n in "${names[@]}"; do
    eval "argv=(\"\${${n}_cmd[@]}\")"
    v=$(throughput "${argv[@]}")
    tp[$n]+="$v "
    echo "run $run $n: $v MiB/s" >&2
  done
done
for run in $(seq 1 "$RUNS"); do
  for n in "${names[@]}" judged; do
    eval "argv=(\"\${${n}_cmd[@]}\")"
    read -r a b < <(latency "${argv[@]}")
    p50[$n]+="$a "
    p99[$n]+="$b "
    echo "run $run $n: echo p50 ${a} us p99 ${b} us" >&2
  done
done
rss=$(rss_kib)
"$bin" verify --data "$data" >"$work/verify.out" || { cat "$work/verify.out"; echo "proctor verify FAILED" >&2; exit 1; }

python3 - "$MIB" "$RUNS" "$SAMPLES" "$rss" "${tp[direct]}" "${tp[double]}" "${tp[proctor]}" \
  "${p50[direct]}" "${p50[double]}" "${p50[proctor]}" "${p99[direct]}" "${p99[double]}" "${p99[proctor]}" \
  "${p50[judged]}" "${p99[judged]}" <<'EOF'
import statistics, sys
mib, runs, samples, rss = sys.argv[1:5]
f = lambda s: [float(x) for x in s.split()]
tp = dict(zip(["direct", "double hop", "proctor"], map(f, sys.argv[5:8])))
p50 = dict(zip(tp, map(f, sys.argv[8:11])))
p99 = dict(zip(tp, map(f, sys.argv[11:14])))
med = statistics.median
print(f"\nSSH relay benchmark: {mib} MiB through cat, {samples} keystrokes; {runs} interleaved runs each (medians)\n")
print(f"{'path':<12} {'MiB/s':>8} {'echo p50 us':>12} {'echo p99 us':>12}   runs (MiB/s)")
for k in tp:
    print(f"{k:<12} {med(tp[k]):>8.1f} {med(p50[k]):>12.0f} {med(p99[k]):>12.0f}   {' '.join(f'{x:.0f}' for x in tp[k])}")
print()
print(f"throughput proctor/direct     {med(tp['proctor'])/med(tp['direct']):.2f}")
print(f"throughput proctor/double hop {med(tp['proctor'])/med(tp['double hop']):.2f}   (goal >= 1.00)")
print(f"echo p50 added by proctor     {med(p50['proctor'])-med(p50['direct']):.0f} us   (goal < 1000 us)")
print(f"echo p50 proctor/direct       {med(p50['proctor'])/med(p50['direct']):.2f}")
print(f"echo p50 proctor/double hop   {med(p50['proctor'])/med(p50['double hop']):.2f}")
jp50, jp99 = f(sys.argv[14]), f(sys.argv[15])
print(f"judged shell echo p50/p99     {med(jp50):.0f} / {med(jp99):.0f} us")
print(f"echo p50 added, judged shell  {med(jp50)-med(p50['direct']):.0f} us   (goal < 200 us)")
print(f"proctor RSS after the runs    {int(rss)/1024:.0f} MiB; proctor verify: OK")
EOF
