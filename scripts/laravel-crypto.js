#!/usr/bin/env node
// An independent reader of Laravel's Encrypter (Illuminate\Encryption,
// AES-256-CBC), written from Laravel's documented payload with Node's own
// crypto, so tests check what credshift writes against Laravel's format
// rather than against credshift's own decoder:
//   payload = base64(JSON {iv, value, mac, tag})
//   mac     = hex HMAC-SHA256(key, iv_b64 + value_b64)
//   value   = base64(AES-256-CBC(key, iv, plaintext)), PKCS#7 padding
//   plaintext is PHP-serialized (`s:LEN:"...";`, LEN in bytes) when written
//   by Crypt::encrypt, raw when written by Crypt::encryptString.
// APP_KEY (`base64:...`) comes from the environment, payloads from stdin as a
// JSON list, never argv. Output: a JSON list, per payload
// {"plaintext": TEXT, "serialized": bool} or {"error": MESSAGE}.
// With the argument `encrypt`, stdin is a JSON list of texts and the output
// their payloads as Crypt::encrypt writes them (serialized, a random IV), for
// test fixtures under keys credshift did not choose.
'use strict';
const crypto = require('crypto');

function appKey() {
  const k = process.env.APP_KEY || '';
  const key = k.startsWith('base64:') ? Buffer.from(k.slice(7), 'base64') : Buffer.from(k, 'utf8');
  if (key.length !== 32) {
    process.stderr.write('APP_KEY must hold 32 bytes (base64:...)\n');
    process.exit(2);
  }
  return key;
}

function unserialize(buf) {
  const m = /^s:(\d+):"/.exec(buf.toString('latin1'));
  if (!m) return null;
  const start = m[0].length;
  const len = Number(m[1]);
  const end = start + len;
  if (buf.length !== end + 2 || buf[end] !== 0x22 || buf[end + 1] !== 0x3b) {
    throw new Error('serialized length does not match');
  }
  return buf.subarray(start, end).toString('utf8');
}

function decrypt(key, payload) {
  const p = JSON.parse(Buffer.from(payload, 'base64').toString('utf8'));
  for (const f of ['iv', 'value', 'mac']) {
    if (typeof p[f] !== 'string') throw new Error('payload lacks ' + f);
  }
  const mac = crypto.createHmac('sha256', key).update(p.iv + p.value).digest();
  const given = Buffer.from(p.mac, 'hex');
  if (given.length !== mac.length || !crypto.timingSafeEqual(given, mac)) {
    throw new Error('MAC is invalid');
  }
  const d = crypto.createDecipheriv('aes-256-cbc', key, Buffer.from(p.iv, 'base64'));
  const plain = Buffer.concat([d.update(Buffer.from(p.value, 'base64')), d.final()]);
  const text = unserialize(plain);
  return text === null
    ? { plaintext: plain.toString('utf8'), serialized: false }
    : { plaintext: text, serialized: true };
}

function encrypt(key, text) {
  const body = Buffer.from(text, 'utf8');
  const plain = Buffer.concat([Buffer.from('s:' + body.length + ':"'), body, Buffer.from('";')]);
  const iv = crypto.randomBytes(16);
  const c = crypto.createCipheriv('aes-256-cbc', key, iv);
  const value = Buffer.concat([c.update(plain), c.final()]).toString('base64');
  const ivb = iv.toString('base64');
  const mac = crypto.createHmac('sha256', key).update(ivb + value).digest('hex');
  return Buffer.from(JSON.stringify({ iv: ivb, value, mac, tag: '' })).toString('base64');
}

const key = appKey();
const encrypting = process.argv[2] === 'encrypt';
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (c) => (input += c));
process.stdin.on('end', () => {
  const out = JSON.parse(input).map((payload) => {
    if (encrypting) return encrypt(key, payload);
    try {
      return decrypt(key, payload);
    } catch (e) {
      return { error: e.message };
    }
  });
  process.stdout.write(JSON.stringify(out));
});
