// Group history after a node restart (docs/api.md §9): N clients of node A in one
// history group lose their node and recover on node B. Run by
// scripts/bench-history-recovery.sh, which starts etcd and the two nodes:
//
//   node scripts/history_recovery.mjs --a http://127.0.0.1:PA --b http://127.0.0.1:PB \
//     --pid-a PID --pid-b PID [--clients N] [--before M] [--gap K] [--owner a|b]
//     [--path bind|recover] [--system bench] [--clk-tck 100]
//
// 1. Waits until each node routes to the other (is_online across the link), then
//    picks the group: "room:r", or the first of room:0, room:1, … whose stream the
//    wanted node owns (one send each through node B, then the sum of
//    shardcast_history_streams on each node's /metrics says who took it).
// 2. N clients connect to node A; each is bound to the group through node A's API;
//    M pushes are sent through node B, one request at a time; every client must get
//    all M, consecutive offsets, one epoch: it keeps the offset and epoch of the last.
// 3. Node A gets SIGTERM (it hands its streams to node B, closes its clients with
//    1001); once every client saw its close and the process is gone, K pushes are
//    sent through node B.
// 4. All N reconnect to node B at once (new clientIds). As each welcome arrives, the
//    driver, as the backend, binds it through node B's API:
//    --path bind:    with "since": {offset, epoch} (the answer says recovered,
//                    offset, epoch; the node replays the K pushes);
//    --path recover: plainly; once the bind is answered the client sends
//                    {"type":"recover",…} and gets the K pushes, then "recovered".
//    A client is done when it has the K missed pushes (and, for recover, the
//    "recovered" message; for bind, the bind's answer). Then one more push through
//    node B must reach every client once, next in order.
// Every push of the group each client gets is checked: the expected offsets, once
// each, in order, one epoch, data {i} matching the offset.
//
// Prints one JSON object on stdout (progress on stderr); exit code 1 when any
// client missed, doubled or reordered a push, or a recovery went unanswered.

import net from 'node:net';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

// The `ws` package of tests/console (npm ci --prefix tests/console).
const WebSocket = createRequire(new URL('../tests/console/package.json', import.meta.url))('ws');

