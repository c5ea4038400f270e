// Drives the built-in console (src/console/index.html) in headless Chromium:
// two users chat through a group, the node panel counts them, the page fits
// a phone-sized window. Run by tests/it/console_page/browser.rs; by hand:
//
//   node tests/console/e2e.mjs http://127.0.0.1:7800 /tmp/console.png [http|ws]
//
// against a node with `[console] enabled = true`, the system "sys-a"
// registered and a history rule for "room1" (`[history] groups = [{ prefix =
// "room", … }]`, docs/api.md §9): a page that joins late shows the room's
// earlier messages. The third argument is the send path the page must take:
// `http` (default; the node has `ws.client_send = "off"`, so the page sends
// through the HTTP API) or `ws` (the node has `ws.client_send = "group"`, so
// a member of the group sends a client message over its WebSocket, docs/api.md
// §2.1, and gets an ack). Writes the screenshot to the given path (1280x800)
// and a phone-sized one next to it (`-narrow.png`). Exit code 0 on success.

import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const OVERALL_MS = 60_000;
const STEP_MS = 10_000;

const [base, shot, mode = 'http'] = process.argv.slice(2);
if (!base || !shot || !['http', 'ws'].includes(mode)) {
  console.error('usage: node e2e.mjs <base-url> <screenshot.png> [http|ws]');
  process.exit(2);
}
const viaWs = mode === 'ws';
const narrowShot = shot.replace(/(\.png)?$/i, '-narrow.png');

const started = Date.now();
const log = (msg) => console.log(`[e2e ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

let browser;
const problems = [];

async function closeBrowser() {
  if (browser) {
    const b = browser;
    browser = undefined;
    await b.close().catch(() => {});
  }
}

const overall = setTimeout(async () => {
  console.error(`FAIL: the browser test did not finish within ${OVERALL_MS / 1000} s`);
  await closeBrowser();
  process.exit(1);
}, OVERALL_MS);

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// Polls `fn` (in this process) until it returns something truthy; `what`
// describes it (a function: evaluated when the wait fails).
async function until(fn, what) {
  const deadline = Date.now() + STEP_MS;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// What each page put on the wire: the frames of its WebSocket(s) to /ws, the
// paths of its push API calls and the scripts it loaded.
const wires = new Map();

function watchWire(page) {
  const w = { sent: [], received: [], api: [], scripts: [] };
  const text = (p) => (typeof p === 'string' ? p : Buffer.from(p).toString('utf8'));
  page.on('websocket', (ws) => {
    if (!new URL(ws.url()).pathname.endsWith('/ws')) return;
    ws.on('framesent', (f) => w.sent.push(text(f.payload)));
    ws.on('framereceived', (f) => w.received.push(text(f.payload)));
  });
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname;
    if (path.startsWith('/api/')) w.api.push(path);
    if (r.resourceType() === 'script') w.scripts.push(path);
  });
  wires.set(page, w);
}

// The frames in `frames` that are JSON objects matching `pred`.
function jsonFrames(frames, pred) {
  const out = [];
  for (const f of frames) {
    let m;
    try { m = JSON.parse(f); } catch { continue; }
    if (m && typeof m === 'object' && !Array.isArray(m) && pred(m)) out.push(m);
  }
  return out;
}

// Opens the console in a fresh context (its own storage, its own socket).
async function openConsole(name, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  watchWire(page);
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${name}: console error: ${m.text()}`);
  });
  const resp = await page.goto(base + '/', { waitUntil: 'load' });
  check(resp && resp.status() === 200, `${name}: GET / answered ${resp && resp.status()}`);
  // The page's connection is the JavaScript client the node serves.
  const scripts = wires.get(page).scripts;
  check(scripts.includes('/shardcast.js'), `${name}: the page did not load /shardcast.js (scripts: ${scripts.join(', ')})`);
  // The node panel fills in from the first /console/stats poll.
  await page.waitForFunction(() => /^\d/.test(document.getElementById('stat-connections').textContent));
  // The charts draw the polled figures: the connection count from the first
  // poll, the push rate from the second.
  await page.waitForFunction(() => {
    const d = (id) => (document.querySelector(`#${id} path`) || { getAttribute: () => '' }).getAttribute('d') || '';
    return d('chart-connections').startsWith('M') && d('chart-rate').startsWith('M');
  });
  return page;
}

