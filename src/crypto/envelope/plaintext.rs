//! The envelope's plaintext: the JSON list of credentials, written and
//! read without leaving a copy of a secret behind.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::error::{Result, StoreError};

/// One credential in the plaintext, for writing (borrows, copies nothing).
#[derive(Serialize)]
struct PlainRef<'a> {
    id: &'a CredentialId,
    kind: Kind,
    secret: &'a str,
    metadata: &'a Metadata,
}

/// One credential in the plaintext, for reading: the secret goes straight
/// into a zeroizing [`Secret`].
#[derive(Deserialize)]
struct PlainOwned {
    id: CredentialId,
    kind: Kind,
    #[serde(deserialize_with = "secret_de")]
    secret: Secret,
    #[serde(default)]
    metadata: Metadata,
}

fn secret_de<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::new)
}

/// A `Write` sink that never leaves a copy behind: when it grows, the old
/// buffer is zeroized before it is freed.
struct ZeroizingBuf(Zeroizing<Vec<u8>>);

impl std::io::Write for ZeroizingBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let need = self.0.len() + buf.len();
        if need > self.0.capacity() {
            let mut bigger = Vec::with_capacity(need.max(self.0.capacity() * 2));
            bigger.extend_from_slice(&self.0);
            // The old Zeroizing<Vec> wipes its whole capacity on drop.
            self.0 = Zeroizing::new(bigger);
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The plaintext of an envelope: the JSON list of credentials.
pub fn encode_credentials(creds: &[Credential]) -> Result<Zeroizing<Vec<u8>>> {
    encode_credential_refs(creds.iter())
}

/// [`encode_credentials`] for credentials held elsewhere (a map): no clones.
pub fn encode_credential_refs<'a>(
    creds: impl Iterator<Item = &'a Credential> + Clone,
) -> Result<Zeroizing<Vec<u8>>> {
    /// The list, serialized straight from the iterator (no vector of
    /// references beside it).
    struct List<I>(I);
    impl<'a, I: Iterator<Item = &'a Credential> + Clone> Serialize for List<I> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.collect_seq(self.0.clone().map(|c| PlainRef {
                id: &c.id,
                kind: c.kind,
                secret: c.secret.expose(),
                metadata: &c.metadata,
            }))
        }
    }
    let list = List(creds);
    // Measured first, then written into a buffer of exactly that size and
    // room for the GCM tag (sealing in place then never regrows it): a
    // guessed capacity (twice each secret and more) was twice the list at a
    // migration's peak, when the backup is sealed.
    let mut len = Counter(0);
    serde_json::to_writer(&mut len, &list)
        .map_err(|_| StoreError::Other("serializing credentials failed".into()))?;
    let cap = len.0 + crate::crypto::aead::TAG_LEN;
    let mut buf = ZeroizingBuf(Zeroizing::new(Vec::with_capacity(cap)));
    serde_json::to_writer(&mut buf, &list)
        .map_err(|_| StoreError::Other("serializing credentials failed".into()))?;
    Ok(buf.0)
}

/// One credential as [`encode_credentials`] writes it inside its list:
/// stores that rewrite a whole file keep these per item and re-join them
/// ([`join_fragments`]) instead of serializing every item on each rewrite.
pub fn encode_credential_fragment(c: &Credential) -> Result<Zeroizing<Vec<u8>>> {
    let item = PlainRef {
        id: &c.id,
        kind: c.kind,
        secret: c.secret.expose(),
        metadata: &c.metadata,
    };
    // Measured first, then written into a buffer of exactly that size: a
    // store keeps one fragment per item, and a guessed capacity (twice the
    // secret and more) made those fragments half slack.
    let mut len = Counter(0);
    serde_json::to_writer(&mut len, &item)
        .map_err(|_| StoreError::Other("serializing credentials failed".into()))?;
    let mut buf = ZeroizingBuf(Zeroizing::new(Vec::with_capacity(len.0)));
    serde_json::to_writer(&mut buf, &item)
        .map_err(|_| StoreError::Other("serializing credentials failed".into()))?;
    Ok(buf.0)
}

/// The length of [`encode_credential_fragment`]'s bytes for `c`, without
/// making them: a store that builds its whole plaintext at once sizes it
/// first, then [`write_credential_fragment`]s each item into it.
pub fn credential_fragment_len(c: &Credential) -> Result<usize> {
    let mut len = Counter(0);
    serde_json::to_writer(&mut len, &plain_ref(c))
        .map_err(|_| StoreError::Other("serializing credentials failed".into()))?;
    Ok(len.0)
}

