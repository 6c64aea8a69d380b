//! `credshift qr`: a bundle as a numbered sequence of QR codes, and back.
//!
//! Each part is one line of text:
//!
//! ```text
//! CSQR1:<BUNDLE ID>:<i>/<n>:<base64 of up to CHUNK bytes>
//! ```
//!
//! The bundle id is the first 8 bytes of the SHA-256 of the whole bundle, in
//! upper-case hex: it tells parts of one bundle from parts of another, and
//! after joining it checks that the rebuilt bytes are the bundle's (a part
//! scanned wrong fails here). The bundle itself is already sealed with its
//! passphrase; the QR codes carry nothing else.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use qrcode::render::unicode::Dense1x2;
use qrcode::{Color, EcLevel, QrCode};
use sha2::{Digest, Sha256};

/// The marker and format version every part starts with.
pub const PREFIX: &str = "CSQR1";
/// Bundle bytes per part: with the header and base64 a part stays under 300
/// bytes, a version 13 code at level M (69 modules, 77 with the quiet zone),
/// which fits an 80-column terminal and scans from a phone.
pub const CHUNK: usize = 200;
/// Error correction: M recovers about 15% of a damaged code.
pub const EC_LEVEL: EcLevel = EcLevel::M;
/// Pixels per module in the PNG files.
pub const PNG_SCALE: usize = 8;
/// The quiet zone around a code, in modules (what the standard asks).
pub const QUIET_ZONE: usize = 4;
/// The most parts a bundle may have: 4,096 parts of 200 bytes is 800 KiB,
/// far beyond any bundle of credentials and already far too many codes to
/// scan. A part claiming more is refused before anything is sized by it.
pub const MAX_PARTS: usize = 4096;
/// How many ranges of missing parts an error names before it only counts.
pub const MAX_SHOWN_RANGES: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    #[error("{origin}: not a credshift QR part ({why})")]
    Malformed { origin: String, why: String },
    #[error("no parts given")]
    Empty,
    #[error(
        "part {index}/{total} ({origin}) belongs to another bundle (id {found}, the others are {expected})"
    )]
    Foreign {
        index: usize,
        total: usize,
        origin: String,
        found: String,
        expected: String,
    },
    #[error("part {index} ({origin}) says the bundle has {found} parts; the others say {expected}")]
    CountMismatch {
        index: usize,
        origin: String,
        found: usize,
        expected: usize,
    },
    #[error("part {index}/{total} is given twice ({first} and {second})")]
    Duplicate {
        index: usize,
        total: usize,
        first: String,
        second: String,
    },
    #[error("missing part{} {} of {total}", plural(.count), list(.missing, .count))]
    Missing {
        /// The first [`MAX_SHOWN_RANGES`] runs of missing part numbers.
        missing: Vec<(usize, usize)>,
        /// How many parts are missing in all.
        count: usize,
        total: usize,
    },
    #[error(
        "the bundle is {bytes} bytes: more than {} QR codes; send it as a file",
        MAX_PARTS
    )]
    TooLarge { bytes: usize },
    #[error(
        "the parts do not rebuild bundle {expected} (the result hashes to {found}): a part was scanned wrong"
    )]
    Checksum { expected: String, found: String },
    #[error("part {index} cannot be drawn as a QR code: {why}")]
    Encode { index: usize, why: String },
}

fn plural(count: &usize) -> &'static str {
    if *count == 1 { "" } else { "s" }
}

/// `2, 4-9, 12` for the shown ranges, and how many more parts are missing.
fn list(ranges: &[(usize, usize)], count: &usize) -> String {
    let count = *count;
    let shown: usize = ranges.iter().map(|(a, b)| b - a + 1).sum();
    let mut text = ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if count > shown {
        text.push_str(&format!(" and {} more", count - shown));
    }
    text
}