async function connectAndJoin(page, name, userId, group) {
  await page.fill('#system-id', 'sys-a');
  await page.fill('#user-id', userId);
  await page.click('#connect');
  await page.waitForSelector('#conn-state[data-state="connected"]');
  const clientId = (await page.textContent('#client-id')).trim();
  check(/^[A-Za-z0-9_-]{22}$/.test(clientId), `${name}: shows clientId "${clientId}", not a 22-char id`);
  await page.fill('#group', group);
  await page.click('#join');
  await page.waitForSelector(`#groups .chip[data-group="${group}"]`);
  log(`${name} (${userId}) connected as ${clientId} and joined ${group}`);
  return clientId;
}

// Waits until the page's log holds a notice entry whose text contains `text`.
async function waitNotice(page, name, text) {
  try {
    await page.waitForFunction(
      (t) => [...document.querySelectorAll('#log .entry[data-kind="notice"]')].some((e) => e.textContent.includes(t)),
      text,
    );
  } catch {
    throw new Error(`${name}: no notice "${text}" in the log:\n${await logText(page)}`);
  }
}

// Waits for the push entry carrying `data` and returns what it shows.
async function waitPush(page, name, data) {
  try {
    const h = await page.waitForFunction((d) => {
      const e = [...document.querySelectorAll('#log .entry[data-kind="push"]')]
        .find((x) => x.querySelector('.data') && x.querySelector('.data').textContent === d);
      if (!e) return null;
      const extra = e.querySelector('.extra') ? e.querySelector('.extra').textContent : '';
      const id = /#([0-9a-f]+)/.exec(extra);
      return {
        from: e.querySelector('.from') ? e.querySelector('.from').textContent : null,
        msg: e.querySelector('.msg') ? e.querySelector('.msg').textContent : null,
        messageId: id ? id[1] : null,
        mine: e.classList.contains('mine'),
        count: [...document.querySelectorAll('#log .entry[data-kind="push"] .data')].filter((x) => x.textContent === d).length,
      };
    }, data);
    return await h.jsonValue();
  } catch {
    throw new Error(`${name}: "${data}" never showed up as a push in the log:\n${await logText(page)}`);
  }
}

// Counts the push entries carrying `data`.
async function pushCount(page, data) {
  return page.$$eval('#log .entry[data-kind="push"] .data', (es, d) => es.filter((x) => x.textContent === d).length, data);
}

// The send path the page shows: its text, its WebSocket styling, and why.
async function sendPath(page) {
  return page.$eval('#send-path', (p) => ({ text: p.textContent, ws: p.classList.contains('ws'), why: p.title }));
}

// Waits until the page shows the send path `mode` expects for a group send.
async function expectSendPath(page, name) {
  const want = viaWs ? 'WebSocket client message' : 'HTTP API';
  try {
    await page.waitForFunction((w) => document.getElementById('send-path').textContent === w, want);
  } catch {
    const p = await sendPath(page);
    throw new Error(`${name}: the send path shows "${p.text}" (${p.why}), expected "${want}"`);
  }
  const p = await sendPath(page);
  check(p.ws === viaWs, `${name}: the send path is ${p.ws ? '' : 'not '}styled as a WebSocket path`);
}

// Waits until the send status line matches `re`.
async function waitStatus(page, name, re) {
  try {
    await page.waitForFunction((src) => new RegExp(src).test(document.getElementById('send-status').textContent), re.source);
  } catch {
    throw new Error(`${name}: send status "${await page.textContent('#send-status')}" does not match ${re}`);
  }
  return page.textContent('#send-status');
}

