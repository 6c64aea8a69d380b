// A browser keychain: credentials sealed with AES-GCM in IndexedDB, under a
// key that only the person who made the keychain can open.
//
//   import * as keychain from './keychain.js';
//   await keychain.create('a keychain passphrase');      // or protectWithPasskey()
//   await keychain.unlock('a keychain passphrase');      // each session (page load)
//   await keychain.store('openai/api_key', 'sk-...', { kind: 'api_key', metadata: {} });
//   const c = await keychain.retrieve('openai/api_key'); // {id, kind, secret, metadata} or null
//   await keychain.list();                               // [{id, kind, metadata, preview}]
//   await keychain.delete('openai/api_key');
//
// Why a key the user supplies: IndexedDB belongs to the origin
// (localhost and the port), and any page served on that port is that origin:
// a program of another user that takes the port while credshift is not
// running gets this database. So nothing in it opens without the user:
//
// - passphrase: the data key (AES-256-GCM, random) is kept only wrapped
//   (AES-KW) under a key derived from the keychain passphrase with
//   PBKDF2-SHA256, 600,000 rounds, random salt. Unwrapped it lives in this
//   page's memory as a non-extractable CryptoKey until the page closes.
// - passkey: the values are sealed under a key derived (HKDF) from the
//   passkey's PRF output, which the authenticator gives only to this origin
//   and only with the user's presence; it too lives only in memory.
//
// Each value is sealed with a fresh 12-byte IV and its id as associated
// data, so a record moved to another id fails to open. IndexedDB holds ids
// and kinds in clear and nothing else: the secret and its metadata are
// sealed together.
//
// A keychain made by an earlier credshift kept its key unwrapped (`master`,
// usable by any script on the origin); `create` seals such a keychain anew
// under a passphrase and deletes that key.

import { mask } from './mask.js';
import { newPassphraseProblem } from './envelope.js';

const DB_NAME = 'credshift-keychain';
const DB_VERSION = 1;
const KEYS = 'keys';
const ITEMS = 'items';
/** The unwrapped device key of an earlier credshift (read only to migrate). */
const LEGACY_MASTER = 'master';
/** The data key wrapped under the keychain passphrase. */
const WRAPPED = 'wrapped';
const PASSKEY = 'passkey';
export const KEYCHAIN_ITERATIONS = 600_000;
const enc = new TextEncoder();
const dec = new TextDecoder();
const PRF_INFO = enc.encode('credshift-keychain passkey v1');

/** An error whose message is safe to show: ids only, never a value. */
export class KeychainError extends Error {}

let dbPromise = null;
/** The key that opens the values, once unlocked; only ever in memory. */
let unlockedKey = null;

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    tx.onerror = () => reject(tx.error);
  });
}

function db() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      const open = indexedDB.open(DB_NAME, DB_VERSION);
      open.onupgradeneeded = () => {
        const d = open.result;
        if (!d.objectStoreNames.contains(KEYS)) d.createObjectStore(KEYS);
        if (!d.objectStoreNames.contains(ITEMS)) d.createObjectStore(ITEMS, { keyPath: 'id' });
      };
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
  }
  return dbPromise;
}

async function keyRecord(name) {
  return request((await db()).transaction(KEYS).objectStore(KEYS).get(name));
}

async function itemCount() {
  return request((await db()).transaction(ITEMS).objectStore(ITEMS).count());
}

/**
 * What protects this keychain: `none` (no keychain yet), `passphrase`,
 * `passkey`, or `legacy` (an earlier credshift's unprotected key); and
 * whether it is unlocked in this page.
 */
export async function state() {
  let kind = 'none';
  if (await keyRecord(PASSKEY)) kind = 'passkey';
  else if (await keyRecord(WRAPPED)) kind = 'passphrase';
  else if (await keyRecord(LEGACY_MASTER)) kind = 'legacy';
  else if ((await itemCount()) > 0) kind = 'orphaned';
  return { kind, unlocked: !!unlockedKey };
}

