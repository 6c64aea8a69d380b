//! What an envelope file holds, decrypted: the plaintext as one buffer,
//! `[fragment,fragment,...]` in id order, exactly the bytes the file
//! seals, and where each item's fragment sits in it.
//!
//! One buffer instead of a fragment per item and a map of them: a
//! 100,000-item file was 100,000 small blocks and a B-tree beside them (28
//! MB, kept in the heap after use), and each save joined the fragments into
//! a third copy to seal. Now a save builds the new buffer once, at its
//! exact size, from the old one and the batch's changes, seals it in place,
//! writes it, and decrypts it back in place to keep using it.

use std::collections::BTreeMap;
use std::ops::Range;

use zeroize::Zeroizing;

use crate::credential::{Credential, CredentialId};
use crate::crypto::aead::TAG_LEN;
use crate::crypto::envelope;
use crate::error::Result;

/// A decrypted file.
pub(super) struct Plain {
    buf: Zeroizing<Vec<u8>>,
    /// Each item's id and its fragment's place in `buf`, sorted by id.
    index: Index,
}

/// Each item's id and its fragment's place in a plaintext, sorted by id.
pub(super) type Index = Vec<(CredentialId, Range<usize>)>;

impl Plain {
    pub(super) fn empty() -> Plain {
        Plain {
            buf: Zeroizing::new(b"[]".to_vec()),
            index: Vec::new(),
        }
    }

    /// `buf` (a decrypted file) kept as it is, with its index, when it is
    /// byte for byte what a rebuild of its items makes (what this store
    /// writes: every fragment as [`envelope::encode_credential_fragment`]
    /// writes it, ids ascending, nothing between). Else `buf` back, for the
    /// rebuild. A file this store wrote is opened without a list of every
    /// credential, a map of them and a second plaintext beside it (most of
    /// a 100,000-item verify's peak).
    pub(super) fn adopt(
        buf: Zeroizing<Vec<u8>>,
    ) -> std::result::Result<Plain, Zeroizing<Vec<u8>>> {
        // Each item starts `{"id":` and no JSON string holds `{"` (a quote
        // in a string is escaped): the count, or more when metadata has an
        // `id` key.
        let pattern = b"{\"id\":";
        let at_most = buf.windows(pattern.len()).filter(|w| w == pattern).count();
        let mut index: Vec<(CredentialId, Range<usize>)> = Vec::with_capacity(at_most);
        let mut pos = 1;
        let mut canonical = buf.first() == Some(&b'[');
        let walked = canonical
            && envelope::for_each_credential(&buf, |c| {
                if !index.is_empty() {
                    if buf.get(pos) != Some(&b',') {
                        canonical = false;
                        return false;
                    }
                    pos += 1;
                }
                let Ok(fragment) = envelope::encode_credential_fragment(&c) else {
                    canonical = false;
                    return false;
                };
                let end = pos + fragment.len();
                let same = buf
                    .get(pos..end)
                    .is_some_and(|b| crate::credential::ct_eq_bytes(b, &fragment));
                if !same || index.last().is_some_and(|(last, _)| *last >= c.id) {
                    canonical = false;
                    return false;
                }
                index.push((c.id, pos..end));
                pos = end;
                true
            });
        if !(walked && canonical && pos + 1 == buf.len() && buf[pos] == b']') {
            return Err(buf);
        }
        index.shrink_to_fit();
        Ok(Plain { buf, index })
    }

