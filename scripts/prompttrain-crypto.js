#!/usr/bin/env node
// An independent implementation of agent-prompttrain's credential format
// (migrations 013/014), written from its description with Node's own crypto:
// PBKDF2-HMAC-SHA256(CREDENTIAL_ENCRYPTION_KEY, 32-byte salt, 100,000, 32)
// -> AES-256-GCM with a 16-byte IV, no AAD, 16-byte tag, stored as
// b64(salt):b64(iv):b64(tag):b64(ciphertext). Client keys: sha256 hex.
//
// The key comes from the environment (CREDENTIAL_ENCRYPTION_KEY), data from
// stdin as JSON, never argv. Used by tests/it/prompttrain_db.rs and the
// benchmark in benches/prompttrain_db.rs.
//
//   decrypt: stdin ["salt:iv:tag:ct", ...]   -> stdout [plaintext | {"error": msg}, ...]
//   encrypt: stdin ["plaintext", ...]        -> stdout ["salt:iv:tag:ct", ...]
//   hash:    stdin ["client key", ...]       -> stdout ["sha256 hex", ...]
//   bench:   stdin {"values": [plaintext, ...], "emit": bool}
//            -> stdout {"count", "encrypt_ms", "decrypt_ms", "encrypt_cpu_ms",
//                       "decrypt_cpu_ms"[, "stored"]}
'use strict';
const crypto = require('crypto');

const ITERATIONS = 100000;

function masterKey() {
  const k = process.env.CREDENTIAL_ENCRYPTION_KEY || '';
  if (k.length < 32) {
    process.stderr.write('CREDENTIAL_ENCRYPTION_KEY must be at least 32 characters\n');
    process.exit(2);
  }
  return k;
}

function encrypt(plaintext, master) {
  const salt = crypto.randomBytes(32);
  const iv = crypto.randomBytes(16);
  const key = crypto.pbkdf2Sync(master, salt, ITERATIONS, 32, 'sha256');
  const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  const tag = cipher.getAuthTag();
  return [salt, iv, tag, ct].map((b) => b.toString('base64')).join(':');
}

function decrypt(stored, master) {
  const parts = stored.split(':');
  if (parts.length !== 4) throw new Error('expected four fields');
  const [salt, iv, tag, ct] = parts.map((p) => Buffer.from(p, 'base64'));
  if (salt.length !== 32 || iv.length !== 16 || tag.length !== 16) throw new Error('bad field length');
  const key = crypto.pbkdf2Sync(master, salt, ITERATIONS, 32, 'sha256');
  const decipher = crypto.createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(ct), decipher.final()]).toString('utf8');
}

function readStdin() {
  return JSON.parse(require('fs').readFileSync(0, 'utf8'));
}

const mode = process.argv[2];
const out = (v) => process.stdout.write(JSON.stringify(v) + '\n');
if (mode === 'decrypt') {
  const master = masterKey();
  out(readStdin().map((s) => {
    try {
      return decrypt(s, master);
    } catch (e) {
      return { error: String(e.message) };
    }
  }));
} else if (mode === 'encrypt') {
  const master = masterKey();
  out(readStdin().map((p) => encrypt(p, master)));
} else if (mode === 'hash') {
  out(readStdin().map((k) => crypto.createHash('sha256').update(k, 'utf8').digest('hex')));
} else if (mode === 'bench') {
  // The original algorithm as a loop: encrypt every value (a fresh salt and
  // IV each), then decrypt every stored value and compare.
  const master = masterKey();
  const { values, emit } = readStdin();
  const cpuMs = (u) => (u.user + u.system) / 1e3;
  let t = process.hrtime.bigint();
  let c = process.cpuUsage();
  const stored = [];
  for (const v of values) stored.push(encrypt(v, master));
  const encryptMs = Number(process.hrtime.bigint() - t) / 1e6;
  const encryptCpuMs = cpuMs(process.cpuUsage(c));
  t = process.hrtime.bigint();
  c = process.cpuUsage();
  for (let i = 0; i < stored.length; i++) {
    if (decrypt(stored[i], master) !== values[i]) throw new Error(`round trip failed at value ${i}`);
  }
  const decryptMs = Number(process.hrtime.bigint() - t) / 1e6;
  const decryptCpuMs = cpuMs(process.cpuUsage(c));
  // emit: also return the values Node wrote (ciphertext only), so the
  // benchmark can read them back with credshift.
  const count = values.length;
  const times = {
    count, encrypt_ms: encryptMs, decrypt_ms: decryptMs,
    encrypt_cpu_ms: encryptCpuMs, decrypt_cpu_ms: decryptCpuMs,
  };
  out(emit ? { ...times, stored } : times);
} else {
  process.stderr.write('usage: prompttrain-crypto.js decrypt|encrypt|hash|bench (data on stdin)\n');
  process.exit(2);
}