const opts = {
  a: '', b: '', 'pid-a': 0, 'pid-b': 0, clients: 10000, before: 20, gap: 5, owner: 'a',
  path: 'bind', system: 'bench', 'clk-tck': 100, 'http-conns': 8, 'http-depth': 64,
  'connect-batch': 500,
};
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in opts) || argv[i + 1] === undefined) {
      console.error(`history_recovery: unknown or incomplete argument ${argv[i]}`);
      process.exit(2);
    }
    opts[k] = typeof opts[k] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!opts.a || !opts.b || !opts['pid-a'] || !opts['pid-b']) {
    console.error('usage: node history_recovery.mjs --a URL --b URL --pid-a PID --pid-b PID [...]');
    process.exit(2);
  }
  if (!['a', 'b'].includes(opts.owner) || !['bind', 'recover'].includes(opts.path)) {
    console.error('history_recovery: --owner a|b, --path bind|recover');
    process.exit(2);
  }
}
const N = opts.clients;
const M = opts.before;
const K = opts.gap;
const SYSTEM = opts.system;
const t00 = performance.now();
const log = (s) => console.error(`[history_recovery ${((performance.now() - t00) / 1e3).toFixed(1)}s] ${s}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- A small HTTP/1.1 client: keep-alive, pipelined, Content-Length answers. ----
class Conn {
  constructor(host, port, depth) {
    this.depth = depth;
    this.waiting = []; // requests not written yet: {bytes, resolve, reject}
    this.inflight = []; // written, not answered: {resolve, reject}
    this.buf = Buffer.alloc(0);
    this.sock = net.connect(port, host);
    this.sock.setNoDelay(true);
    this.sock.on('data', (d) => this.read(d));
    const fail = (e) => {
      const err = e instanceof Error ? e : new Error('connection closed');
      for (const r of [...this.inflight, ...this.waiting]) r.reject(err);
      this.inflight = [];
      this.waiting = [];
      this.dead = true;
    };
    this.sock.on('error', fail);
    this.sock.on('close', () => fail(new Error(`HTTP connection to ${host}:${port} closed`)));
  }
  get load() { return this.inflight.length + this.waiting.length; }
  request(bytes) {
    return new Promise((resolve, reject) => {
      if (this.dead) return reject(new Error('HTTP connection closed'));
      this.waiting.push({ bytes, resolve, reject });
      this.pump();
    });
  }
  pump() {
    const out = [];
    while (this.waiting.length && this.inflight.length < this.depth) {
      const r = this.waiting.shift();
      this.inflight.push(r);
      out.push(r.bytes);
    }
    if (out.length) this.sock.write(out.length === 1 ? out[0] : Buffer.concat(out));
  }
  read(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) break;
      const head = this.buf.subarray(0, end).toString('latin1');
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (!m) throw new Error(`an answer without Content-Length: ${head}`);
      const len = Number(m[1]);
      if (this.buf.length < end + 4 + len) break;
      const body = this.buf.subarray(end + 4, end + 4 + len).toString('utf8');
      this.buf = this.buf.subarray(end + 4 + len);
      const status = Number(head.slice(9, 12));
      const r = this.inflight.shift();
      if (r) r.resolve({ status, body });
    }
    this.pump();
  }
  close() { this.sock.destroy(); }
}

class Pool {
  constructor(base, conns, depth) {
    const u = new URL(base);
    this.host = u.hostname;
    this.port = Number(u.port);
    this.conns = Array.from({ length: conns }, () => new Conn(this.host, this.port, depth));
  }
  // POST /api/<route> as the system; resolves to the answer's JSON envelope.
  async api(route, body) {
    const json = Buffer.from(JSON.stringify(body));
    const head = `POST /api/${route} HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\nSystemId: ${SYSTEM}\r\n`
      + `Content-Type: application/json\r\nContent-Length: ${json.length}\r\n\r\n`;
    let c = this.conns[0];
    for (const x of this.conns) if (!x.dead && (c.dead || x.load < c.load)) c = x;
    const r = await c.request(Buffer.concat([Buffer.from(head), json]));
    try {
      return JSON.parse(r.body);
    } catch {
      throw new Error(`/api/${route}: HTTP ${r.status} ${r.body}`);
    }
  }
  close() { for (const c of this.conns) c.close(); }
}

async function must(pool, route, body) {
  const j = await pool.api(route, body);
  if (j.code !== 0) throw new Error(`/api/${route} ${JSON.stringify(body)}: ${JSON.stringify(j)}`);
  return j.data;
}

// The sum of a metric over the node's workers (the node's whole /metrics text).
async function metric(base, name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  let s = 0;
  for (const line of text.split('\n')) {
    const sp = line.indexOf(' ');
    const key = line.slice(0, sp);
    if (key === name || key.startsWith(name + '{')) s += Number(line.slice(sp + 1));
  }
  return s;
}

// utime + stime of a process, in seconds.
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / opts['clk-tck'];
}

// Whether the process is gone (or a zombie waiting for its parent).
function exited(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
  } catch {
    return true;
  }
}

async function until(pred, what, ms) {
  const deadline = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > deadline) throw new Error(`no ${what} within ${ms} ms`);
    await sleep(5);
  }
}

const pct = (sorted, p) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN;

// ---- Clients ----
// A client: its socket now, its clientId, and every push of GROUP it got, per phase.
let GROUP = '';
const WS_OPTS = { perMessageDeflate: false, handshakeTimeout: 30_000 };

function connect(c, base, onWelcome) {
  c.start = performance.now();
  c.welcomed = false;
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/ws?systemId=${SYSTEM}`, WS_OPTS);
  c.ws = ws;
  ws.on('message', (raw) => {
    const text = raw.toString();
    let m;
    try { m = JSON.parse(text); } catch { c.other.push(text); return; }
    if ('messageId' in m) {
      if (m.groupName === GROUP) {
        c.pushes.push({ offset: m.offset, epoch: m.epoch, i: m.data && m.data.i, at: performance.now(), phase: c.phase });
        if (c.onPush) c.onPush(c);
      } else if (m.code !== 1001 && m.code !== 1002) c.other.push(text);
    } else if (!c.welcomed && m.data && m.data.clientId) {
      c.welcomed = true;
      c.clientId = m.data.clientId;
      c.welcomeAt = performance.now();
      onWelcome(c);
    } else if (m.msg === 'recovered' || (m.data && m.data.groupName === GROUP)) {
      c.recoverAnswer = m;
      c.recoverAt = performance.now();
      if (c.onPush) c.onPush(c);
    } else c.other.push(text);
  });
  ws.on('close', (code) => { c.closeCode = code; c.closed = true; });
  ws.on('error', (e) => { c.error = String(e.message || e); });
}