    /// `buf`, a plaintext known to be as a save writes it (the same bytes
    /// as one [`Plain::adopt`] or a save had), indexed by a scan of its
    /// fragments' bounds: each id parsed, no value decoded. `buf` back when
    /// the scan finds anything else.
    pub(super) fn index_known(
        buf: Zeroizing<Vec<u8>>,
    ) -> std::result::Result<Plain, Zeroizing<Vec<u8>>> {
        let head: &[u8] = b"{\"id\":";
        let at_most = buf.windows(head.len()).filter(|w| w == &head).count();
        let mut index: Index = Vec::with_capacity(at_most);
        let mut pos = 1;
        if buf.first() != Some(&b'[') {
            return Err(buf);
        }
        while buf.get(pos) != Some(&b']') {
            if !index.is_empty() {
                if buf.get(pos) != Some(&b',') {
                    return Err(buf);
                }
                pos += 1;
            }
            let Some(end) = fragment_end(&buf, pos) else {
                return Err(buf);
            };
            // The id is the fragment's first value: a JSON string.
            let id_at = pos + head.len();
            let id = string_end(&buf, id_at)
                .and_then(|e| serde_json::from_slice::<CredentialId>(&buf[id_at..e]).ok());
            // Ascending and unique, as `adopt` checks: an id whose
            // namespace holds `/` reads back split elsewhere, and an
            // unsorted index would make `binary_search` miss items.
            match id {
                Some(id)
                    if buf[pos..].starts_with(head)
                        && index.last().is_none_or(|(last, _)| *last < id) =>
                {
                    index.push((id, pos..end))
                }
                _ => return Err(buf),
            }
            pos = end;
        }
        if pos + 1 != buf.len() {
            return Err(buf);
        }
        Ok(Plain { buf, index })
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    fn position(&self, id: &CredentialId) -> Option<usize> {
        self.index.binary_search_by(|(k, _)| k.cmp(id)).ok()
    }

    pub(super) fn get(&self, id: &CredentialId) -> Option<&[u8]> {
        self.position(id).map(|i| &self.buf[self.index[i].1.clone()])
    }

    pub(super) fn contains_key(&self, id: &CredentialId) -> bool {
        self.position(id).is_some()
    }

    /// Every item, in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&CredentialId, &[u8])> {
        self.index.iter().map(|(id, r)| (id, &self.buf[r.clone()]))
    }

    /// The plaintext, to seal, with room for the GCM tag (sealing in
    /// place then never regrows it); [`Plain::restore`] puts it back.
    pub(super) fn take_buffer(&mut self) -> Zeroizing<Vec<u8>> {
        std::mem::take(&mut self.buf)
    }

    /// The plaintext [`Plain::take_buffer`] took, decrypted again.
    pub(super) fn restore(&mut self, buf: Zeroizing<Vec<u8>>) {
        self.buf = buf;
    }
}

