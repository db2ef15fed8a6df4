#!/usr/bin/env python3
"""Unauthenticated connection flood for integration/bench/floods.sh (issue 18).

  flood.py pg  HOST PORT SECONDS THREADS USER...   bare connects and failed SCRAM logins
  flood.py ssh HOST PORT SECONDS THREADS           bare connects and SSH banners, no login

Each connection comes from a source address in 127.0.1.1-127.0.1.250 (one after the other), so
proctor's per-source allowance (README, "Unauthenticated connections") is met by many sources
at once, as a distributed attacker would. A failed login is a real SCRAM-SHA-256 exchange up to
a wrong proof (the client proof is random bytes): proctor does all its server-side work.
Prints one line of counts when done.
"""
import base64
import itertools
import os
import socket
import struct
import sys
import threading
import time

SOURCES = [f"127.0.1.{i}" for i in range(1, 251)]


def connect(host, port, source):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # The port is chosen at connect, not at bind (IP_BIND_ADDRESS_NO_PORT = 24): a bind to
    # port 0 searches the kernel's bind table under a lock, the client's cost, not proctor's.
    s.setsockopt(socket.IPPROTO_IP, 24, 1)
    s.bind((source, 0))
    s.settimeout(5)
    s.connect((host, port))
    return s


def read_msg(s):
    head = b""
    while len(head) < 5:
        chunk = s.recv(5 - len(head))
        if not chunk:
            return None, b""
        head += chunk
    kind, length = head[:1], struct.unpack("!I", head[1:])[0]
    body = b""
    while len(body) < length - 4:
        chunk = s.recv(length - 4 - len(body))
        if not chunk:
            return None, b""
        body += chunk
    return kind, body


def pg_failed_login(s, user):
    params = b"user\0" + user.encode() + b"\0database\0bench\0\0"
    s.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
    kind, body = read_msg(s)
    if kind != b"R" or struct.unpack("!I", body[:4])[0] != 10:
        return "closed" if kind is None else "other"
    nonce = base64.b64encode(os.urandom(18)).decode()
    first = f"n,,n=,r={nonce}".encode()
    payload = b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first
    s.sendall(b"p" + struct.pack("!I", 4 + len(payload)) + payload)
    kind, body = read_msg(s)
    if kind != b"R" or struct.unpack("!I", body[:4])[0] != 11:
        return "closed" if kind is None else "other"
    server_first = dict(kv.split("=", 1) for kv in body[4:].decode().split(","))
    proof = base64.b64encode(os.urandom(32)).decode()
    final = f"c=biws,r={server_first['r']},p={proof}".encode()
    s.sendall(b"p" + struct.pack("!I", 4 + len(final)) + final)
    kind, _ = read_msg(s)
    return "refused" if kind == b"E" else ("closed" if kind is None else "other")


def ssh_banner(s):
    s.sendall(b"SSH-2.0-flood_1.0\r\n")
    got = s.recv(256)
    return "banner" if got.startswith(b"SSH-") else "closed"


def main():
    proto, host, port, seconds, threads = sys.argv[1:6]
    users = sys.argv[6:] or ["nobody"]
    port, seconds, threads = int(port), float(seconds), int(threads)
    sources = itertools.cycle(SOURCES)
    users = itertools.cycle(users)
    lock = threading.Lock()
    counts = {}
    deadline = time.monotonic() + seconds

    def work(n):
        i = 0
        while time.monotonic() < deadline:
            i += 1
            with lock:
                source, user = next(sources), next(users)
            try:
                s = connect(host, port, source)
            except OSError:
                outcome = "connect-failed"
            else:
                try:
                    if i % 3 == 0:
                        outcome = "bare"
                    elif proto == "pg":
                        outcome = pg_failed_login(s, user)
                    else:
                        outcome = ssh_banner(s)
                except (OSError, ValueError, KeyError):
                    outcome = "closed"
                finally:
                    s.close()
            with lock:
                counts[outcome] = counts.get(outcome, 0) + 1

    ts = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    total = sum(counts.values())
    print(f"{total} connections ({total / seconds:.0f}/s): "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
