//! AES-256-GCM with 12-byte nonces and 16-byte tags appended to the
//! ciphertext (the layout Web Crypto uses). Every seal draws a fresh random
//! nonce; a failed open is an error value, never a panic, and says nothing
//! about why beyond "authentication failed" (that is all GCM can know).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::crypto::kdf::{self, KEY_LEN};
use crate::error::Result;

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// Why an open or seal failed. Deliberately carries no data: callers turn it
/// into a `StoreError::Crypto` naming their file or row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    #[error("authentication failed: wrong key, or the data was altered")]
    Authentication,
    #[error("the ciphertext is shorter than a GCM tag")]
    Truncated,
    #[error("the message is too long for AES-GCM")]
    TooLong,
}

fn cipher(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    // Borrowed as an array reference: no unzeroized copy of the key.
    let key: &aes_gcm::Key<Aes256Gcm> = key.into();
    Aes256Gcm::new(key)
}

/// Encrypt with a fresh random nonce. Returns the nonce and
/// `ciphertext || tag`.
pub fn seal(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
    let nonce = kdf::random_bytes::<NONCE_LEN>()?;
    let ct = seal_with_nonce(key, &nonce, aad, plaintext)
        .map_err(|e| crate::error::StoreError::Other(e.to_string()))?;
    Ok((nonce, ct))
}

/// Encrypt under a caller-chosen nonce. The caller must draw it fresh from
/// the random generator (the envelope needs the nonce before sealing, as it
/// is part of the associated data) or be a known-answer test: reusing a
/// nonce under one key breaks GCM.
pub(crate) fn seal_with_nonce(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> std::result::Result<Vec<u8>, AeadError> {
    cipher(key)
        .encrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| AeadError::TooLong)
}

/// [`seal_with_nonce`] in place: `buf` holds the plaintext and is turned
/// into `ciphertext || tag`, with no second buffer of the message's size
/// (a whole store's plaintext is large). When `buf` has no room for the tag
/// it grows into a new buffer and the old one is wiped first.
pub(crate) fn seal_in_place(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut Zeroizing<Vec<u8>>,
) -> std::result::Result<(), AeadError> {
    use aes_gcm::aead::AeadInOut;
    let tag = cipher(key)
        .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.as_mut_slice().into())
        .map_err(|_| AeadError::TooLong)?;
    if buf.capacity() - buf.len() < TAG_LEN {
        let mut bigger = Vec::with_capacity(buf.len() + TAG_LEN);
        bigger.extend_from_slice(buf);
        // The old Zeroizing<Vec> wipes its whole capacity on drop.
        *buf = Zeroizing::new(bigger);
    }
    buf.extend_from_slice(&tag);
    Ok(())
}

/// [`open`] in place: `buf` holds `ciphertext || tag` and is turned into
/// the plaintext (the tag cut off). Authenticated before anything is
/// decrypted; on failure `buf` holds the ciphertext without its tag.
pub(crate) fn open_in_place(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut Zeroizing<Vec<u8>>,
) -> std::result::Result<(), AeadError> {
    use aes_gcm::aead::AeadInOut;
    let Some(at) = buf.len().checked_sub(TAG_LEN) else {
        return Err(AeadError::Truncated);
    };
    let mut tag = aes_gcm::Tag::default();
    tag.copy_from_slice(&buf[at..]);
    buf.truncate(at);
    cipher(key)
        .decrypt_inout_detached(&Nonce::from(*nonce), aad, buf.as_mut_slice().into(), &tag)
        .map_err(|_| AeadError::Authentication)
}

