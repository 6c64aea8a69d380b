// Drives credshift's browser keychain page in a real headless Chromium
// (Debian's `chromium`, driven by playwright-core). tests/web.rs starts
// `credshift web --port 0`, prepares bundles with the credshift binary and
// runs this script with CREDSHIFT_WEB_CONFIG naming a JSON file (0600, in a
// temp dir: it holds the test passphrases, never argv):
//
//   {"url", "scenario": "round-trip" | "refusals" | "mask", ...}
//
// It prints one line per check and exits non-zero on the first failure.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const config = JSON.parse(fs.readFileSync(process.env.CREDSHIFT_WEB_CONFIG, 'utf8'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function check(cond, what) {
  if (!cond) throw new Error(`FAILED: ${what}`);
  console.log(`ok - ${what}`);
}

async function launch() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'credshift-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1100, height: 760 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? await context.newPage();
  // Nothing but the page's own origin (and the export's blob: URL).
  const foreign = [];
  const origin = new URL(config.url).origin;
  context.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(`${origin}/`) && !u.startsWith('blob:') && !u.startsWith('data:')) foreign.push(u);
  });
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.on('dialog', (d) => d.accept());
  return {
    context, page, foreign, consoleErrors,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

async function open(page) {
  await page.goto(config.url);
  await page.waitForSelector('body[data-ready=true]');
}

async function importBundle(page, file, passphrase, { allowWeak = false } = {}) {
  await page.setInputFiles('input[data-testid=bundle-file]', file);
  await page.fill('input[data-testid=passphrase]', passphrase);
  await page.setChecked('input[data-testid=allow-weak]', allowWeak);
  await page.evaluate(() => { document.querySelector('[data-testid=status]').textContent = ''; });
  await page.click('button[data-testid=import]');
  await page.waitForFunction(() => {
    const t = document.querySelector('[data-testid=status]').textContent;
    return t.startsWith('Imported') || t.startsWith('Nothing imported');
  });
  return page.textContent('[data-testid=status]');
}

async function itemIds(page) {
  return page.$$eval('[data-testid=item] [data-testid=item-id]', (els) => els.map((e) => e.textContent));
}

/** Everything the page keeps in IndexedDB, as text, byte arrays spelled out. */
async function dumpIndexedDb(page) {
  return page.evaluate(async () => {
    const names = (await indexedDB.databases()).map((d) => d.name);
    const out = [];
    const bytesOf = (v) => {
      if (v instanceof ArrayBuffer) return new Uint8Array(v);
      if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      return null;
    };
    const walk = (v) => {
      const b = bytesOf(v);
      if (b) {
        // Raw bytes as latin1 and as UTF-8 text, so a clear value shows up.
        out.push(String.fromCharCode(...b), new TextDecoder().decode(b));
        out.push(Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(''));
        return;
      }
      if (v instanceof CryptoKey) {
        out.push(`CryptoKey(${v.type},${v.extractable},${v.algorithm.name})`);
        return;
      }
      if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) { out.push(k); walk(x); }
        return;
      }
      out.push(String(v));
    };
    for (const name of names) {
      const db = await new Promise((res, rej) => {
        const r = indexedDB.open(name);
        r.onsuccess = () => res(r.result);
        r.onerror = () => rej(r.error);
      });
      for (const storeName of db.objectStoreNames) {
        const tx = db.transaction(storeName);
        const os = tx.objectStore(storeName);
        const [keys, values] = await Promise.all([os.getAllKeys(), os.getAll()].map((r) => new Promise((res) => { r.onsuccess = () => res(r.result); })));
        out.push(`${name}/${storeName}`);
        keys.forEach(walk);
        values.forEach(walk);
      }
      db.close();
    }
    return { names, text: out.join('\n') };
  });
}

