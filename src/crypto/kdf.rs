//! Key derivation and key material: PBKDF2-HMAC-SHA256 for passphrases,
//! the system random generator, and 32-byte key files.
//!
//! A key file holds exactly 32 bytes of key. Three spellings are accepted
//! when loading: the raw 32 bytes (what [`generate_key_file`] writes), or a
//! text file holding 64 hex characters, or the standard base64 of 32 bytes
//! (surrounding whitespace and a trailing newline are ignored). Any other
//! content is refused with an error naming the file, never quoting it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Result, StoreError};
use crate::fsutil;

/// Length of every symmetric key credshift uses (AES-256).
pub const KEY_LEN: usize = 32;

/// PBKDF2-HMAC-SHA256 with a 32-byte output. `iterations` of 0 behaves as 1
/// (callers check bounds before deriving; see `envelope`).
///
/// The iteration loop runs on SHA-256's block function directly (sha2's
/// `compress256`, which uses the CPU's SHA extensions when it has them):
/// the HMAC inner and outer states are computed once from the key pads, and
/// each iteration is then exactly two compressions of one pre-padded block,
/// with no hashing state to clone, no buffering and no padding logic. That is
/// the least work PBKDF2-HMAC-SHA256 allows (benches/crypto_stores.rs holds
/// it against the `pbkdf2` crate and the CPU's SHA-256 compression rate).
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; KEY_LEN]> {
    use sha2::Digest;
    use sha2::block_api::compress256;

    // HMAC key: the password, hashed first when longer than one block.
    let mut key = Zeroizing::new([0u8; 64]);
    if password.len() > 64 {
        key[..32].copy_from_slice(&sha2::Sha256::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let mut pad = Zeroizing::new([[0u8; 64]; 1]);
    let mut inner = Zeroizing::new(SHA256_IV);
    let mut outer = Zeroizing::new(SHA256_IV);
    for (p, k) in pad[0].iter_mut().zip(key.iter()) {
        *p = k ^ 0x36;
    }
    compress256(&mut inner, &pad[..]);
    for (p, k) in pad[0].iter_mut().zip(key.iter()) {
        *p = k ^ 0x5c;
    }
    compress256(&mut outer, &pad[..]);

    // U1 = HMAC(password, salt || INT(1)), through the digest API (one time).
    let mut u1 = {
        let mut ipad = Zeroizing::new([0u8; 64]);
        let mut opad = Zeroizing::new([0u8; 64]);
        for i in 0..64 {
            ipad[i] = key[i] ^ 0x36;
            opad[i] = key[i] ^ 0x5c;
        }
        let mut h = sha2::Sha256::new();
        h.update(ipad.as_slice());
        h.update(salt);
        h.update(1u32.to_be_bytes());
        let mut ih = Zeroizing::new([0u8; 32]);
        ih.copy_from_slice(&h.finalize());
        let mut h = sha2::Sha256::new();
        h.update(opad.as_slice());
        h.update(ih.as_slice());
        let mut u = Zeroizing::new([0u8; 32]);
        u.copy_from_slice(&h.finalize());
        u
    };

    // Every later U: the previous U (32 bytes) padded to one block, the
    // length counting the 64-byte pad block before it: (64 + 32) * 8 bits.
    let mut block = Zeroizing::new([[0u8; 64]; 1]);
    block[0][32] = 0x80;
    block[0][56..].copy_from_slice(&(768u64).to_be_bytes());
    block[0][..32].copy_from_slice(u1.as_slice());
    let mut acc = Zeroizing::new([0u32; 8]);
    for (a, w) in acc.iter_mut().zip(u1.chunks_exact(4)) {
        *a = u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
    }
    u1.zeroize();
    let mut state = Zeroizing::new([0u32; 8]);
    for _ in 1..iterations.max(1) {
        *state = *inner;
        compress256(&mut state, &block[..]);
        for (i, w) in state.iter().enumerate() {
            block[0][4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
        }
        *state = *outer;
        compress256(&mut state, &block[..]);
        for (i, w) in state.iter().enumerate() {
            acc[i] ^= w;
            block[0][4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
        }
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    for (i, w) in acc.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The same derivation through the `pbkdf2` crate: the reference the fast
/// loop is tested and benchmarked against.
#[doc(hidden)]
pub fn pbkdf2_sha256_reference(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations.max(1), out.as_mut_slice());
    out
}

/// `N` bytes from the operating system's random generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    fill_random(&mut buf)?;
    Ok(buf)
}

/// A fresh random 32-byte key.
pub fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(key.as_mut_slice())?;
    Ok(key)
}

fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| {
        StoreError::Other(format!(
            "the system random number generator failed ({e}); refusing to create keys or nonces"
        ))
    })
}

/// Load a key file: raw 32 bytes, 64 hex characters, or base64 of 32 bytes.
pub fn load_key_file(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| StoreError::io(path, e))?);
    parse_key(&bytes).ok_or_else(|| StoreError::Parse {
        location: path.display().to_string(),
        line: None,
        column: None,
        message: format!(
            "not a key file: expected {KEY_LEN} raw bytes, 64 hex characters or base64 of \
             {KEY_LEN} bytes (found {} bytes)",
            bytes.len()
        ),
    })
}