/** The key the values are sealed under; throws unless unlocked. */
export async function key() {
  if (unlockedKey) return unlockedKey;
  const { kind } = await state();
  if (kind === 'none') throw new KeychainError('there is no keychain here yet: create one first');
  if (kind === 'legacy') throw new KeychainError('this keychain is not protected yet: set a keychain passphrase first');
  if (kind === 'orphaned') throw new KeychainError('the key of this keychain is gone: its values cannot be opened');
  throw new KeychainError(`the keychain is locked: unlock it with your ${kind === 'passkey' ? 'passkey' : 'keychain passphrase'}`);
}

/** True when a keychain exists and this page has not unlocked it. */
export async function isLocked() {
  const { kind } = await state();
  return !unlockedKey && (kind === 'passkey' || kind === 'passphrase');
}

/** True when the keychain is protected by a passkey. */
export async function isPasskeyProtected() {
  return !!(await keyRecord(PASSKEY));
}

/** Forget the key (the keychain is locked again). */
export function lock() {
  unlockedKey = null;
}

async function passphraseKek(passphrase, salt, iterations) {
  const base = await crypto.subtle.importKey('raw', enc.encode(passphrase), 'PBKDF2', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    { name: 'PBKDF2', hash: 'SHA-256', salt, iterations },
    base,
    { name: 'AES-KW', length: 256 },
    false,
    ['wrapKey', 'unwrapKey'],
  );
}

async function unwrapWith(kek, wrapped) {
  return crypto.subtle.unwrapKey('raw', wrapped, kek, 'AES-KW', { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
}

/** Read every record with `k`; all of them or an error. */
async function openAll(k) {
  const records = await request((await db()).transaction(ITEMS).objectStore(ITEMS).getAll());
  const out = [];
  for (const r of records) out.push(await unseal(k, r));
  return out;
}

/**
 * Make the keychain, protected by `passphrase` (credshift's rule for new
 * passphrases applies). A keychain of an earlier credshift, whose key was
 * not protected, is sealed anew under it and its old key deleted.
 */
export async function create(passphrase) {
  const problem = newPassphraseProblem(passphrase ?? '');
  if (problem) throw new KeychainError(problem);
  const { kind } = await state();
  if (kind === 'passphrase' || kind === 'passkey') throw new KeychainError('there is already a keychain here');
  if (kind === 'orphaned') throw new KeychainError('this keychain\'s key is gone; delete its values before making a new one');
  let carried = [];
  if (kind === 'legacy') carried = await openAll(await keyRecord(LEGACY_MASTER));
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const kek = await passphraseKek(passphrase, salt, KEYCHAIN_ITERATIONS);
  // Extractable only so it can be wrapped; the copy kept is unwrapped
  // again as non-extractable.
  const dataKey = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, true, ['encrypt', 'decrypt']);
  const wrapped = new Uint8Array(await crypto.subtle.wrapKey('raw', dataKey, kek, 'AES-KW'));
  const k = await unwrapWith(kek, wrapped);
  const records = [];
  for (const c of carried) records.push(await seal(k, c));
  const tx = (await db()).transaction([KEYS, ITEMS], 'readwrite');
  // `add`: if another tab made a keychain meanwhile, keep that one.
  tx.objectStore(KEYS).add({ salt, iterations: KEYCHAIN_ITERATIONS, wrapped }, WRAPPED);
  if (kind === 'legacy') {
    const items = tx.objectStore(ITEMS);
    items.clear();
    for (const r of records) items.put(r);
    tx.objectStore(KEYS).delete(LEGACY_MASTER);
  }
  try {
    await done(tx);
  } catch {
    throw new KeychainError('another tab made a keychain at the same time: reload the page');
  }
  unlockedKey = k;
}

async function prfKey(credentialId, salt) {
  let assertion;
  try {
    assertion = await navigator.credentials.get({
      publicKey: {
        challenge: crypto.getRandomValues(new Uint8Array(32)),
        rpId: location.hostname,
        allowCredentials: [{ type: 'public-key', id: credentialId }],
        userVerification: 'required',
        extensions: { prf: { eval: { first: salt } } },
      },
    });
  } catch (e) {
    throw new KeychainError(`the passkey did not answer (${e?.name ?? 'error'})`);
  }
  const first = assertion?.getClientExtensionResults()?.prf?.results?.first;
  if (!first) throw new KeychainError('this passkey or browser does not support the PRF extension');
  const material = await crypto.subtle.importKey('raw', first, 'HKDF', false, ['deriveKey']);
  new Uint8Array(first).fill(0);
  return crypto.subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: salt, info: PRF_INFO },
    material,
    { name: 'AES-GCM', length: 256 },
    false,
    ['encrypt', 'decrypt'],
  );
}

