// The page: import a bundle into the browser keychain, list, reveal for
// 30 s, delete, export a new bundle. Everything happens in this browser;
// the server only hands out these files.

import * as keychain from './keychain.js';
import { openBundle, sealBundle, BundleError } from './envelope.js';

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

async function refreshPasskey() {
  const webauthn = !!window.PublicKeyCredential;
  const prot = await keychain.isPasskeyProtected();
  const locked = await keychain.isLocked();
  $('protect').hidden = prot || !webauthn;
  $('unlock').hidden = !locked;
  $('passkey-state').textContent = prot
    ? (locked ? 'Locked: this keychain opens only with its passkey.' : 'Protected by a passkey, unlocked on this page until it is closed.')
    : (webauthn ? 'Optional: protect this keychain with a passkey (WebAuthn PRF); it then opens only with that passkey.' : 'This browser has no WebAuthn.');
}

async function render() {
  for (const t of revealTimers.values()) clearTimeout(t);
  revealTimers.clear();
  await refreshPasskey();
  const rows = $('item-rows');
  rows.replaceChildren();
  if (await keychain.isLocked()) {
    $('items').hidden = true;
    $('empty').hidden = false;
    $('empty').textContent = 'Locked: unlock with the passkey to see the credentials.';
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

async function onImport(ev) {
  ev.preventDefault();
  const file = $('bundle-file').files[0];
  const pass = $('passphrase');
  if (!file) {
    say('Choose a bundle file first.', 'error');
    return;
  }
  $('import').disabled = true;
  say(`Opening ${file.name}…`);
  try {
    const items = await openBundle(await file.text(), pass.value, { allowWeak: $('allow-weak').checked });
    await keychain.storeMany(items);
    pass.value = '';
    say(`Imported ${items.length} credential${items.length === 1 ? '' : 's'} from ${file.name}.`, 'ok');
    await render();
  } catch (e) {
    say(`Nothing imported: ${failure(e)}`, 'error');
  } finally {
    $('import').disabled = false;
  }
}

async function onExport(ev) {
  ev.preventDefault();
  const pass = $('export-passphrase');
  $('export').disabled = true;
  try {
    const items = await keychain.all();
    const text = await sealBundle(items, pass.value);
    pass.value = '';
    const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `credshift-${new Date().toISOString().slice(0, 10)}.bundle`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    say(`Exported ${items.length} credential${items.length === 1 ? '' : 's'} to ${a.download}.`, 'ok');
  } catch (e) {
    say(`Nothing exported: ${failure(e)}`, 'error');
  } finally {
    $('export').disabled = false;
  }
}

async function passkeyAction(action, done) {
  try {
    await action();
    say(done, 'ok');
  } catch (e) {
    say(failure(e), 'error');
  }
  await render();
}

$('protect').addEventListener('click', () => passkeyAction(keychain.protectWithPasskey, 'The keychain is now protected by your passkey.'));
$('unlock').addEventListener('click', () => passkeyAction(keychain.unlock, 'Unlocked.'));
$('import-form').addEventListener('submit', onImport);
$('export-form').addEventListener('submit', onExport);
render().then(
  () => { document.body.dataset.ready = 'true'; },
  (e) => say(`The keychain cannot be read: ${failure(e)}`, 'error'),
);