/** The forms a secret could leak in: raw, base64 (3 alignments), hex, JSON-escaped. */
function leakForms(secret) {
  const bytes = Buffer.from(secret, 'utf8');
  const forms = [secret, bytes.toString('hex'), bytes.toString('hex').toUpperCase(), JSON.stringify(secret).slice(1, -1)];
  for (let shift = 0; shift < 3; shift++) {
    const b64 = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64');
    // Drop the characters that depend on the padding bytes at either end.
    forms.push(b64.slice(shift ? 4 : 0, -4));
    forms.push(Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64url').slice(shift ? 4 : 0, -4));
  }
  return forms.filter((f) => f.length >= 8);
}

function assertNoSecret(haystack, secrets, where) {
  for (const s of secrets) {
    for (const f of leakForms(s)) {
      if (haystack.includes(f)) {
        throw new Error(`FAILED: ${where} holds a secret (a form of ${s.length} chars)`);
      }
    }
  }
  console.log(`ok - ${where} holds none of ${secrets.length} secrets (raw, base64, hex, JSON-escaped)`);
}

async function pageText(page) {
  return page.evaluate(() => `${document.documentElement.outerHTML}\n${document.body.innerText}\n${
    Array.from(document.querySelectorAll('input')).map((i) => i.value).join('\n')}`);
}

async function roundTrip() {
  const secrets = config.secrets; // {id: secret}
  const expected = config.expected; // [{id, kind, preview}]
  const b = await launch();
  const { page } = b;
  await page.clock.install();
  await open(page);
  check((await itemIds(page)).length === 0, 'a fresh browser profile starts empty');

  const status = await importBundle(page, config.bundle, config.passphrase);
  check(status.startsWith(`Imported ${expected.length} credential`), `import says: ${status}`);
  const ids = await itemIds(page);
  check(JSON.stringify(ids) === JSON.stringify(expected.map((e) => e.id)), `one item per credential, sorted by id (${ids.length})`);
  for (const e of expected) {
    const row = page.locator(`[data-testid=item][data-id="${e.id}"]`);
    const preview = await row.locator('[data-testid=preview]').textContent();
    check(preview === e.preview, `${e.id}: preview ${preview} is credshift's`);
  }
  check(await page.inputValue('input[data-testid=passphrase]') === '', 'the passphrase field is cleared after import');

  const secretValues = Object.values(secrets);
  assertNoSecret((await dumpIndexedDb(page)).text, secretValues, 'IndexedDB after import');
  assertNoSecret(await pageText(page), secretValues, 'the page text after import');

  await page.reload();
  await page.waitForSelector('body[data-ready=true]');
  check(JSON.stringify(await itemIds(page)) === JSON.stringify(expected.map((e) => e.id)), 'every item is still there after a reload');

  const keyInfo = await page.evaluate(async () => {
    const kc = await import('/keychain.js');
    const k = await kc.key();
    let exported = false;
    try { await crypto.subtle.exportKey('raw', k); exported = true; } catch { /* expected */ }
    return { extractable: k.extractable, exported, type: k.type, alg: k.algorithm.name, len: k.algorithm.length };
  });
  check(keyInfo.extractable === false && !keyInfo.exported, 'the keychain key is non-extractable and exportKey refuses it');
  check(keyInfo.alg === 'AES-GCM' && keyInfo.len === 256, 'the keychain key is AES-256-GCM');

  // Sealed per value, fresh IV each, id as associated data.
  const sealing = await page.evaluate(async () => {
    const kc = await import('/keychain.js');
    await kc.store('probe/one', 'probe-value-0123456789', { kind: 'other' });
    await kc.store('probe/two', 'probe-value-0123456789', { kind: 'other' });
    const db = await new Promise((res) => { const r = indexedDB.open('credshift-keychain'); r.onsuccess = () => res(r.result); });
    const get = (id) => new Promise((res) => { const r = db.transaction('items').objectStore('items').get(id); r.onsuccess = () => res(r.result); });
    const one = await get('probe/one');
    const two = await get('probe/two');
    const hex = (u) => Array.from(u, (x) => x.toString(16).padStart(2, '0')).join('');
    // Move record one to another id: it must not open there.
    const tx = db.transaction('items', 'readwrite');
    tx.objectStore('items').put({ ...one, id: 'probe/moved' });
    await new Promise((res) => { tx.oncomplete = res; });
    let movedOpened = true;
    try { await kc.retrieve('probe/moved'); } catch { movedOpened = false; }
    const back = await kc.retrieve('probe/one');
    for (const id of ['probe/one', 'probe/two', 'probe/moved']) await kc.delete(id);
    db.close();
    return {
      ivLen: one.iv.length, sameIv: hex(one.iv) === hex(two.iv), sameCt: hex(one.sealed) === hex(two.sealed),
      movedOpened, back: back.secret === 'probe-value-0123456789', after: (await kc.list()).length,
    };
  });
  check(sealing.ivLen === 12 && !sealing.sameIv && !sealing.sameCt, 'each value has its own fresh 12-byte IV');
  check(!sealing.movedOpened && sealing.back, 'a record moved to another id does not open (id is the associated data)');
  check(sealing.after === expected.length, 'keychain.delete removed the probes');

  if (config.screenshot) {
    await page.screenshot({ path: config.screenshot, fullPage: true });
    console.log(`ok - screenshot ${path.basename(config.screenshot)}`);
  }

  // Reveal one secret for 30 s.
  const revealId = config.reveal_id;
  const row = page.locator(`[data-testid=item][data-id="${revealId}"]`);
  const masked = await row.locator('[data-testid=preview]').textContent();
  await row.locator('[data-testid=reveal]').click();
  await page.waitForFunction((id) => document.querySelector(`[data-id="${id}"] [data-testid=preview]`).textContent.indexOf('(') === -1, revealId);
  check(await row.locator('[data-testid=preview]').textContent() === secrets[revealId], `${revealId}: reveal shows the secret`);
  const others = await page.$$eval('[data-testid=item]', (rows, id) => rows.filter((r) => r.dataset.id !== id).map((r) => r.innerText).join('\n'), revealId);
  assertNoSecret(others, secretValues.filter((s) => s !== secrets[revealId]), 'the other rows while one is revealed');
  await page.clock.runFor(29_000);
  check(await row.locator('[data-testid=preview]').textContent() === secrets[revealId], 'still shown after 29 s');
  await page.clock.runFor(1_500);
  check(await row.locator('[data-testid=preview]').textContent() === masked, 'masked again after 30 s');
  assertNoSecret(await pageText(page), secretValues, 'the page text after the reveal ended');

  // Export to a new bundle.
  await page.fill('input[data-testid=export-passphrase]', config.export_passphrase);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('button[data-testid=export]'),
  ]);
  await download.saveAs(config.export_to);
  check(fs.statSync(config.export_to).size > 0, `export downloaded ${download.suggestedFilename()}`);
  check(await page.inputValue('input[data-testid=export-passphrase]') === '', 'the export passphrase field is cleared');

  // Delete one, and it stays deleted after a reload.
  const victim = config.delete_id;
  await page.locator(`[data-testid=item][data-id="${victim}"] [data-testid=delete]`).click();
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid=item]').length === n, expected.length - 1);
  await page.reload();
  await page.waitForSelector('body[data-ready=true]');
  const left = await itemIds(page);
  check(left.length === expected.length - 1 && !left.includes(victim), `${victim} deleted, the rest kept`);

  check(b.foreign.length === 0, `no request left the page's origin (${b.foreign.join(', ')})`);
  check(b.consoleErrors.length === 0, `no console errors or CSP violations (${b.consoleErrors.join(' | ')})`);
  await b.close();
}

