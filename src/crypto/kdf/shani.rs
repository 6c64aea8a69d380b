//! PBKDF2-HMAC-SHA256's iteration loop fused on the CPU's SHA extensions
//! (x86-64 SHA-NI), issue 26 point 2.
//!
//! Each iteration is two dependent SHA-256 compressions of one block whose
//! first half is the last digest and whose second half is constant padding.
//! Through sha2's `compress256` (`[u32; 8]` in and out) the state leaves the
//! SHA registers after every compression: reshuffled out of the ABEF/CDGH
//! lane order, stored, byte-swapped into the next block, loaded and
//! reshuffled back, all on the critical path (about 8% of a derivation,
//! benches/RESULTS.md). Here the state stays in ABEF/CDGH registers: the
//! digest becomes the next block's first message words with two lane
//! shuffles, the padding half's words plus round constants are
//! precomputed, and U is accumulated in registers. No maintained crate
//! offers this (sha2 0.11, ring, the `pbkdf2` crate, bitcoin_hashes 1.2
//! and OpenSSL's PKCS5 all go through a per-block call with the state in
//! memory). The sha2 path stays the fallback, and kdf.rs uses this one
//! only after a derivation through it matched the sha2 path.
//!
//! What is left above the CPU's multi-block compression rate (about 7-8%
//! on the bench machine, against 16-17% through `compress256`) is the
//! message schedule: its sha256msg1/msg2 share the SHA unit with the
//! rounds, and here they can only start when the block's first words (the
//! last digest) exist, so they delay the round chain instead of running
//! ahead of it as in a long message (the same loop without the schedule
//! runs at 1.007x). Leaving out the one msg1 whose inputs are constants
//! saved about 1%; computing msg1 with SSE shifts or pacing the schedule
//! was slower (benches/RESULTS.md).
//!
//! SHA-256 itself (FIPS 180-4) is the CPU's instructions; this file only
//! schedules them. The message schedule and round pairing follow sha2's own
//! x86 backend (`sha2::sha256::x86_sha`).

use core::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_extract_epi32, _mm_set_epi32,
    _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi32,
    _mm_sub_epi32, _mm_unpackhi_epi64, _mm_unpacklo_epi64, _mm_xor_si128,
};

/// Proof that this CPU has the SHA extensions and SSE2/SSSE3/SSE4.1: only
/// [`ShaNi::detect`] makes one, so holding one is what makes calling the
/// `#[target_feature]` loop sound.
#[derive(Clone, Copy, Debug)]
pub(super) struct ShaNi(());

