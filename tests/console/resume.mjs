// Session resume (docs/js-client.md) in headless Chromium: the JavaScript
// client (/shardcast.js) and the console page, both connected to a node with
// `ws.resume_window` on through a TCP relay that the test harness cuts — the
// network failing, which no page can fake (a close frame is a goodbye).
// Run by tests/it/console_page/client.rs:
//
//   node resume.mjs <node base url> <base url through the relay>
//
// It prints "CUT", "HEAL" and "RESTART" when the relay must be cut, healed,
// or the node restarted (on a new port, which the relay then forwards to),
// and waits for the answers "CUT", "HEALED", "RESTARTED" on stdin. Pushes are
// sent through the node's API directly, none after the restart. Exit code 0
// on success.
//
// Checked: after the cut, the client (which tried again meanwhile) comes back
// as the same clientId with `resumed` and `recovered` true, and gets the push
// sent to it during the gap once, and none of the earlier ones again; the
// console logs "resumed … recovered: yes", keeps its clientId and its group,
// and shows the group's push sent during the gap. After a second cut during
// which more is sent than the node keeps (ws.resume_buffer_bytes), both
// resume with `recovered` false ("recovered: no") and get what was kept.
// After a node restart (a goodbye, and a token the new process cannot honour)
// both come back with a new clientId, which they report.

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const [base, relayed] = process.argv.slice(2);
if (!base || !relayed) {
  console.error('usage: node resume.mjs <node-base-url> <relayed-base-url>');
  process.exit(2);
}
const wsUrl = relayed.replace(/^http/, 'ws') + '/ws';
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));
const overall = setTimeout(() => { console.error('FAIL: no end within 90 s'); process.exit(1); }, 90_000);

// Prints `cue` for the harness and waits for its `answer`.
async function ask(cue, answer) {
  console.log(cue);
  const got = await nextLine();
  if (got !== answer) throw new Error(`asked ${cue}, got the answer ${got}`);
}

