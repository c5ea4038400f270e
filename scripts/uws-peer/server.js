#!/usr/bin/env node
// The uWebSockets.js peer of scripts/bench-vs-nchan.sh: a pub/sub push server with the URL shapes
// of the script's nchan set-up, so that shardcast-bench drives both with the same options:
//
//   GET  /sub/<chan>   WebSocket upgrade; the socket subscribes to <chan> ([A-Za-z0-9_]+, as nchan's
//                      location takes it) and gets every message published there, and nothing else
//   POST /pub/<chan>   the body, as is, in one text frame to every subscriber of <chan> (uWS's own
//                      pub/sub: app.publish, no JavaScript per subscriber); answers 200 with the
//                      number of subscribers
//   GET  /healthz      200 "ok" (readiness)
//
// One process, one thread: uWebSockets runs its event loop on Node's main thread (Node's own
// helper threads, V8's GC among them, are in the same process and count in its CPU and VmRSS).
// No permessage-deflate, no pings, no idle timeout (nchan in the script sends none either), and a
// per-socket backpressure limit of 16 MiB so that a benchmark never drops a message (uWS drops a
// subscriber's messages above the limit; the count is printed on exit).
//
// How uWebSockets delivers, for reading its figures: a publish of less than 16 KiB is queued and
// written at the end of the event-loop iteration, every message queued for a socket in one write
// (its cork buffer); the publish's answer is written before that, but the next request is read
// only after it. The frame carries the body as is (2-byte header under 126 B).
//
// Usage: DIR/node scripts/uws-peer/server.js [--port P] [--host H]   (P default 8090, H 127.0.0.1)
//        DIR/node scripts/uws-peer/server.js --version
// DIR is where scripts/uws-peer/install.sh put uWebSockets.js (it prints it): $UWS_PEER_DIR, else
// ${XDG_CACHE_HOME:-$HOME/.cache}/shardcast/uws-peer. SIGTERM or SIGINT stops it.
'use strict';
const path = require('path');
const os = require('os');

const PKG = '@btc-vision/uwebsockets.js';
const DIR = process.env.UWS_PEER_DIR ||
  path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'shardcast', 'uws-peer');
const CHANNEL = /^\w+$/;

const opts = { port: 8090, host: '127.0.0.1' };
for (let i = 2; i < process.argv.length; i++) {
  const arg = process.argv[i];
  if (arg === '--port') opts.port = Number(process.argv[++i]);
  else if (arg === '--host') opts.host = process.argv[++i];
  else if (arg === '--version') opts.version = true;
  else {
    console.error(`uws-peer: unknown argument ${arg} (see the header of ${__filename})`);
    process.exit(2);
  }
}
if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) {
  console.error('uws-peer: --port wants 1-65535');
  process.exit(2);
}

let uWS;
try {
  uWS = require(path.join(DIR, 'node_modules', PKG));
} catch (e) {
  console.error(`uws-peer: ${PKG} does not load from ${DIR} (run scripts/uws-peer/install.sh)\n${e.message}`);
  process.exit(1);
}
const version = require(path.join(DIR, 'node_modules', PKG, 'package.json')).version;
if (opts.version) {
  console.log(`uWebSockets.js ${version} (${PKG}) on Node.js ${process.version}`);
  process.exit(0);
}

const stats = { published: 0, dropped: 0 };
const app = uWS.App();

app.ws('/sub/:chan', {
  compression: uWS.DISABLED,
  idleTimeout: 0,
  sendPingsAutomatically: false,
  maxPayloadLength: 4096,
  maxBackpressure: 16 * 1024 * 1024,
  closeOnBackpressureLimit: false,
  upgrade(res, req, context) {
    const chan = req.getParameter(0);
    if (!CHANNEL.test(chan)) {
      res.writeStatus('404 Not Found').end('no such channel\n');
      return;
    }
    res.upgrade({ chan }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'), context);
  },
  open(ws) {
    ws.subscribe(ws.getUserData().chan);
  },
  dropped() {
    stats.dropped++;
  },
});

// The body arrives in one or more chunks, each valid only during its call: a body in one chunk
// is published straight from it (app.publish copies), a longer one is gathered first.
app.post('/pub/:chan', (res, req) => {
  const chan = req.getParameter(0);
  if (!CHANNEL.test(chan)) {
    res.writeStatus('404 Not Found').end('no such channel\n');
    return;
  }
  let gone = false;
  let parts = [];
  res.onAborted(() => { gone = true; });
  res.onData((chunk, last) => {
    if (!last) {
      parts.push(Buffer.from(chunk.slice(0)));
      return;
    }
    const body = parts.length === 0 ? chunk : Buffer.concat([...parts, Buffer.from(chunk)]);
    parts = [];
    app.publish(chan, body, false, false);
    stats.published++;
    if (!gone) res.cork(() => res.end(`${app.numSubscribers(chan)} subscribers\n`));
  });
});

app.get('/healthz', (res) => { res.end('ok\n'); });
app.any('/*', (res) => { res.writeStatus('404 Not Found').end('not found\n'); });

app.listen(opts.host, opts.port, (socket) => {
  if (!socket) {
    console.error(`uws-peer: cannot listen on ${opts.host}:${opts.port}`);
    process.exit(1);
  }
  console.error(`uws-peer: uWebSockets.js ${version} on Node.js ${process.version}, ` +
    `${opts.host}:${opts.port}, pid ${process.pid}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    console.error(`uws-peer: ${signal}: ${stats.published} published, ${stats.dropped} dropped`);
    process.exit(0);
  });
}
