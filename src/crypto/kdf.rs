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

#[cfg(target_arch = "x86_64")]
mod shani;

/// Length of every symmetric key credshift uses (AES-256).
pub const KEY_LEN: usize = 32;

/// PBKDF2-HMAC-SHA256 with a 32-byte output. `iterations` of 0 behaves as 1
/// (callers check bounds before deriving; see `envelope`).
///
/// The HMAC inner and outer states are computed once from the key pads,
/// and each iteration is then exactly two compressions of one pre-padded
/// block, with no hashing state to clone, no buffering and no padding
/// logic. On a CPU with SHA extensions (x86-64 SHA-NI) the iterations run
/// in `kdf/shani.rs`, which keeps SHA-256's state in the SHA registers
/// from one compression to the next (through sha2's `compress256` it goes
/// out to memory and back twice per iteration, about 8% of a derivation);
/// it is used only after a derivation through it matched the sha2 loop at
/// first use. Elsewhere the same loop runs on sha2's `compress256`.
/// benches/kdf.rs holds both against the `pbkdf2` crate, ring, OpenSSL's
/// PBKDF2 and the CPU's SHA-256 compression rate (issue 26 point 2).
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; KEY_LEN]> {
    let [key] = derive_lanes(password, [salt], iterations);
    key
}

/// Two PBKDF2-HMAC-SHA256 derivations under one password, their iteration
/// loops interleaved on this thread: SHA-256's block function is a chain of
/// dependent rounds, so one derivation leaves the core's SHA unit idle part
/// of the time; the other derivation's rounds fill it (benches/kdf.rs: a pair
/// costs about 1.45 single derivations on the fused loop). The results are
/// exactly what [`pbkdf2_sha256`] gives for each salt.
pub fn pbkdf2_sha256_pair(
    password: &[u8],
    salts: [&[u8]; 2],
    iterations: u32,
) -> [Zeroizing<[u8; KEY_LEN]>; 2] {
    derive_lanes(password, salts, iterations)
}