async function refusals() {
  const b = await launch();
  const { page } = b;
  await open(page);
  for (const c of config.cases) {
    const status = await importBundle(page, c.file, c.passphrase, { allowWeak: !!c.allow_weak });
    if (c.expect_imported !== undefined) {
      check(status.startsWith(`Imported ${c.expect_imported}`), `${c.name}: ${status}`);
      await page.evaluate(async () => {
        const kc = await import('/keychain.js');
        for (const it of await kc.list()) await kc.delete(it.id);
      });
      await page.reload();
      await page.waitForSelector('body[data-ready=true]');
      continue;
    }
    check(status.startsWith('Nothing imported') && status.includes(c.expect), `${c.name}: ${status}`);
    check((await itemIds(page)).length === 0, `${c.name}: no item listed`);
    const stored = await page.evaluate(async () => (await (await import('/keychain.js')).list()).length);
    check(stored === 0, `${c.name}: nothing stored in IndexedDB`);
    if (c.secrets) {
      assertNoSecret(await pageText(page), c.secrets, `${c.name}: the page text`);
    }
  }
  check(b.consoleErrors.length === 0, `no console errors (${b.consoleErrors.join(' | ')})`);
  await b.close();
}

async function maskRule() {
  const b = await launch();
  const { page } = b;
  await open(page);
  const got = await page.evaluate(async (cases) => {
    const { mask } = await import('/mask.js');
    return cases.map(([s, kind]) => mask(s, kind));
  }, config.cases.map((c) => [c.secret, c.kind]));
  config.cases.forEach((c, i) => check(got[i] === c.preview, `mask(${c.label}) = ${got[i]}`));
  await b.close();
}

