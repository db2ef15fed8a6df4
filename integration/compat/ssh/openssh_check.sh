#!/usr/bin/env bash
# OpenSSH clients (ssh, scp, sftp, rsync over ssh) against proctor. Run by
# integration/compat/ssh-clients.sh, which sets:
#   CFG    ssh_config with `Host px` (proctor, the dev agent's key) and `Host badkey`
#   WORK   scratch directory (local files)
#   RDIR   a directory for remote files (the target sshd runs on this host)
#   BIN    the proctor binary; DATA its --data directory
# Prints `PASS openssh NAME` / `FAIL openssh NAME: why` / `SKIP openssh NAME: why`.
set -uo pipefail
failed=0
pass() { echo "PASS openssh $1"; }
fail() { echo "FAIL openssh $1: $2"; failed=1; }
skip() { echo "SKIP openssh $1: $2"; }
S() { timeout "${T:-30}" ssh -F "$CFG" "$@"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
cd "$WORK" || exit 1
# Written by the agent's login on the target, an unprivileged user under `proctor dev`.
mkdir -p -m 1777 "$RDIR"

# exec: exit codes and stderr kept apart
out=$(S px 'echo out; echo err >&2; exit 3' </dev/null 2>"$WORK/err"); rc=$?
if [ "$rc" = 3 ] && [ "$out" = out ] && [ "$(cat "$WORK/err")" = err ]; then pass exec-exit-code-stderr
else fail exec-exit-code-stderr "rc=$rc out=$out err=$(head -c 200 "$WORK/err")"; fi
S px 'kill -TERM $$' </dev/null 2>/dev/null; rc=$?
[ "$rc" = 255 ] && pass exec-killed-by-signal || fail exec-killed-by-signal "rc=$rc, want 255 (as direct)"

# stdin streamed into a remote command; output streamed back
head -c 20M /dev/urandom >"$WORK/big"
want=$(sha "$WORK/big")
got=$(S px sha256sum <"$WORK/big" | cut -d' ' -f1)
[ "$got" = "$want" ] && pass exec-stdin-20MiB-digest || fail exec-stdin-20MiB-digest "got $got want $want"
got=$(S px "cat '$WORK/big'" </dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] && pass exec-stdout-20MiB-digest || fail exec-stdout-20MiB-digest "got $got"
got=$(S -o RekeyLimit=1M px sha256sum <"$WORK/big" | cut -d' ' -f1)
[ "$got" = "$want" ] && pass exec-rekey-every-MiB || fail exec-rekey-every-MiB "got $got"
got=$(printf 'echo a-$((40+2))\nexit 4\n' | S -T px 2>/dev/null); rc=$?
[ "$rc" = 4 ] && [ "$got" = a-42 ] && pass shell-without-pty || fail shell-without-pty "rc=$rc out=$got"

# interactive shell with a pty, driven through tmux: commands, resize, Ctrl-C, exit status
if command -v tmux >/dev/null; then
  tm="tmux -L ${TMUX_SOCK:-sshcompat-$$}"
  $tm new-session -d -s c -x 100 -y 30 "ssh -F '$CFG' -t px; echo SSHRC=\$?; sleep 30"
  wait_for() { for _ in $(seq 1 50); do $tm capture-pane -p -t c | grep -q -- "$1" && return 0; sleep 0.2; done; return 1; }
  ok=1; why=
  wait_for '[#$] *$' || { ok=0; why="no prompt"; }
  $tm send-keys -t c 'echo hello-$((6*7))' Enter; wait_for '^hello-42' || { ok=0; why="$why echo"; }
  $tm send-keys -t c 'stty size' Enter; wait_for '^30 100' || { ok=0; why="$why size"; }
  $tm resize-window -t c -x 120 -y 40 2>/dev/null || $tm resize-pane -t c -x 120 -y 40
  sleep 0.5
  $tm send-keys -t c 'stty size' Enter; wait_for '^40 120' || { ok=0; why="$why resize"; }
  $tm send-keys -t c 'sleep 30; echo not-interrupted' Enter; sleep 1
  $tm send-keys -t c C-c; sleep 0.3
  $tm send-keys -t c 'echo after-$?' Enter; wait_for '^after-130' || { ok=0; why="$why ctrl-c"; }
  $tm send-keys -t c 'exit 7' Enter; wait_for '^SSHRC=7' || { ok=0; why="$why exit-status"; }
  $tm capture-pane -p -t c | grep -q '^not-interrupted' && { ok=0; why="$why sleep-not-interrupted"; }
  [ $ok = 1 ] && pass pty-shell-tmux || fail pty-shell-tmux "$why: $($tm capture-pane -p -t c | grep -v '^$' | tail -5 | tr '\n' '|')"
  $tm kill-server 2>/dev/null
else
  skip pty-shell-tmux "tmux not installed"
fi
got=$(S -tt px 'stty size; exit 5' </dev/null 2>/dev/null | tr -d '\r'); rc=$?
[ "$rc" = 5 ] && [ -n "$got" ] && pass exec-with-pty || fail exec-with-pty "rc=$rc out=$got"

# scp (SFTP protocol by default), both directions, -r and -p
mkdir -p "$WORK/tree/sub"; echo a >"$WORK/tree/a"; echo b >"$WORK/tree/sub/b 'quoted' name"
touch -d '2020-01-02 03:04:05' "$WORK/tree/a"; chmod 640 "$WORK/tree/a"
T=60 scp -F "$CFG" -q "$WORK/big" "px:$RDIR/scp-up" </dev/null && [ "$(sha "$RDIR/scp-up")" = "$want" ] \
  && pass scp-upload || fail scp-upload "digest or rc"
scp -F "$CFG" -q "px:$RDIR/scp-up" "$WORK/scp-down" </dev/null && [ "$(sha "$WORK/scp-down")" = "$want" ] \
  && pass scp-download || fail scp-download "digest or rc"
scp -F "$CFG" -q -r -p "$WORK/tree" "px:$RDIR/scp-tree" </dev/null \
  && [ "$(stat -c '%a %Y' "$RDIR/scp-tree/a")" = "$(stat -c '%a %Y' "$WORK/tree/a")" ] \
  && diff -r "$WORK/tree" "$RDIR/scp-tree" >/dev/null && pass scp-recursive-preserve || fail scp-recursive-preserve "tree differs"
if scp -O 2>&1 | grep -q 'illegal option'; then skip scp-legacy "this scp has no -O"
else
  scp -F "$CFG" -O -q "$WORK/big" "px:$RDIR/scpO-up" </dev/null && [ "$(sha "$RDIR/scpO-up")" = "$want" ] \
    && scp -F "$CFG" -O -q "px:$RDIR/scpO-up" "$WORK/scpO-down" </dev/null && [ "$(sha "$WORK/scpO-down")" = "$want" ] \
    && scp -F "$CFG" -O -q -r -p "$WORK/tree" "px:$RDIR/scpO-tree" </dev/null && diff -r "$WORK/tree" "$RDIR/scpO-tree" >/dev/null \
    && [ "$(stat -c '%a %Y' "$RDIR/scpO-tree/a")" = "$(stat -c '%a %Y' "$WORK/tree/a")" ] \
    && pass scp-legacy-O || fail scp-legacy-O "transfer, digest or tree differs"
fi

# sftp batch: put/get/ls/mkdir/rename/rm/ln/chmod, resume, server-side copy
head -c 1000000 "$WORK/big" >"$WORK/part"
cat >"$WORK/batch" <<EOF
mkdir $RDIR/sftp
cd $RDIR/sftp
put $WORK/big big1
put -p $WORK/tree/a a1
mkdir newdir
rename big1 big2
get big2 $WORK/sftp-got
ls -l
chmod 600 a1
ln -s a1 soft1
ln a1 hard1
put $WORK/part resume
reput $WORK/big resume
copy a1 a1copy
rm big2
rm soft1
rm hard1
rmdir newdir
EOF
if T=60 sftp -F "$CFG" -b "$WORK/batch" px >"$WORK/sftp.out" 2>&1 </dev/null \
  && [ "$(sha "$WORK/sftp-got")" = "$want" ] && [ "$(sha "$RDIR/sftp/resume")" = "$want" ] \
  && [ "$(ls "$RDIR/sftp" | tr '\n' ' ')" = "a1 a1copy resume " ] && [ "$(stat -c %a "$RDIR/sftp/a1")" = 600 ] \
  && cmp -s "$RDIR/sftp/a1" "$RDIR/sftp/a1copy"; then pass sftp-batch
else fail sftp-batch "$(tail -3 "$WORK/sftp.out" | tr '\n' '|') listing: $(ls "$RDIR/sftp" 2>&1 | tr '\n' ' ')"; fi

# rsync over ssh: a first run transfers, a second transfers nothing, and back again
if command -v rsync >/dev/null; then
  mkdir -p "$WORK/rs/x"; for i in 1 2 3; do head -c 300000 /dev/urandom >"$WORK/rs/f$i"; done
  cp "$WORK/big" "$WORK/rs/x/big"; ln -sf f1 "$WORK/rs/link"
  n1=$(rsync -az --stats -e "ssh -F $CFG" "$WORK/rs/" "px:$RDIR/rs/" </dev/null | sed -n 's/^Number of regular files transferred: //p')
  n2=$(rsync -az --stats -e "ssh -F $CFG" "$WORK/rs/" "px:$RDIR/rs/" </dev/null | sed -n 's/^Number of regular files transferred: //p')
  rsync -az -e "ssh -F $CFG" "px:$RDIR/rs/" "$WORK/rs-back/" </dev/null
  if [ "$n1" = 4 ] && [ "$n2" = 0 ] && diff -r "$WORK/rs" "$WORK/rs-back" >/dev/null; then pass rsync-twice-and-back
  else fail rsync-twice-and-back "first=$n1 second=$n2 (want 4 and 0) or trees differ"; fi
else skip rsync-twice-and-back "rsync not installed"; fi

# ControlMaster: several commands, one concurrent pair, stdin and scp over one master
CM=(-o ControlMaster=auto -o "ControlPath=$WORK/cm-%C" -o ControlPersist=20)
ok=1
[ "$(S "${CM[@]}" px 'echo one' </dev/null)" = one ] || ok=0
for i in 2 3; do S "${CM[@]}" px "exit $i" </dev/null; [ $? = "$i" ] || ok=0; done
S "${CM[@]}" px 'sleep 1; echo p1' </dev/null >"$WORK/p1" & S "${CM[@]}" px 'sleep 1; echo p2' </dev/null >"$WORK/p2"; wait
[ "$(cat "$WORK/p1" "$WORK/p2" | tr '\n' ' ')" = "p1 p2 " ] || ok=0
[ "$(echo hi | S "${CM[@]}" px cat)" = hi ] || ok=0
scp -F "$CFG" "${CM[@]}" -q "$WORK/tree/a" "px:$RDIR/cm-a" </dev/null || ok=0
ssh -F "$CFG" "${CM[@]}" -O check px 2>/dev/null || ok=0
ssh -F "$CFG" "${CM[@]}" -O exit px 2>/dev/null
[ $ok = 1 ] && pass controlmaster-multiplexing || fail controlmaster-multiplexing "a command over the master failed"

# local port forward: the dev grant has no port_forwarding, so it must be refused cleanly
python3 -m http.server 0 --bind 127.0.0.1 >"$WORK/http.log" 2>&1 &
hp=$!
for _ in $(seq 1 30); do port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$WORK/http.log"); [ -n "$port" ] && break; sleep 0.2; done
lport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ssh -F "$CFG" -N -L "127.0.0.1:$lport:127.0.0.1:${port:-1}" px </dev/null 2>"$WORK/fwd.err" &
fp=$!
sleep 1.5
code=$(timeout 10 curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$lport/" 2>/dev/null)
sleep 0.5
kill "$fp" "$hp" 2>/dev/null; wait "$fp" "$hp" 2>/dev/null
if [ "$code" = 000 ] && grep -q 'administratively prohibited' "$WORK/fwd.err"; then pass port-forward-refused-cleanly
elif [ "$code" = 200 ]; then pass port-forward-works
else fail port-forward "http=$code $(head -c 200 "$WORK/fwd.err")"; fi

# remote forward (ssh -R): never offered; refused cleanly (and recorded, see the caller)
S -o ExitOnForwardFailure=yes -R 127.0.0.1:0:127.0.0.1:9 px true </dev/null 2>"$WORK/rfwd.err"; rc=$?
[ "$rc" = 255 ] && grep -q 'remote port forwarding failed' "$WORK/rfwd.err" && pass remote-forward-refused-cleanly \
  || fail remote-forward-refused-cleanly "rc=$rc $(head -c 200 "$WORK/rfwd.err")"

# environment: SendEnv and SetEnv (the target accepts LANG, LC_*, PROCTOR_*)
got=$(LC_COMPAT=yes S -o SendEnv=LC_COMPAT -o SetEnv=PROCTOR_REASON=compat-test px 'echo $LC_COMPAT/$PROCTOR_REASON' </dev/null)
[ "$got" = yes/compat-test ] && pass sendenv-setenv || fail sendenv-setenv "got $got"

# keepalives during a quiet command
start=$(date +%s)
got=$(S -o ServerAliveInterval=1 -o ServerAliveCountMax=2 px 'sleep 3; echo slept' </dev/null); rc=$?
[ "$rc" = 0 ] && [ "$got" = slept ] && pass serveralive-keepalive || fail serveralive-keepalive "rc=$rc out=$got after $(( $(date +%s) - start ))s"

# a key that belongs to no agent: clean refusal
S -o BatchMode=yes badkey true </dev/null 2>"$WORK/bad.err"; rc=$?
[ "$rc" = 255 ] && grep -q 'Permission denied (publickey)' "$WORK/bad.err" && pass wrong-key-refused \
  || fail wrong-key-refused "rc=$rc $(head -c 200 "$WORK/bad.err")"

# a command that policy holds (sudo inside a loop body), denied by a person: the client gets
# the reason and a failure status, and the session stays on record
S px 'for i in 1; do sudo -n true; done' </dev/null >"$WORK/held.out" 2>"$WORK/held.err" &
sp=$!
id=
for _ in $(seq 1 50); do
  id=$("$BIN" approvals list --json --data "$DATA" 2>/dev/null | python3 -c 'import json,sys
for a in json.load(sys.stdin):
    if "for i in 1" in a["detail"]: print(a["id"])' 2>/dev/null)
  [ -n "$id" ] && break; sleep 0.2
done
if [ -n "$id" ]; then
  "$BIN" approvals deny "$id" --reason 'compat test says no' --data "$DATA" >/dev/null
  wait "$sp"; rc=$?
  [ "$rc" != 0 ] && grep -q 'compat test says no' "$WORK/held.err" && pass held-loop-body-denied \
    || fail held-loop-body-denied "rc=$rc $(head -c 300 "$WORK/held.err")"
else
  kill "$sp" 2>/dev/null; wait "$sp" 2>/dev/null
  fail held-loop-body-denied "no approval appeared for a sudo inside a for loop (the command was not held)"
fi
exit $failed