/**
 * Protect the keychain with a passkey (WebAuthn PRF) instead of the
 * passphrase: every value is sealed again under a key derived from the
 * passkey's PRF output, kept only in memory, and the wrapped key is
 * deleted. With no keychain yet, this makes one. Needs a secure context
 * whose host is a domain (`localhost` works, an IP address does not).
 */
export async function protectWithPasskey() {
  const { kind } = await state();
  if (kind === 'passkey') throw new KeychainError('the keychain is already protected by a passkey');
  if (kind === 'legacy' || kind === 'orphaned') throw new KeychainError('set a keychain passphrase first');
  const items = kind === 'none' ? [] : await all();
  if (!window.PublicKeyCredential) throw new KeychainError('this browser has no WebAuthn');
  let created;
  try {
    created = await navigator.credentials.create({
      publicKey: {
        rp: { name: 'credshift keychain', id: location.hostname },
        user: { id: crypto.getRandomValues(new Uint8Array(16)), name: 'credshift keychain', displayName: 'credshift keychain' },
        challenge: crypto.getRandomValues(new Uint8Array(32)),
        pubKeyCredParams: [{ type: 'public-key', alg: -7 }, { type: 'public-key', alg: -257 }],
        authenticatorSelection: { residentKey: 'preferred', userVerification: 'required' },
        extensions: { prf: {} },
      },
    });
  } catch (e) {
    throw new KeychainError(`no passkey was created (${e?.name ?? 'error'})`);
  }
  if (!created?.getClientExtensionResults()?.prf?.enabled) {
    throw new KeychainError('this passkey or browser does not support the PRF extension');
  }
  const credentialId = new Uint8Array(created.rawId);
  const salt = crypto.getRandomValues(new Uint8Array(32));
  const fresh = await prfKey(credentialId, salt);
  const records = [];
  for (const c of items) records.push(await seal(fresh, c));
  const tx = (await db()).transaction([KEYS, ITEMS], 'readwrite');
  const os = tx.objectStore(ITEMS);
  os.clear();
  for (const r of records) os.put(r);
  tx.objectStore(KEYS).put({ credentialId, salt }, PASSKEY);
  tx.objectStore(KEYS).delete(WRAPPED);
  await done(tx);
  unlockedKey = fresh;
}

/**
 * Unlock for this page: with the keychain passphrase, or (no argument
 * needed) the passkey.
 */
export async function unlock(passphrase) {
  const passkey = await keyRecord(PASSKEY);
  if (passkey) {
    const k = await prfKey(passkey.credentialId, passkey.salt);
    const one = await request((await db()).transaction(ITEMS).objectStore(ITEMS).openCursor());
    if (one) {
      try {
        await unseal(k, one.value);
      } catch {
        throw new KeychainError('this passkey does not open the keychain');
      }
    }
    unlockedKey = k;
    return;
  }
  const rec = await keyRecord(WRAPPED);
  if (!rec) throw new KeychainError('there is no protected keychain here to unlock');
  if (!passphrase) throw new KeychainError('enter the keychain passphrase');
  const kek = await passphraseKek(passphrase, rec.salt, rec.iterations);
  try {
    unlockedKey = await unwrapWith(kek, rec.wrapped);
  } catch {
    throw new KeychainError('wrong keychain passphrase');
  }
}