/// [`encode_credential_fragment`]'s bytes appended to `out`, which must
/// have room for them ([`credential_fragment_len`]): it never regrows, so
/// no copy of the plaintext is left behind.
pub fn write_credential_fragment(c: &Credential, out: &mut Zeroizing<Vec<u8>>) -> Result<()> {
    let room = out.capacity() - out.len();
    let before = out.len();
    serde_json::to_writer(&mut **out, &plain_ref(c))
        .map_err(|_| StoreError::Other("serializing credentials failed".into()))?;
    if out.len() - before > room {
        return Err(StoreError::Other(
            "serializing credentials: more bytes than measured".into(),
        ));
    }
    Ok(())
}

fn plain_ref(c: &Credential) -> PlainRef<'_> {
    PlainRef {
        id: &c.id,
        kind: c.kind,
        secret: c.secret.expose(),
        metadata: &c.metadata,
    }
}

/// A `Write` sink that only counts.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The list [`encode_credentials`] would write for the credentials whose
/// fragments these are, in this order: byte for byte the same.
pub fn join_fragments<'a>(
    fragments: impl Iterator<Item = &'a Zeroizing<Vec<u8>>> + Clone,
) -> Zeroizing<Vec<u8>> {
    let len: usize = fragments.clone().map(|f| f.len() + 1).sum();
    // Room for the GCM tag too: sealing in place then never regrows it.
    let mut out = Zeroizing::new(Vec::with_capacity(len + 2 + crate::crypto::aead::TAG_LEN));
    out.push(b'[');
    for (i, f) in fragments.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(f);
    }
    out.push(b']');
    out
}

/// Parse an envelope's plaintext. Errors name `location` and a position,
/// never content.
pub fn decode_credentials(plaintext: &[u8], location: &str) -> Result<Vec<Credential>> {
    let items: Vec<PlainOwned> = serde_json::from_slice(plaintext).map_err(|e| {
        let mut err = StoreError::json(location, &e);
        if let StoreError::Parse { message, .. } = &mut err {
            *message = format!("decrypted content: {message}");
        }
        err
    })?;
    Ok(items
        .into_iter()
        .map(|p| Credential {
            id: p.id,
            kind: p.kind,
            secret: p.secret,
            metadata: p.metadata,
        })
        .collect())
}

/// Parse one fragment [`encode_credential_fragment`] wrote (a store's
/// cached copy of an item). Errors name `location`, never content.
pub fn decode_credential_fragment(fragment: &[u8], location: &str) -> Result<Credential> {
    let p: PlainOwned = serde_json::from_slice(fragment).map_err(|e| {
        let mut err = StoreError::json(location, &e);
        if let StoreError::Parse { message, .. } = &mut err {
            *message = format!("cached item: {message}");
        }
        err
    })?;
    Ok(Credential {
        id: p.id,
        kind: p.kind,
        secret: p.secret,
        metadata: p.metadata,
    })
}

/// Each credential of an envelope's plaintext, decoded one at a time and
/// handed to `each` (which may stop the walk by returning false): no list
/// of them is held. `Ok(true)` when every item was handed over; an error
/// or a stop gives no reason (callers that need one decode the list with
/// [`decode_credentials`]).
pub fn for_each_credential(plaintext: &[u8], each: impl FnMut(Credential) -> bool) -> bool {
    use serde::de::{DeserializeSeed, SeqAccess, Visitor};
    struct Each<F>(F);
    impl<'de, F: FnMut(Credential) -> bool> Visitor<'de> for &mut Each<F> {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of credentials")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<bool, A::Error> {
            while let Some(p) = seq.next_element::<PlainOwned>()? {
                let c = Credential {
                    id: p.id,
                    kind: p.kind,
                    secret: p.secret,
                    metadata: p.metadata,
                };
                if !(self.0)(c) {
                    return Err(serde::de::Error::custom("stopped"));
                }
            }
            Ok(true)
        }
    }
    impl<'de, F: FnMut(Credential) -> bool> DeserializeSeed<'de> for &mut Each<F> {
        type Value = bool;
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<bool, D::Error> {
            d.deserialize_seq(self)
        }
    }
    let mut visitor = Each(each);
    let mut de = serde_json::Deserializer::from_slice(plaintext);
    (&mut visitor).deserialize(&mut de).is_ok() && de.end().is_ok()
}