async function addAuthenticator(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', ctap2Version: 'ctap2_1', transport: 'internal', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, hasPrf: true, automaticPresenceSimulation: true,
    },
  });
  return { cdp, authenticatorId };
}

async function statusAfterClick(page, selector) {
  await page.evaluate(() => { document.querySelector('[data-testid=status]').textContent = ''; });
  await page.click(selector);
  await page.waitForFunction(() => document.querySelector('[data-testid=status]').textContent !== '', null, { timeout: 120_000 });
  return page.textContent('[data-testid=status]');
}

async function passkey() {
  const secretValues = Object.values(config.secrets);
  const b = await launch();
  const { page, context } = b;
  const auth = await addAuthenticator(context, page);
  await open(page);
  const status = await importBundle(page, config.bundle, config.passphrase);
  check(status.startsWith(`Imported ${config.expected.length}`), `import: ${status}`);

  const protectedStatus = await statusAfterClick(page, 'button[data-testid=protect]');
  check(protectedStatus.includes('protected by your passkey'), `protect: ${protectedStatus}`);
  check((await itemIds(page)).length === config.expected.length, 'still listed while unlocked');
  const dump = await dumpIndexedDb(page);
  check(!dump.text.includes('CryptoKey('), 'the device key is gone from IndexedDB');
  assertNoSecret(dump.text, secretValues, 'IndexedDB under the passkey');

  await page.reload();
  await page.waitForSelector('body[data-ready=true]');
  check((await itemIds(page)).length === 0, 'after a reload the keychain is locked: nothing listed');
  check((await page.textContent('[data-testid=passkey-state]')).startsWith('Locked'), 'the page says it is locked');
  const locked = await page.evaluate(async (id) => {
    const kc = await import('/keychain.js');
    try { await kc.retrieve(id); return 'opened'; } catch (e) { return e.message; }
  }, config.expected[0].id);
  check(locked.includes('locked'), `retrieve while locked: ${locked}`);
  assertNoSecret(await pageText(page), secretValues, 'the locked page');

  const unlocked = await statusAfterClick(page, 'button[data-testid=unlock]');
  check(unlocked === 'Unlocked.', `unlock: ${unlocked}`);
  const ids = await itemIds(page);
  check(JSON.stringify(ids) === JSON.stringify(config.expected.map((e) => e.id)), 'every item back after unlocking with the passkey');
  for (const e of config.expected) {
    const got = await page.evaluate(async (id) => (await (await import('/keychain.js')).retrieve(id)).secret, e.id);
    if (got !== config.secrets[e.id]) throw new Error(`FAILED: ${e.id} differs after the passkey round`);
  }
  console.log('ok - every secret opens unchanged under the passkey');

  // Another authenticator (the passkey is gone): the keychain stays shut.
  await auth.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: auth.authenticatorId });
  await auth.cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', ctap2Version: 'ctap2_1', transport: 'internal', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, hasPrf: true, automaticPresenceSimulation: true,
    },
  });
  await page.reload();
  await page.waitForSelector('body[data-ready=true]');
  const refused = await statusAfterClick(page, 'button[data-testid=unlock]');
  check(refused.includes('passkey did not answer'), `without the passkey: ${refused}`);
  check((await itemIds(page)).length === 0, 'nothing listed without the passkey');
  check(b.consoleErrors.length === 0, `no console errors (${b.consoleErrors.join(' | ')})`);
  await b.close();
}

const scenarios = { 'round-trip': roundTrip, refusals, mask: maskRule, passkey };
try {
  await scenarios[config.scenario]();
  console.log('all passed');
} catch (e) {
  console.error(e.message ?? e);
  process.exit(1);
}