/// Decode key material in any of the accepted spellings.
fn parse_key(bytes: &[u8]) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() == KEY_LEN {
        key.copy_from_slice(bytes);
        return Some(key);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    if text.len() == 2 * KEY_LEN && hex::decode_to_slice(text, key.as_mut_slice()).is_ok() {
        return Some(key);
    }
    let mut decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?,
    );
    if decoded.len() != KEY_LEN {
        decoded.zeroize();
        return None;
    }
    key.copy_from_slice(&decoded);
    Some(key)
}

/// Write a new key file of 32 random bytes, mode 0600, in a private
/// directory. Refuses to overwrite anything already at `path` (exclusive
/// create, so two racing calls cannot both succeed).
pub fn generate_key_file(path: &Path) -> Result<()> {
    let dir = fsutil::parent_dir(path);
    fsutil::ensure_private_dir(&dir)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(fsutil::FILE_MODE)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                StoreError::Other(format!(
                    "{}: already exists; refusing to overwrite a key file",
                    path.display()
                ))
            } else {
                StoreError::io(path, e)
            }
        })?;
    let key = random_key()?;
    let written = file
        .write_all(key.as_slice())
        .and_then(|()| file.sync_all())
        .and_then(|()| fsutil::fsync_dir(&dir));
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(StoreError::io(path, e));
    }
    Ok(())
}

