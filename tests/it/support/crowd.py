"""A crowd of WebSocket clients of one node that read nothing (support/crowd.rs).

    python3 crowd.py HOST:PORT SYSTEM_ID COUNT RCVBUF MSS

Opens COUNT upgrades to /ws?systemId=SYSTEM_ID, each socket with SO_RCVBUF = RCVBUF
and TCP_MAXSEG = MSS set before it connects (the window it advertises stays that
small, and so does the send buffer the node's kernel gives the connection: Linux sizes
it from the peer's segment size). Prints "id <clientId>" for each welcome, then
"ready". After its welcome a socket is never read again. Then, told on stdin:

    drop           resets every connection (no close frame): with session resume on,
                   the node detaches them. Prints "dropped".
    resume <last>  resumes each dropped session (resume=<its token>&last=<last>) on a
                   new socket made as above; each welcome must say "resumed":true.
                   Prints "resumed".

It exits when stdin closes (or is killed).
"""

import json
import select
import socket
import struct
import sys

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
# Upgrades in flight at once (connect + handshake), well under the listen backlog.
IN_FLIGHT = 256


def frame_payload(buf):
    """The payload of the first server frame of `buf`; None while it is incomplete."""
    if len(buf) < 2:
        return None
    n = buf[1] & 0x7F
    at = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, at = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, at = int.from_bytes(buf[2:10], "big"), 10
    return buf[at : at + n] if len(buf) >= at + n else None


def welcome(buf):
    """The welcome after the 101 in `buf`, as JSON; None while it is incomplete."""
    head = buf.find(b"\r\n\r\n")
    if head < 0:
        return None
    if not buf.startswith(b"HTTP/1.1 101"):
        raise SystemExit("upgrade refused: %r" % buf[:head])
    payload = frame_payload(buf[head + 4 :])
    return None if payload is None else json.loads(payload)


def upgrade_all(addr, rcvbuf, mss, paths):
    """One upgrade per path, IN_FLIGHT at a time: [(socket, welcome)] in path order."""
    host, port = addr.rsplit(":", 1)
    poll = select.epoll()
    done = [None] * len(paths)
    pending = {}  # fd -> [index, socket, request sent, bytes read]
    nxt = 0
    while nxt < len(paths) or pending:
        while nxt < len(paths) and len(pending) < IN_FLIGHT:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
            s.setblocking(False)
            s.connect_ex((host, int(port)))
            pending[s.fileno()] = [nxt, s, False, b""]
            poll.register(s.fileno(), select.EPOLLOUT)
            nxt += 1
        for fd, _ in poll.poll(5):
            p = pending[fd]
            i, s = p[0], p[1]
            if not p[2]:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise SystemExit("connect: error %d" % err)
                request = (
                    "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n" % (paths[i], addr, KEY)
                )
                s.sendall(request.encode())
                p[2] = True
                poll.modify(fd, select.EPOLLIN)
                continue
            data = s.recv(65536)
            if not data:
                raise SystemExit("the node closed a connection during its upgrade")
            p[3] += data
            w = welcome(p[3])
            if w is not None:
                done[i] = (s, w)
                poll.unregister(fd)
                del pending[fd]
    poll.close()
    return done


def main():
    addr, system, count, rcvbuf, mss = sys.argv[1:6]
    count, rcvbuf, mss = int(count), int(rcvbuf), int(mss)
    out = sys.stdout
    crowd = upgrade_all(addr, rcvbuf, mss, ["/ws?systemId=%s" % system] * count)
    for _, w in crowd:
        out.write("id %s\n" % w["data"]["clientId"])
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        words = line.split()
        if words == ["drop"]:
            for s, _ in crowd:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            out.write("dropped\n")
        elif len(words) == 2 and words[0] == "resume":
            paths = [
                "/ws?systemId=%s&resume=%s&last=%s"
                % (system, w["data"]["resumeToken"], words[1])
                for _, w in crowd
            ]
            again = upgrade_all(addr, rcvbuf, mss, paths)
            for (_, old), (_, new) in zip(crowd, again):
                if new["data"].get("resumed") is not True:
                    raise SystemExit("not resumed: %s for %s" % (new, old))
            crowd = again
            out.write("resumed\n")
        else:
            raise SystemExit("crowd.py: unknown command %r" % line)
        out.flush()


main()
