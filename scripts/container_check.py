#!/usr/bin/env python3
"""The checks of scripts/container-test.sh against a running compose cluster.

    container_check.py NGINX_URL STOP_CMD NODE_URL...

NGINX_URL is nginx in front of the cluster (http://127.0.0.1:PORT); every
WebSocket client connects through it. NODE_URL are the nodes' own HTTP
addresses (the containers' IPs), used as entry points for API calls so that a
push provably enters the cluster on another node than the client's. STOP_CMD
is a shell command that stops the last node (podman stop …).

Prints one `ok - …` or `FAIL - …` line per check and, last,
`checks: N passed, M failed`; exits 1 when a check failed.
"""

import asyncio
import json
import secrets
import subprocess
import sys
import time
import urllib.request

from websockets.asyncio.client import connect

PASSED = 0
FAILED = 0


def check(ok, what):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"ok - {what}", flush=True)
    else:
        FAILED += 1
        print(f"FAIL - {what}", flush=True)
    return ok


def api(base, route, system, body):
    req = urllib.request.Request(
        f"{base}/api/{route}",
        data=json.dumps(body).encode(),
        headers={"SystemId": system} if system else {},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        answer = json.loads(r.read())
    if not isinstance(answer.get("data"), dict):  # an error's data is []
        answer["data"] = {}
    return answer


async def call(base, route, system, body):
    return await asyncio.to_thread(api, base, route, system, body)


class Client:
    """One WebSocket client: its clientId, its node, the pushes it received."""

    def __init__(self, ws, client_id):
        self.ws = ws
        self.id = client_id
        self.node = None
        self.frames = asyncio.Queue()
        self.closed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self):
        try:
            async for text in self.ws:
                if text != "pong":
                    await self.frames.put(json.loads(text))
        except Exception:
            pass
        self.closed.set()

    async def expect(self, data, timeout=5.0):
        """Waits for a push whose data is `data`; notices and others are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                frame = await asyncio.wait_for(self.frames.get(), left)
            except asyncio.TimeoutError:
                return False
            if frame.get("messageId") and frame.get("data") == data:
                return True


async def open_client(ws_url):
    ws = await connect(ws_url, open_timeout=10)
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
    c = Client(ws, welcome["data"]["clientId"])
    c.welcome = welcome["data"]
    return c


async def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.5)
    return await predicate()


async def main():
    nginx, stop_cmd, nodes = sys.argv[1], sys.argv[2], sys.argv[3:]
    ws_base = nginx.replace("http://", "ws://", 1)

    # A system of its own, registered through nginx (stored in etcd).
    system = "ctest" + secrets.token_hex(4)
    r = await call(nginx, "register", None, {"systemId": system})
    check(r["code"] == 0, f"register {system} through nginx: {r['msg']}")

    async def known_everywhere():
        for n in nodes:
            r = await call(n, "get_group_list", system, {})
            if r["code"] != 0:
                return False
        return True

    check(await wait_for(known_everywhere, 10), "the new system is known on every node")

    # Clients through nginx (least_conn) until each node holds at least two.
    clients = []
    by_node = {}
    while len(clients) < 30 and (len(by_node) < len(nodes) or min(map(len, by_node.values())) < 2):
        c = await open_client(f"{ws_base}/ws?systemId={system}")
        info = await call(nginx, "get_client_info", system, {"clientId": c.id})
        c.node = info["data"]["node"]
        clients.append(c)
        by_node.setdefault(c.node, []).append(c)
    spread = {n: len(cs) for n, cs in sorted(by_node.items())}
    check(len(by_node) == len(nodes),
          f"{len(clients)} WebSocket clients through nginx spread over {len(by_node)} nodes {spread}")

    # Which node id is which container: one client straight on each node.
    node_ids = []
    for n in nodes:
        c = await open_client(f"{n.replace('http://', 'ws://', 1)}/ws?systemId={system}")
        info = await call(n, "get_client_info", system, {"clientId": c.id})
        node_ids.append(info["data"]["node"])
        await c.ws.close()
    check(sorted(node_ids) == sorted(by_node), f"node ids of the containers: {node_ids}")

    # A push entering on every node reaches a client on every node.
    cross, cross_ok = 0, 0
    for entry, entry_id in zip(nodes, node_ids):
        for owner, cs in sorted(by_node.items()):
            c = cs[0]
            data = f"to-{c.id[:8]}-via-{entry_id}"
            r = await call(entry, "send_to_client", system, {"clientId": c.id, "data": data})
            got = r["code"] == 0 and r["data"]["online"] and await c.expect(data)
            if owner != entry_id:
                cross += 1
                cross_ok += bool(got)
            else:
                check(got, f"send_to_client entering on node {entry_id} reaches its own client")
    check(cross > 0 and cross_ok == cross,
          f"send_to_client entering on another node than the client's: {cross_ok}/{cross}")

    # A group with members on all three nodes.
    for c in clients:
        r = await call(nginx, "bind_to_group", system, {"clientId": c.id, "groupName": "room"})
        if r["code"] != 0:
            check(False, f"bind_to_group {c.id}: {r['msg']}")
    r = await call(nginx, "get_online_list", system, {"groupName": "room"})
    check(r["code"] == 0 and r["data"]["count"] == len(clients),
          f"get_online_list through nginx counts {r['data'].get('count')} of {len(clients)}")
    r = await call(nginx, "send_to_group", system, {"groupName": "room", "data": "group-1"})
    got = await asyncio.gather(*(c.expect("group-1") for c in clients))
    check(r["code"] == 0 and all(got),
          f"send_to_group through nginx reaches {sum(got)}/{len(clients)} members on {len(by_node)} nodes")

    # Session resume through nginx (docs/api.md §8): a client of each node drops without
    # a close frame and comes back with its token — same clientId, and the push sent in
    # the gap; nginx sends resume=<node>.… to the node that holds the session.
    resumed = 0
    for owner, cs in sorted(by_node.items()):
        c = cs[-1]
        c.ws.transport.abort()
        await asyncio.wait_for(c.closed.wait(), 5)

        async def detached():
            r = await call(nginx, "get_client_info", system, {"clientId": c.id})
            return r["code"] == 0 and r["data"].get("detached") is True

        ok = await wait_for(detached, 10)
        await call(nginx, "send_to_client", system, {"clientId": c.id, "data": "in-the-gap"})
        token = c.welcome.get("resumeToken", "")
        back = await open_client(f"{ws_base}/ws?systemId={system}&resume={token}&last=")
        back.node = owner
        got = ok and back.welcome.get("resumed") is True and back.id == c.id
        resumed += bool(got and await back.expect("in-the-gap"))
        cs[-1] = back
        clients[clients.index(c)] = back
    check(resumed == len(by_node),
          f"resume through nginx: {resumed}/{len(by_node)} clients (one per node) came back "
          "as themselves with the push of the gap")

    # Stop the last container's node: its clients are closed and reported offline.
    stopped = node_ids[-1]
    gone, kept = by_node[stopped], [c for c in clients if c.node != stopped]
    t0 = time.monotonic()
    subprocess.run(stop_cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    closed = await asyncio.gather(*(asyncio.wait_for(c.closed.wait(), 30) for c in gone),
                                  return_exceptions=True)
    check(all(x is True for x in closed),
          f"stopping node {stopped} closed its {len(gone)} clients ({time.monotonic() - t0:.1f} s)")

    async def offline():
        for c in gone:
            try:
                r = await call(nginx, "is_online", system, {"clientId": c.id})
            except OSError:  # nginx still trying the stopped node
                return False
            if r["code"] != 0 or r["data"]["online"]:
                return False
        return True

    check(await wait_for(offline, 15),
          f"is_online through nginx: the {len(gone)} clients of node {stopped} are offline")
    r = await call(nginx, "get_online_list", system, {"groupName": "room"})
    check(r["code"] == 0 and r["data"]["count"] == len(kept) and not r["data"].get("partial"),
          f"get_online_list after the stop: {r['data'].get('count')} of the {len(kept)} "
          "clients of the other nodes, not partial")
    states = [await call(nginx, "is_online", system, {"clientId": c.id}) for c in kept]
    check(all(s["data"]["online"] for s in states),
          f"the {len(kept)} clients of the other nodes are still online")

    # The two others still serve: nginx skips the stopped node.
    c = await open_client(f"{ws_base}/ws?systemId={system}")
    await call(nginx, "bind_to_group", system, {"clientId": c.id, "groupName": "room"})
    r = await call(nginx, "send_to_group", system, {"groupName": "room", "data": "group-2"})
    got = await asyncio.gather(*(x.expect("group-2") for x in kept + [c]))
    check(all(got), f"after the stop, a new client and send_to_group through nginx: "
                    f"{sum(got)}/{len(got)} received")

    for x in clients + [c]:
        await x.ws.close()
    print(f"checks: {PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except Exception as e:  # a broken step fails the run, with what broke
        FAILED += 1
        print(f"FAIL - aborted: {type(e).__name__}: {e}")
        print(f"checks: {PASSED} passed, {FAILED} failed")
        sys.exit(1)
