#!/usr/bin/env python3
"""asyncssh against proctor: run() with input and exit status, create_process streaming,
SFTP put/get, ten concurrent sessions on one connection.

usage: asyncssh_check.py HOST PORT USER KEY KNOWN_HOSTS WORKDIR [CERT]
Prints `PASS name` / `FAIL name: why` per check; exits 1 if any check failed.
"""
import asyncio
import hashlib
import os
import sys
import warnings

warnings.filterwarnings("ignore")
import asyncssh  # noqa: E402

host, port, user, keyfile, known_hosts, work = sys.argv[1:7]
cert = sys.argv[7] if len(sys.argv) > 7 else None
port = int(port)
failed = []


def expect(what, got, want):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


async def check(name, coro_fn, timeout=60):
    try:
        await asyncio.wait_for(coro_fn(), timeout)
        print(f"PASS asyncssh {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - report every failure the same way
        failed.append(name)
        print(f"FAIL asyncssh {name}: {type(e).__name__}: {e}", flush=True)


async def main():
    key = asyncssh.read_private_key(keyfile)
    keys = [(key, asyncssh.read_certificate(cert))] if cert else [key]
    conn = await asyncio.wait_for(asyncssh.connect(
        host, port=port, username=user, client_keys=keys, known_hosts=known_hosts,
        agent_path=None, config=None), 20)

    async def run_input():
        data = os.urandom(4 << 20)
        r = await conn.run("sha256sum", input=data, encoding=None)
        expect("exit status", r.exit_status, 0)
        expect("digest", r.stdout.split()[0].decode(), hashlib.sha256(data).hexdigest())
        r = await conn.run("echo out; echo err >&2; exit 4")
        expect("exit status", r.exit_status, 4)
        expect("stdout", r.stdout, "out\n")
        expect("stderr", r.stderr, "err\n")

    async def process_stream():
        async with conn.create_process("while read l; do echo got:$l; done; echo eof") as p:
            for i in range(20):
                p.stdin.write(f"line{i}\n")
                got = await p.stdout.readline()
                expect("echo", got, f"got:line{i}\n")
            p.stdin.write_eof()
            expect("after eof", await p.stdout.readline(), "eof\n")
            r = await p.wait()
            expect("exit status", r.exit_status, 0)

    async def sftp():
        local = os.path.join(work, "as-up.bin")
        back = os.path.join(work, "as-down.bin")
        data = os.urandom(6 << 20)
        with open(local, "wb") as f:
            f.write(data)
        rdir = f"/tmp/as-sftp-{os.getpid()}"
        async with conn.start_sftp_client() as s:
            await s.mkdir(rdir)
            await s.put(local, f"{rdir}/x.bin")
            expect("size", (await s.stat(f"{rdir}/x.bin")).size, len(data))
            await s.rename(f"{rdir}/x.bin", f"{rdir}/y.bin")
            expect("listdir", sorted(await s.listdir(rdir)), [".", "..", "y.bin"])
            await s.get(f"{rdir}/y.bin", back)
            with open(back, "rb") as f:
                expect("digest", hashlib.sha256(f.read()).hexdigest(),
                       hashlib.sha256(data).hexdigest())
            await s.remove(f"{rdir}/y.bin")
            await s.rmdir(rdir)
            expect("gone", await s.exists(rdir), False)

    async def concurrent():
        async def one(i):
            r = await conn.run(f"sleep 0.5; echo s{i}; exit {i % 4}")
            expect(f"session {i} stdout", r.stdout, f"s{i}\n")
            expect(f"session {i} exit", r.exit_status, i % 4)
        await asyncio.gather(*(one(i) for i in range(10)))

    async def pty():
        r = await conn.run("stty size", term_type="xterm", term_size=(100, 30))
        expect("pty size", r.stdout.strip(), "30 100")

    await check("run-input-exit-status", run_input)
    await check("create-process-streaming", process_stream)
    await check("sftp-put-get", sftp)
    await check("concurrent-10-sessions", concurrent)
    await check("run-with-pty", pty)
    conn.close()
    await conn.wait_closed()


try:
    asyncio.run(main())
except Exception as e:  # noqa: BLE001
    failed.append("connect")
    print(f"FAIL asyncssh connect: {type(e).__name__}: {e}", flush=True)
sys.exit(1 if failed else 0)