// The client message `name` sent over its WebSocket with `data`, and the ack
// it got back, both as on the wire; then the ack entry of its log.
async function clientMessageAndAck(page, name, group, data) {
  const w = wires.get(page);
  const [sent] = await until(
    () => { const f = jsonFrames(w.sent, (m) => m.type === 'send_to_group' && m.data === data); return f.length && f; },
    () => `${name}'s client message "${data}" on its WebSocket (sent: ${JSON.stringify(w.sent)})`,
  );
  check(sent.groupName === group, `${name}: the client message names group "${sent.groupName}"`);
  check(sent.msg === 'chat' && sent.code === 0, `${name}: the client message has msg "${sent.msg}", code ${sent.code}`);
  check(typeof sent.reqId === 'string' && sent.reqId !== '', `${name}: the client message has reqId ${JSON.stringify(sent.reqId)}`);
  check(!('sendUserId' in sent), `${name}: the client message claims a sendUserId`);
  const acks = await until(
    () => { const f = jsonFrames(w.received, (m) => m.type === 'ack' && m.reqId === sent.reqId); return f.length && f; },
    () => `the ack of ${name}'s reqId ${sent.reqId} (received: ${JSON.stringify(w.received)})`,
  );
  check(acks.length === 1, `${name}: ${acks.length} acks for reqId ${sent.reqId}`);
  const [ack] = acks;
  check(ack.code === 0 && ack.msg === 'success', `${name}: the ack is ${JSON.stringify(ack)}, expected code 0 "success"`);
  check(/^[0-9a-f]{16}$/.test(ack.messageId), `${name}: the ack's messageId "${ack.messageId}" is not 16 hex`);

  let entry;
  try {
    const h = await page.waitForFunction((r) => {
      const e = [...document.querySelectorAll('#log .entry[data-kind="ack"]')]
        .find((x) => x.querySelector('.body').textContent.startsWith('reqId ' + r + ' '));
      return e && { kind: e.querySelector('.kind').textContent, text: e.querySelector('.body').textContent, error: e.classList.contains('error') };
    }, sent.reqId);
    entry = await h.jsonValue();
  } catch {
    throw new Error(`${name}: no ack entry for reqId ${sent.reqId} in the log:\n${await logText(page)}`);
  }
  check(entry.kind === 'ack', `${name}: the ack entry is labelled "${entry.kind}"`);
  check(!entry.error && /: success /.test(entry.text), `${name}: the ack entry shows a refusal: "${entry.text}"`);
  const shown = /messageId ([0-9a-f]{16})\b/.exec(entry.text);
  check(shown && shown[1] === ack.messageId,
    `${name}: the ack entry "${entry.text}" does not show messageId ${ack.messageId}`);
  return { sent, ack };
}

async function logText(page) {
  return page.$$eval('#log .entry', (es) => es.map((e) => '  | ' + e.innerText.replace(/\s+/g, ' ')).join('\n'));
}

