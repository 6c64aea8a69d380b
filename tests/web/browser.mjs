// Drives credshift's browser keychain page in a real headless Chromium
// (Debian's `chromium`, driven by playwright-core). tests/web.rs starts
// `credshift web`, prepares bundles with the credshift binary and
// runs this script with CREDSHIFT_WEB_CONFIG naming a JSON file (0600, in a
// temp dir: it holds the test passphrases, never argv):
//
//   {"url", "scenario": "round-trip" | "refusals" | "mask" | "passkey" |
//    "conflicts" | "legacy" | "squat-setup" | "squat-attack" | "squat-owner" |
//    "missing", "profile"?: a browser profile kept across scenarios, ...}
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
  // A profile the test names survives this run (the squatter scenarios
  // reopen the same browser data); else a fresh one, removed after.
  const keep = !!config.profile;
  const profile = config.profile ?? fs.mkdtempSync(path.join(os.tmpdir(), 'credshift-chromium-'));
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
      if (!keep) fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

async function open(page) {
  await page.goto(config.url);
  await page.waitForSelector('body[data-ready=true]');
}

async function statusAfter(page, action) {
  await page.evaluate(() => { document.querySelector('[data-testid=status]').textContent = ''; });
  await action();
  await page.waitForFunction(() => document.querySelector('[data-testid=status]').textContent !== '', null, { timeout: 120_000 });
  return page.textContent('[data-testid=status]');
}

/** Make the keychain with a keychain passphrase through the page's form. */
async function createKeychain(page, passphrase) {
  await page.fill('input[data-testid=create-passphrase]', passphrase);
  await page.fill('input[data-testid=create-confirm]', passphrase);
  return statusAfter(page, () => page.click('button[data-testid=create]'));
}

/** Unlock with the keychain passphrase through the page's form. */
async function unlockKeychain(page, passphrase) {
  await page.fill('input[data-testid=keychain-passphrase]', passphrase);
  return statusAfter(page, () => page.click('button[data-testid=unlock-passphrase]'));
}

