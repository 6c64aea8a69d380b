// credshift's envelope (src/crypto/envelope.rs) in Web Crypto: opens a
// `bundle:` file and seals a new one that `credshift` reads back.
//
// {"format":"credshift-envelope","version":1,
//  "kdf":{"alg":"pbkdf2-hmac-sha256","iterations":600000,"salt":B64},
//  "cipher":"aes-256-gcm","nonce":B64,"ciphertext":B64}
//
// The associated data is the header (everything but `ciphertext`) as
// compact JSON in exactly that key order, rebuilt from the parsed values.

export const FORMAT = 'credshift-envelope';
export const VERSION = 1;
export const ALG_PBKDF2 = 'pbkdf2-hmac-sha256';
export const CIPHER = 'aes-256-gcm';
/** The same limits credshift applies before deriving anything. */
export const MAX_ITERATIONS = 10_000_000;
export const MIN_ITERATIONS = 100_000;
/** What credshift writes by default (OWASP's figure). */
export const DEFAULT_ITERATIONS = 600_000;
const SALT_MIN = 16;
const SALT_MAX = 1024;
const NONCE_LEN = 12;
const TAG_LEN = 16;
export const KINDS = [
  'api_key', 'oauth_access', 'oauth_refresh', 'client_key',
  'client_key_hash', 'password', 'password_hash', 'other',
];

/** An error whose message is safe to show: it never holds secret content. */
export class BundleError extends Error {}

/** credshift's rule for every new passphrase (src/keys.rs, `check_new_passphrase`). */
export const MIN_NEW_PASSPHRASE = 8;
export const PASSPHRASE_RULE = 'at least 8 characters, not one character repeated, and not one of the most common passwords';
/** The same list as `COMMON_PASSWORDS` in src/keys.rs (tests/web.rs compares them). */
export const COMMON_PASSWORDS = [
  'password', 'password1', 'password12', 'password123', 'passw0rd', 'p@ssw0rd', 'p@ssword', '12345678',
  '123456789', '1234567890', '0123456789', '987654321', '87654321', '11111111', '00000000', '88888888',
  '12341234', '11223344', '123123123', '123456123', '1q2w3e4r', '1q2w3e4r5t', 'q1w2e3r4', 'q1w2e3r4t5',
  '1qaz2wsx', 'zaq12wsx', 'qazwsxedc', 'qwertyui', 'qwertyuiop', 'qwerty123', 'qwerty12', '1234qwer',
  'qwer1234', 'asdfghjk', 'asdfghjkl', 'abcd1234', 'abc12345', 'aa123456', 'iloveyou', 'iloveyou1',
  'sunshine', 'princess', 'football', 'baseball', 'basketball', 'welcome1', 'welcome123', 'trustno1',
  'superman', 'starwars', 'letmein1', 'changeme', 'administrator', 'admin123', 'computer', 'whatever',
  'michael1', 'jennifer', 'corvette', 'mercedes', 'liverpool', 'chelsea1', 'blink182', 'charlie1',
  'internet', 'samsung1', 'abcdefgh', 'qwertyuio', 'zxcvbnm1', 'zxcvbnma', 'passpass', 'testtest',
  'test1234', 'secret123', 'credshift',
];

/**
 * Why `passphrase` may not protect new data, in credshift's words, or null
 * when it passes the rule. Counts characters (code points), as credshift.
 */
export function newPassphraseProblem(passphrase) {
  const chars = [...passphrase];
  if (chars.length < MIN_NEW_PASSPHRASE) {
    return `the passphrase has only ${chars.length} character${chars.length === 1 ? '' : 's'}; a new passphrase needs ${PASSPHRASE_RULE}`;
  }
  if (chars.every((c) => c === chars[0])) {
    return `the passphrase is one character repeated; a new passphrase needs ${PASSPHRASE_RULE}`;
  }
  if (COMMON_PASSWORDS.includes(passphrase.toLowerCase())) {
    return `the passphrase is one of the most common passwords; a new passphrase needs ${PASSPHRASE_RULE}`;
  }
  return null;
}

const enc = new TextEncoder();

export function toB64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

export function fromB64(text, what) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new BundleError(`${what} is not valid base64`);
  }
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function exactKeys(obj, keys, what) {
  const got = Object.keys(obj);
  const unknown = got.filter((k) => !keys.includes(k));
  if (unknown.length) {
    throw new BundleError(`${what} has an unexpected field (${unknown.join(', ')})`);
  }
}

/**
 * Parse and check a bundle's header before anything is derived: format,
 * version, cipher, nonce, salt, and the iteration count (an absurd count is
 * refused, a weak one unless `allowWeak`).
 */