/// The runs of numbers in 1..=total not in `have` (sorted): the first
/// `MAX_SHOWN_RANGES` of them, and how many numbers are missing in all.
fn missing_ranges<'a>(
    have: impl Iterator<Item = &'a usize>,
    total: usize,
) -> (Vec<(usize, usize)>, usize) {
    let mut ranges = Vec::new();
    let mut count = 0;
    let mut next = 1;
    for i in have.copied().chain(std::iter::once(total + 1)) {
        if i > next {
            count += i - next;
            if ranges.len() < MAX_SHOWN_RANGES {
                ranges.push((next, i - 1));
            }
        }
        next = i + 1;
    }
    (ranges, count)
}

/// Refuse a bundle that needs more than [`MAX_PARTS`] codes.
pub fn check_size(bundle: &[u8]) -> Result<(), QrError> {
    if bundle.len().div_ceil(CHUNK) > MAX_PARTS {
        return Err(QrError::TooLarge {
            bytes: bundle.len(),
        });
    }
    Ok(())
}

/// The id of a bundle: SHA-256, first 8 bytes, upper-case hex.
pub fn bundle_id(bundle: &[u8]) -> String {
    hex::encode_upper(&Sha256::digest(bundle)[..8])
}

/// The bundle as part texts, numbered from 1.
pub fn split(bundle: &[u8]) -> Vec<String> {
    let id = bundle_id(bundle);
    let chunks: Vec<&[u8]> = if bundle.is_empty() {
        vec![&[][..]]
    } else {
        bundle.chunks(CHUNK).collect()
    };
    let total = chunks.len();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{PREFIX}:{id}:{}/{total}:{}", i + 1, B64.encode(c)))
        .collect()
}

/// One parsed part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub bundle_id: String,
    pub index: usize,
    pub total: usize,
    pub data: Vec<u8>,
}

/// Parse one part's text; `origin` (an argument position or a file) names
/// it in errors.
pub fn parse_part(text: &str, origin: &str) -> Result<Part, QrError> {
    let bad = |why: &str| QrError::Malformed {
        origin: origin.to_string(),
        why: why.to_string(),
    };
    let text = text.trim();
    let mut fields = text.split(':');
    let (Some(prefix), Some(id), Some(pos), Some(payload), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(bad("expected CSQR1:ID:I/N:DATA"));
    };
    if prefix != PREFIX {
        return Err(bad("it does not start with CSQR1:"));
    }
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the bundle id is not 16 hex digits"));
    }
    let (i, n) = pos
        .split_once('/')
        .ok_or_else(|| bad("no I/N part number"))?;
    let index: usize = i
        .parse()
        .map_err(|_| bad("the part number is not a number"))?;
    let total: usize = n
        .parse()
        .map_err(|_| bad("the part count is not a number"))?;
    if total > MAX_PARTS {
        return Err(bad(&format!(
            "it claims {total} parts; a bundle has at most {MAX_PARTS}"
        )));
    }
    if total == 0 || index == 0 || index > total {
        return Err(bad(&format!("part number {index}/{total} is out of range")));
    }
    let data = B64
        .decode(payload)
        .map_err(|_| bad("the data is not valid base64"))?;
    if data.len() > CHUNK {
        return Err(bad("the data is longer than a part holds"));
    }
    Ok(Part {
        bundle_id: id.to_ascii_uppercase(),
        index,
        total,
        data,
    })
}