/// Where the JSON object starting at `at` ends (one past its `}`).
fn fragment_end(buf: &[u8], at: usize) -> Option<usize> {
    if buf.get(at) != Some(&b'{') {
        return None;
    }
    let (mut depth, mut i) = (0usize, at);
    while i < buf.len() {
        match buf[i] {
            b'"' => i = string_end(buf, i)? - 1,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where the JSON string starting at `at` (its opening quote) ends (one
/// past its closing quote).
fn string_end(buf: &[u8], at: usize) -> Option<usize> {
    if buf.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    while i < buf.len() {
        match buf[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// A batch's changes to a [`Plain`], applied by one rebuild.
pub(super) struct Edit<'a> {
    base: Plain,
    /// By id. Batch-sized.
    changes: BTreeMap<CredentialId, Change<'a>>,
}

/// What becomes of one id.
enum Change<'a> {
    /// Serialized straight into the rebuilt plaintext (a batch's items as
    /// fragments beside both buffers were 6 MB of a save's peak); its
    /// length, measured when it was put.
    Put(&'a Credential, usize),
    Fragment(Zeroizing<Vec<u8>>),
    Remove,
}

/// An item as an [`Edit`] holds it.
pub(super) enum Item<'e> {
    Fragment(&'e [u8]),
    Credential(&'e Credential),
}

impl<'a> Edit<'a> {
    pub(super) fn new(base: Plain) -> Edit<'a> {
        Edit {
            base,
            changes: BTreeMap::new(),
        }
    }

    /// The item under `id` with the changes so far.
    pub(super) fn get(&self, id: &CredentialId) -> Option<Item<'_>> {
        match self.changes.get(id) {
            Some(Change::Put(c, _)) => Some(Item::Credential(c)),
            Some(Change::Fragment(f)) => Some(Item::Fragment(f)),
            Some(Change::Remove) => None,
            None => self.base.get(id).map(Item::Fragment),
        }
    }

    pub(super) fn insert(&mut self, id: CredentialId, fragment: Zeroizing<Vec<u8>>) {
        self.changes.insert(id, Change::Fragment(fragment));
    }

    /// `c` under its id, serialized when the edit is applied.
    pub(super) fn put(&mut self, c: &'a Credential) -> Result<()> {
        let len = envelope::credential_fragment_len(c)?;
        self.changes.insert(c.id.clone(), Change::Put(c, len));
        Ok(())
    }

    pub(super) fn remove(&mut self, id: &CredentialId) {
        if self.get(id).is_some() {
            self.changes.insert(id.clone(), Change::Remove);
        }
    }

    /// The base as it was, when nothing changed.
    pub(super) fn unchanged(self) -> std::result::Result<Plain, Edit<'a>> {
        if self.changes.is_empty() {
            Ok(self.base)
        } else {
            Err(self)
        }
    }

    /// The new plaintext: every item of the base not changed, and every
    /// change that is not a removal, merged in id order into one buffer of
    /// exactly its size (and the tag's). The base's buffer is freed once
    /// copied.
    pub(super) fn apply(self) -> Result<Plain> {
        // One pass to size, one to fill, each walking the same merge: a
        // list of the merged items was 56 bytes per item beside both
        // buffers at a save's peak.
        let (mut size, mut count) = (2usize, 0usize);
        self.merge(|_, item| {
            size += match item {
                Merged::Bytes(b) => b.len(),
                Merged::Credential(_, len) => len,
            };
            count += 1;
            Ok(())
        })?;
        // A comma between each two.
        size += count.saturating_sub(1);
        let mut buf = Zeroizing::new(Vec::with_capacity(size + TAG_LEN));
        let mut index = Vec::with_capacity(count);
        buf.push(b'[');
        self.merge(|id, item| {
            if !index.is_empty() {
                buf.push(b',');
            }
            let start = buf.len();
            match item {
                Merged::Bytes(b) => buf.extend_from_slice(b),
                Merged::Credential(c, _) => envelope::write_credential_fragment(c, &mut buf)?,
            }
            index.push((id.clone(), start..buf.len()));
            Ok(())
        })?;
        buf.push(b']');
        Ok(Plain { buf, index })
    }

    /// Each item the edit leaves, in id order: the base's unless changed,
    /// the changes' but removals.
    fn merge(&self, mut item: impl FnMut(&CredentialId, Merged<'_>) -> Result<()>) -> Result<()> {
        let mut kept = self.base.index.iter().peekable();
        let mut changed = self.changes.iter().peekable();
        loop {
            let base_first = match (kept.peek(), changed.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((b, _)), Some((c, _))) => match b.cmp(*c) {
                    std::cmp::Ordering::Less => true,
                    std::cmp::Ordering::Greater => false,
                    std::cmp::Ordering::Equal => {
                        // Changed: the change stands for it.
                        kept.next();
                        continue;
                    }
                },
            };
            if base_first {
                if let Some((id, r)) = kept.next() {
                    item(id, Merged::Bytes(&self.base.buf[r.clone()]))?;
                }
            } else if let Some((id, change)) = changed.next() {
                match change {
                    Change::Put(c, len) => item(id, Merged::Credential(c, *len))?,
                    Change::Fragment(f) => item(id, Merged::Bytes(f))?,
                    Change::Remove => {}
                }
            }
        }
        Ok(())
    }
}

/// One item of a rebuilt plaintext.
enum Merged<'m> {
    Bytes(&'m [u8]),
    /// To serialize, with its measured length.
    Credential(&'m Credential, usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{Credential, Kind};
    use crate::crypto::envelope;

    fn frag(name: &str, v: &str) -> (CredentialId, Zeroizing<Vec<u8>>) {
        let c = Credential::new(CredentialId::new("ns", name), Kind::ApiKey, v.to_string());
        (c.id.clone(), envelope::encode_credential_fragment(&c).unwrap())
    }

    fn names(p: &Plain) -> Vec<String> {
        p.iter().map(|(id, _)| id.name.to_string()).collect()
    }

    #[test]
    fn a_rebuild_merges_in_id_order_into_the_bytes_a_join_makes() {
        let mut e = Edit::new(Plain::empty());
        for (n, v) in [("b", "2"), ("d", "4"), ("a", "1")] {
            let (id, f) = frag(n, v);
            e.insert(id, f);
        }
        let p = e.apply().unwrap();
        assert_eq!(names(&p), ["a", "b", "d"]);
        let mut e = Edit::new(p);
        let (id, f) = frag("c", "3");
        e.insert(id, f);
        let (id, f) = frag("b", "two");
        e.insert(id, f);
        e.remove(&CredentialId::new("ns", "d"));
        e.remove(&CredentialId::new("ns", "absent"));
        let p = e.apply().unwrap();
        assert_eq!(names(&p), ["a", "b", "c"]);
        let want: Vec<Zeroizing<Vec<u8>>> = [("a", "1"), ("b", "two"), ("c", "3")]
            .iter()
            .map(|(n, v)| frag(n, v).1)
            .collect();
        assert_eq!(p.buf.as_slice(), envelope::join_fragments(want.iter()).as_slice());
        assert_eq!(p.get(&CredentialId::new("ns", "b")), Some(want[1].as_slice()));
        assert!(!p.contains_key(&CredentialId::new("ns", "d")));
        // Sized once, with room for the tag.
        assert_eq!(p.buf.capacity(), p.buf.len() + TAG_LEN);
        // Removing everything leaves an empty list.
        let mut e = Edit::new(p);
        for n in ["a", "b", "c"] {
            e.remove(&CredentialId::new("ns", n));
        }
        let p = e.apply().unwrap();
        assert_eq!(p.len(), 0);
        assert_eq!(p.buf.as_slice(), b"[]");
    }

    #[test]
    fn a_credential_put_is_serialized_into_the_rebuild_as_its_fragment() {
        let c = Credential::new(CredentialId::new("ns", "p"), Kind::ApiKey, "v\"\n\u{e9}".to_string());
        let mut e = Edit::new(Plain::empty());
        let (id, f) = frag("a", "1");
        e.insert(id, f);
        e.put(&c).unwrap();
        assert!(matches!(e.get(&c.id), Some(Item::Credential(_))));
        let p = e.apply().unwrap();
        let want = [frag("a", "1").1, envelope::encode_credential_fragment(&c).unwrap()];
        assert_eq!(p.buf.as_slice(), envelope::join_fragments(want.iter()).as_slice());
        assert_eq!(p.get(&c.id), Some(want[1].as_slice()));
        assert_eq!(p.buf.capacity(), p.buf.len() + TAG_LEN);
    }

    /// Issue #26: a file this store wrote is kept as it is read (one
    /// buffer, no list of credentials and no rebuilt copy); anything a
    /// rebuild would write otherwise is handed back, unchanged, to be
    /// rebuilt as before.
    #[test]
    fn a_plaintext_as_a_save_writes_it_is_kept_as_read_and_any_other_is_handed_back() {
        let mut e = Edit::new(Plain::empty());
        for (n, v) in [("b", "2"), ("a", "1"), ("c", "x\"\n\u{e9}")] {
            let (id, f) = frag(n, v);
            e.insert(id, f);
        }
        let built = e.apply().unwrap();
        // Known to be a save's (the same bytes again): indexed by a scan.
        let scanned = match Plain::index_known(Zeroizing::new(built.buf.to_vec())) {
            Ok(p) => p,
            Err(_) => panic!("a save's own plaintext was not indexed"),
        };
        assert_eq!(scanned.index, built.index);
        for bad in [&b"[{\"id\":\"ns/a\""[..], b"[{}]", b"[{\"id\":1}]", b"[]x", b"{}"] {
            assert!(Plain::index_known(Zeroizing::new(bad.to_vec())).is_err());
        }
        let kept = match Plain::adopt(Zeroizing::new(built.buf.to_vec())) {
            Ok(p) => p,
            Err(_) => panic!("a save's own plaintext was not kept"),
        };
        assert_eq!(kept.buf.as_slice(), built.buf.as_slice());
        assert_eq!(kept.index, built.index);
        assert!(Plain::adopt(Zeroizing::new(b"[]".to_vec())).is_ok_and(|p| p.len() == 0));
        let [a, b, c] = [("a", "1"), ("b", "2"), ("c", "3")].map(|(n, v)| frag(n, v).1);
        let join = |parts: &[&[u8]], sep: &[u8]| {
            let mut v = b"[".to_vec();
            v.extend(parts.join(sep));
            v.push(b']');
            v
        };
        for other in [
            join(&[&a, &b, &c], b", "),
            join(&[&b, &a, &c], b","),
            join(&[&a, &a, &c], b","),
            [join(&[&a, &b], b","), b"\n".to_vec()].concat(),
            b"[{\"kind\":\"api_key\",\"id\":\"ns/a\",\"secret\":\"1\",\"metadata\":{}}]".to_vec(),
            b"not json".to_vec(),
        ] {
            match Plain::adopt(Zeroizing::new(other.clone())) {
                Ok(_) => panic!("kept: {}", String::from_utf8_lossy(&other)),
                Err(back) => assert_eq!(back.as_slice(), other.as_slice()),
            }
        }
    }

    /// The scan refuses what would leave its index unsorted or doubled
    /// (audit10 L4), like `adopt`: fragments out of order, an id twice,
    /// and ids whose namespace holds `/`, which read back split at the
    /// first `/` and so in another order than they were saved in.
    #[test]
    fn the_scan_hands_back_ids_that_do_not_ascend() {
        let one = |ns: &str, name: &str| {
            let c = Credential::new(CredentialId::new(ns, name), Kind::ApiKey, "v".to_string());
            envelope::encode_credential_fragment(&c).unwrap()
        };
        let [a, b] = [("a", "1"), ("b", "2")].map(|(n, v)| frag(n, v).1);
        // Saved in id order: ("a", "z") < ("a/b", "c"); read back as
        // ("a", "z") then ("a", "b/c").
        let (az, abc) = (one("a", "z"), one("a/b", "c"));
        assert!(CredentialId::new("a", "z") < CredentialId::new("a/b", "c"));
        for parts in [vec![&b, &a], vec![&a, &a], vec![&az, &abc]] {
            let buf = envelope::join_fragments(parts.into_iter());
            match Plain::index_known(Zeroizing::new(buf.to_vec())) {
                Ok(p) => panic!("indexed out of order: {:?}", p.index),
                Err(back) => assert_eq!(back.as_slice(), buf.as_slice()),
            }
        }
        let ok = envelope::join_fragments([&a, &b].into_iter());
        assert!(Plain::index_known(Zeroizing::new(ok.to_vec())).is_ok());
    }

    #[test]
    fn an_edit_sees_its_own_changes_and_nothing_else_changes_the_base() {
        let mut e = Edit::new(Plain::empty());
        let (a, f) = frag("a", "1");
        e.insert(a.clone(), f);
        assert!(e.get(&a).is_some());
        e.remove(&a);
        assert!(e.get(&a).is_none());
        let p = e.apply().unwrap();
        assert_eq!(p.len(), 0);
        assert!(Edit::new(p).unchanged().is_ok());
    }
}
