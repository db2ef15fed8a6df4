#!/usr/bin/env bash
# Stock SSH clients against proctor: OpenSSH (ssh, scp, scp -O, sftp, rsync, ControlMaster,
# port forwarding, SendEnv, keepalives, a wrong key), paramiko and asyncssh. Starts `proctor
# dev` (real sshd target) on random loopback ports in a temporary data directory, runs the
# helpers in integration/compat/ssh/, then checks the recording (`proctor export`), `proctor
# verify` and `proctor sessions list --json`.
#
#   integration/compat/ssh-clients.sh                 # builds target/debug/proctor
#   PROCTOR_BIN=/path/to/proctor integration/compat/ssh-clients.sh
#
# Prints PASS/FAIL/SKIP per client and check; exits 1 on any FAIL. Needs root for apt/pip
# installs of what is missing (a client whose install fails is reported as SKIP).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
helpers=$root/integration/compat/ssh

say() { echo "== $*"; }
fails=0
result() { # result KIND CLIENT CHECK [WHY]
  echo "$1 $2 $3${4:+: $4}"
  [ "$1" = FAIL ] && fails=$((fails + 1))
  return 0
}

# ---------------------------------------------------------------- installs
export DEBIAN_FRONTEND=noninteractive
apt_updated=0
need_cmd() { # need_cmd COMMAND PACKAGE
  command -v "$1" >/dev/null && return 0
  if [ $apt_updated = 0 ]; then apt-get update -qq >/dev/null 2>&1; apt_updated=1; fi
  apt-get install -y -qq "$2" >/dev/null 2>&1
  command -v "$1" >/dev/null
}
have_openssh=1
for c in "ssh openssh-client" "scp openssh-client" "sftp openssh-client" "curl curl" "tmux tmux" "rsync rsync"; do
  set -- $c
  need_cmd "$1" "$2" || { echo "note: could not install $2 (for $1)"; case $1 in ssh | scp | sftp) have_openssh=0 ;; esac; }
done
need_cmd sshd openssh-server || [ -x /usr/sbin/sshd ] || echo "note: no sshd; proctor dev will have no SSH target"
pip_ok() { python3 -c "import $1" >/dev/null 2>&1 || pip install -q "$1" >/dev/null 2>&1 || python3 -m pip install -q "$1" >/dev/null 2>&1; python3 -c "import $1" >/dev/null 2>&1; }
have_paramiko=0; pip_ok paramiko && have_paramiko=1
have_asyncssh=0; pip_ok asyncssh && have_asyncssh=1

# ---------------------------------------------------------------- proctor
if [ -z "${PROCTOR_BIN:-}" ]; then
  cargo build --locked --bin proctor >/dev/null 2>&1 || { echo "FAIL build: cargo build --bin proctor"; exit 1; }
  PROCTOR_BIN=${CARGO_TARGET_DIR:-$root/target}/debug/proctor
fi
BIN=$PROCTOR_BIN
[ -x "$BIN" ] || { echo "FAIL setup: no proctor binary at $BIN"; exit 1; }

