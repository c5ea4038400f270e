#!/usr/bin/env python3
"""Kernel time of one TCP write on this machine, by the number of frames it carries.

usage: scripts/write_cost.py [--sockets N] [--writers W] [--rounds R] [--frames 1,4,10]

N loopback TCP connections; one reader process drains them all through epoll (like a
load generator's thread); W writer processes (like a server's cores) each write their
share, R rounds, every write one `writev` of K WebSocket-sized frames (94 B). Prints
the writers' kernel CPU per write and the wall time per write for each K. On loopback
the receiver's TCP work is done in the writer's system call, so this is the floor a
server pays per subscriber per write, and it shows what carrying more frames per write
adds to it.
"""
import argparse
import multiprocessing as mp
import os
import resource
import select
import socket
import time

FRAME = b"\x81\x5c" + b"x" * 92


def reader(port, n, ready, stop):
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    ep = select.epoll()
    by_fd = {}
    for s in socks:
        s.setblocking(False)
        ep.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = s
    ready.set()
    while not stop.is_set():
        for fd, _ in ep.poll(0.1):
            try:
                while by_fd[fd].recv(65536):
                    pass
            except BlockingIOError:
                pass


def writer(conns, frames, rounds, go, out):
    fds = [c.fileno() for c in conns]
    iov = [FRAME] * frames
    go.wait()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(rounds):
        for fd in fds:
            os.writev(fd, iov)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    writes = rounds * len(fds)
    out.put(((r1.ru_stime - r0.ru_stime) / writes, (t1 - t0) / writes))


def measure(conns, writers, frames, rounds):
    go, out = mp.Event(), mp.Queue()
    procs = [mp.Process(target=writer, args=(conns[i::writers], frames, rounds, go, out))
             for i in range(writers)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    go.set()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return [sum(r[k] for r in results) / len(results) * 1e6 for k in (0, 1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sockets", type=int, default=10000)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--frames", default="1,4,10,1,4,10")
    a = ap.parse_args()
    want = a.sockets + 100
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < want:
        raise SystemExit(f"write_cost: needs {want} open files (ulimit -n)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8192)
    ready, stop = mp.Event(), mp.Event()
    rd = mp.Process(target=reader, args=(listener.getsockname()[1], a.sockets, ready, stop))
    rd.start()
    conns = []
    while len(conns) < a.sockets:
        c, _ = listener.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.setblocking(False)
        conns.append(c)
    ready.wait()
    print(f"{a.sockets} sockets, {a.writers} writer(s), {a.rounds} rounds")
    print("frames/write  kernel µs/write  wall µs/write")
    try:
        for k in map(int, a.frames.split(",")):
            sys_us, wall_us = measure(conns, a.writers, k, a.rounds)
            print(f"{k:12}  {sys_us:15.2f}  {wall_us:13.2f}", flush=True)
    finally:
        stop.set()
        rd.join()


if __name__ == "__main__":
    main()
