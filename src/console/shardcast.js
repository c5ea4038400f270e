// shardcast.js — the JavaScript client of shardcast (docs/js-client.md).
// One dependency-free ES module, served by every node at /shardcast.js:
//
//   import { Shardcast } from 'http://node:7800/shardcast.js';
//   const sc = new Shardcast('ws://node:7800/ws', { systemId: 'demo' });
//   sc.addEventListener('push', (e) => console.log(e.detail.data));
//   const clientId = await sc.ready();
//   const ack = await sc.send({ type: 'send_to_group', groupName: 'room1', data: 'hi' });
//
// It reconnects after a drop with exponential backoff and full jitter, and
// resumes the session when the node keeps sessions (`ws.resume_window`): the
// same clientId, and the pushes sent during the gap. It keeps the connection
// alive with the text "ping" the node answers with "pong", hands each
// welcome's clientId to `ready()`, turns pushes and the 1001/1002 notices into
// events, resolves each client message's promise with its ack (or rejects it
// on a refusal or after a timeout), refuses a send at once where the node
// routes no client messages (the welcome's clientSend is "off"), and stops
// with a clear error on a -1001 refusal, which retrying would not cure.
//
// Group history (docs/api.md §9): it keeps each history group's position (the
// offset and epoch of the newest push it delivered) and recovers a gap by
// itself with the `recover` client message — after a resume that lost pushes,
// and when a push shows that some were missed (a new connection re-bound by
// the backend) — delivering every push once, in offset order.
//
// Node.js: 22 and later have a global WebSocket; before (18, 20), pass the
// `ws` package's: `import WebSocket from 'ws'`, then `{ WebSocket, … }` in opts.

const NOTICE_ONLINE = 1001;
const NOTICE_OFFLINE = 1002;
const REFUSED = -1001;

/**
 * A refusal of the node: the connect (code -1001) or a client message (-1);
 * `ack`: the refusing ack frame of a client message.
 */
export class ShardcastError extends Error {
  constructor(code, msg, ack) {
    super(msg);
    this.name = 'ShardcastError';
    this.code = code;
    if (ack) this.ack = ack;
  }
}

export class Shardcast extends EventTarget {
  /**
   * @param {string} url  the node's WebSocket endpoint, e.g. ws://host:7800/ws
   * @param {object} opts systemId (required), token (a connect token),
   *   resume (true: resume the session after a drop when the node offers it),
   *   pingInterval (ms, 20000; 0 = no heartbeat), ackTimeout (ms, 10000),
   *   minBackoff (ms, 500), maxBackoff (ms, 30000), WebSocket (an
   *   implementation, default the global)
   */
  constructor(url, opts = {}) {
    super();
    if (!opts.systemId) throw new TypeError('shardcast: systemId is required');
    if (typeof (opts.WebSocket || globalThis.WebSocket) !== 'function') {
      throw new TypeError('shardcast: no WebSocket here: pass one as the WebSocket option '
        + "(Node.js before 22: import WebSocket from 'ws')");
    }
    this.url = url;
    this.opts = {
      pingInterval: 20000, ackTimeout: 10000, minBackoff: 500, maxBackoff: 30000, resume: true, ...opts,
    };
    this.clientId = null;
    // The node's ws.client_send as its welcome said ("off", "group", "all",
    // "webhook"; null before the first welcome or from a node that does not say).
    this.clientSend = null;
    this.lastClientId = null; // the clientId of the connection before, for `welcome`
    this.resumeToken = null; // the newest welcome's, while resuming is on
    this.last = null; // messageId of the last push or notice handled
    this.ws = null;
    this.closed = false;
    this.attempt = 0;
    this.pending = new Map(); // reqId → { resolve, reject, timer }
    this.nextReq = 1;
    this.waiters = [];
    this.pinger = null;
    this.retry = null;
    // Group history: groupName → {offset, epoch} of the newest push delivered;
    // the app may read it, seed it (a position it stored) or delete entries.
    this.positions = new Map();
    // groupName → {held, asked, tries, timer, waiters}: a recovery under way.
    this.recovering = new Map();
    this.recoverReqs = new Map(); // reqId of a recover → groupName
    this.open();
  }