/// Rebuild a bundle from `(origin, text)` parts in any order. Refuses a
/// foreign, duplicated or missing part by number, and checks the result
/// against the bundle id.
pub fn join<'a>(parts: impl IntoIterator<Item = (String, &'a str)>) -> Result<Vec<u8>, QrError> {
    let mut first: Option<(String, usize)> = None;
    let mut by_index: BTreeMap<usize, (String, Vec<u8>)> = BTreeMap::new();
    for (origin, text) in parts {
        let p = parse_part(text, &origin)?;
        let (id, total) = first.get_or_insert_with(|| (p.bundle_id.clone(), p.total));
        if p.bundle_id != *id {
            return Err(QrError::Foreign {
                index: p.index,
                total: p.total,
                origin,
                found: p.bundle_id,
                expected: id.clone(),
            });
        }
        if p.total != *total {
            return Err(QrError::CountMismatch {
                index: p.index,
                origin,
                found: p.total,
                expected: *total,
            });
        }
        if let Some((seen, _)) = by_index.get(&p.index) {
            return Err(QrError::Duplicate {
                index: p.index,
                total: p.total,
                first: seen.clone(),
                second: origin,
            });
        }
        by_index.insert(p.index, (origin, p.data));
    }
    let Some((expected, total)) = first else {
        return Err(QrError::Empty);
    };
    let (missing, count) = missing_ranges(by_index.keys(), total);
    if count > 0 {
        return Err(QrError::Missing {
            missing,
            count,
            total,
        });
    }
    let bundle: Vec<u8> = by_index.into_values().flat_map(|(_, d)| d).collect();
    let found = bundle_id(&bundle);
    if found != expected {
        return Err(QrError::Checksum { expected, found });
    }
    Ok(bundle)
}

/// The QR code of part `index`'s text.
pub fn encode(text: &str, index: usize) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(text.as_bytes(), EC_LEVEL).map_err(|e| QrError::Encode {
        index,
        why: e.to_string(),
    })
}

/// The code drawn with half blocks for a terminal with light text on a dark
/// background: light modules are drawn, dark ones left blank.
pub fn to_terminal(code: &QrCode) -> String {
    code.render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build()
}

