// The page: make or unlock the keychain, import a bundle into it (never
// replacing a stored value unless asked), list, reveal for 30 s, delete,
// export a new bundle. Everything happens in this browser; the server only
// hands out these files and remembers that a keychain was made here.

import * as keychain from './keychain.js';
import { openBundle, sealBundle, BundleError, PASSPHRASE_RULE } from './envelope.js';

const REVEAL_MS = 30_000;
const $ = (id) => document.getElementById(id);
const revealTimers = new Map();

function say(text, kind = '') {
  const s = $('status');
  s.textContent = text;
  s.className = kind;
}

function failure(e) {
  // Our own errors are written to be shown; anything else is named by type
  // only, so no value can slip into the page through a message.
  return e instanceof BundleError || e instanceof keychain.KeychainError ? e.message : `unexpected error (${e?.name ?? 'unknown'})`;
}

/** Expiry in epoch ms from `expires_at`, as credshift reads it. */
function expiresAtMs(metadata) {
  const v = metadata?.expires_at;
  if (typeof v === 'number' && Number.isFinite(v)) return v < 100_000_000_000 ? v * 1000 : v;
  if (typeof v === 'string') {
    const t = Date.parse(v);
    return Number.isNaN(t) ? null : t;
  }
  return null;
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function button(label, testid, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'quiet';
  b.textContent = label;
  b.dataset.testid = testid;
  b.addEventListener('click', onClick);
  return b;
}

/** Whether credshift remembers making a keychain for this address. */
async function keychainExpected() {
  try {
    const r = await fetch('/state.json', { cache: 'no-store' });
    return r.ok && (await r.json()).keychain_expected === true;
  } catch {
    return false;
  }
}

async function keychainMade() {
  // Best effort: only the warning about a missing keychain depends on it.
  try { await fetch('/keychain-made', { method: 'POST' }); } catch { /* offline */ }
}

async function refreshKeychain() {
  const webauthn = !!window.PublicKeyCredential;
  const { kind, unlocked } = await keychain.state();
  const expected = kind === 'none' && await keychainExpected();
  $('missing').hidden = !expected;
  $('create-form').hidden = !(kind === 'none' || kind === 'legacy');
  $('create').textContent = kind === 'legacy' ? 'Protect the keychain' : 'Create the keychain';
  $('unlock-form').hidden = !(kind === 'passphrase' && !unlocked);
  $('unlock').hidden = !(kind === 'passkey' && !unlocked);
  $('protect').hidden = !webauthn || !((kind === 'passphrase' && unlocked) || kind === 'none');
  $('protect').textContent = kind === 'none' ? 'Create it with a passkey' : 'Protect with a passkey instead';
  $('lock').hidden = !unlocked;
  const words = {
    none: `There is no keychain in this browser for this address yet. Make one with a keychain passphrase (${PASSPHRASE_RULE})${webauthn ? ' or a passkey' : ''}; you give it each time you open this page.`,
    legacy: 'This keychain was made by an earlier credshift, whose key any page at this address could use. Set a keychain passphrase to protect it; the values stay.',
    orphaned: 'This keychain\'s key is gone: its values cannot be opened here.',
    passphrase: unlocked ? 'Unlocked with the keychain passphrase until this page is closed or locked.' : 'Locked: this keychain opens only with its keychain passphrase.',
    passkey: unlocked ? 'Unlocked with the passkey until this page is closed or locked.' : 'Locked: this keychain opens only with its passkey.',
  };
  $('keychain-state').textContent = words[kind];
  return { kind, unlocked };
}

async function render() {
  for (const t of revealTimers.values()) clearTimeout(t);
  revealTimers.clear();
  const { unlocked } = await refreshKeychain();
  const rows = $('item-rows');
  rows.replaceChildren();
  $('import').disabled = !unlocked;
  if (!unlocked) {
    $('items').hidden = true;
    $('empty').hidden = false;
    $('empty').textContent = 'Locked or not made yet: nothing to show.';
    $('count').textContent = '';
    $('export').disabled = true;
    return;
  }
  $('empty').textContent = 'Nothing stored yet.';
  const items = await keychain.list();
  for (const it of items) {
    const tr = document.createElement('tr');
    tr.dataset.testid = 'item';
    tr.dataset.id = it.id;
    const exp = expiresAtMs(it.metadata);
    const expired = exp !== null && exp < Date.now();
    const secret = cell(it.preview, 'secret');
    secret.dataset.testid = 'preview';
    const idCell = cell(it.id);
    idCell.dataset.testid = 'item-id';
    const expCell = cell(exp === null ? '—' : `${new Date(exp).toISOString().slice(0, 16).replace('T', ' ')}${expired ? '\nexpired' : ''}`, 'when');
    if (expired) expCell.classList.add('expired');
    const actions = document.createElement('td');
    actions.className = 'actions';
    const reveal = button('Reveal', 'reveal', () => toggleReveal(it, secret, reveal));
    actions.append(reveal, ' ', button('Delete', 'delete', () => remove(it.id)));
    tr.append(idCell, cell(it.kind), expCell, secret, actions);
    rows.append(tr);
  }
  $('items').hidden = items.length === 0;
  $('empty').hidden = items.length !== 0;
  $('count').textContent = `(${items.length})`;
  $('export').disabled = items.length === 0;
}

function hide(it, secretCell, btn) {
  clearTimeout(revealTimers.get(it.id));
  revealTimers.delete(it.id);
  secretCell.textContent = it.preview;
  secretCell.classList.remove('revealed');
  btn.textContent = 'Reveal';
}

async function toggleReveal(it, secretCell, btn) {
  if (revealTimers.has(it.id)) {
    hide(it, secretCell, btn);
    return;
  }
  try {
    const c = await keychain.retrieve(it.id);
    if (!c) return render();
    secretCell.textContent = c.secret;
    secretCell.classList.add('revealed');
    btn.textContent = 'Hide';
    revealTimers.set(it.id, setTimeout(() => hide(it, secretCell, btn), REVEAL_MS));
  } catch (e) {
    say(`${it.id}: ${failure(e)}`, 'error');
  }
}

async function remove(id) {
  if (!window.confirm(`Delete ${id} from this browser's keychain?`)) return;
  await keychain.delete(id);
  say(`Deleted ${id}.`, 'ok');
  await render();
}

/** The bundle's credentials whose ids hold other values here, until the user decides. */
let pending = [];

function showConflicts() {
  $('conflicts').hidden = pending.length === 0;
  $('conflict-ids').textContent = pending.map((c) => c.id).join(', ');
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

async function onImport(ev) {
  ev.preventDefault();
  const file = $('bundle-file').files[0];
  const pass = $('passphrase');
  if (!file) {
    say('Choose a bundle file first.', 'error');
    return;
  }
  $('import').disabled = true;
  pending = [];
  showConflicts();
  say(`Opening ${file.name}…`);
  try {
    const items = await openBundle(await file.text(), pass.value, { allowWeak: $('allow-weak').checked });
    // Never a silent replacement: a stored id with another value is kept
    // and listed; replacing it is the user's choice below.
    const { fresh, same, differ } = await keychain.compare(items);
    await keychain.storeMany(fresh);
    pass.value = '';
    let text = `Imported ${plural(fresh.length, 'credential')} from ${file.name}.`;
    if (same.length) text += ` ${same.length} already stored unchanged.`;
    if (differ.length) {
      text += ` ${differ.length} already stored with another value ${differ.length === 1 ? 'was' : 'were'} kept, not replaced: ${differ.map((c) => c.id).join(', ')}.`;
    }
    pending = differ;
    // The list first, then the status: whoever waits for the status finds the rows.
    await render();
    showConflicts();
    say(text, differ.length ? 'error' : 'ok');
  } catch (e) {
    say(`Nothing imported: ${failure(e)}`, 'error');
  } finally {
    $('import').disabled = !(await keychain.state()).unlocked;
  }
}

/** Seal `items` under the passphrase in `input` and hand the file to the browser. */
async function download(items, input, name) {
  const text = await sealBundle(items, input.value);
  input.value = '';
  const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = `${name}-${new Date().toISOString().slice(0, 10)}.bundle`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return a.download;
}

async function onExport(ev) {
  ev.preventDefault();
  $('export').disabled = true;
  try {
    const items = await keychain.all();
    const file = await download(items, $('export-passphrase'), 'credshift');
    say(`Exported ${plural(items.length, 'credential')} to ${file}.`, 'ok');
  } catch (e) {
    say(`Nothing exported: ${failure(e)}`, 'error');
  } finally {
    $('export').disabled = false;
  }
}

async function onExportConflicts(ev) {
  ev.preventDefault();
  try {
    const ids = new Set(pending.map((c) => c.id));
    const stored = (await keychain.all()).filter((c) => ids.has(c.id));
    const file = await download(stored, $('conflict-export-passphrase'), 'credshift-before-replace');
    say(`Exported the ${plural(stored.length, 'stored value')} to ${file}.`, 'ok');
  } catch (e) {
    say(`Nothing exported: ${failure(e)}`, 'error');
  }
}

async function onReplaceConflicts() {
  const ids = pending.map((c) => c.id);
  if (!window.confirm(`Replace the stored ${ids.join(', ')} with the bundle's values?`)) return;
  try {
    await keychain.storeMany(pending);
    pending = [];
    await render();
    showConflicts();
    say(`Replaced ${plural(ids.length, 'credential')}: ${ids.join(', ')}.`, 'ok');
  } catch (e) {
    say(`Nothing replaced: ${failure(e)}`, 'error');
  }
}

function onKeepConflicts() {
  say(`Kept the stored ${pending.map((c) => c.id).join(', ')}.`, 'ok');
  pending = [];
  showConflicts();
}

async function onCreate(ev) {
  ev.preventDefault();
  const pass = $('create-passphrase');
  const again = $('create-confirm');
  try {
    if (pass.value !== again.value) throw new keychain.KeychainError('the two entries differ; type them again');
    const wasLegacy = (await keychain.state()).kind === 'legacy';
    await keychain.create(pass.value);
    pass.value = '';
    again.value = '';
    await keychainMade();
    await render();
    say(wasLegacy ? 'The keychain is now protected by your keychain passphrase.' : 'Keychain created: it opens with your keychain passphrase.', 'ok');
  } catch (e) {
    pass.value = '';
    again.value = '';
    await render();
    say(failure(e), 'error');
  }
}

async function onUnlock(ev) {
  ev.preventDefault();
  const pass = $('keychain-passphrase');
  try {
    await keychain.unlock(pass.value);
    pass.value = '';
    await render();
    say('Unlocked.', 'ok');
  } catch (e) {
    pass.value = '';
    await render();
    say(failure(e), 'error');
  }
}

async function passkeyAction(action, done) {
  try {
    await action();
    await render();
    say(done, 'ok');
  } catch (e) {
    await render();
    say(failure(e), 'error');
  }
}

$('protect').addEventListener('click', () => passkeyAction(async () => {
  await keychain.protectWithPasskey();
  await keychainMade();
}, 'The keychain is now protected by your passkey.'));
$('unlock').addEventListener('click', () => passkeyAction(() => keychain.unlock(), 'Unlocked.'));
$('lock').addEventListener('click', async () => {
  keychain.lock();
  pending = [];
  showConflicts();
  say('Locked.', 'ok');
  await render();
});
$('create-form').addEventListener('submit', onCreate);
$('unlock-form').addEventListener('submit', onUnlock);
$('import-form').addEventListener('submit', onImport);
$('export-form').addEventListener('submit', onExport);
$('conflict-export-form').addEventListener('submit', onExportConflicts);
$('replace-conflicts').addEventListener('click', onReplaceConflicts);
$('keep-conflicts').addEventListener('click', onKeepConflicts);
render().then(
  () => { document.body.dataset.ready = 'true'; },
  (e) => say(`The keychain cannot be read: ${failure(e)}`, 'error'),
);
