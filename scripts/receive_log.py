#!/usr/bin/env python3
"""Summarises the receive logs of `shardcast-bench fanout|generic --receive-log PATH`.

usage: scripts/receive_log.py PATH.0 [PATH.1 ...]

Each line of a log is one marked frame: send ns, receive ns, connection index. Prints
the latency of each message (min, p50, max over its subscribers) and, per connection,
the median gap between two receives: a server writes each connection once per pass
over its connections, so the gaps show how long a pass takes, and connections of a
slower core (or worker) stand apart as a second peak.
"""
import collections
import sys


def quantile(values, q):
    return values[int(q * (len(values) - 1))]


def main(paths):
    latency = collections.defaultdict(list)
    receives = collections.defaultdict(set)
    for n, path in enumerate(paths):
        with open(path) as f:
            for line in f:
                sent, received, conn = map(int, line.split())
                latency[sent].append((received - sent) / 1e6)
                receives[(n, conn)].add(received)
    if not latency:
        sys.exit("receive_log: no frames in " + " ".join(paths))
    first = min(latency)
    print("message  sent at ms  subscribers  latency ms: min    p50    max")
    for i, sent in enumerate(sorted(latency)):
        v = sorted(latency[sent])
        print(f"{i:7}  {(sent - first) / 1e6:10.1f}  {len(v):11}  "
              f"{v[0]:15.1f} {quantile(v, 0.5):6.1f} {v[-1]:6.1f}")
    peaks = collections.Counter()
    for times in receives.values():
        t = sorted(times)
        gaps = sorted((b - a) / 1e6 for a, b in zip(t, t[1:]))
        if gaps:
            peaks[int(quantile(gaps, 0.5) // 10) * 10] += 1
    print("\nmedian gap between a connection's receives (ms): connections")
    for gap, count in sorted(peaks.items()):
        print(f"  {gap:4}-{gap + 10:<4}  {count}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