/// One key per salt under one password, spread over every core (rayon) in
/// interleaved pairs (see [`pbkdf2_sha256_pair`]); in the order of `salts`.
pub fn pbkdf2_sha256_many(
    password: &[u8],
    salts: &[&[u8]],
    iterations: u32,
) -> Vec<Zeroizing<[u8; KEY_LEN]>> {
    use rayon::prelude::*;
    salts
        .par_chunks(2)
        .flat_map_iter(|pair| match *pair {
            [a, b] => pbkdf2_sha256_pair(password, [a, b], iterations).to_vec(),
            _ => pair
                .iter()
                .map(|s| pbkdf2_sha256(password, s, iterations))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
thread_local! {
    /// Derivations this thread ran (unit tests: which thread did the work).
    static DERIVED_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many PBKDF2 derivations this thread has run (unit tests only).
#[cfg(test)]
pub(crate) fn derivations_on_this_thread() -> usize {
    DERIVED_HERE.with(std::cell::Cell::get)
}

/// Which loop runs iterations 2..=n.
#[derive(Clone, Copy, Debug)]
enum Loop {
    /// The fused SHA-NI loop (`kdf/shani.rs`).
    #[cfg(target_arch = "x86_64")]
    Fused(shani::ShaNi),
    /// sha2's `compress256`, one call per compression.
    Sha2,
}

#[cfg(test)]
thread_local! {
    /// Unit tests: this thread acts as if the CPU had no SHA extensions.
    static NO_SHA_NI: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Unit tests: the fused loop's result is corrupted (one bit), to see
    /// the self-test refuse it.
    static BREAK_FUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Derivations this thread ran through the fused loop.
    static FUSED_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The loop for this process, chosen once: the fused one when the CPU has
/// SHA-NI and its self-test passed, else sha2's.
fn chosen_loop() -> Loop {
    #[cfg(test)]
    if NO_SHA_NI.with(std::cell::Cell::get) {
        return Loop::Sha2;
    }
    #[cfg(target_arch = "x86_64")]
    {
        static CHOSEN: std::sync::OnceLock<Loop> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| select(shani::ShaNi::detect()))
    }
    #[cfg(not(target_arch = "x86_64"))]
    Loop::Sha2
}

/// The fused loop if the CPU has it (`found`) and it derives what the sha2
/// loop derives (one key alone and two interleaved, under a password that
/// is hashed first and one that is not); else the sha2 loop, for good.
#[cfg(target_arch = "x86_64")]
fn select(found: Option<shani::ShaNi>) -> Loop {
    let Some(fused) = found else {
        return Loop::Sha2;
    };
    let agree = |pw: &[u8], n: u32| {
        let salts: [&[u8]; 2] = [b"credshift self-test", b""];
        let [a1] = derive_lanes_on(Loop::Fused(fused), pw, [salts[0]], n);
        let pair = derive_lanes_on(Loop::Fused(fused), pw, salts, n);
        let [b1] = derive_lanes_on(Loop::Sha2, pw, [salts[0]], n);
        let [b2] = derive_lanes_on(Loop::Sha2, pw, [salts[1]], n);
        *a1 == *b1 && *pair[0] == *b1 && *pair[1] == *b2
    };
    if agree(b"password", 65) && agree(&[0x5a; 65], 2) {
        Loop::Fused(fused)
    } else {
        Loop::Sha2
    }
}

/// `N` derivations under one password, interleaved (see [`pbkdf2_sha256_pair`]).
fn derive_lanes<const N: usize>(
    password: &[u8],
    salts: [&[u8]; N],
    iterations: u32,
) -> [Zeroizing<[u8; KEY_LEN]>; N] {
    #[cfg(test)]
    DERIVED_HERE.with(|n| n.set(n.get() + N));
    derive_lanes_on(chosen_loop(), password, salts, iterations)
}

/// [`derive_lanes`] on a given loop.
fn derive_lanes_on<const N: usize>(
    on: Loop,
    password: &[u8],
    salts: [&[u8]; N],
    iterations: u32,
) -> [Zeroizing<[u8; KEY_LEN]>; N] {
    use sha2::Digest;
    use sha2::block_api::compress256;

    // HMAC key: the password, hashed first when longer than one block.
    let mut key = Zeroizing::new([0u8; 64]);
    if password.len() > 64 {
        key[..32].copy_from_slice(&sha2::Sha256::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let mut ipad = Zeroizing::new([[0u8; 64]; 1]);
    let mut opad = Zeroizing::new([[0u8; 64]; 1]);
    for i in 0..64 {
        ipad[0][i] = key[i] ^ 0x36;
        opad[0][i] = key[i] ^ 0x5c;
    }
    let mut inner = Zeroizing::new(SHA256_IV);
    let mut outer = Zeroizing::new(SHA256_IV);
    compress256(&mut inner, &ipad[..]);
    compress256(&mut outer, &opad[..]);

    // Each lane's U1 = HMAC(password, salt || INT(1)), through the digest
    // API (once), as words: the sum of the U's starts there.
    let mut acc = Zeroizing::new([[0u32; 8]; N]);
    for (lane, salt) in salts.iter().enumerate() {
        let mut h = sha2::Sha256::new();
        h.update(ipad[0].as_slice());
        h.update(salt);
        h.update(1u32.to_be_bytes());
        let mut ih = Zeroizing::new([0u8; 32]);
        ih.copy_from_slice(&h.finalize());
        let mut h = sha2::Sha256::new();
        h.update(opad[0].as_slice());
        h.update(ih.as_slice());
        let mut u1 = Zeroizing::new([0u8; 32]);
        u1.copy_from_slice(&h.finalize());
        for (a, w) in acc[lane].iter_mut().zip(u1.chunks_exact(4)) {
            *a = u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
        }
    }
    match on {
        #[cfg(target_arch = "x86_64")]
        Loop::Fused(fused) => {
            fused.iterate(&inner, &outer, &mut acc, iterations);
            // The fused loop keeps the HMAC midstates and the U's in
            // registers, and spills some of them to its stack frame, which
            // no `Zeroizing` covers: that frame is wiped here.
            wipe_spilled_stack();
            #[cfg(test)]
            {
                FUSED_HERE.with(|n| n.set(n.get() + 1));
                if BREAK_FUSED.with(std::cell::Cell::get) {
                    acc[N - 1][7] ^= 1;
                }
            }
        }
        Loop::Sha2 => {
            // Each lane's block: the previous U (32 bytes) padded to one
            // block, the length counting the 64-byte pad block before it:
            // (64 + 32) * 8 bits.
            let mut blocks = Zeroizing::new([[[0u8; 64]; 1]; N]);
            let mut state = Zeroizing::new([[0u32; 8]; N]);
            for (block, a) in blocks.iter_mut().zip(acc.iter()) {
                for (i, w) in a.iter().enumerate() {
                    block[0][4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
                }
                block[0][32] = 0x80;
                block[0][56..].copy_from_slice(&(768u64).to_be_bytes());
            }
            iterate(
                &inner,
                &outer,
                &mut blocks,
                &mut acc,
                &mut state,
                iterations,
            );
        }
    }
    std::array::from_fn(|lane| {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        for (i, w) in acc[lane].iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
        }
        out
    })
}

/// Overwrites the stack below the caller's frame, where the fused loop
/// that just returned kept its spills (about 0x88 bytes plus the red zone
/// in a release build; 4 KiB leaves room for other compilers' layouts).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn wipe_spilled_stack() {
    use zeroize::Zeroize;
    let mut below = [0u8; 4096];
    below.zeroize();
    std::hint::black_box(&below);
}

/// Iterations 2..=n of every lane: U = HMAC(P, U), accumulated into `acc`.
/// With SSSE3 (every CPU with SHA extensions has it) the same code is
/// compiled so that the 32-byte state goes back into the block as two
/// byte-swapped 16-byte stores, which sha2's 16-byte block loads can take
/// straight from the store buffer; eight 4-byte stores make those loads wait
/// for the stores to reach the cache, on the critical path of every
/// compression (benches/kdf.rs: about 10% of a derivation).
fn iterate<const N: usize>(
    inner: &[u32; 8],
    outer: &[u32; 8],
    blocks: &mut [[[u8; 64]; 1]; N],
    acc: &mut [[u32; 8]; N],
    state: &mut [[u32; 8]; N],
    n: u32,
) {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if std::arch::is_x86_feature_detected!("ssse3") {
        // SAFETY: the CPU has SSSE3, checked just above. A required unsafe:
        // calling a `#[target_feature]` function from code compiled without
        // the feature is unsafe by the language's rule (the caller vouches
        // for the CPU), and runtime detection is the only way to use it in
        // a binary built for every x86-64. `tests/it/layers.rs` allows it.
        unsafe { iterate_ssse3(inner, outer, blocks, acc, state, n) };
        return;
    }
    iterate_body(inner, outer, blocks, acc, state, n);
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[target_feature(enable = "ssse3")]
fn iterate_ssse3<const N: usize>(
    inner: &[u32; 8],
    outer: &[u32; 8],
    blocks: &mut [[[u8; 64]; 1]; N],
    acc: &mut [[u32; 8]; N],
    state: &mut [[u32; 8]; N],
    n: u32,
) {
    iterate_body(inner, outer, blocks, acc, state, n);
}

#[inline(always)]
fn iterate_body<const N: usize>(
    inner: &[u32; 8],
    outer: &[u32; 8],
    blocks: &mut [[[u8; 64]; 1]; N],
    acc: &mut [[u32; 8]; N],
    state: &mut [[u32; 8]; N],
    n: u32,
) {
    use sha2::block_api::compress256;
    for _ in 1..n.max(1) {
        for (s, b) in state.iter_mut().zip(blocks.iter()) {
            *s = *inner;
            compress256(s, b);
        }
        for (s, b) in state.iter().zip(blocks.iter_mut()) {
            for (i, w) in s.iter().enumerate() {
                b[0][4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
            }
        }
        for (s, b) in state.iter_mut().zip(blocks.iter()) {
            *s = *outer;
            compress256(s, b);
        }
        for ((s, b), a) in state.iter().zip(blocks.iter_mut()).zip(acc.iter_mut()) {
            for (i, w) in s.iter().enumerate() {
                a[i] ^= w;
                b[0][4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
            }
        }
    }
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

/// The same derivation on sha2's `compress256`, one call per compression:
/// the loop used where the CPU has no SHA extensions, benchmarked beside
/// the fused one.
#[doc(hidden)]
pub fn pbkdf2_sha256_sha2_loop(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Zeroizing<[u8; KEY_LEN]> {
    let [key] = derive_lanes_on(Loop::Sha2, password, [salt], iterations);
    key
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
    fn interleaved_derivations_equal_single_ones() {
        // Each lane of a pair, and each key of a batch (odd length: the last
        // key is derived alone), is the key of its own salt, in order.
        let long: Vec<u8> = (0..200u8).collect();
        for pw_len in [0usize, 32, 64, 65, 200] {
            let pw = &long[..pw_len];
            for n in [0u32, 1, 2, 3, 1000] {
                let (a, b) = (&long[3..35], &long[100..116]);
                let [ka, kb] = pbkdf2_sha256_pair(pw, [a, b], n);
                assert_eq!(*ka, *pbkdf2_sha256_reference(pw, a, n), "{pw_len} {n}");
                assert_eq!(*kb, *pbkdf2_sha256_reference(pw, b, n), "{pw_len} {n}");
            }
        }
        let salts: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 16 + i as usize]).collect();
        let refs: Vec<&[u8]> = salts.iter().map(Vec::as_slice).collect();
        let many = pbkdf2_sha256_many(b"pw", &refs, 50);
        assert_eq!(many.len(), 7);
        for (k, s) in many.iter().zip(&refs) {
            assert_eq!(**k, *pbkdf2_sha256_reference(b"pw", s, 50));
        }
        assert!(pbkdf2_sha256_many(b"pw", &[], 50).is_empty());
    }

    #[test]
    fn without_sha_ni_the_sha2_loop_derives_and_with_it_the_fused_one() {
        // Issue 26 point 2: the fused loop only where the CPU has it; the
        // switch makes this thread act as if it had not. The loop is chosen
        // first: its self-test runs the fused loop on the choosing thread,
        // which would count below if this test were the first to choose.
        let _ = chosen_loop();
        let fused_runs = || FUSED_HERE.with(std::cell::Cell::get);
        let want = pbkdf2_sha256_reference(b"pw", b"salt", 1000);
        NO_SHA_NI.with(|f| f.set(true));
        let before = fused_runs();
        let got = pbkdf2_sha256(b"pw", b"salt", 1000);
        let [a, b] = pbkdf2_sha256_pair(b"pw", [b"salt", b"salt"], 1000);
        let chosen = chosen_loop();
        NO_SHA_NI.with(|f| f.set(false));
        assert!(matches!(chosen, Loop::Sha2), "{chosen:?}");
        assert_eq!(fused_runs(), before, "the fused loop ran without SHA-NI");
        assert_eq!(*got, *want);
        assert_eq!((*a, *b), (*want, *want));
        #[cfg(target_arch = "x86_64")]
        {
            let Some(_) = shani::ShaNi::detect() else {
                eprintln!("SKIPPED (second half): this CPU has no SHA extensions");
                return;
            };
            let got = pbkdf2_sha256(b"pw", b"salt", 1000);
            assert_eq!(fused_runs(), before + 1, "the fused loop did not run");
            assert_eq!(*got, *want);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_fused_loop_that_derives_another_key_is_never_chosen() {
        assert!(matches!(select(None), Loop::Sha2));
        let Some(found) = shani::ShaNi::detect() else {
            eprintln!("SKIPPED: this CPU has no SHA extensions");
            return;
        };
        assert!(matches!(select(Some(found)), Loop::Fused(_)));
        assert!(matches!(chosen_loop(), Loop::Fused(_)));
        // One bit of the fused result flipped: the self-test refuses it.
        BREAK_FUSED.with(|f| f.set(true));
        let chosen = select(Some(found));
        BREAK_FUSED.with(|f| f.set(false));
        assert!(matches!(chosen, Loop::Sha2), "{chosen:?}");
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
