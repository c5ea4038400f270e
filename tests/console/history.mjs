// Group history in the JavaScript client (docs/js-client.md, "Group history"):
// the client served at /shardcast.js, on Node.js with the `ws` package, keeps
// each history group's position and recovers the pushes it missed by itself.
// Run by tests/it/console_page/client_history.rs against a node with a history
// rule for "room-" groups, resume on and a tiny resume log, the client
// connected through a TCP relay the harness cuts:
//
//   node history.mjs <node base url> <base url through the relay>
//
// It prints "CUT", "HEAL" and "RESTART" when the relay must be cut, healed,
// or the node restarted (on a new port the relay then forwards to) and waits
// for the answers "CUT", "HEALED", "RESTARTED" on stdin. The test plays the
// backend: it binds the clients and pushes over the HTTP API. Exit code 0 on
// success.
//
// Checked, as the app sees it (its `push` and `recovered` events):
// (a) a resume that lost pushes (more were sent during the cut than the
//     node's resume log keeps: `recovered` false): the client recovers the
//     group from its position; with pushes sent while it recovers, the app
//     gets every push of the group once, in offset order;
// (b) a new connection (resume off in the client) that the backend binds
//     again after pushes were missed: the first push after the bind shows the
//     gap, the client recovers it, and the app gets each missed push once, in
//     order, then the new ones; a recover of a group it is not in (an app's
//     seeded position) is refused, tried again twice, then reported;
// (c) a node restart (the group's history lost: a new epoch): the first push
//     of the new epoch is recovered with `recovered` false and delivered once.

import WebSocket from 'ws';
import { createInterface } from 'node:readline';

const [base, relayed] = process.argv.slice(2);
if (!base || !relayed) {
  console.error('usage: node history.mjs <node-base-url> <relayed-base-url>');
  process.exit(2);
}
const wsUrl = relayed.replace(/^http/, 'ws') + '/ws';
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));
const overall = setTimeout(() => { console.error('FAIL: no end within 60 s'); process.exit(1); }, 60_000);

// Prints `cue` for the harness and waits for its `answer`.
async function ask(cue, answer) {
  console.log(cue);
  const got = await nextLine();
  if (got !== answer) throw new Error(`asked ${cue}, got the answer ${got}`);
}