async function reloadAndUnlock(page) {
  await page.reload();
  await page.waitForSelector('body[data-ready=true]');
  const status = await unlockKeychain(page, config.keychain_passphrase);
  check(status === 'Unlocked.', `unlock after a reload: ${status}`);
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
  check(await page.isHidden('[data-testid=missing]'), 'no "keychain missing" warning where none was made');
  const lead = await page.textContent('[data-testid=lead]');
  check(lead.includes('keychain passphrase') && !lead.includes('will not hand out'), 'the page says in plain words what protects the keychain');
  const weak = await createKeychain(page, 'short');
  check(weak.includes('at least 8 characters'), `a short keychain passphrase is refused: ${weak}`);
  const made = await createKeychain(page, config.keychain_passphrase);
  check(made.startsWith('Keychain created'), `create: ${made}`);
  check(await page.inputValue('input[data-testid=create-passphrase]') === '', 'the keychain passphrase field is cleared');
  check(await page.isHidden('[data-testid=create-passphrase]') && await page.isHidden('[data-testid=keychain-passphrase]'), 'no keychain form is shown once it is made and open');

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
  check((await itemIds(page)).length === 0, 'after a reload nothing is listed until the keychain is unlocked');
  check(await page.isVisible('[data-testid=keychain-passphrase]') && await page.isHidden('[data-testid=create-passphrase]'), 'a locked keychain shows the unlock form only');
  const wrong = await unlockKeychain(page, `${config.keychain_passphrase}!`);
  check(wrong.includes('wrong keychain passphrase'), `a wrong keychain passphrase: ${wrong}`);
  const unlocked = await unlockKeychain(page, config.keychain_passphrase);
  check(unlocked === 'Unlocked.', `unlock: ${unlocked}`);
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

  // Export to a new bundle: credshift's passphrase rule first.
  for (const bad of ['x', 'Password1']) {
    await page.fill('input[data-testid=export-passphrase]', bad);
    const refused = await statusAfter(page, () => page.click('button[data-testid=export]'));
    check(refused.startsWith('Nothing exported') && refused.includes('at least 8 characters'), `export under ${JSON.stringify(bad)}: ${refused}`);
  }
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
  await reloadAndUnlock(page);
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
  check((await createKeychain(page, config.keychain_passphrase)).startsWith('Keychain created'), 'keychain created');
  for (const c of config.cases) {
    const status = await importBundle(page, c.file, c.passphrase, { allowWeak: !!c.allow_weak });
    if (c.expect_imported !== undefined) {
      check(status.startsWith(`Imported ${c.expect_imported}`), `${c.name}: ${status}`);
      await page.evaluate(async () => {
        const kc = await import('/keychain.js');
        for (const it of await kc.list()) await kc.delete(it.id);
      });
      await reloadAndUnlock(page);
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
  return statusAfter(page, () => page.click(selector));
}

async function passkey() {
  const secretValues = Object.values(config.secrets);
  const b = await launch();
  const { page, context } = b;
  const auth = await addAuthenticator(context, page);
  await open(page);
  check((await createKeychain(page, config.keychain_passphrase)).startsWith('Keychain created'), 'keychain created');
  const status = await importBundle(page, config.bundle, config.passphrase);
  check(status.startsWith(`Imported ${config.expected.length}`), `import: ${status}`);

  const protectedStatus = await statusAfterClick(page, 'button[data-testid=protect]');
  check(protectedStatus.includes('protected by your passkey'), `protect: ${protectedStatus}`);
  check((await itemIds(page)).length === config.expected.length, 'still listed while unlocked');
  const dump = await dumpIndexedDb(page);
  check(!dump.text.includes('CryptoKey('), 'no usable key in IndexedDB');
  check(!dump.text.split('\n').includes('wrapped'), 'the passphrase-wrapped key is gone');
  assertNoSecret(dump.text, secretValues, 'IndexedDB under the passkey');

  await page.reload();
  await page.waitForSelector('body[data-ready=true]');
  check((await itemIds(page)).length === 0, 'after a reload the keychain is locked: nothing listed');
  check((await page.textContent('[data-testid=keychain-state]')).startsWith('Locked'), 'the page says it is locked');
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

async function secretOf(page, id) {
  return page.evaluate(async (i) => (await (await import('/keychain.js')).retrieve(i))?.secret ?? null, id);
}

/** Issue 23: an import never replaces a stored value silently. */
async function conflicts() {
  const b = await launch();
  const { page } = b;
  await open(page);
  check((await createKeychain(page, config.keychain_passphrase)).startsWith('Keychain created'), 'keychain created');
  const first = await importBundle(page, config.first, config.passphrase);
  check(first.startsWith(`Imported ${config.first_count} credentials`), `first import: ${first}`);
  const id = config.conflict_id;
  const second = await importBundle(page, config.second, config.passphrase);
  check(second.includes('Imported 1 credential from') && second.includes('1 already stored unchanged')
    && second.includes(`kept, not replaced: ${id}`), `second import lists what it kept: ${second}`);
  check(await secretOf(page, id) === config.old_secret, `${id} still holds the stored value`);
  check(await secretOf(page, config.new_id) === config.new_secret, `${config.new_id} (new) was imported`);
  check(await page.isVisible('[data-testid=conflicts]'), 'the page offers the choice');
  check(await page.textContent('[data-testid=conflict-ids]') === id, 'the choice names the id');
  assertNoSecret(await pageText(page), [config.old_secret, config.new_secret], 'the page text while choosing');

  await page.fill('input[data-testid=conflict-export-passphrase]', 'short');
  const refused = await statusAfter(page, () => page.click('button[data-testid=export-conflicts]'));
  check(refused.includes('at least 8 characters'), `a short passphrase for the copy: ${refused}`);
  await page.fill('input[data-testid=conflict-export-passphrase]', config.export_passphrase);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('button[data-testid=export-conflicts]'),
  ]);
  await download.saveAs(config.conflict_export_to);
  check(download.suggestedFilename().startsWith('credshift-before-replace-'), `the stored value exported first: ${download.suggestedFilename()}`);

  const replaced = await statusAfter(page, () => page.click('button[data-testid=replace-conflicts]'));
  check(replaced === `Replaced 1 credential: ${id}.`, `replace: ${replaced}`);
  check(await secretOf(page, id) === config.replacement_secret, `${id} holds the bundle's value once chosen`);
  check(await page.isHidden('[data-testid=conflicts]'), 'the choice is gone once made');
  const again = await importBundle(page, config.second, config.passphrase);
  check(again.includes('Imported 0 credentials') && again.includes('3 already stored unchanged') && !again.includes('kept'), `importing it again changes nothing: ${again}`);
  check(b.consoleErrors.length === 0, `no console errors (${b.consoleErrors.join(' | ')})`);
  await b.close();
}

/** The owner makes a keychain at credshift's URL and fills it. */
async function squatSetup() {
  const b = await launch();
  const { page } = b;
  await open(page);
  check(new URL(page.url()).origin === new URL(config.url).origin, `the page is at ${config.url}`);
  check((await createKeychain(page, config.keychain_passphrase)).startsWith('Keychain created'), 'keychain created');
  const status = await importBundle(page, config.bundle, config.passphrase);
  check(status.startsWith(`Imported ${config.expected.length} credential`), `import: ${status}`);
  check(b.consoleErrors.length === 0, `no console errors (${b.consoleErrors.join(' | ')})`);
  await b.close();
}

/** The same browser opens the same URL; the squatter answers. */
async function squatAttack() {
  const b = await launch();
  const { page } = b;
  await page.goto(config.url);
  await page.waitForSelector('body[data-done=true]', { timeout: 120_000 });
  const result = JSON.parse(await page.textContent('#result'));
  console.log(`squatter saw: origin ${result.origin}, ${result.items.length} sealed records, key records [${result.keyRecords}], ${result.cryptoKeys} CryptoKeys, ${result.guesses} passphrase guesses, API: ${Object.entries(result.api).map(([k, v]) => `${k} ${v.ok ? 'OPENED' : `refused (${v.error})`}`).join('; ')}`);
  check(result.origin === new URL(config.url).origin, `the squatter's page shares the keychain's origin (${result.origin})`);
  check(result.items.length === config.expected.length, `it reads the ${config.expected.length} sealed records`);
  check(result.cryptoKeys === 0, 'it finds no usable key in IndexedDB');
  check(result.decrypted.length === 0, 'it decrypts nothing');
  check(Object.values(result.api).every((v) => !v.ok), "credshift's own keychain.js opens nothing for it");
  assertNoSecret(await pageText(page), Object.values(config.secrets), "the squatter's page");
  await b.close();
}

/** Back at credshift's page, the owner's keychain opens with its passphrase. */
async function squatOwner() {
  const b = await launch();
  const { page } = b;
  await open(page);
  check(await page.isHidden('[data-testid=missing]'), 'no "keychain missing" warning: it is there');
  const status = await unlockKeychain(page, config.keychain_passphrase);
  check(status === 'Unlocked.', `unlock: ${status}`);
  check((await itemIds(page)).length === config.expected.length, 'every item is listed');
  for (const [id, secret] of Object.entries(config.secrets)) {
    if (await secretOf(page, id) !== secret) throw new Error(`FAILED: ${id} differs`);
  }
  console.log('ok - every secret opens unchanged for the owner');
  check(b.consoleErrors.length === 0, `no console errors (${b.consoleErrors.join(' | ')})`);
  await b.close();
}

/** A browser with no keychain where credshift remembers making one. */
async function missing() {
  const b = await launch();
  const { page } = b;
  await open(page);
  check(await page.isVisible('[data-testid=missing]'), 'the page says no keychain was found where one was made');
  const text = await page.textContent('[data-testid=missing]');
  check(text.includes('No keychain was found here'), text);
  await b.close();
}

/** A keychain as an earlier credshift left it: its key unwrapped in IndexedDB. */
async function legacy() {
  const b = await launch();
  const { page } = b;
  await open(page);
  await page.evaluate(async (secrets) => {
    const db = await new Promise((res) => { const r = indexedDB.open('credshift-keychain', 1); r.onsuccess = () => res(r.result); });
    const k = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    const tx = db.transaction(['keys', 'items'], 'readwrite');
    tx.objectStore('keys').put(k, 'master');
    for (const [id, secret] of Object.entries(secrets)) {
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const plain = new TextEncoder().encode(JSON.stringify({ secret, metadata: {} }));
      const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: new TextEncoder().encode(id) }, k, plain));
      tx.objectStore('items').put({ id, kind: 'api_key', iv, sealed });
    }
    await new Promise((res) => { tx.oncomplete = res; });
    db.close();
  }, config.secrets);
  await page.reload();
  await page.waitForSelector('body[data-ready=true]');
  const words = await page.textContent('[data-testid=keychain-state]');
  check(words.includes('earlier credshift'), `the page says the keychain is not protected yet: ${words}`);
  check((await itemIds(page)).length === 0, 'nothing listed before it is protected');
  const made = await createKeychain(page, config.keychain_passphrase);
  check(made === 'The keychain is now protected by your keychain passphrase.', `protect: ${made}`);
  const ids = Object.keys(config.secrets).sort();
  check(JSON.stringify(await itemIds(page)) === JSON.stringify(ids), 'its values are kept');
  for (const id of ids) check(await secretOf(page, id) === config.secrets[id], `${id} opens unchanged`);
  const dump = await dumpIndexedDb(page);
  check(!dump.text.includes('CryptoKey('), 'the unprotected key is gone from IndexedDB');
  await reloadAndUnlock(page);
  check((await itemIds(page)).length === ids.length, 'it opens with the keychain passphrase after a reload');
  check(b.consoleErrors.length === 0, `no console errors (${b.consoleErrors.join(' | ')})`);
  await b.close();
}

const scenarios = {
  legacy,
  'round-trip': roundTrip, refusals, mask: maskRule, passkey, conflicts,
  'squat-setup': squatSetup, 'squat-attack': squatAttack, 'squat-owner': squatOwner, missing,
};
try {
  await scenarios[config.scenario]();
  console.log('all passed');
} catch (e) {
  console.error(e.message ?? e);
  process.exit(1);
}
