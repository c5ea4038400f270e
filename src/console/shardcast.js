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

  /** Closes for good: no reconnect, no resume; pending sends are rejected. */
  close() {
    this.closed = true;
    this.resumeToken = null;
    clearTimeout(this.retry);
    this.stopPing();
    if (this.ws) this.ws.close(1000);
    this.failAll(new Error('shardcast: closed'));
    this.failWaiters(new Error('shardcast: closed'));
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
    if (m.messageId) this.last = m.messageId;
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
  }

  onAck(a) {
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
