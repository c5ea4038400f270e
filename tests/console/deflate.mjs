// A real permessage-deflate client: the `ws` package (pinned by package-lock.json)
// against a node in echo mode (tests/it/ws/deflate.rs). For each set of options it
// connects, checks that deflate was agreed (and prints the answer), sends a large JSON text, a short text and a
// binary message — compressed by ws (threshold 0), so the node inflates them — and
// checks that the echoes, which the node compresses when they shrink, read back
// as sent. Prints one "OK <agreed extensions>" line per set; exit code 0 on success.

import WebSocket from 'ws';

const [url] = process.argv.slice(2);
if (!url) {
  console.error('usage: node deflate.mjs <ws-url>');
  process.exit(2);
}
setTimeout(() => { console.error('FAIL: no end within 20 s'); process.exit(1); }, 20_000);

const json = JSON.stringify({
  type: 'order.updated',
  items: Array.from({ length: 60 }, (_, i) => ({ sku: `SKU-${i}`, qty: i % 7, price: i * 3.5 })),
});
const messages = [json, 'hi', Buffer.from(json.repeat(2))];

function echo(perMessageDeflate) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate });
    const got = [];
    let agreed = '';
    ws.on('upgrade', (res) => { agreed = res.headers['sec-websocket-extensions'] || ''; });
    ws.on('error', reject);
    ws.on('open', () => {
      if (!ws.extensions.includes('permessage-deflate')) {
        reject(new Error(`not agreed: "${ws.extensions}"`));
        return;
      }
      for (const m of messages) ws.send(m, { binary: Buffer.isBuffer(m) });
    });
    ws.on('message', (data, isBinary) => {
      got.push(isBinary ? Buffer.from(data) : data.toString());
      if (got.length < messages.length) return;
      for (let i = 0; i < messages.length; i++) {
        const want = messages[i];
        const same = Buffer.isBuffer(want) ? want.equals(got[i]) : want === got[i];
        if (!same) reject(new Error(`echo ${i} differs`));
      }
      ws.close(1000);
      resolve(agreed);
    });
  });
}

try {
  console.log('OK', await echo({ threshold: 0 }));
  console.log('OK', await echo({ threshold: 0, serverMaxWindowBits: 10 }));
  process.exit(0);
} catch (e) {
  console.error('FAIL:', e.message);
  process.exit(1);
}