impl ShaNi {
    /// `Some` when the CPU has every feature the fused loop uses.
    pub(super) fn detect() -> Option<ShaNi> {
        (std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1"))
        .then_some(ShaNi(()))
    }

    /// Iterations 2..=n of every lane: `acc` holds U1 of each lane on entry
    /// and U1 ^ U2 ^ ... ^ Un on return. `inner` and `outer` are the HMAC
    /// states after the key's ipad and opad blocks.
    pub(super) fn iterate<const N: usize>(
        self,
        inner: &[u32; 8],
        outer: &[u32; 8],
        acc: &mut [[u32; 8]; N],
        n: u32,
    ) {
        // SAFETY: a `ShaNi` exists only when `detect` found every feature
        // `iterate` is compiled for on this CPU. A required unsafe: calling
        // a `#[target_feature]` function from code compiled without those
        // features is unsafe by the language's rule, and runtime detection
        // is the only way to use them in a binary built for every x86-64.
        unsafe { iterate(inner, outer, acc, n) }
    }
}

/// SHA-256's round constants (FIPS 180-4, 4.2.2).
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// Words 8..15 of every block after the first of each HMAC hash: 32 bytes
/// of digest, then SHA-256 padding for a 96-byte message (the 64-byte pad
/// block plus the digest): 0x80 and the length in bits, 768.
const PAD: [u32; 8] = [0x8000_0000, 0, 0, 0, 0, 0, 0, 768];

/// Four u32 lanes, lane 0 first.
#[inline]
#[target_feature(enable = "sse2")]
fn lanes(w: [u32; 4]) -> __m128i {
    _mm_set_epi32(w[3] as i32, w[2] as i32, w[1] as i32, w[0] as i32)
}

/// Round constants `K[4r..4r+4]`, lane 0 first.
#[inline]
#[target_feature(enable = "sse2")]
fn k4(r: usize) -> __m128i {
    lanes([K[4 * r], K[4 * r + 1], K[4 * r + 2], K[4 * r + 3]])
}

/// A state `[a, b, c, d, e, f, g, h]` in the SHA instructions' order:
/// ABEF = lanes `[f, e, b, a]`, CDGH = lanes `[h, g, d, c]`.
#[inline]
#[target_feature(enable = "sse2")]
fn to_abef_cdgh(s: &[u32; 8]) -> [__m128i; 2] {
    [lanes([s[5], s[4], s[1], s[0]]), lanes([s[7], s[6], s[3], s[2]])]
}

/// The inverse of [`to_abef_cdgh`].
#[inline]
#[target_feature(enable = "sse4.1")]
fn from_abef_cdgh([abef, cdgh]: [__m128i; 2]) -> [u32; 8] {
    [
        _mm_extract_epi32::<3>(abef) as u32,
        _mm_extract_epi32::<2>(abef) as u32,
        _mm_extract_epi32::<3>(cdgh) as u32,
        _mm_extract_epi32::<2>(cdgh) as u32,
        _mm_extract_epi32::<1>(abef) as u32,
        _mm_extract_epi32::<0>(abef) as u32,
        _mm_extract_epi32::<1>(cdgh) as u32,
        _mm_extract_epi32::<0>(cdgh) as u32,
    ]
}

/// What one compression needs of the state whose output becomes its
/// block: that state, added to the raw rounds' result (SHA-256's final
/// addition, done here rather than at the end of the compression that
/// produced it), and its lanes shuffled and added to the round constants
/// of the block's first eight words, so that the first rounds of the next
/// compression wait for one shuffle and one addition after the last rounds
/// of the previous one.
#[derive(Clone, Copy)]
struct Feed {
    /// The state, ABEF/CDGH.
    state: [__m128i; 2],
    /// `shuffle(state.abef)` + K[0, 1, 4, 5]: ABEF's lanes `[a, b, e, f]`
    /// are message words 0, 1, 4, 5.
    k_abef: __m128i,
    /// `shuffle(state.cdgh)` + K[2, 3, 6, 7]: CDGH's lanes `[c, d, g, h]`
    /// are message words 2, 3, 6, 7.
    k_cdgh: __m128i,
}

/// Reverses the four lanes: ABEF `[f, e, b, a]` -> `[a, b, e, f]`, CDGH
/// `[h, g, d, c]` -> `[c, d, g, h]`.
const REVERSE: i32 = 0x1B;

impl Feed {
    #[inline]
    #[target_feature(enable = "sse2")]
    fn new(state: [__m128i; 2]) -> Feed {
        Feed {
            state,
            k_abef: _mm_add_epi32(
                _mm_shuffle_epi32::<REVERSE>(state[0]),
                lanes([K[0], K[1], K[4], K[5]]),
            ),
            k_cdgh: _mm_add_epi32(
                _mm_shuffle_epi32::<REVERSE>(state[1]),
                lanes([K[2], K[3], K[6], K[7]]),
            ),
        }
    }
}

/// Rounds 4r..4r+4 with message words plus constants `wk`.
#[inline]
#[target_feature(enable = "sha,sse2")]
fn rounds4(s: &mut [__m128i; 2], wk: __m128i) {
    s[1] = _mm_sha256rnds2_epu32(s[1], s[0], wk);
    s[0] = _mm_sha256rnds2_epu32(s[0], s[1], _mm_shuffle_epi32::<0x0E>(wk));
}

/// One SHA-256 compression per lane, from the state `mid` (an HMAC pad
/// state), of the block whose words 0..7 are the digest `raw + feed.state`
/// (each lane's raw rounds' result of the previous compression) and whose
/// words 8..15 are [`PAD`]. Returns each lane's raw rounds' result, before
/// the final addition of `mid` (the caller's next [`Feed`] adds it).
/// A macro, not a function: as a `#[target_feature]` function it cannot be
/// `#[inline(always)]`, and the two-lane loop then called it out of line,
/// taking the state through memory on every compression.
macro_rules! compress {
    ($mid:expr, $feed:expr, $raw:expr, $consts:expr) => {{
        let (mid, feed, raw, consts): (&[__m128i; 2], &Feed, &[[__m128i; 2]; N], &Consts) =
            ($mid, $feed, $raw, $consts);
        let mut s = [*mid; N];
        // Rounds 0..8 straight from the raw lanes: word pairs (0, 1), (2, 3),
        // (4, 5), (6, 7) sit in the reversed ABEF and CDGH.
        let wa: [__m128i; N] = core::array::from_fn(|l| {
            _mm_add_epi32(_mm_shuffle_epi32::<REVERSE>(raw[l][0]), feed.k_abef)
        });
        let wc: [__m128i; N] = core::array::from_fn(|l| {
            _mm_add_epi32(_mm_shuffle_epi32::<REVERSE>(raw[l][1]), feed.k_cdgh)
        });
        for l in 0..N {
            s[l][1] = _mm_sha256rnds2_epu32(s[l][1], s[l][0], wa[l]);
        }
        for l in 0..N {
            s[l][0] = _mm_sha256rnds2_epu32(s[l][0], s[l][1], wc[l]);
        }
        for l in 0..N {
            s[l][1] = _mm_sha256rnds2_epu32(s[l][1], s[l][0], _mm_shuffle_epi32::<0x0E>(wa[l]));
        }
        for l in 0..N {
            s[l][0] = _mm_sha256rnds2_epu32(s[l][0], s[l][1], _mm_shuffle_epi32::<0x0E>(wc[l]));
        }
        // The message words in order for the schedule, off the rounds' path.
        let mut w: [[__m128i; 4]; N] = core::array::from_fn(|l| {
            let ab_ef = _mm_shuffle_epi32::<REVERSE>(_mm_add_epi32(raw[l][0], feed.state[0]));
            let cd_gh = _mm_shuffle_epi32::<REVERSE>(_mm_add_epi32(raw[l][1], feed.state[1]));
            [
                _mm_unpacklo_epi64(ab_ef, cd_gh),
                _mm_unpackhi_epi64(ab_ef, cd_gh),
                consts.pad[0],
                consts.pad[1],
            ]
        });
        for l in 0..N {
            rounds4(&mut s[l], consts.pad_k[0]);
        }
        for l in 0..N {
            rounds4(&mut s[l], consts.pad_k[1]);
        }
        for r in (4..16).step_by(4) {
            for i in 0..4 {
                for l in 0..N {
                    let wl = &mut w[l];
                    // Words 8..15 are constants, so is their msg1 (group 6):
                    // each msg1 left out of the chain's SHA unit is ~1% here.
                    let m1 = if r + i == 6 {
                        consts.msg1_pad
                    } else {
                        _mm_sha256msg1_epu32(wl[i], wl[(i + 1) % 4])
                    };
                    let t = _mm_add_epi32(
                        m1,
                        _mm_alignr_epi8::<4>(wl[(i + 3) % 4], wl[(i + 2) % 4]),
                    );
                    wl[i] = _mm_sha256msg2_epu32(t, wl[(i + 3) % 4]);
                    rounds4(&mut s[l], _mm_add_epi32(wl[i], consts.k[r + i]));
                }
            }
        }
        s
    }};
}

/// Constants of every compression, in registers.
struct Consts {
    /// K by groups of four, lane 0 first.
    k: [__m128i; 16],
    /// [`PAD`] as message words 8..11 and 12..15.
    pad: [__m128i; 2],
    /// [`PAD`] plus K[8..16].
    pad_k: [__m128i; 2],
    /// sha256msg1 of words 8..15.
    msg1_pad: __m128i,
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn iterate<const N: usize>(inner: &[u32; 8], outer: &[u32; 8], acc: &mut [[u32; 8]; N], n: u32) {
    let pad = [
        lanes([PAD[0], PAD[1], PAD[2], PAD[3]]),
        lanes([PAD[4], PAD[5], PAD[6], PAD[7]]),
    ];
    let consts = Consts {
        k: core::array::from_fn(|r| k4(r)),
        pad,
        pad_k: [
            _mm_add_epi32(pad[0], k4(2)),
            _mm_add_epi32(pad[1], k4(3)),
        ],
        msg1_pad: _mm_sha256msg1_epu32(pad[0], pad[1]),
    };
    let inner = Feed::new(to_abef_cdgh(inner));
    let outer = Feed::new(to_abef_cdgh(outer));
    let mut sum: [[__m128i; 2]; N] = core::array::from_fn(|l| to_abef_cdgh(&acc[l]));
    // Each inner block holds U = raw + outer.state; start from U1 so.
    let mut u: [[__m128i; 2]; N] = core::array::from_fn(|l| {
        [
            _mm_sub_epi32(sum[l][0], outer.state[0]),
            _mm_sub_epi32(sum[l][1], outer.state[1]),
        ]
    });
    for _ in 1..n.max(1) {
        let h = compress!(&inner.state, &outer, &u, &consts);
        u = compress!(&outer.state, &inner, &h, &consts);
        for l in 0..N {
            for j in 0..2 {
                sum[l][j] = _mm_xor_si128(sum[l][j], _mm_add_epi32(u[l][j], outer.state[j]));
            }
        }
    }
    for l in 0..N {
        acc[l] = from_abef_cdgh(sum[l]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Loop, derive_lanes_on, pbkdf2_sha256_reference};
    use super::ShaNi;

    /// The fused loop, or `None` (the test is skipped) on a CPU without it.
    fn fused() -> Option<Loop> {
        let found = ShaNi::detect().map(Loop::Fused);
        if found.is_none() {
            eprintln!("SKIPPED: this CPU has no SHA extensions");
        }
        found
    }

    #[test]
    fn the_fused_loop_derives_the_published_vectors() {
        let Some(fused) = fused() else { return };
        // RFC 7914 section 11 (first 32 of its 64 bytes: PBKDF2's output
        // blocks are independent) and the RFC 6070 inputs with SHA-256.
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
            let [one] = derive_lanes_on(fused, pw, [salt], n);
            assert_eq!(hex::encode(one.as_slice()), want, "{n} iterations");
            // Both lanes of a pair carry the vector, whichever lane it is in.
            let [a, b] = derive_lanes_on(fused, pw, [salt, b"other"], n);
            assert_eq!(hex::encode(a.as_slice()), want, "lane 0, {n} iterations");
            let [c, d] = derive_lanes_on(fused, pw, [b"other", salt], n);
            assert_eq!(hex::encode(d.as_slice()), want, "lane 1, {n} iterations");
            assert_eq!(*b, *c);
        }
    }

    /// A small deterministic generator (splitmix64): the same "random"
    /// inputs every run, so a failure reproduces.
    fn bytes(seed: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = *seed;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    }

    #[test]
    fn the_fused_loop_equals_the_sha2_loop_and_the_pbkdf2_crate() {
        let Some(fused) = fused() else { return };
        let mut seed = 26;
        let lens = [0usize, 55, 56, 63, 64, 65, 200];
        let check = |pw: &[u8], salts: [&[u8]; 2], n: u32| {
            let want = salts.map(|s| pbkdf2_sha256_reference(pw, s, n));
            let what = format!("password {} bytes, salts {salts:?}, {n} iterations", pw.len());
            let [one] = derive_lanes_on(fused, pw, [salts[0]], n);
            let [sha2] = derive_lanes_on(Loop::Sha2, pw, [salts[0]], n);
            assert_eq!(*one, *want[0], "{what}");
            assert_eq!(*sha2, *want[0], "{what}");
            let [a, b] = derive_lanes_on(fused, pw, salts, n);
            assert_eq!((*a, *b), (*want[0], *want[1]), "pair, {what}");
        };
        for pw_len in lens {
            for salt_len in lens {
                let pw = bytes(&mut seed, pw_len);
                let (s0, s1) = (bytes(&mut seed, salt_len), bytes(&mut seed, 16));
                for n in [0, 1, 2, 3, 1000] {
                    check(&pw, [&s0, &s1], n);
                }
            }
        }
        for pw_len in [0, 64, 65] {
            let pw = bytes(&mut seed, pw_len);
            let (s0, s1) = (bytes(&mut seed, 56), bytes(&mut seed, 200));
            check(&pw, [&s0, &s1], 100_000);
        }
    }
}