// Calls the push API as system sys-a at `at` (the node, or through the relay).
async function api(at, route, body) {
  const r = await fetch(`${at}/api/${route}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', SystemId: 'sys-a' }, body: JSON.stringify(body),
  });
  const j = await r.json();
  if (j.code !== 0) throw new Error(`/api/${route}: ${JSON.stringify(j)}`);
  return j.data;
}

// Pushes n (data {n, pad}) to `group`, one after the other.
async function push(at, group, from, to, pad = '') {
  for (let n = from; n <= to; n++) await api(at, 'send_to_group', { groupName: group, msg: 'm', data: { n, pad } });
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// The client as served by the node (no dependencies: importable from a data: URL).
const src = await (await fetch(`${base}/shardcast.js`)).text();
const { Shardcast } = await import('data:text/javascript,' + encodeURIComponent(src));

// A client and what its app sees.
function client(name, opts = {}) {
  const sc = new Shardcast(wsUrl, {
    systemId: 'sys-a', WebSocket, minBackoff: 100, maxBackoff: 400, pingInterval: 0, ...opts,
  });
  const seen = [];
  for (const t of ['welcome', 'push', 'recovered', 'close']) sc.addEventListener(t, (e) => seen.push({ t, d: e.detail }));
  return { name, sc, seen };
}

// Waits until `pred(seen)` returns something truthy, and returns it.
async function until(c, pred, what, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = pred(c.seen);
    if (v) return v;
    if (Date.now() > deadline) {
      const log = c.seen.map((e) => e.t === 'push'
        ? `push ${e.d.groupName || ''} ${e.d.offset ?? ''} ${e.d.data && e.d.data.n !== undefined ? 'n=' + e.d.data.n : ''}`
        : `${e.t} ${JSON.stringify(e.d)}`).join('\n  ');
      throw new Error(`${c.name}: no ${what} within ${ms} ms; events:\n  ${log}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

// The pushes of `group` the app got: [offset, n, epoch].
const pushes = (seen, group) => seen.filter((e) => e.t === 'push' && e.d.groupName === group)
  .map((e) => [e.d.offset, e.d.data.n, e.d.epoch]);
const count = (t) => (seen) => seen.filter((e) => e.t === t).length;
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

// Every push of `group` once, offsets `offsets` in order, each carrying n = offset.
function inOrder(c, group, offsets) {
  const got = pushes(c.seen, group);
  check(JSON.stringify(got.map((p) => p[0])) === JSON.stringify(offsets),
    `${c.name}: the app got offsets ${JSON.stringify(got.map((p) => p[0]))}, expected ${JSON.stringify(offsets)} once each`);
  check(got.every((p) => p[0] === p[1]), `${c.name}: a push's data is not its offset: ${JSON.stringify(got)}`);
  return got;
}

const big = 'x'.repeat(3000);
let a;
let b;
try {
  // (a) A resume that lost pushes.
  a = client('client a');
  const aId = await a.sc.ready();
  await api(base, 'bind_to_group', { clientId: aId, groupName: 'room-a' });
  await push(base, 'room-a', 1, 3);
  await until(a, (s) => pushes(s, 'room-a').length === 3, 'pushes 1..3');
  const epoch = pushes(a.seen, 'room-a')[0][2];
  check(typeof epoch === 'string' && epoch.length > 0, `no epoch on ${JSON.stringify(a.seen)}`);
  check(a.sc.positions.get('room-a').offset === 3, `position ${JSON.stringify(a.sc.positions.get('room-a'))}`);

  await ask('CUT', 'CUT');
  await until(a, (s) => count('close')(s) >= 1, 'drop');
  // 6 × 3 KB: more than the node's resume log keeps (8000 bytes).
  await push(base, 'room-a', 4, 9, big);
  await ask('HEAL', 'HEALED');
  const welcomes = await until(a, (s) => s.filter((e) => e.t === 'welcome')[1], 'second welcome');
  check(welcomes.d.resumed === true && welcomes.d.recovered === false && welcomes.d.clientId === aId,
    `client a: the resume should have lost pushes: ${JSON.stringify(welcomes.d)}`);
  // Pushes while it recovers (the backend does not wait).
  await push(relayed, 'room-a', 10, 12);
  const rec = await until(a, (s) => s.find((e) => e.t === 'recovered'), 'recovered event');
  check(rec.d.groupName === 'room-a' && rec.d.recovered === true && rec.d.epoch === epoch && rec.d.offset >= 9,
    `client a: recovered ${JSON.stringify(rec.d)}`);
  await until(a, (s) => pushes(s, 'room-a').length >= 12, 'pushes 1..12');
  await push(relayed, 'room-a', 13, 13);
  await until(a, (s) => pushes(s, 'room-a').some((p) => p[0] === 13), 'push 13');
  inOrder(a, 'room-a', range(1, 13));
  check(count('recovered')(a.seen) === 1, `client a: ${count('recovered')(a.seen)} recovered events`);
  check(a.sc.positions.get('room-a').offset === 13, `client a: position ${JSON.stringify(a.sc.positions.get('room-a'))}`);
  console.log(`client a: resumed, not recovered; recovered room-a by itself (top ${rec.d.offset}): offsets 1..13 once, in order`);
  a.sc.close();

  // (b) A new connection, bound again by the backend after pushes were missed.
  b = client('client b', { resume: false });
  const bId = await b.sc.ready();
  await api(relayed, 'bind_to_group', { clientId: bId, groupName: 'room-b' });
  await push(relayed, 'room-b', 1, 3);
  await until(b, (s) => pushes(s, 'room-b').length === 3, 'pushes 1..3');
  const bEpoch = pushes(b.seen, 'room-b')[0][2];

  await ask('CUT', 'CUT');
  await until(b, count('close'), 'drop');
  await push(base, 'room-b', 4, 6);
  await ask('HEAL', 'HEALED');
  const fresh = await until(b, (s) => s.filter((e) => e.t === 'welcome')[1], 'second welcome');
  check(fresh.d.resumed === false && fresh.d.clientId !== bId, `client b: ${JSON.stringify(fresh.d)}`);
  check(pushes(b.seen, 'room-b').length === 3, 'client b: got pushes before it was bound again');
  await api(relayed, 'bind_to_group', { clientId: fresh.d.clientId, groupName: 'room-b' });
  // The first push after the bind shows the gap; the next comes while it recovers.
  await push(relayed, 'room-b', 7, 8);
  const recB = await until(b, (s) => s.find((e) => e.t === 'recovered'), 'recovered event');
  check(recB.d.groupName === 'room-b' && recB.d.recovered === true && recB.d.epoch === bEpoch && recB.d.offset >= 7,
    `client b: recovered ${JSON.stringify(recB.d)}`);
  await until(b, (s) => pushes(s, 'room-b').length >= 8, 'pushes 1..8');
  await push(relayed, 'room-b', 9, 9);
  await until(b, (s) => pushes(s, 'room-b').some((p) => p[0] === 9), 'push 9');
  inOrder(b, 'room-b', range(1, 9));
  console.log('client b: a new connection bound again; recovered the gap by itself: offsets 1..9 once, in order');

  // The app seeds a position of a group the client is not in: refused (an
  // ack), tried again after 1 s and 2 s, then reported.
  b.sc.positions.set('room-x', { offset: 4, epoch: bEpoch });
  const t0 = Date.now();
  const refused = await b.sc.recover('room-x');
  const took = Date.now() - t0;
  check(refused.groupName === 'room-x' && refused.recovered === false && refused.error === '客户端无权发送',
    `client b: recover of a group it is not in: ${JSON.stringify(refused)}`);
  check(took >= 2900, `client b: the refused recover was given up after ${took} ms, not after two more tries`);
  check(await b.sc.recover('room-nope') === false, 'client b: recover() without a position');
  b.sc.positions.delete('room-x');
  console.log(`client b: a recover of a group it is not in refused 3 times in ${took} ms, then reported`);

  // (c) The node restarts: its history is gone, a new epoch begins.
  const before = count('welcome')(b.seen);
  await ask('RESTART', 'RESTARTED');
  const again = await until(b, (s) => s.filter((e) => e.t === 'welcome')[before], 'a welcome after the restart');
  await api(relayed, 'bind_to_group', { clientId: again.d.clientId, groupName: 'room-b' });
  await push(relayed, 'room-b', 1, 1);
  const recC = await until(b, (s) => s.filter((e) => e.t === 'recovered' && e.d.groupName === 'room-b')[1], 'a second recovered event');
  check(recC.d.recovered === false && recC.d.epoch !== bEpoch && recC.d.offset === 1,
    `client b: after the restart, recovered ${JSON.stringify(recC.d)}`);
  await until(b, (s) => pushes(s, 'room-b').length >= 10, 'the first push of the new epoch');
  await push(relayed, 'room-b', 2, 2);
  await until(b, (s) => pushes(s, 'room-b').length >= 11, 'the second push of the new epoch');
  const all = pushes(b.seen, 'room-b');
  const late = all.slice(9);
  check(JSON.stringify(late.map((p) => [p[0], p[2]])) === JSON.stringify([[1, recC.d.epoch], [2, recC.d.epoch]]),
    `client b: after the restart got ${JSON.stringify(late)}`);
  check(all.length === 11, `client b: ${all.length} pushes of room-b`);
  console.log(`client b: new epoch after the restart, recovered: false; its pushes once each`);

  console.log('PASS');
} catch (e) {
  console.error('FAIL: ' + (e && e.stack || e));
  process.exitCode = 1;
} finally {
  clearTimeout(overall);
  lines.close();
  if (a) a.sc.close();
  if (b) b.sc.close();
}