work=$(mktemp -d /tmp/sshc.XXXXXX)   # short: ControlPath sockets live here
chmod 711 "$work"   # the dev target's agent login (proctor-agent) reaches remote/ below it
data=$work/data
proctor=
cleanup() {
  command -v tmux >/dev/null && tmux -L "sshcompat-$$" kill-server 2>/dev/null
  if [ -n "$proctor" ] && kill -0 "$proctor" 2>/dev/null; then
    kill -INT "$proctor" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$proctor" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$proctor" 2>/dev/null
  fi
  jobs -p | xargs -r kill 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
"$BIN" dev --data "$data" --postgres-listen 127.0.0.1:0 --ssh-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 \
  >"$work/proctor.log" 2>&1 </dev/null &
proctor=$!
for _ in $(seq 1 240); do [ -s "$data/dev.json" ] && break; kill -0 "$proctor" 2>/dev/null || break; sleep 0.25; done
[ -s "$data/dev.json" ] || { tail -20 "$work/proctor.log"; echo "FAIL setup: proctor dev did not start"; exit 1; }
jq_() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(eval("v"+sys.argv[2]))' "$data/dev.json" "$1"; }
ssh_listen=$(jq_ '["ssh_listen"]')
[ -n "$ssh_listen" ] && [ "$ssh_listen" != None ] || { echo "FAIL setup: proctor dev has no SSH target (sshd missing?)"; exit 1; }
port=${ssh_listen##*:}
key=$data/agent/id_ed25519
kh=$data/agent/known_hosts
ssh-keygen -q -t ed25519 -N '' -f "$work/badkey" </dev/null >/dev/null
cat >"$work/ssh_config" <<EOF
Host px badkey
  HostName 127.0.0.1
  Port $port
  User devbox
  IdentitiesOnly yes
  UserKnownHostsFile $kh
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 15
Host px
  IdentityFile $key
Host badkey
  IdentityFile $work/badkey
EOF
say "proctor dev up in $(( $(date +%s) - start ))s: ssh 127.0.0.1:$port, data $data"

run_helper() { # run_helper CLIENT COMMAND...: relays PASS/FAIL/SKIP lines, counts FAILs
  local client=$1; shift
  local out=$work/$client.out
  "$@" >"$out" 2>"$work/$client.err" </dev/null
  local rc=$?
  while IFS= read -r line; do
    case $line in PASS* | FAIL* | SKIP*) echo "$line"; [ "${line%% *}" = FAIL ] && fails=$((fails + 1)) ;; esac
  done <"$out"
  if [ $rc != 0 ] && ! grep -q '^FAIL' "$out"; then
    result FAIL "$client" helper "exit $rc: $(tail -3 "$work/$client.err" | tr '\n' '|')"
  fi
}

# ---------------------------------------------------------------- clients
if [ $have_openssh = 1 ]; then
  say openssh
  mkdir -p "$work/openssh"
  TMUX_SOCK=sshcompat-$$ CFG=$work/ssh_config WORK=$work/openssh RDIR=$work/remote/openssh BIN=$BIN DATA=$data \
    run_helper openssh bash "$helpers/openssh_check.sh"
else
  result SKIP openssh all "openssh-client could not be installed"
fi
if [ $have_paramiko = 1 ]; then
  say paramiko
  mkdir -p "$work/paramiko"
  run_helper paramiko timeout 120 python3 "$helpers/paramiko_check.py" 127.0.0.1 "$port" devbox "$key" "$kh" "$work/paramiko"
else
  result SKIP paramiko all "pip install paramiko failed"
fi
if [ $have_asyncssh = 1 ]; then
  say asyncssh
  mkdir -p "$work/asyncssh"
  run_helper asyncssh timeout 120 python3 "$helpers/asyncssh_check.py" 127.0.0.1 "$port" devbox "$key" "$kh" "$work/asyncssh"
else
  result SKIP asyncssh all "pip install asyncssh failed"
fi

# ---------------------------------------------------------------- the recording
say recording
sleep 1   # the last sessions seal as their connections close
# Stopped first: refusals before authentication (the wrong key) are counted in a journal
# summary, written each minute and at stop; the CLI reads the stopped store directly.
kill -INT "$proctor" 2>/dev/null
for _ in $(seq 1 80); do kill -0 "$proctor" 2>/dev/null || break; sleep 0.25; done
"$BIN" sessions list --json --data "$data" >"$work/sessions.json" 2>"$work/sessions.err"
python3 - "$work/sessions.json" >"$work/ids" <<'EOF' || true
import json, sys
for s in json.load(open(sys.argv[1])):
    print(s["id"])
EOF
: >"$work/all.jsonl"
while read -r sid; do "$BIN" export "$sid" --format jsonl --data "$data" >>"$work/all.jsonl" 2>/dev/null; done <"$work/ids"
"$BIN" export 00000000-0000-0000-0000-000000000000 --format jsonl --data "$data" >>"$work/all.jsonl" 2>/dev/null || true
python3 - "$work/sessions.json" "$work/all.jsonl" "$have_openssh" "$have_paramiko" "$have_asyncssh" >"$work/rec.out" 2>&1 <<'EOF'
import json, sys
sessions = json.load(open(sys.argv[1]))
have = {"openssh": sys.argv[3] == "1", "paramiko": sys.argv[4] == "1", "asyncssh": sys.argv[5] == "1"}
recs = []
for line in open(sys.argv[2]):
    try:
        recs.append(json.loads(line))
    except ValueError:
        pass
def res(kind, check, why=""):
    print(f"{kind} recording {check}" + (f": {why}" if why and kind == "FAIL" else ""))
ssh = [s for s in sessions if s.get("protocol") == "ssh"]
still_open = [s["id"] for s in ssh if not s.get("ended_ns")]
res("PASS" if len(ssh) >= 10 and not still_open else "FAIL", "sessions-listed-and-closed",
    f"{len(ssh)} ssh sessions, open: {still_open[:3]}")
versions = " ".join(v for r in recs if r.get("kind") == "client_params" for k, v in r.get("params", []) if k == "client_version")
for client, needle in (("openssh", "OpenSSH"), ("paramiko", "paramiko"), ("asyncssh", "AsyncSSH")):
    if have[client]:
        res("PASS" if needle in versions else "FAIL", f"{client}-sessions-present", f"no client_version with {needle}")
def find(pred):
    return [r for r in recs if pred(r)]
if have["openssh"]:
    execs = {(r.get("session_id"), r.get("channel")) for r in recs if r.get("kind") == "exec" and r.get("command") == "echo out; echo err >&2; exit 3"}
    st = find(lambda r: r.get("kind") == "exit_status" and r.get("status") == 3)
    res("PASS" if execs and st else "FAIL", "exec-and-exit-status", "exec or its exit status 3 missing")
    res("PASS" if find(lambda r: r.get("kind") == "command_line" and r.get("line") == "echo hello-$((6*7))") else "FAIL",
        "pty-shell-command-line", "the typed line is not recorded")
    res("PASS" if find(lambda r: r.get("kind") == "resize" and r.get("cols") == 120 and r.get("rows") == 40) else "FAIL",
        "pty-resize", "window change 120x40 not recorded")
    sftp = find(lambda r: r.get("kind") == "sftp")
    ops = {r.get("op") for r in sftp}
    want = {"mkdir", "open", "close", "rename", "remove", "rmdir", "symlink", "hardlink", "setstat", "copy-data"}
    res("PASS" if want <= ops else "FAIL", "sftp-operations", f"missing {sorted(want - ops)}")
    cp = [r for r in sftp if r.get("op") == "copy-data"]
    res("PASS" if cp and cp[0].get("path", "").endswith("/a1copy") and cp[0].get("target_path", "").endswith("/a1") else "FAIL",
        "sftp-copy-data-paths", f"{cp[:1]}")
    fwd = find(lambda r: r.get("kind") == "channel_open" and r.get("channel_kind") == "direct-tcpip")
    res("PASS" if fwd else "FAIL", "port-forward-attempt", "no direct-tcpip channel_open record")
    res("PASS" if find(lambda r: r.get("kind") == "channel_request" and r.get("request") == "tcpip-forward" and not r.get("accepted")) else "FAIL",
        "remote-forward-attempt", "no refused tcpip-forward record")
    def unknown_agents(r):
        if r.get("topic") != "unauthenticated":
            return 0
        try:
            summary = json.loads(r.get("text", ""))
        except ValueError:
            return 0
        return sum(s.get("counts", {}).get("unknown_agent", 0) for s in summary.get("sources", []))
    res("PASS" if sum(unknown_agents(r) for r in recs) > 0 else "FAIL",
        "wrong-key-attempt", "no unknown_agent count in the journal's unauthenticated summary")
    res("PASS" if find(lambda r: r.get("kind") == "verdict" and r.get("verdict") == "hold" and r.get("rule") == "ssh-hold-privilege-escalation") else "FAIL",
        "held-command", "no hold verdict for the loop body sudo")
EOF
while IFS= read -r line; do
  case $line in PASS* | FAIL* | SKIP*) echo "$line"; [ "${line%% *}" = FAIL ] && fails=$((fails + 1)) ;; *) echo "  $line" ;; esac
done <"$work/rec.out"

vout=$("$BIN" verify --data "$data" 2>&1)
if printf "%s\n" "$vout" | tail -1 | grep -q "^OK"; then result PASS proctor verify
else result FAIL proctor verify "$(printf '%s\n' "$vout" | tail -3 | tr '\n' '|')"; fi
if grep -qiE 'panicked|thread .* panicked' "$work/proctor.log"; then
  result FAIL proctor no-panic "$(grep -m1 -i panicked "$work/proctor.log")"
else result PASS proctor no-panic; fi

say "done in $(( $(date +%s) - start ))s: $fails failure(s)"
[ $fails = 0 ]