async function main() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  log(`chromium ${browser.version()} launched; expecting the ${mode} send path`);

  const alice = await openConsole('alice', { width: 1280, height: 800 });
  const bob = await openConsole('bob', { width: 1280, height: 800 });

  const aliceId = await connectAndJoin(alice, 'alice', 'alice', 'room1');
  await waitNotice(alice, 'alice', 'alice (you) joined group room1');
  const bobId = await connectAndJoin(bob, 'bob', 'bob', 'room1');
  check(aliceId !== bobId, 'both pages show the same clientId');
  await waitNotice(bob, 'bob', 'bob (you) joined group room1');
  await waitNotice(alice, 'alice', 'bob joined group room1');

  // alice writes to the group; Enter in the message box sends. With the
  // node's default `client_send = "off"` the page sends through the HTTP
  // API; with "group" it sends a client message over alice's WebSocket.
  await alice.selectOption('#send-kind', 'group');
  check((await alice.inputValue('#target')) === 'room1', 'joining did not prefill the send target with the group');
  await expectSendPath(alice, 'alice');
  await alice.fill('#message', 'hello from alice');
  await alice.press('#message', 'Enter');
  const seen = {};
  for (const [page, name, mine] of [[alice, 'alice', true], [bob, 'bob', false]]) {
    const e = await waitPush(page, name, 'hello from alice');
    check(e.from === 'alice', `${name}: the message shows sender "${e.from}", expected "alice"`);
    check(e.msg === 'chat', `${name}: the message shows msg "${e.msg}", expected "chat"`);
    check(e.mine === mine, `${name}: the message is ${e.mine ? '' : 'not '}marked as one's own`);
    check(e.count === 1, `${name}: the message shows up ${e.count} times`);
    check(/^[0-9a-f]{16}$/.test(e.messageId || ''), `${name}: the message shows messageId "${e.messageId}"`);
    seen[name] = e.messageId;
  }
  check(seen.alice === seen.bob, `alice and bob show different messageIds: ${seen.alice} / ${seen.bob}`);
  const aliceWire = wires.get(alice);
  const aliceSends = aliceWire.api.filter((p) => p.startsWith('/api/send_to_'));
  let sentId;
  if (viaWs) {
    const { sent, ack } = await clientMessageAndAck(alice, 'alice', 'room1', 'hello from alice');
    check(aliceSends.length === 0, `alice: the page also called ${aliceSends.join(', ')}`);
    const status = await waitStatus(alice, 'alice', /WebSocket as a client message; ack messageId [0-9a-f]{16}/);
    check(status.includes(ack.messageId), `alice: send status "${status}" does not name the ack's messageId ${ack.messageId}`);
    sentId = ack.messageId;
    log(`alice sent a client message (reqId ${sent.reqId}), acked with messageId ${ack.messageId}`);
  } else {
    // The node refuses client messages by default, so the page used the API.
    const status = await waitStatus(alice, 'alice', /HTTP API.*messageId [0-9a-f]{16}/);
    check(aliceSends.length === 1 && aliceSends[0] === '/api/send_to_group',
      `alice: the page called [${aliceSends.join(', ')}], expected one /api/send_to_group`);
    const frames = jsonFrames(aliceWire.sent, (m) => typeof m.type === 'string');
    check(frames.length === 0, `alice: the page sent client messages ${JSON.stringify(frames)} to a node that refuses them`);
    sentId = /messageId ([0-9a-f]{16})/.exec(status)[1];
  }
  check(seen.bob === sentId, `bob's push carries messageId ${seen.bob}, the send answered ${sentId}`);
  check((await alice.inputValue('#message')) === '', 'alice: the message box was not cleared after sending');
  log(`both pages show "hello from alice" from alice, messageId ${sentId}`);

  // bob answers with a JSON-free string containing markup: shown as text.
  await expectSendPath(bob, 'bob');
  await bob.fill('#message', '<b>hi</b> & bye');
  await bob.click('#send');
  const b = await waitPush(alice, 'alice', '<b>hi</b> & bye');
  check(b.from === 'bob', `alice: bob's reply shows sender "${b.from}"`);
  check((await alice.$$('#log b')).length === 0, 'alice: message markup was rendered as HTML');
  if (viaWs) {
    const { ack } = await clientMessageAndAck(bob, 'bob', 'room1', '<b>hi</b> & bye');
    check(b.messageId === ack.messageId, `alice: bob's reply shows messageId ${b.messageId}, bob's ack ${ack.messageId}`);
  }

  // The node panel counts both connections (updated within a poll or two).
  try {
    await alice.waitForFunction(() => Number(document.getElementById('stat-connections').textContent.replace(/,/g, '')) >= 2);
  } catch {
    throw new Error(`stats panel shows ${await alice.textContent('#stat-connections')} connections, expected >= 2`);
  }
  const cores = await alice.$$eval('#cores tr', (rs) => rs.length);
  check(cores >= 1, 'the per-core table is empty');
  const self = await alice.$$eval('#members tr', (rs) => rs.filter((r) => r.textContent.includes('this node')).length);
  check(self === 1, `the cluster list marks ${self} members as "this node"`);
  const clientSend = await alice.textContent('#stat-client-send');
  const policy = viaWs ? /^group · (\d+\/s|unlimited)$/ : /^off$/;
  check(policy.test(clientSend), `the stats panel shows client send "${clientSend}", expected ${policy}`);
  log(`stats panel shows >= 2 connections, client send "${clientSend}"`);

  // Ping gets a pong.
  await alice.click('#ping');
  await alice.waitForFunction(() => [...document.querySelectorAll('#log .entry[data-kind="system"]')].some((e) => e.textContent.includes('pong')));

  await alice.screenshot({ path: shot });
  log(`screenshot ${shot}`);

  // A phone-sized window, joining late: it shows the room's earlier
  // messages (group history), once each, in order, marked as earlier.
  const phone = await openConsole('phone', { width: 390, height: 844 });
  await connectAndJoin(phone, 'phone', 'carol', 'room1');
  await waitNotice(alice, 'alice', 'carol joined group room1');
  const joinedWith = jsonFrames(wires.get(phone).received, (m) => m.data === 'hello from alice');
  check(joinedWith.length === 1 && Number.isInteger(joinedWith[0].offset) && joinedWith[0].groupName === 'room1',
    `phone: the replayed push on the wire: ${JSON.stringify(joinedWith)}`);
  for (const data of ['hello from alice', '<b>hi</b> & bye']) {
    const e = await waitPush(phone, 'phone', data);
    check(e.count === 1, `phone: the earlier message "${data}" shows up ${e.count} times`);
  }
  const earlier = await phone.$$eval('#log .entry[data-kind="push"]', (es) => es.map((e) => ({
    data: e.querySelector('.data').textContent,
    earlier: e.classList.contains('earlier'),
    kind: e.querySelector('.kind').textContent,
  })));
  check(JSON.stringify(earlier.map((e) => e.data)) === JSON.stringify(['hello from alice', '<b>hi</b> & bye']),
    `phone: the earlier messages show as ${JSON.stringify(earlier)}`);
  check(earlier.every((e) => e.earlier && e.kind === 'earlier'), `phone: not marked as earlier: ${JSON.stringify(earlier)}`);
  const replayed = await phone.$$eval('#log .entry[data-kind="push"] .extra', (es) => es.map((e) => e.textContent));
  check(replayed[0].includes('#' + sentId) && replayed[0].includes('room1 @'),
    `phone: the first earlier message shows "${replayed[0]}", not #${sentId} and its place in room1`);
  log('phone (carol) joined late and shows the 2 earlier messages of room1');
  await phone.fill('#message', 'a long line from a phone: ' + 'x'.repeat(120));
  await expectSendPath(phone, 'phone');
  await phone.press('#message', 'Enter');
  const own = await waitPush(phone, 'phone', 'a long line from a phone: ' + 'x'.repeat(120));
  check(own.mine, 'phone: its own message is not marked as its own');
  const ownEarlier = await phone.$$eval('#log .entry.earlier', (es) => es.length);
  check(ownEarlier === 2, `phone: ${ownEarlier} entries marked earlier after a live message`);
  if (viaWs) await clientMessageAndAck(phone, 'phone', 'room1', 'a long line from a phone: ' + 'x'.repeat(120));
  const overflow = await phone.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  check(overflow.scroll <= overflow.client,
    `at 390 px the page scrolls sideways: scrollWidth ${overflow.scroll} > clientWidth ${overflow.client}`);
  const visible = await phone.evaluate(() => ['connect', 'join', 'send', 'message', 'log'].filter((id) => {
    const r = document.getElementById(id).getBoundingClientRect();
    return r.width === 0 || r.left < 0 || r.right > document.documentElement.clientWidth;
  }));
  check(visible.length === 0, `at 390 px these controls are cut off or hidden: ${visible.join(', ')}`);
  await phone.screenshot({ path: narrowShot, fullPage: true });
  log(`narrow page fits (${overflow.scroll} <= ${overflow.client}); screenshot ${narrowShot}`);

  // Disconnecting tells the others.
  await phone.click('#connect');
  await phone.waitForSelector('#conn-state[data-state="disconnected"]');
  await waitNotice(alice, 'alice', 'carol left group room1');

  // Nothing arrived twice in the meantime.
  for (const [page, name] of [[alice, 'alice'], [bob, 'bob']]) {
    const n = await pushCount(page, 'hello from alice');
    check(n === 1, `${name}: "hello from alice" shows up ${n} times by the end`);
  }
  const refused = [alice, bob].flatMap((p) => jsonFrames(wires.get(p).received, (m) => m.type === 'ack' && m.code !== 0));
  check(refused.length === 0, `refused client messages: ${JSON.stringify(refused)}`);

  check(problems.length === 0, 'errors in the page:\n' + problems.join('\n'));
}

let code = 0;
try {
  await main();
  log('PASS');
} catch (e) {
  console.error(`FAIL: ${e && e.message ? e.message : e}`);
  if (problems.length) console.error(problems.join('\n'));
  code = 1;
} finally {
  await closeBrowser();
  clearTimeout(overall);
}
process.exit(code);