/// Decrypt and authenticate `ciphertext || tag`. The plaintext is zeroized
/// when dropped.
pub fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> std::result::Result<Zeroizing<Vec<u8>>, AeadError> {
    if ciphertext.len() < TAG_LEN {
        return Err(AeadError::Truncated);
    }
    cipher(key)
        .decrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| AeadError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn known_answer_nist_gcm_test_case_16() {
        // McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16
        // (AES-256, 96-bit IV, with AAD).
        let key: [u8; 32] = h("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
            .try_into()
            .unwrap();
        let nonce: [u8; 12] = h("cafebabefacedbaddecaf888").try_into().unwrap();
        let pt = h(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let ct = seal_with_nonce(&key, &nonce, &aad, &pt).unwrap();
        assert_eq!(
            hex::encode(&ct),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
             76fc6ece0f4e1768cddf8853bb2d551b"
        );
        assert_eq!(*open(&key, &nonce, &aad, &ct).unwrap(), pt);
    }

    #[test]
    fn sealing_in_place_gives_the_same_bytes() {
        let key = [5u8; 32];
        let nonce = [3u8; NONCE_LEN];
        for (len, spare) in [(0usize, 0usize), (5, 0), (100, 16), (100, 3)] {
            let pt: Vec<u8> = (0..len as u8).collect();
            let mut buf = Vec::with_capacity(len + spare);
            buf.extend_from_slice(&pt);
            let mut buf = Zeroizing::new(buf);
            seal_in_place(&key, &nonce, b"aad", &mut buf).unwrap();
            assert_eq!(
                *buf,
                seal_with_nonce(&key, &nonce, b"aad", &pt).unwrap(),
                "{len}"
            );
        }
    }

    #[test]
    fn opening_in_place_gives_the_plaintext_back_and_refuses_a_change() {
        let key = [5u8; 32];
        let nonce = [3u8; NONCE_LEN];
        for len in [0usize, 5, 100] {
            let pt: Vec<u8> = (0..len as u8).collect();
            let mut buf = Zeroizing::new(seal_with_nonce(&key, &nonce, b"aad", &pt).unwrap());
            open_in_place(&key, &nonce, b"aad", &mut buf).unwrap();
            assert_eq!(*buf, pt, "{len}");
            let mut bad = Zeroizing::new(seal_with_nonce(&key, &nonce, b"aad", &pt).unwrap());
            bad[0] ^= 1;
            assert_eq!(
                open_in_place(&key, &nonce, b"aad", &mut bad),
                Err(AeadError::Authentication)
            );
        }
        let mut short = Zeroizing::new(vec![0u8; TAG_LEN - 1]);
        assert_eq!(
            open_in_place(&key, &nonce, b"aad", &mut short),
            Err(AeadError::Truncated)
        );
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let key = [7u8; 32];
        let (n1, c1) = seal(&key, b"aad", b"hello").unwrap();
        let (n2, c2) = seal(&key, b"aad", b"hello").unwrap();
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
        assert_eq!(c1.len(), 5 + TAG_LEN);
        assert_eq!(&**open(&key, &n1, b"aad", &c1).unwrap(), b"hello");
    }

    #[test]
    fn any_change_fails_without_panic() {
        let key = [9u8; 32];
        let (nonce, ct) = seal(&key, b"id-1", b"secret value").unwrap();
        assert_eq!(
            open(&[8u8; 32], &nonce, b"id-1", &ct),
            Err(AeadError::Authentication)
        );
        assert_eq!(
            open(&key, &nonce, b"id-2", &ct),
            Err(AeadError::Authentication)
        );
        let mut bad_nonce = nonce;
        bad_nonce[0] ^= 1;
        assert_eq!(
            open(&key, &bad_nonce, b"id-1", &ct),
            Err(AeadError::Authentication)
        );
        for i in 0..ct.len() {
            let mut t = ct.clone();
            t[i] ^= 0x80;
            assert_eq!(
                open(&key, &nonce, b"id-1", &t),
                Err(AeadError::Authentication),
                "byte {i}"
            );
        }
        assert_eq!(
            open(&key, &nonce, b"id-1", &ct[..ct.len() - 1]),
            Err(AeadError::Authentication)
        );
        assert_eq!(
            open(&key, &nonce, b"id-1", &ct[..TAG_LEN - 1]),
            Err(AeadError::Truncated)
        );
        assert_eq!(open(&key, &nonce, b"id-1", &[]), Err(AeadError::Truncated));
    }
}
