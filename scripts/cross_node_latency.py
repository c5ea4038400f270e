#!/usr/bin/env python3
"""Latency a cross-node send adds over a local one.

A WebSocket client connects to node B; send_to_client is called N times
through B itself (local) and N times through node A (the push crosses a
link), alternating, over keep-alive HTTP. Each sample is the time from
writing the API request to reading the push frame at the client.
Usage: scripts/cross_node_latency.py HOST:PORT_A HOST:PORT_B [N] [SYSTEM]
"""
import base64, json, os, socket, statistics, struct, sys, time

def ws_connect(addr, system):
    host, port = addr.split(":")
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws?systemId={system} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    return s, buf.split(b"\r\n\r\n", 1)[1]

class Frames:
    def __init__(self, sock, rest):
        self.s, self.buf = sock, rest
    def next(self):
        while True:
            if len(self.buf) >= 2:
                n, off = self.buf[1] & 127, 2
                if n == 126 and len(self.buf) >= 4:
                    n, off = struct.unpack(">H", self.buf[2:4])[0], 4
                if len(self.buf) >= off + n:
                    op, payload = self.buf[0] & 15, self.buf[off:off + n]
                    self.buf = self.buf[off + n:]
                    if op == 1:
                        return payload
                    continue
            self.buf += self.s.recv(65536)

class Api:
    def __init__(self, addr, system):
        host, port = addr.split(":")
        self.s = socket.create_connection((host, int(port)))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.system, self.buf = system, b""
    def send(self, body):
        b = json.dumps(body).encode()
        self.s.sendall(f"POST /api/send_to_client HTTP/1.1\r\nHost: x\r\nSystemId: {self.system}\r\n"
                       f"Content-Length: {len(b)}\r\n\r\n".encode() + b)
    def answer(self):
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.s.recv(65536)
        head, rest = self.buf.split(b"\r\n\r\n", 1)
        length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
        while len(rest) < length:
            rest += self.s.recv(65536)
        self.buf = rest[length:]
        return json.loads(rest[:length])

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]

def main():
    a, b = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    system = sys.argv[4] if len(sys.argv) > 4 else "demo"
    sock, rest = ws_connect(b, system)
    frames = Frames(sock, rest)
    client_id = json.loads(frames.next())["data"]["clientId"]
    apis = {"local": Api(b, system), "cross": Api(a, system)}
    samples = {"local": [], "cross": []}
    for i in range(n * 2 + 200):
        kind = "local" if i % 2 else "cross"
        t0 = time.perf_counter()
        apis[kind].send({"clientId": client_id, "data": i})
        frames.next()
        dt = time.perf_counter() - t0
        if not apis[kind].answer()["data"]["online"]:
            raise SystemExit("client reported offline")
        if i >= 200:
            samples[kind].append(dt * 1e6)
    for kind in ("local", "cross"):
        xs = samples[kind]
        print(f"{kind:5} n={len(xs)} p50={pct(xs, .5):.0f}us p99={pct(xs, .99):.0f}us mean={statistics.mean(xs):.0f}us")
    print(f"added by crossing a link: p50 {pct(samples['cross'], .5) - pct(samples['local'], .5):.0f}us, "
          f"p99 {pct(samples['cross'], .99) - pct(samples['local'], .99):.0f}us")

if __name__ == "__main__":
    main()