/// Probe warnings for a key file that others could read.
pub fn key_file_warnings(path: &Path) -> Vec<String> {
    match fsutil::mode_of(path) {
        Some(mode) if mode & 0o077 != 0 => vec![format!(
            "key file {} is readable by others than its owner (mode {mode:o}); chmod 600 it",
            path.display()
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_rfc_7914_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64).
        let k = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(
            hex::encode(k.as_slice()),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        // Another well-known vector ("password", "salt", 4096, 32 bytes).
        let k = pbkdf2_sha256(b"password", b"salt", 4096);
        assert_eq!(
            hex::encode(k.as_slice()),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
    }

    #[test]
    fn fast_pbkdf2_matches_published_vectors() {
        // RFC 7914 section 11 (first 32 of its 64 bytes; PBKDF2 output
        // blocks are independent, so the prefix is the 32-byte result).
        let cases: [(&[u8], &[u8], u32, &str); 5] = [
            (
                b"passwd",
                b"salt",
                1,
                "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc",
            ),
            (
                b"Password",
                b"NaCl",
                80000,
                "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56",
            ),
            // The RFC 6070 inputs, with SHA-256 (widely published).
            (
                b"password",
                b"salt",
                2,
                "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43",
            ),
            (
                b"password",
                b"salt",
                4096,
                "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a",
            ),
            (
                b"passwordPASSWORDpassword",
                b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
                4096,
                "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1",
            ),
        ];
        for (pw, salt, n, want) in cases {
            assert_eq!(
                hex::encode(pbkdf2_sha256(pw, salt, n).as_slice()),
                want,
                "{n}"
            );
            assert_eq!(
                hex::encode(pbkdf2_sha256_reference(pw, salt, n).as_slice()),
                want
            );
        }
    }

    #[test]
    fn fast_pbkdf2_equals_the_pbkdf2_crate_at_every_edge() {
        // Password lengths around the block size (64: used as is; 65:
        // hashed first), empty password and salt, salts that push the first
        // HMAC over one and two blocks, 0 and 1 iteration.
        let long: Vec<u8> = (0..200u8).collect();
        for pw_len in [0usize, 1, 31, 32, 55, 56, 63, 64, 65, 100, 128, 200] {
            for salt_len in [0usize, 1, 16, 32, 51, 52, 55, 56, 64, 119, 120, 200] {
                for n in [0u32, 1, 2, 3, 17] {
                    let (pw, salt) = (&long[..pw_len], &long[200 - salt_len..]);
                    assert_eq!(
                        *pbkdf2_sha256(pw, salt, n),
                        *pbkdf2_sha256_reference(pw, salt, n),
                        "password {pw_len} bytes, salt {salt_len} bytes, {n} iterations"
                    );
                }
            }
        }
    }

    #[test]
    fn fast_pbkdf2_equals_node() {
        // Node's crypto.pbkdf2Sync (OpenSSL): an implementation that shares
        // no code with this one. Inputs go in through stdin, never argv.
        let script = "const c=require('crypto');\
            const cases=JSON.parse(require('fs').readFileSync(0,'utf8'));\
            process.stdout.write(JSON.stringify(cases.map(([p,s,n])=>\
            c.pbkdf2Sync(Buffer.from(p,'hex'),Buffer.from(s,'hex'),n,32,'sha256').toString('hex'))));";
        let cases: Vec<(Vec<u8>, Vec<u8>, u32)> = vec![
            (
                b"bench-master-key-0123456789abcdef-ok".to_vec(),
                vec![7u8; 32],
                100_000,
            ),
            (vec![0xffu8; 65], vec![], 3),
            (vec![], vec![1, 2, 3], 1000),
            ("pässwörd ключ".as_bytes().to_vec(), vec![9u8; 16], 600),
        ];
        let input = serde_json::to_vec(
            &cases
                .iter()
                .map(|(p, s, n)| serde_json::json!([hex::encode(p), hex::encode(s), n]))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let child = std::process::Command::new("node")
            .args(["-e", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            assert!(
                std::env::var_os("CREDSHIFT_REQUIRE_SERVICES").is_none(),
                "node is required for this test"
            );
            eprintln!("SKIPPED: node not available");
            return;
        };
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "node failed");
        let want: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
        for ((p, s, n), want) in cases.iter().zip(want) {
            assert_eq!(hex::encode(pbkdf2_sha256(p, s, *n).as_slice()), want, "{n}");
        }
    }

    #[test]
    fn random_bytes_differ() {
        let a = random_bytes::<16>().unwrap();
        let b = random_bytes::<16>().unwrap();
        assert_ne!(a, b);
        assert_ne!(*random_key().unwrap(), [0u8; 32]);
    }

    #[test]
    fn key_files_in_three_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, key).unwrap();
        assert_eq!(*load_key_file(&raw).unwrap(), key);

        let hexed = dir.path().join("hex.key");
        std::fs::write(&hexed, format!("{}\n", hex::encode(key))).unwrap();
        assert_eq!(*load_key_file(&hexed).unwrap(), key);

        let b64 = dir.path().join("b64.key");
        let text = base64::engine::general_purpose::STANDARD.encode(key);
        std::fs::write(&b64, format!("  {text}\r\n")).unwrap();
        assert_eq!(*load_key_file(&b64).unwrap(), key);
    }

    #[test]
    fn bad_key_files_name_the_file_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("short.key");
        std::fs::write(&p, "sk-not-a-key-but-a-secret").unwrap();
        let e = load_key_file(&p).unwrap_err().to_string();
        assert!(e.contains("short.key"), "{e}");
        assert!(!e.contains("sk-not-a-key"), "{e}");
        // 31 bytes of base64 and 63 hex chars are refused too.
        std::fs::write(
            &p,
            base64::engine::general_purpose::STANDARD.encode([1u8; 31]),
        )
        .unwrap();
        assert!(load_key_file(&p).is_err());
        std::fs::write(&p, "a".repeat(63)).unwrap();
        assert!(load_key_file(&p).is_err());
        let missing = load_key_file(&dir.path().join("none.key")).unwrap_err();
        assert!(matches!(missing, StoreError::NotFound { .. }), "{missing}");
    }

    #[test]
    fn generated_key_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys/credshift.key");
        generate_key_file(&p).unwrap();
        assert_eq!(fsutil::mode_of(&p), Some(0o600));
        assert_eq!(fsutil::mode_of(p.parent().unwrap()), Some(0o700));
        let first = load_key_file(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap().len(), 32);
        let e = generate_key_file(&p).unwrap_err().to_string();
        assert!(e.contains("refusing to overwrite"), "{e}");
        assert_eq!(*load_key_file(&p).unwrap(), *first);
        assert!(key_file_warnings(&p).is_empty());
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        assert_eq!(key_file_warnings(&p).len(), 1);
    }
}
