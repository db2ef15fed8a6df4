#!/usr/bin/env python3
"""paramiko against proctor: exec with exit status and stderr, stdin, invoke_shell with a pty
and a resize, SFTP put/get/listdir/stat/rename/remove.

usage: paramiko_check.py HOST PORT USER KEY KNOWN_HOSTS WORKDIR [CERT]
Prints `PASS name` / `FAIL name: why` per check; exits 1 if any check failed.
"""
import hashlib
import os
import sys
import time

import paramiko

host, port, user, keyfile, known_hosts, work = sys.argv[1:7]
cert = sys.argv[7] if len(sys.argv) > 7 else None
port = int(port)
failed = []


def check(name, fn):
    try:
        fn()
        print(f"PASS paramiko {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - report every failure the same way
        failed.append(name)
        print(f"FAIL paramiko {name}: {type(e).__name__}: {e}", flush=True)


def expect(what, got, want):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def connect():
    c = paramiko.SSHClient()
    c.load_host_keys(known_hosts)
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    key = paramiko.Ed25519Key.from_private_key_file(keyfile)
    if cert:
        key.load_certificate(cert)
    c.connect(host, port=port, username=user, pkey=key, allow_agent=False,
              look_for_keys=False, timeout=15, banner_timeout=15, auth_timeout=15)
    return c


client = connect()


def run(cmd, data=None, timeout=30):
    stdin, stdout, stderr = client.exec_command(cmd, timeout=timeout)
    if data is not None:
        stdin.write(data)
        stdin.channel.shutdown_write()
    out = stdout.read()
    err = stderr.read()
    return stdout.channel.recv_exit_status(), out, err


def exec_status():
    rc, out, err = run("echo out; echo err >&2; exit 3")
    expect("exit status", rc, 3)
    expect("stdout", out, b"out\n")
    expect("stderr", err, b"err\n")


def exec_stdin():
    data = os.urandom(8 << 20)
    rc, out, _ = run("sha256sum", data)
    expect("exit status", rc, 0)
    expect("digest", out.split()[0].decode(), hashlib.sha256(data).hexdigest())


def exec_many():
    for i in range(5):
        rc, out, _ = run(f"echo n{i}; exit {i}")
        expect("exit status", rc, i)
        expect("stdout", out, f"n{i}\n".encode())


def read_until(chan, needle, timeout=15):
    buf = b""
    end = time.time() + timeout
    while needle not in buf:
        if time.time() > end:
            raise AssertionError(f"timed out waiting for {needle!r}; got {buf[-300:]!r}")
        if chan.recv_ready():
            buf += chan.recv(65536)
        else:
            time.sleep(0.02)
    return buf


def shell():
    chan = client.invoke_shell(term="xterm", width=80, height=24)
    chan.settimeout(15)
    chan.send(b"echo mark-$((6*7))\n")
    read_until(chan, b"mark-42")
    chan.send(b"stty size\n")
    read_until(chan, b"24 80")
    chan.resize_pty(width=132, height=43)
    time.sleep(0.3)
    chan.send(b"stty size\n")
    read_until(chan, b"43 132")
    chan.send(b"sleep 30; echo not-interrupted\n")
    time.sleep(0.8)
    chan.send(b"\x03")
    chan.send(b"echo after-$?\n")
    read_until(chan, b"after-130")
    chan.send(b"exit 5\n")
    end = time.time() + 15
    while not chan.exit_status_ready():
        if time.time() > end:
            raise AssertionError("shell did not exit")
        if chan.recv_ready():
            chan.recv(65536)
        time.sleep(0.05)
    expect("shell exit status", chan.recv_exit_status(), 5)
    chan.close()


def pty_exec():
    stdin, stdout, _ = client.exec_command("stty size; tty >/dev/null && echo tty-yes",
                                           get_pty=True, timeout=15)
    out = stdout.read()
    expect("exit", stdout.channel.recv_exit_status(), 0)
    if b"24 80" not in out or b"tty-yes" not in out:
        raise AssertionError(f"pty exec output {out!r}")


def sftp():
    local = os.path.join(work, "pm-up.bin")
    back = os.path.join(work, "pm-down.bin")
    data = os.urandom(5 << 20)
    with open(local, "wb") as f:
        f.write(data)
    s = client.open_sftp()
    rdir = f"/tmp/pm-sftp-{os.getpid()}"
    s.mkdir(rdir)
    s.put(local, f"{rdir}/a.bin")
    st = s.stat(f"{rdir}/a.bin")
    expect("size", st.st_size, len(data))
    s.rename(f"{rdir}/a.bin", f"{rdir}/b.bin")
    expect("listdir", sorted(s.listdir(rdir)), ["b.bin"])
    s.get(f"{rdir}/b.bin", back)
    with open(back, "rb") as f:
        expect("round trip digest", hashlib.sha256(f.read()).hexdigest(),
               hashlib.sha256(data).hexdigest())
    with s.open(f"{rdir}/small.txt", "w") as f:
        f.write("hello sftp\n")
    with s.open(f"{rdir}/small.txt", "r") as f:
        expect("small file", f.read(), b"hello sftp\n")
    s.chmod(f"{rdir}/small.txt", 0o600)
    expect("mode", s.stat(f"{rdir}/small.txt").st_mode & 0o777, 0o600)
    s.symlink(f"{rdir}/small.txt", f"{rdir}/link")
    expect("readlink", s.readlink(f"{rdir}/link"), f"{rdir}/small.txt")
    expect("normalize", s.normalize(f"{rdir}/.."), "/tmp")
    for n in ("b.bin", "small.txt", "link"):
        s.remove(f"{rdir}/{n}")
    expect("listdir after remove", s.listdir(rdir), [])
    s.rmdir(rdir)
    try:
        s.stat(rdir)
        raise AssertionError("directory still there")
    except FileNotFoundError:
        pass
    s.close()


check("exec-exit-status-stderr", exec_status)
check("exec-stdin-digest", exec_stdin)
check("exec-sequential", exec_many)
check("invoke-shell-resize-ctrl-c", shell)
check("exec-get-pty", pty_exec)
check("sftp-put-get-listdir-stat-rename-remove", sftp)
client.close()
sys.exit(1 if failed else 0)