/// The code as an 8-bit greyscale PNG, dark on white, with the quiet zone.
pub fn to_png(code: &QrCode) -> Vec<u8> {
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * PNG_SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
        for y in my * PNG_SCALE..(my + 1) * PNG_SCALE {
            pixels[y * side + mx * PNG_SCALE..y * side + (mx + 1) * PNG_SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        // Writing into a Vec cannot fail; the header and data are well-formed.
        let mut w = enc.write_header().expect("PNG header into memory");
        w.write_image_data(&pixels).expect("PNG data into memory");
    }
    out
}

/// The PNG file name of part `index` of `total`, sorting in order.
pub fn png_name(index: usize, total: usize) -> String {
    let width = total.to_string().len();
    format!("credshift-qr-{index:0width$}-of-{total}.png")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 3) as u8).collect()
    }

    fn texts(parts: &[String]) -> Vec<(String, &str)> {
        parts
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("argument {}", i + 1), t.as_str()))
            .collect()
    }

    #[test]
    fn split_then_join_is_byte_for_byte_in_any_order() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17] {
            let bundle = sample(n);
            let mut parts = split(&bundle);
            assert_eq!(parts.len(), n.div_ceil(CHUNK).max(1), "{n}");
            parts.reverse();
            assert_eq!(join(texts(&parts)).unwrap(), bundle, "{n}");
        }
    }

    #[test]
    fn each_part_fits_a_small_code() {
        let parts = split(&sample(3 * CHUNK));
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() < 300, "{}", p.len());
            let code = encode(p, i + 1).unwrap();
            assert!(
                code.width() <= 69,
                "version too high: {} modules",
                code.width()
            );
            let drawn = to_terminal(&code);
            assert!(drawn.lines().all(|l| l.chars().count() <= 80));
        }
    }

    #[test]
    fn a_missing_part_is_named_by_number() {
        let parts = split(&sample(4 * CHUNK));
        let some = vec![parts[0].clone(), parts[2].clone()];
        assert_eq!(
            join(texts(&some)).unwrap_err(),
            QrError::Missing {
                missing: vec![(2, 2), (4, 4)],
                count: 2,
                total: 4
            }
        );
        assert_eq!(
            join(texts(&some)).unwrap_err().to_string(),
            "missing parts 2, 4 of 4"
        );
    }

    /// Issue 23: the part count is not trusted. A count past MAX_PARTS is
    /// refused at once (on 232bd74, 1/18446744073709551615 exhausted memory)
    /// and a missing-parts message names a few ranges (1/3000000 printed a
    /// 25 MB message).
    #[test]
    fn part_counts_are_bounded_and_missing_parts_are_few_ranges() {
        for n in [MAX_PARTS + 1, 3_000_000, usize::MAX] {
            let text = format!("CSQR1:0123456789ABCDEF:1/{n}:AAAA");
            let err = join(vec![("argument 1".to_string(), text.as_str())]).unwrap_err();
            assert!(matches!(err, QrError::Malformed { .. }), "{n}: {err}");
            assert!(err.to_string().contains("at most 4096"), "{err}");
        }
        let text = format!("CSQR1:0123456789ABCDEF:7/{MAX_PARTS}:AAAA");
        let err = join(vec![("a".to_string(), text.as_str())]).unwrap_err();
        assert_eq!(err.to_string(), "missing parts 1-6, 8-4096 of 4096");
        let parts = split(&sample(20 * CHUNK));
        let every_other: Vec<String> = parts.iter().step_by(2).cloned().collect();
        let err = join(texts(&every_other)).unwrap_err();
        assert_eq!(err.to_string(), "missing parts 2, 4, 6, 8 and 6 more of 20");
        assert!(check_size(&sample(MAX_PARTS * CHUNK)).is_ok());
        assert!(matches!(
            check_size(&sample(MAX_PARTS * CHUNK + 1)),
            Err(QrError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_duplicated_part_is_refused_by_number() {
        let parts = split(&sample(3 * CHUNK));
        let dup = vec![parts[0].clone(), parts[1].clone(), parts[1].clone()];
        let err = join(texts(&dup)).unwrap_err();
        assert!(
            matches!(
                err,
                QrError::Duplicate {
                    index: 2,
                    total: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().starts_with("part 2/3 is given twice"));
    }

    #[test]
    fn a_foreign_part_is_refused_by_number() {
        let ours = split(&sample(3 * CHUNK));
        let theirs = split(&sample(3 * CHUNK - 1));
        let mixed = vec![ours[0].clone(), theirs[1].clone(), ours[2].clone()];
        let err = join(texts(&mixed)).unwrap_err();
        assert!(
            matches!(err, QrError::Foreign { index: 2, total: 3, ref origin, .. } if origin == "argument 2"),
            "{err}"
        );
        assert!(err.to_string().contains("another bundle"));
    }

    #[test]
    fn a_part_scanned_wrong_fails_the_checksum() {
        let bundle = sample(2 * CHUNK);
        let mut parts = split(&bundle);
        let (head, payload) = parts[1].rsplit_once(':').unwrap();
        let mut data = B64.decode(payload).unwrap();
        data[5] ^= 1;
        parts[1] = format!("{head}:{}", B64.encode(&data));
        let err = join(texts(&parts)).unwrap_err();
        assert!(matches!(err, QrError::Checksum { .. }), "{err}");
    }

    #[test]
    fn malformed_parts_say_why() {
        for (text, why) in [
            ("hello", "expected CSQR1"),
            ("XSQR1:0123456789ABCDEF:1/1:", "does not start"),
            ("CSQR1:0123:1/1:", "16 hex digits"),
            ("CSQR1:0123456789ABCDEF:0/1:", "out of range"),
            ("CSQR1:0123456789ABCDEF:3/2:", "out of range"),
            ("CSQR1:0123456789ABCDEF:1/x:", "not a number"),
            ("CSQR1:0123456789ABCDEF:1/1:!!", "base64"),
        ] {
            let err = parse_part(text, "f").unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert_eq!(
            join(Vec::<(String, &str)>::new()).unwrap_err(),
            QrError::Empty
        );
    }

    #[test]
    fn png_is_the_code_with_a_quiet_zone() {
        let code = encode(&split(b"{}")[0], 1).unwrap();
        let bytes = to_png(&code);
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(
            info.width as usize,
            (code.width() + 2 * QUIET_ZONE) * PNG_SCALE
        );
        assert_eq!(png_name(3, 12), "credshift-qr-03-of-12.png");
        assert_eq!(png_name(1, 1), "credshift-qr-1-of-1.png");
    }
}