  /** The clientId of the current connection, once its welcome arrived. */
  ready() {
    if (this.clientId) return Promise.resolve(this.clientId);
    if (this.closed) return Promise.reject(this.failure || new Error('shardcast: closed'));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /**
   * Sends a client message (docs/api.md §2.1): `{type, groupName|userId|clientId,
   * code?, msg?, data}`. Resolves with the ack; rejects with a ShardcastError on
   * a refusal — at once when the node routes no client messages (its welcome
   * said clientSend "off") — or an Error when no ack came within ackTimeout or
   * the connection dropped first.
   */
  send(message) {
    if (!this.connected()) return Promise.reject(new Error('shardcast: not connected'));
    if (this.clientSend === 'off') {
      return Promise.reject(new ShardcastError(-1, 'shardcast: this node does not route client '
        + 'messages (ws.client_send = "off"): send through the HTTP API of your backend, or '
        + 'run the node with ws.client_send "group", "all" or "webhook"'));
    }
    const reqId = String(this.nextReq++);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(reqId);
        reject(new Error(`shardcast: no ack for ${reqId} within ${this.opts.ackTimeout} ms`));
      }, this.opts.ackTimeout);
      this.pending.set(reqId, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...message, reqId }));
    });
  }

  /** Sends the text "ping" now; the node's "pong" comes as a `pong` event. */
  ping() {
    if (!this.connected()) return false;
    this.ws.send('ping');
    return true;
  }

  /** Whether the current connection is open and welcomed. */
  connected() {
    return !!(this.ws && this.ws.readyState === 1 && this.clientId);
  }

  /**
   * Recovers the pushes of history group `groupName` after its position
   * (docs/api.md §9): they come as `push` events, then a `recovered` event.
   * Resolves with that event's detail; false when there is no position.
   */
  recover(groupName) {
    if (!this.positions.has(groupName) || this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const r = this.startRecovery(groupName);
      r.waiters.push(resolve);
    });
  }

  /** Closes for good: no reconnect, no resume; pending sends are rejected. */
  close() {
    this.closed = true;
    this.resumeToken = null;
    clearTimeout(this.retry);
    this.stopPing();
    if (this.ws) this.ws.close(1000);
    this.failAll(new Error('shardcast: closed'));
    this.failWaiters(new Error('shardcast: closed'));
    // Recoveries end unfinished: nothing more is delivered.
    for (const [g, r] of this.recovering) {
      clearTimeout(r.timer);
      for (const w of r.waiters) w({ groupName: g, recovered: false, error: 'shardcast: closed' });
    }
    this.recovering.clear();
  }

  open() {
    const WS = this.opts.WebSocket || globalThis.WebSocket;
    const u = new URL(this.url);
    u.searchParams.set('systemId', this.opts.systemId);
    // A token that cannot be honoured falls back to a new connection, which
    // needs the connect token where it is required: send both.
    if (this.opts.token) u.searchParams.set('token', this.opts.token);
    this.resuming = !!(this.opts.resume && this.resumeToken);
    if (this.resuming) {
      u.searchParams.set('resume', this.resumeToken);
      if (this.last) u.searchParams.set('last', this.last);
    }
    const ws = new WS(u.toString());
    this.ws = ws;
    ws.onopen = () => this.emit('open', { resuming: this.resuming });
    ws.onmessage = (e) => this.onFrame(typeof e.data === 'string' ? e.data : '');
    ws.onclose = (e) => this.onClose(ws, e.code, e.reason);
    ws.onerror = () => this.emit('error', { message: 'WebSocket error' });
  }

  onFrame(text) {
    if (text === 'pong') return this.emit('pong', {});
    let m;
    try { m = JSON.parse(text); } catch { m = undefined; }
    if (!m || typeof m !== 'object' || Array.isArray(m)) return this.emit('other', { text });
    if (m.type === 'ack') return this.onAck(m);
    if (m.code === REFUSED) {
      // Retrying cannot cure a refusal (bad system, bad token): stop.
      this.failure = new ShardcastError(m.code, m.msg);
      this.closed = true;
      this.resumeToken = null;
      this.emit('refused', { code: m.code, msg: m.msg });
      this.failWaiters(this.failure);
      return;
    }
    if (!m.messageId && m.code === 0 && m.data && typeof m.data.clientId === 'string') {
      return this.onWelcome(m.data);
    }
    if (!('messageId' in m) && isRecovered(m.data)) return this.onRecovered(m);
    if (m.messageId) this.last = m.messageId;
    if (typeof m.groupName === 'string' && Number.isInteger(m.offset) && typeof m.epoch === 'string') {
      return this.onStreamPush(m);
    }
    const who = notice(m);
    if (who) {
      this.emit('notice', {
        online: m.code === NOTICE_ONLINE, code: m.code, msg: m.msg, ...who, messageId: m.messageId,
      });
      return;
    }
    this.emit('push', m);
  }

  onWelcome(d) {
    const resumed = d.resumed === true;
    const previousClientId = this.lastClientId;
    this.clientId = d.clientId;
    this.lastClientId = d.clientId;
    this.clientSend = typeof d.clientSend === 'string' ? d.clientSend : null;
    this.resumeToken = this.opts.resume && typeof d.resumeToken === 'string' ? d.resumeToken : null;
    // A new connection numbers nothing it has not sent: the old `last` means
    // nothing to it. A resumed one replays what came after `last` next.
    if (!resumed) this.last = null;
    this.attempt = 0;
    this.startPing();
    const detail = { clientId: this.clientId, resumed, previousClientId };
    if (resumed) detail.recovered = d.recovered === true;
    this.emit('welcome', detail);
    if (resumed) this.emit('resumed', { clientId: this.clientId, recovered: detail.recovered });
    for (const w of this.waiters.splice(0)) w.resolve(this.clientId);
    if (!resumed) return;
    // Still a member of its groups: a recovery the drop interrupted asks
    // again, and after a resume that lost pushes every group recovers. (A
    // new connection is in no group until its backend binds it: a recovery
    // waits for the first push of its group.)
    for (const g of this.recovering.keys()) this.askRecover(g);
    if (!detail.recovered) for (const g of this.positions.keys()) this.startRecovery(g);
  }

  // A push of a history group: delivered when it is the next of the group's
  // stream (or the first seen), dropped when delivered already; a gap (a
  // later offset, another epoch) is held and recovered: the replay brings it.
  onStreamPush(m) {
    const g = m.groupName;
    const at = this.positions.get(g);
    if (at && m.epoch === at.epoch && m.offset <= at.offset) return;
    if (!at || (m.epoch === at.epoch && m.offset === at.offset + 1)) return this.deliver(m);
    const r = this.startRecovery(g);
    r.held.push(m);
    // A recovery left from an earlier connection asks now: this push shows
    // that the backend bound this one.
    this.askRecover(g);
  }

  deliver(m) {
    this.positions.set(m.groupName, { offset: m.offset, epoch: m.epoch });
    this.emit('push', m);
  }

  // The recovery of `g` (a new one is asked for at once when connected).
  startRecovery(g) {
    let r = this.recovering.get(g);
    if (r) return r;
    r = { held: [], asked: false, tries: 0, timer: null, waiters: [] };
    this.recovering.set(g, r);
    this.askRecover(g);
    return r;
  }

  // Sends `recover` for `g` from its position, once per connection; no
  // answer within ackTimeout counts as a refusal.
  askRecover(g) {
    const r = this.recovering.get(g);
    const at = this.positions.get(g);
    if (!r || r.asked || !this.connected()) return;
    if (!at) return this.endRecovery(g, { error: 'shardcast: no position' });
    r.asked = true;
    const reqId = 'recover-' + this.nextReq++;
    this.recoverReqs.set(reqId, g);
    this.ws.send(JSON.stringify({ type: 'recover', groupName: g, offset: at.offset, epoch: at.epoch, reqId }));
    clearTimeout(r.timer);
    r.timer = setTimeout(() => this.refusedRecover(g, 'shardcast: no answer to recover'), this.opts.ackTimeout);
  }

  // `{code, msg, data: {groupName, recovered, offset?, epoch?}}`: the end
  // of a replay (code 0), or no replay (its owner did not answer, no history).
  onRecovered(m) {
    const d = m.data;
    if (!this.recovering.has(d.groupName)) return;
    if (m.code !== 0) return this.refusedRecover(d.groupName, m.msg);
    this.endRecovery(d.groupName, { recovered: d.recovered, offset: d.offset, epoch: d.epoch });
  }

  // A refused, failed or unanswered recover: tried again twice (after 1 s,
  // 2 s: the rate of client messages, an owner moving), then given up.
  refusedRecover(g, msg) {
    const r = this.recovering.get(g);
    if (!r) return;
    r.tries += 1;
    if (r.tries >= 3) return this.endRecovery(g, { error: String(msg || 'refused') });
    clearTimeout(r.timer);
    r.timer = setTimeout(() => {
      r.asked = false;
      this.askRecover(g);
    }, 1000 * r.tries);
  }

  // Ends the recovery of `g`: the held pushes not delivered yet, in offset
  // order (those of the position's epoch first), then the position the
  // node gave and the `recovered` event.
  endRecovery(g, { recovered = false, offset, epoch, error }) {
    const r = this.recovering.get(g);
    if (!r) return;
    this.recovering.delete(g);
    clearTimeout(r.timer);
    for (const [id, x] of this.recoverReqs) if (x === g) this.recoverReqs.delete(id);
    const was = (this.positions.get(g) || {}).epoch;
    const rank = (m) => (m.epoch === was ? 0 : 1);
    r.held.sort((a, b) => rank(a) - rank(b) || a.offset - b.offset);
    for (const m of r.held) {
      const at = this.positions.get(g);
      if (epoch !== undefined && m.epoch !== was && m.epoch !== epoch) continue;
      if (at && m.epoch === at.epoch && m.offset <= at.offset) continue;
      this.deliver(m);
    }
    const at = this.positions.get(g);
    if (Number.isInteger(offset) && typeof epoch === 'string' && (!at || at.epoch !== epoch || at.offset < offset)) {
      this.positions.set(g, { offset, epoch });
    }
    const now = this.positions.get(g) || {};
    const detail = { groupName: g, recovered: recovered === true && !error, offset: now.offset, epoch: now.epoch };
    if (error) detail.error = error;
    this.emit('recovered', detail);
    for (const w of r.waiters) w(detail);
  }

  onAck(a) {
    const g = this.recoverReqs.get(String(a.reqId));
    if (g !== undefined) {
      this.recoverReqs.delete(String(a.reqId));
      return this.refusedRecover(g, a.msg);
    }
    const p = this.pending.get(String(a.reqId));
    if (!p) return;
    this.pending.delete(String(a.reqId));
    clearTimeout(p.timer);
    if (a.code === 0) p.resolve(a);
    else p.reject(new ShardcastError(a.code, a.msg, a));
  }

  onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.clientId = null;
    this.stopPing();
    // Acks are not replayed by a resume: what is pending now never comes.
    this.failAll(new Error('shardcast: connection closed before the ack'));
    // A recover's answer does not survive the drop: asked again after it.
    for (const r of this.recovering.values()) {
      r.asked = false;
      clearTimeout(r.timer);
    }
    this.recoverReqs.clear();
    const again = !this.closed;
    this.emit('close', { code, reason, reconnect: again, resume: again && this.opts.resume && !!this.resumeToken });
    if (!again) return;
    // Full jitter: a random wait up to min(max, min·2^attempt).
    const cap = Math.min(this.opts.maxBackoff, this.opts.minBackoff * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    this.retry = setTimeout(() => this.open(), Math.random() * cap);
  }

  startPing() {
    this.stopPing();
    if (!(this.opts.pingInterval > 0)) return;
    this.pinger = setInterval(() => {
      if (this.ws && this.ws.readyState === 1) this.ws.send('ping');
    }, this.opts.pingInterval);
  }

  stopPing() {
    clearInterval(this.pinger);
    this.pinger = null;
  }

  failAll(err) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }

  failWaiters(err) {
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  emit(type, detail) {
    // Node.js 18 has Event but no global CustomEvent.
    const event = typeof CustomEvent === 'function'
      ? new CustomEvent(type, { detail })
      : Object.assign(new Event(type), { detail });
    this.dispatchEvent(event);
  }
}

// Whether `d` is the data of a `recovered` frame (docs/api.md §9).
function isRecovered(d) {
  return !!d && typeof d === 'object' && typeof d.groupName === 'string' && typeof d.recovered === 'boolean';
}

// The decoded `data` of a 1001/1002 notice (`{clientId, userId, extend, …}`),
// or null: a push of the API may use those codes too, but it has a sender or
// data that is no notice.
function notice(m) {
  if (m.code !== NOTICE_ONLINE && m.code !== NOTICE_OFFLINE) return null;
  if (m.sendUserId || typeof m.data !== 'string') return null;
  let who;
  try { who = JSON.parse(m.data); } catch { return null; }
  return who && typeof who === 'object' && typeof who.clientId === 'string' ? who : null;
}
