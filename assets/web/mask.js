// credshift's masked preview (DESIGN.md, "Masked preview"), the same rule
// the CLI and the wizard apply:
// - secrets of 16+ characters show a known public prefix (at most its
//   first 7 characters) and the last 4 characters, but only while at
//   least 12 characters stay hidden; otherwise the prefix alone, or nothing;
// - shorter secrets show only their length;
// - passwords and password hashes never show a tail.

export const KNOWN_PREFIXES = ['sk-ant-', 'sk-', 'gho_', 'ghp_', 'cnp_', 'xoxb-'];
const MIN_HIDDEN = 12;

/** Count characters as Rust's `chars()` does: Unicode scalar values. */
function chars(s) {
  return Array.from(s);
}

export function mask(secret, kind = 'other') {
  const cs = chars(secret);
  const n = cs.length;
  const counted = `(${n} chars)`;
  if (n < 16) {
    return `•••• ${counted}`;
  }
  const known = KNOWN_PREFIXES.find((p) => secret.startsWith(p));
  const prefix = known ? chars(known).slice(0, 7).join('') : '';
  const p = chars(prefix).length;
  const noTail = kind === 'password' || kind === 'password_hash';
  if (!noTail && n - p - 4 >= MIN_HIDDEN) {
    return `${prefix}…${cs.slice(n - 4).join('')} ${counted}`;
  }
  if (prefix && n - p >= MIN_HIDDEN) {
    return `${prefix}… ${counted}`;
  }
  return `•••• ${counted}`;
}