const clients = Array.from({ length: N }, (_, n) => ({
  n, pushes: [], other: [], phase: 1, closed: false, closeCode: 0,
}));

const A = new Pool(opts.a, opts['http-conns'], opts['http-depth']);
const B = new Pool(opts.b, opts['http-conns'], opts['http-depth']);
let pushNo = 0; // data {i} of each push, in send order
async function sendB(k) {
  for (let j = 0; j < k; j++) {
    pushNo += 1;
    await must(B, 'send_to_group', { groupName: GROUP, msg: 'm', data: { i: pushNo } });
  }
}

const failures = [];
function fail(c, what) {
  if (failures.length < 20) failures.push(`client ${c.n} (${c.clientId}): ${what}`);
  failures.count = (failures.count || 0) + 1;
}

try {
  // 1. The cluster: each node routes to the other.
  {
    const probe = async (base, other) => {
      const c = { n: -1, pushes: [], other: [], phase: 0 };
      await new Promise((resolve, reject) => {
        connect(c, base, resolve);
        setTimeout(() => reject(new Error(`no welcome from ${base}`)), 10_000);
      });
      const deadline = performance.now() + 15_000;
      for (;;) {
        const j = await other.api('is_online', { clientId: c.clientId });
        if (j.code === 0 && j.data && j.data.online === true) break;
        if (performance.now() > deadline) throw new Error(`${base}'s client is not online through the other node: ${JSON.stringify(j)}`);
        await sleep(100);
      }
      c.ws.close();
    };
    await probe(opts.a, B);
    await probe(opts.b, A);
  }
  {
    const want = opts.owner === 'a' ? opts.a : opts.b;
    const names = ['room:r', ...Array.from({ length: 64 }, (_, i) => `room:${i}`)];
    for (const name of names) {
      const before = await metric(want, 'shardcast_history_streams');
      GROUP = name;
      pushNo = 0;
      await sendB(1);
      if (await metric(want, 'shardcast_history_streams') > before) break;
      GROUP = '';
    }
    if (!GROUP) throw new Error(`no group of room:r, room:0…63 is owned by node ${opts.owner}`);
  }
  const streams = { a: await metric(opts.a, 'shardcast_history_streams'), b: await metric(opts.b, 'shardcast_history_streams') };
  log(`group ${GROUP}, owned by node ${opts.owner.toUpperCase()} (shardcast_history_streams: A ${streams.a}, B ${streams.b})`);

  // 2. N clients on node A, bound; M pushes through node B.
  const tConnect = performance.now();
  for (let i = 0; i < N; i += opts['connect-batch']) {
    const batch = clients.slice(i, i + opts['connect-batch']);
    await Promise.all(batch.map((c) => new Promise((resolve, reject) => {
      connect(c, opts.a, resolve);
      c.ws.once('close', (code) => reject(new Error(`client ${c.n}: closed ${code} before its welcome ${c.error || ''}`)));
    })));
  }
  const connectS = (performance.now() - tConnect) / 1e3;
  log(`${N} clients connected to node A in ${connectS.toFixed(2)} s`);
  const tBind = performance.now();
  await Promise.all(clients.map((c) => must(A, 'bind_to_group', { clientId: c.clientId, groupName: GROUP })));
  const bindS = (performance.now() - tBind) / 1e3;
  log(`${N} bound to ${GROUP} through node A in ${bindS.toFixed(2)} s`);
  await sendB(M);
  const tm = performance.now();
  await until(() => clients.every((c) => c.pushes.length >= M), `all ${M} pushes at every client`, 60_000);
  log(`${M} pushes reached every client (${((performance.now() - tm) / 1e3).toFixed(2)} s after the last answer)`);
  await sleep(200);
  const epoch = clients[0].pushes[0].epoch;
  const first = clients[0].pushes[0].offset;
  for (const c of clients) {
    const got = c.pushes.map((p) => p.offset);
    const want = Array.from({ length: M }, (_, j) => first + j);
    if (JSON.stringify(got) !== JSON.stringify(want) || c.pushes.some((p) => p.epoch !== epoch || p.i !== p.offset)) {
      fail(c, `before the stop: offsets ${JSON.stringify(got)} (epochs ${[...new Set(c.pushes.map((p) => p.epoch))]}), expected ${first}..${first + M - 1} of ${epoch}`);
    }
    c.last = { offset: c.pushes.at(-1).offset, epoch: c.pushes.at(-1).epoch };
  }
  if (failures.count) throw new Error('pushes lost, doubled or out of order before the stop');
  const top = first + M - 1;

  // 3. Node A stops; K pushes while the clients are away.
  const tStop = performance.now();
  process.kill(opts['pid-a'], 'SIGTERM');
  await until(() => clients.every((c) => c.closed), 'close of every client of node A', 30_000);
  const closedMs = performance.now() - tStop;
  await until(() => exited(opts['pid-a']), 'exit of node A', 30_000);
  const exitMs = performance.now() - tStop;
  const codes = {};
  for (const c of clients) codes[c.closeCode] = (codes[c.closeCode] || 0) + 1;
  const streamsB = await metric(opts.b, 'shardcast_history_streams');
  log(`node A stopped: clients closed in ${closedMs.toFixed(0)} ms (codes ${JSON.stringify(codes)}), exited after ${exitMs.toFixed(0)} ms; node B holds ${streamsB} streams`);
  await sendB(K);

  // 4. Every client reconnects to node B at once; the backend binds each again.
  const recBefore = await metric(opts.b, 'shardcast_history_recovered_total');
  const notRecBefore = await metric(opts.b, 'shardcast_history_not_recovered_total');
  const missed = Array.from({ length: K }, (_, j) => top + 1 + j);
  let done = 0;
  const answers = { true: 0, false: 0, other: 0 };
  const isDone = (c) => {
    if (c.done) return;
    const got = c.pushes.filter((p) => p.phase === 2);
    if (got.length < K) return;
    if (opts.path === 'bind' ? !c.bindAnswer : !c.recoverAnswer) return;
    c.done = true;
    c.lastMissedAt = got[K - 1].at;
    c.firstMissedAt = got[0].at;
    done += 1;
  };
  for (const c of clients) {
    c.phase = 2;
    c.onPush = isDone;
  }
  const onWelcome = async (c) => {
    try {
      if (opts.path === 'bind') {
        const j = await B.api('bind_to_group', { clientId: c.clientId, groupName: GROUP, since: c.last });
        c.bindAnswer = j;
        c.answerAt = performance.now();
        if (j.code === 0 && typeof j.data === 'object') answers[j.data.recovered ? 'true' : 'false'] += 1;
        else answers.other += 1;
      } else {
        const j = await B.api('bind_to_group', { clientId: c.clientId, groupName: GROUP });
        c.bindAnswer = j;
        c.answerAt = performance.now();
        if (j.code !== 0) { answers.other += 1; return; }
        c.ws.send(JSON.stringify({ type: 'recover', groupName: GROUP, offset: c.last.offset, epoch: c.last.epoch }));
      }
      isDone(c);
    } catch (e) {
      c.bindAnswer = { error: String(e.message || e) };
      answers.other += 1;
    }
  };
  const cpuB0 = cpuSeconds(opts['pid-b']);
  const me0 = process.cpuUsage();
  const t0 = performance.now();
  for (const c of clients) {
    c.pushes = [];
    c.closed = false;
    connect(c, opts.b, onWelcome);
  }
  const loopMs = performance.now() - t0;
  try {
    await until(() => done === N, 'recovery of every client', 60_000);
  } catch (e) {
    log(String(e.message));
  }
  const tEnd = done ? Math.max(...clients.filter((c) => c.done).map((c) => c.lastMissedAt)) : performance.now();
  const cpuB = cpuSeconds(opts['pid-b']) - cpuB0;
  const me = process.cpuUsage(me0);
  const wallMs = tEnd - t0;
  log(`${done} of ${N} recovered in ${wallMs.toFixed(0)} ms (the connect loop itself took ${loopMs.toFixed(0)} ms)`);
  if (opts.path === 'recover') {
    for (const c of clients) {
      const r = c.recoverAnswer;
      if (!r) continue;
      if (r.code === 0 && r.data) answers[r.data.recovered ? 'true' : 'false'] += 1;
      else answers.other += 1;
    }
  }

  // One live push after the recovery: every client gets it once, next in order.
  await sendB(1);
  await until(() => clients.every((c) => c.pushes.length >= K + 1), 'the push after the recovery at every client', 10_000)
    .catch((e) => log(String(e.message)));
  await sleep(300);
  const after = [...missed, top + K + 1];
  let welcomesLate = 0;
  for (const c of clients) {
    const got = c.pushes.map((p) => p.offset);
    if (!c.welcomed) { fail(c, `no welcome from node B ${c.error || ''} (closed ${c.closeCode})`); welcomesLate += 1; continue; }
    if (JSON.stringify(got) !== JSON.stringify(after)) {
      const dup = got.length !== new Set(got).size;
      const sorted = got.every((o, j) => j === 0 || o > got[j - 1]);
      const miss = after.filter((o) => !got.includes(o));
      fail(c, `after the recovery: offsets ${JSON.stringify(got)}, expected ${JSON.stringify(after)}`
        + `${dup ? ' (doubled)' : ''}${sorted ? '' : ' (out of order)'}${miss.length ? ` (missing ${miss})` : ''}`);
    } else if (c.pushes.some((p) => p.epoch !== epoch || p.i !== p.offset)) {
      fail(c, `after the recovery: epochs ${[...new Set(c.pushes.map((p) => p.epoch))]} (was ${epoch}), data ${JSON.stringify(c.pushes.map((p) => p.i))}`);
    }
    const a = opts.path === 'bind' ? c.bindAnswer : c.recoverAnswer;
    const d = a && a.data;
    if (!a) fail(c, opts.path === 'bind' ? 'bind never answered' : `no "recovered" answer (bind: ${JSON.stringify(c.bindAnswer)})`);
    else if (a.code !== 0 || !d || d.offset !== top + K || d.epoch !== epoch) {
      fail(c, `answer ${JSON.stringify(a)}, expected offset ${top + K} of ${epoch}`);
    }
    if (c.other.length) fail(c, `other frames: ${c.other.slice(0, 3).join(' | ')}`);
  }
  const lat = clients.filter((c) => c.done).map((c) => c.lastMissedAt - c.start).sort((x, y) => x - y);
  // Where the time went, per client from its reconnect start: p50 / p99.
  const steps = {};
  for (const [k, f] of [['welcome', (c) => c.welcomeAt], ['bind_answer', (c) => c.answerAt],
    ['first_missed', (c) => c.firstMissedAt], ['last_missed', (c) => c.lastMissedAt]]) {
    const v = clients.filter((c) => c.done).map((c) => f(c) - c.start).sort((x, y) => x - y);
    steps[k] = [Math.round(pct(v, 50)), Math.round(pct(v, 99))];
  }
  const starts = clients.map((c) => c.start - t0).sort((x, y) => x - y);
  const result = {
    path: opts.path, owner: opts.owner, group: GROUP, clients: N, before: M, gap: K, epoch,
    streams_before_stop: streams, streams_b_after_stop: streamsB,
    connect_s: connectS, bind_s: bindS,
    stop: { clients_closed_ms: Math.round(closedMs), exited_ms: Math.round(exitMs), close_codes: codes },
    recovered: done,
    answered: answers,
    recoveries_per_sec: done / (wallMs / 1e3),
    wall_ms: wallMs,
    connect_loop_ms: loopMs,
    steps_p50_p99_ms: steps,
    last_start_ms: starts.at(-1),
    latency_ms: { p50: pct(lat, 50), p90: pct(lat, 90), p99: pct(lat, 99), max: lat.at(-1) },
    node_b_cpu_s: cpuB,
    driver_cpu_s: (me.user + me.system) / 1e6,
    metrics_b: {
      recovered_total: (await metric(opts.b, 'shardcast_history_recovered_total')) - recBefore,
      not_recovered_total: (await metric(opts.b, 'shardcast_history_not_recovered_total')) - notRecBefore,
    },
    failures: failures.count || 0,
    failure_examples: failures,
  };
  console.log(JSON.stringify(result));
  for (const c of clients) c.ws.terminate();
  A.close();
  B.close();
  process.exit(result.failures ? 1 : 0);
} catch (e) {
  console.error(`history_recovery: FAIL: ${e.stack || e}`);
  for (const f of failures) console.error(`  ${f}`);
  process.exit(1);
}
