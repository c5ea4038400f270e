#!/usr/bin/env python3
"""Idle memory per WebSocket connection of a running shardcast node.

Opens N WebSocket connections (spread over 127.0.0.x source addresses),
waits for each welcome frame, and reports the server's VmRSS growth divided
by N. Usage: scripts/idle_rss.py PID PORT N [SYSTEM]
The figure includes everything the server allocates per connection (slab
entry, codec state, task, index entries); the kernel's socket buffers are
not part of VmRSS.
"""
import base64, os, socket, sys, time

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")

def connect(port, system, src):
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws?systemId={system} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b'"clientId"' not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("server closed a connection")
        buf += chunk
    return s

def main():
    pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    system = sys.argv[4] if len(sys.argv) > 4 else "demo"
    time.sleep(0.5)
    before = rss_kib(pid)
    socks = [connect(port, system, f"127.0.0.{2 + i % 50}") for i in range(n)]
    time.sleep(2)
    after = rss_kib(pid)
    print(f"connections={n} rss_before_kib={before} rss_after_kib={after} "
          f"per_connection_bytes={(after - before) * 1024 / n:.0f}")
    for s in socks:
        s.close()

if __name__ == "__main__":
    main()