export function parseEnvelope(text, { allowWeak = false } = {}) {
  let env;
  try {
    env = JSON.parse(text);
  } catch {
    throw new BundleError('this file is not a credshift bundle (it is not JSON)');
  }
  if (!env || typeof env !== 'object' || env.format !== FORMAT) {
    throw new BundleError(`this file is not a credshift bundle (no "format":"${FORMAT}")`);
  }
  exactKeys(env, ['format', 'version', 'kdf', 'cipher', 'nonce', 'ciphertext'], 'the bundle');
  if (env.version !== VERSION) {
    throw new BundleError(`unsupported bundle version ${JSON.stringify(env.version)} (this page reads version ${VERSION})`);
  }
  if (env.cipher !== CIPHER) {
    throw new BundleError(`unsupported cipher (this page knows ${CIPHER})`);
  }
  const kdf = env.kdf;
  if (!kdf || typeof kdf !== 'object') {
    throw new BundleError('the bundle has no kdf');
  }
  exactKeys(kdf, ['alg', 'iterations', 'salt'], 'the bundle\'s kdf');
  if (kdf.alg === 'none') {
    throw new BundleError('this bundle is sealed with a key file, not a passphrase; the page opens passphrase bundles only');
  }
  if (kdf.alg !== ALG_PBKDF2) {
    throw new BundleError(`unsupported kdf (this page knows ${ALG_PBKDF2})`);
  }
  const n = kdf.iterations;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new BundleError('kdf.iterations is not a whole number');
  }
  if (n > MAX_ITERATIONS) {
    throw new BundleError(`refusing ${n} PBKDF2 iterations (the limit is ${MAX_ITERATIONS}): the file is damaged or hostile`);
  }
  if (n === 0) {
    throw new BundleError('refusing 0 PBKDF2 iterations');
  }
  if (n < MIN_ITERATIONS && !allowWeak) {
    throw new BundleError(`only ${n} PBKDF2 iterations (fewer than ${MIN_ITERATIONS}) is a weak key derivation; tick "accept a weak key derivation" to open it anyway`);
  }
  const salt = fromB64(kdf.salt, 'kdf.salt');
  if (salt.length < SALT_MIN || salt.length > SALT_MAX) {
    throw new BundleError(`the PBKDF2 salt is ${salt.length} bytes; expected ${SALT_MIN} to ${SALT_MAX}`);
  }
  const nonce = fromB64(env.nonce, 'nonce');
  if (nonce.length !== NONCE_LEN) {
    throw new BundleError(`nonce is not ${NONCE_LEN} bytes of base64`);
  }
  const ciphertext = fromB64(env.ciphertext, 'ciphertext');
  if (ciphertext.length < TAG_LEN) {
    throw new BundleError('the ciphertext is truncated (shorter than its tag)');
  }
  const aad = enc.encode(headerJson(n, kdf.salt, env.nonce));
  return { iterations: n, salt, nonce, ciphertext, aad };
}

function headerJson(iterations, saltB64, nonceB64) {
  return JSON.stringify({
    format: FORMAT,
    version: VERSION,
    kdf: { alg: ALG_PBKDF2, iterations, salt: saltB64 },
    cipher: CIPHER,
    nonce: nonceB64,
  });
}

async function deriveKey(passphrase, salt, iterations, usage) {
  const base = await crypto.subtle.importKey('raw', enc.encode(passphrase), 'PBKDF2', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    { name: 'PBKDF2', hash: 'SHA-256', salt, iterations },
    base,
    { name: 'AES-GCM', length: 256 },
    false,
    [usage],
  );
}

/** Check one decrypted item; the message names the item, never its value. */
function checkItem(item, i) {
  const where = `item ${i + 1}`;
  if (!item || typeof item !== 'object' || Array.isArray(item)) {
    throw new BundleError(`${where} is not an object`);
  }
  const { id, kind, secret } = item;
  if (typeof id !== 'string' || !/^[^/]+\/.+$/.test(id)) {
    throw new BundleError(`${where} has no valid id (NAMESPACE/NAME)`);
  }
  if (!KINDS.includes(kind)) {
    throw new BundleError(`${id}: unknown kind`);
  }
  if (typeof secret !== 'string') {
    throw new BundleError(`${id}: the secret is not text`);
  }
  const metadata = item.metadata ?? {};
  if (typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw new BundleError(`${id}: metadata is not an object`);
  }
  return { id, kind, secret, metadata };
}

/**
 * Open a bundle: the list of `{id, kind, secret, metadata}`. Throws a
 * BundleError with a clear message for a wrong passphrase, a tampered or
 * damaged file, or a refused header.
 */
export async function openBundle(text, passphrase, opts = {}) {
  if (!passphrase) {
    throw new BundleError('enter the bundle\'s passphrase');
  }
  const env = parseEnvelope(text, opts);
  const key = await deriveKey(passphrase, env.salt, env.iterations, 'decrypt');
  let plain;
  try {
    plain = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: env.nonce, additionalData: env.aad, tagLength: 128 },
      key,
      env.ciphertext,
    );
  } catch {
    throw new BundleError('cannot decrypt: wrong passphrase, or the bundle was altered or damaged');
  }
  let items;
  try {
    items = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(plain));
  } catch {
    throw new BundleError('the decrypted content is not a credential list');
  } finally {
    new Uint8Array(plain).fill(0);
  }
  if (!Array.isArray(items)) {
    throw new BundleError('the decrypted content is not a credential list');
  }
  const out = items.map(checkItem);
  const seen = new Set();
  for (const c of out) {
    if (seen.has(c.id)) throw new BundleError(`${c.id}: appears twice`);
    seen.add(c.id);
  }
  return out;
}

/** Seal `[{id, kind, secret, metadata}]` into a new bundle's text. */
export async function sealBundle(items, passphrase, iterations = DEFAULT_ITERATIONS) {
  if (!passphrase) {
    throw new BundleError('enter a passphrase for the export');
  }
  const problem = newPassphraseProblem(passphrase);
  if (problem) throw new BundleError(problem);
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_LEN));
  const saltB64 = toB64(salt);
  const nonceB64 = toB64(nonce);
  const header = headerJson(iterations, saltB64, nonceB64);
  const key = await deriveKey(passphrase, salt, iterations, 'encrypt');
  const plain = enc.encode(JSON.stringify(
    items.map(({ id, kind, secret, metadata }) => ({ id, kind, secret, metadata })),
  ));
  const ct = new Uint8Array(await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: nonce, additionalData: enc.encode(header), tagLength: 128 },
    key,
    plain,
  ));
  plain.fill(0);
  const env = JSON.parse(header);
  env.ciphertext = toB64(ct);
  return `${JSON.stringify(env)}\n`;
}
