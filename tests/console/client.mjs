// Drives the JavaScript client (/shardcast.js, docs/js-client.md) in headless
// Chromium: imported from another origin (so its CORS header is checked), a
// welcome's clientId from ready(), a client message whose ack resolves its
// promise and whose push arrives as an event, a node restart it reconnects
// after by itself, and a -1001 refusal that rejects ready() without retrying.
// Run by tests/it/console_page/client.rs, which restarts the node when this
// script prints "RESTART" and answers "RESTARTED" on stdin. Exit code 0 on
// success.

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const [base] = process.argv.slice(2);
if (!base) {
  console.error('usage: node client.mjs <base-url>');
  process.exit(2);
}
const wsUrl = base.replace(/^http/, 'ws') + '/ws';
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));
const overall = setTimeout(() => { console.error('FAIL: no end within 60 s'); process.exit(1); }, 60_000);

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(15_000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.setContent('<!doctype html><title>client test</title>');

  const first = await page.evaluate(async ({ base, wsUrl }) => {
    const { Shardcast } = await import(base + '/shardcast.js');
    const sc = new Shardcast(wsUrl, { systemId: 'sys-a', minBackoff: 100, maxBackoff: 400 });
    window.sc = sc;
    window.seen = [];
    for (const t of ['open', 'welcome', 'push', 'close']) {
      sc.addEventListener(t, (e) => window.seen.push({ t, d: e.detail }));
    }
    const id = await sc.ready();
    const ack = await sc.send({ type: 'send_to_client', clientId: id, msg: 'self', data: 'to myself' });
    const deadline = Date.now() + 5000;
    while (!window.seen.some((e) => e.t === 'push' && e.d.messageId === ack.messageId)) {
      if (Date.now() > deadline) throw new Error('the push did not arrive');
      await new Promise((r) => setTimeout(r, 20));
    }
    return { id, ack };
  }, { base, wsUrl });
  if (!/^[0-9a-f]{16}$/.test(first.ack.messageId) || first.ack.code !== 0) {
    throw new Error('bad ack: ' + JSON.stringify(first.ack));
  }
  console.log('ack round trip ok: ' + JSON.stringify(first.ack));

  console.log('RESTART');
  const answer = await nextLine();
  if (answer !== 'RESTARTED') throw new Error('unexpected answer ' + answer);

  const second = await page.evaluate(async () => {
    const sc = window.sc;
    const deadline = Date.now() + 10000;
    while (!window.seen.some((e) => e.t === 'close')) {
      if (Date.now() > deadline) throw new Error('no close event after the restart');
      await new Promise((r) => setTimeout(r, 20));
    }
    const id = await sc.ready();
    const ack = await sc.send({ type: 'send_to_client', clientId: id, data: 'again' });
    return { id, ack, welcomes: window.seen.filter((e) => e.t === 'welcome').length };
  });
  if (second.id === first.id || second.welcomes !== 2 || second.ack.code !== 0) {
    throw new Error('no reconnect: ' + JSON.stringify(second));
  }
  console.log('reconnected as ' + second.id);

  const refused = await page.evaluate(async ({ base, wsUrl }) => {
    const { Shardcast, ShardcastError } = await import(base + '/shardcast.js');
    const sc = new Shardcast(wsUrl, { systemId: 'no-such-system', minBackoff: 50, maxBackoff: 100 });
    let opens = 0;
    sc.addEventListener('open', () => { opens += 1; });
    const err = await sc.ready().then(() => null, (e) => e);
    await new Promise((r) => setTimeout(r, 1000));
    return { isError: err instanceof ShardcastError, code: err && err.code, msg: err && err.message, opens };
  }, { base, wsUrl });
  if (!refused.isError || refused.code !== -1001 || refused.opens !== 1) {
    throw new Error('refusal not reported once: ' + JSON.stringify(refused));
  }
  console.log('refusal: ' + refused.msg);
  if (errors.length) throw new Error('page errors: ' + errors.join('; '));
  console.log('PASS');
} catch (e) {
  console.error('FAIL: ' + (e && e.stack || e));
  process.exitCode = 1;
} finally {
  clearTimeout(overall);
  lines.close();
  await browser.close();
}