// Calls the node's push API (not through the relay) as system sys-a.
async function api(route, body) {
  const r = await fetch(`${base}/api/${route}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', SystemId: 'sys-a' }, body: JSON.stringify(body),
  });
  const j = await r.json();
  if (j.code !== 0) throw new Error(`/api/${route}: ${JSON.stringify(j)}`);
  return j.data;
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// Waits (in the page) until the client test page's events satisfy `pred`
// (a function source taking the event list), returns what it returns.
async function waitSeen(page, pred, what, arg) {
  try {
    const h = await page.waitForFunction(({ src, arg }) => (0, eval)(src)(window.seen, arg), { src: pred.toString(), arg });
    return await h.jsonValue();
  } catch (e) {
    const seen = await page.evaluate(() => JSON.stringify(window.seen));
    throw new Error(`client: ${what}: ${e.message.split('\n')[0]}\nevents: ${seen}`);
  }
}

async function consoleLog(page) {
  return page.$$eval('#log .entry', (es) => es.map((e) => '  | ' + e.innerText.replace(/\s+/g, ' ').slice(0, 160)).join('\n'));
}

async function waitLog(page, kind, text, what) {
  try {
    await page.waitForFunction(({ kind, text }) => [...document.querySelectorAll(`#log .entry[data-kind="${kind}"]`)]
      .some((e) => e.textContent.includes(text)), { kind, text });
  } catch {
    throw new Error(`console: ${what}: no ${kind} entry "${text}" in the log:\n${await consoleLog(page)}`);
  }
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
const errors = [];
try {

  // The client, on a bare page of another origin.
  const page = await browser.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (e) => errors.push('client page: ' + e.message));
  await page.setContent('<!doctype html><title>resume test</title>');
  const id = await page.evaluate(async ({ base, wsUrl }) => {
    const { Shardcast } = await import(base + '/shardcast.js');
    const sc = new Shardcast(wsUrl, { systemId: 'sys-a', minBackoff: 100, maxBackoff: 400 });
    window.sc = sc;
    window.seen = [];
    for (const t of ['open', 'welcome', 'resumed', 'push', 'close']) {
      sc.addEventListener(t, (e) => window.seen.push({ t, d: e.detail }));
    }
    return sc.ready();
  }, { base, wsUrl });
  const first = await waitSeen(page, (s) => s.find((e) => e.t === 'welcome'), 'the first welcome');
  check(first.d.resumed === false && first.d.previousClientId === null, `first welcome ${JSON.stringify(first.d)}`);
  const before = await api('send_to_client', { clientId: id, msg: 'before', data: 'before the cut' });
  await waitSeen(page, (s, m) => s.some((e) => e.t === 'push' && e.d.messageId === m), 'the push before the cut', before.messageId);

  // The console, served through the relay: its WebSocket goes through it too.
  const con = await browser.newPage();
  con.setDefaultTimeout(15_000);
  // What the node sent on each of the console's sockets, for a failure's report.
  const wire = [];
  con.on('websocket', (ws) => {
    const n = wire.length;
    wire.push([]);
    ws.on('framereceived', (f) => wire[n].push(String(f.payload).slice(0, 120)));
  });
  con.on('pageerror', (e) => errors.push('console: ' + e.message));
  await con.goto(relayed + '/', { waitUntil: 'load' });
  await con.fill('#system-id', 'sys-a');
  await con.fill('#user-id', 'carol');
  await con.click('#connect');
  await con.waitForSelector('#conn-state[data-state="connected"]');
  const cid = (await con.textContent('#client-id')).trim();
  await con.fill('#group', 'room1');
  await con.click('#join');
  await con.waitForSelector('#groups .chip[data-group="room1"]');
  console.log(`client ${id} and console ${cid} (in room1) connected through the relay`);

  // The network fails: both see the drop; the client tries again (and fails)
  // at least once before pushes are sent to the detached sessions.
  await ask('CUT', 'CUT');
  await waitSeen(page, (s) => s.filter((e) => e.t === 'close').length >= 2, 'a drop and a failed retry');
  const drop = await page.evaluate(() => window.seen.find((e) => e.t === 'close').d);
  check(drop.reconnect === true && drop.resume === true, `the drop: ${JSON.stringify(drop)}`);
  await con.waitForSelector('#conn-state[data-state="connecting"]');
  const gap = await api('send_to_client', { clientId: id, msg: 'gap', data: 'during the gap' });
  const gapGroup = await api('send_to_group', { groupName: 'room1', sendUserId: 'server', msg: 'gap', data: 'room1 during the gap' });
  await ask('HEAL', 'HEALED');

  const resumed = await waitSeen(page, (s) => s.find((e) => e.t === 'resumed'), 'a resumed event');
  check(resumed.d.clientId === id && resumed.d.recovered === true, `resumed ${JSON.stringify(resumed.d)}`);
  const w = await page.evaluate(() => window.seen.filter((e) => e.t === 'welcome').map((e) => e.d));
  check(w.length === 2, `${w.length} welcomes`);
  check(w[1].clientId === id && w[1].resumed === true && w[1].recovered === true && w[1].previousClientId === id,
    `the welcome after the cut: ${JSON.stringify(w[1])}`);
  await waitSeen(page, (s, m) => s.some((e) => e.t === 'push' && e.d.messageId === m), 'the push sent during the gap', gap.messageId);
  const after = await api('send_to_client', { clientId: id, msg: 'after', data: 'after the resume' });
  await waitSeen(page, (s, m) => s.some((e) => e.t === 'push' && e.d.messageId === m), 'a push after the resume', after.messageId);
  const pushes = await page.evaluate(() => window.seen.filter((e) => e.t === 'push').map((e) => e.d.messageId));
  check(JSON.stringify(pushes) === JSON.stringify([before.messageId, gap.messageId, after.messageId]),
    `pushes ${JSON.stringify(pushes)}, expected before, gap, after once each`);
  check(await page.evaluate(() => window.sc.ready()) === id, 'ready() after the resume is not the same clientId');
  console.log(`client resumed as ${id}, recovered, with the push sent during the gap once`);

  await waitLog(con, 'system', 'resumed as clientId ' + cid + ' · recovered: yes', 'the resume');
  await con.waitForSelector('#conn-state[data-state="connected"]');
  check((await con.textContent('#client-id')).trim() === cid, 'console: the clientId changed on resume');
  check(await con.$('#groups .chip[data-group="room1"]'), 'console: room1 is gone after the resume');
  await waitLog(con, 'push', 'room1 during the gap', 'the group push sent during the gap');
  const n = await con.$$eval('#log .entry[data-kind="push"] .data', (es) => es.filter((e) => e.textContent === 'room1 during the gap').length);
  check(n === 1, `console: the push sent during the gap shows ${n} times`);
  const gid = await con.$$eval('#log .entry[data-kind="push"]', (es, d) => {
    const e = es.find((x) => x.querySelector('.data').textContent === d);
    return e.querySelector('.extra').textContent;
  }, 'room1 during the gap');
  check(gid.includes(gapGroup.messageId), `console: the gap push shows "${gid}", not #${gapGroup.messageId}`);
  console.log(`console resumed as ${cid}, still in room1, with the group push sent during the gap`);

  // A second cut, during which more is sent than the node keeps: for one
  // connection (ws.resume_buffer_bytes = 4096), and for its one core
  // (ws.resume_max_bytes = 8000). The client gets two big pushes
  // (send_to_client answers once the push is queued, so they are kept in
  // order): the second pushes out the first and everything up to the
  // client's last push. The console's group gets two that fit one at a
  // time; the last pushes the first out of the core's log. Resumed, but not
  // recovered: what was lost is lost, the rest arrives.
  const closes = await page.evaluate(() => window.seen.filter((e) => e.t === 'close').length);
  await ask('CUT', 'CUT');
  await waitSeen(page, (s, n) => s.filter((e) => e.t === 'close').length > n, 'the second drop', closes);
  await con.waitForSelector('#conn-state[data-state="connecting"]');
  const big = (n) => `big ${n} ` + 'x'.repeat(2500);
  const lostGroup = await api('send_to_group', { groupName: 'room1', sendUserId: 'server', msg: 'big', data: 'room1 lost ' + 'x'.repeat(3900) });
  const lost = await api('send_to_client', { clientId: id, msg: 'big', data: big(1) });
  const kept = await api('send_to_client', { clientId: id, msg: 'big', data: big(2) });
  const keptGroup = await api('send_to_group', { groupName: 'room1', sendUserId: 'server', msg: 'big', data: 'room1 ' + 'x'.repeat(3900) });
  await ask('HEAL', 'HEALED');
  const again = await waitSeen(page, (s) => s.filter((e) => e.t === 'resumed')[1], 'a second resumed event');
  check(again.d.clientId === id && again.d.recovered === false, `the second resume: ${JSON.stringify(again.d)}`);
  await waitSeen(page, (s, m) => s.some((e) => e.t === 'push' && e.d.messageId === m), 'the push kept during the gap', kept.messageId);
  const ids = await page.evaluate(() => window.seen.filter((e) => e.t === 'push').map((e) => e.d.messageId));
  check(!ids.includes(lost.messageId), 'the client got the push the node could not keep');
  console.log(`client resumed as ${id} again, not recovered: the kept push arrived, the lost one did not`);

  await waitLog(con, 'system', 'resumed as clientId ' + cid + ' · recovered: no', 'the second resume');
  await con.waitForSelector('#conn-state[data-state="connected"]');
  const shown = async (m) => con.$$eval('#log .entry[data-kind="push"] .extra', (es, m) => es.filter((e) => e.textContent.includes('#' + m)).length, m);
  try {
    await con.waitForFunction((m) => [...document.querySelectorAll('#log .entry[data-kind="push"] .extra')]
      .some((e) => e.textContent.includes('#' + m)), keptGroup.messageId);
  } catch {
    throw new Error(`console: no push #${keptGroup.messageId} after the second resume:\n${await consoleLog(con)}\nframes received, by socket:\n` +
      wire.map((fs, i) => `  socket ${i}:\n` + fs.map((f) => '    ' + f).join('\n')).join('\n'));
  }
  check(await shown(keptGroup.messageId) === 1, 'console: the group push kept during the gap shows more than once');
  check(await shown(lostGroup.messageId) === 0, 'console: got the group push the node could not keep');
  console.log(`console resumed as ${cid} again: recovered: no`);

  // A restart: the new process cannot honour the old token.
  const welcomes = await page.evaluate(() => window.seen.filter((e) => e.t === 'welcome').length);
  await ask('RESTART', 'RESTARTED');
  const fresh = await waitSeen(page, (s, n) => s.filter((e) => e.t === 'welcome')[n], 'a welcome after the restart', welcomes);
  check(fresh.d.resumed === false && fresh.d.clientId !== id && fresh.d.previousClientId === id,
    `the welcome after the restart: ${JSON.stringify(fresh.d)}`);
  const tried = await page.evaluate(() => {
    const i = window.seen.findLastIndex((e) => e.t === 'welcome');
    return window.seen.slice(0, i).findLast((e) => e.t === 'open').d;
  });
  check(tried.resuming === true, `the connection after the restart did not try to resume: ${JSON.stringify(tried)}`);
  check(await page.evaluate(() => window.sc.ready()) === fresh.d.clientId, 'ready() is not the new clientId');
  console.log(`client reconnected as a new clientId ${fresh.d.clientId} (was ${id})`);

  await waitLog(con, 'system', 'reconnected as a new clientId', 'the reconnect after the restart');
  await con.waitForSelector('#conn-state[data-state="connected"]');
  const cid2 = (await con.textContent('#client-id')).trim();
  check(cid2 !== cid && /^[A-Za-z0-9_-]{22}$/.test(cid2), `console: clientId "${cid2}" after the restart (was ${cid})`);
  check(!(await con.$('#groups .chip')), 'console: still shows a group after reconnecting as a new client');
  console.log(`console reconnected as a new clientId ${cid2} (was ${cid})`);

  if (errors.length) throw new Error('page errors: ' + errors.join('; '));
  console.log('PASS');
} catch (e) {
  console.error('FAIL: ' + (e && e.stack || e));
  if (errors.length) console.error('page errors: ' + errors.join('; '));
  process.exitCode = 1;
} finally {
  clearTimeout(overall);
  lines.close();
  await browser.close();
}