function checkId(id) {
  if (typeof id !== 'string' || !/^[^/]+\/.+$/.test(id)) {
    throw new TypeError('a credential id is NAMESPACE/NAME');
  }
}

async function seal(k, c) {
  checkId(c.id);
  if (typeof c.secret !== 'string') throw new TypeError(`${c.id}: the secret must be a string`);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const plain = enc.encode(JSON.stringify({ secret: c.secret, metadata: c.metadata ?? {} }));
  const sealed = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: enc.encode(c.id) },
    k,
    plain,
  );
  plain.fill(0);
  return { id: c.id, kind: c.kind ?? 'other', iv, sealed: new Uint8Array(sealed) };
}

async function unseal(k, record) {
  let plain;
  try {
    plain = new Uint8Array(await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: record.iv, additionalData: enc.encode(record.id) },
      k,
      record.sealed,
    ));
  } catch {
    throw new KeychainError(`${record.id}: cannot be opened (altered, moved to another id, or sealed under another key)`);
  }
  const { secret, metadata } = JSON.parse(dec.decode(plain));
  plain.fill(0);
  return { id: record.id, kind: record.kind, secret, metadata };
}

/** Seal and store one credential (replacing one with the same id). */
export async function store(id, secret, { kind = 'other', metadata = {} } = {}) {
  await storeMany([{ id, kind, secret, metadata }]);
}

/**
 * Seal and store many credentials in one transaction: all of them or,
 * if anything fails, none. Replaces what has the same id: the page calls
 * `compare` first and replaces only what the user chose to.
 */
export async function storeMany(items) {
  const k = await key();
  const records = [];
  for (const c of items) records.push(await seal(k, c));
  const tx = (await db()).transaction(ITEMS, 'readwrite');
  const os = tx.objectStore(ITEMS);
  for (const r of records) os.put(r);
  await done(tx);
}

function sameCredential(a, b) {
  const canon = (v) => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])]))
    : Array.isArray(v) ? v.map(canon) : v);
  return a.secret === b.secret && a.kind === b.kind
    && JSON.stringify(canon(a.metadata ?? {})) === JSON.stringify(canon(b.metadata ?? {}));
}

/**
 * Sort incoming credentials against what is stored: `fresh` (no such id),
 * `same` (stored exactly so) and `differ` (the id holds something else).
 */
export async function compare(items) {
  const k = await key();
  const d = await db();
  const out = { fresh: [], same: [], differ: [] };
  for (const c of items) {
    const record = await request(d.transaction(ITEMS).objectStore(ITEMS).get(c.id));
    if (!record) out.fresh.push(c);
    else if (sameCredential(await unseal(k, record), c)) out.same.push(c);
    else out.differ.push(c);
  }
  return out;
}

/** `{id, kind, secret, metadata}`, or null when there is no such id. */
export async function retrieve(id) {
  checkId(id);
  const k = await key();
  const record = await request((await db()).transaction(ITEMS).objectStore(ITEMS).get(id));
  return record ? unseal(k, record) : null;
}

/** Remove one credential; true when it was there. */
export async function remove(id) {
  checkId(id);
  const tx = (await db()).transaction(ITEMS, 'readwrite');
  const os = tx.objectStore(ITEMS);
  const had = (await request(os.count(id))) > 0;
  os.delete(id);
  await done(tx);
  return had;
}
export { remove as delete };

/**
 * Every credential without its secret: `{id, kind, metadata, preview}`,
 * sorted by id, the preview masked by credshift's rule.
 */
export async function list() {
  const out = [];
  for (const c of await all()) {
    out.push({ id: c.id, kind: c.kind, metadata: c.metadata, preview: mask(c.secret, c.kind) });
  }
  return out;
}

/** Every credential with its secret, for an export. */
export async function all() {
  const out = await openAll(await key());
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
