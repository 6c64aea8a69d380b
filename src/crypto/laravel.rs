//! Laravel's `Crypt` format (Illuminate\Encryption\Encrypter, AES-256-CBC),
//! as the Fragments Engine stores `a_i_credentials.encrypted_credentials`.
//!
//! Stored text: base64 of the JSON `{"iv","value","mac","tag"}` where `iv`
//! is base64 of 16 random bytes, `value` base64 of the AES-256-CBC/PKCS7
//! ciphertext, `mac` lowercase hex HMAC-SHA256(key, iv_b64 || value_b64) and
//! `tag` empty (CBC has none). The MAC is checked, in constant time, before
//! anything is decrypted. `Crypt::encrypt` PHP-serializes the plaintext first
//! (`s:17:"...";`, the length in bytes); `Crypt::encryptString` does not, and
//! both are read here.
//!
//! Errors are static texts: they never quote the payload, the plaintext or
//! the key.

use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::credential::Secret;

type Aes256CbcEnc = cbc::Encryptor<Aes256>;
type Aes256CbcDec = cbc::Decryptor<Aes256>;
type HmacSha256 = Hmac<Sha256>;

const IV_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// Why a payload or key was refused. Every message is fixed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LaravelError {
    #[error("APP_KEY is malformed: {0}")]
    BadKey(&'static str),
    #[error("encrypted payload is malformed: {0}")]
    Payload(&'static str),
    #[error("MAC check failed: wrong APP_KEY, or the value was changed")]
    Mac,
    #[error("decryption failed (bad padding) although the MAC matched")]
    Decrypt,
    #[error("decrypted value is not a PHP-serialized string or JSON: {0}")]
    Plaintext(&'static str),
}

/// A Laravel `APP_KEY`: 32 bytes for AES-256-CBC. Zeroized on drop; its
/// `Debug` prints nothing of it.
pub struct AppKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey([redacted])")
    }
}

impl AppKey {
    /// Parse `APP_KEY` as Laravel does: `base64:` + base64 of 32 bytes, or
    /// (Laravel's raw form) a 32-byte string used as is. Surrounding
    /// whitespace and quotes (as copied from a `.env` line) are ignored, and
    /// so is a missing `base64:` prefix on a value that decodes to 32 bytes.
    pub fn parse(text: &Secret) -> Result<AppKey, LaravelError> {
        let t = text.expose().trim();
        let t = strip_quotes(t).trim();
        if t.is_empty() {
            return Err(LaravelError::BadKey("it is empty"));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if let Some(b64) = t.strip_prefix("base64:") {
            let bytes = Zeroizing::new(B64.decode(b64.trim()).map_err(|_| {
                LaravelError::BadKey("the text after \"base64:\" is not valid base64")
            })?);
            if bytes.len() != KEY_LEN {
                return Err(LaravelError::BadKey(
                    "it must decode to 32 bytes for AES-256-CBC (generate one with `php artisan key:generate`)",
                ));
            }
            key.copy_from_slice(&bytes);
        } else if t.len() == KEY_LEN {
            key.copy_from_slice(t.as_bytes());
        } else if let Ok(bytes) = B64.decode(t).map(Zeroizing::new)
            && bytes.len() == KEY_LEN
        {
            key.copy_from_slice(&bytes);
        } else {
            return Err(LaravelError::BadKey(
                "expected \"base64:\" followed by base64 of 32 bytes (as in the app's .env)",
            ));
        }
        Ok(AppKey(key))
    }

    /// A key from raw bytes (tests and tools).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> AppKey {
        AppKey(Zeroizing::new(bytes))
    }

    fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn mac(&self, iv_b64: &str, value_b64: &str) -> HmacSha256 {
        // HMAC accepts keys of any length; 32 bytes cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(self.bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(iv_b64.as_bytes());
        mac.update(value_b64.as_bytes());
        mac
    }
}

fn strip_quotes(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

/// The JSON inside the stored base64, in Laravel's key order.
#[derive(Serialize)]
struct Payload<'a> {
    iv: &'a str,
    value: &'a str,
    mac: &'a str,
    tag: &'a str,
}

/// Encrypt `plaintext` (already serialized as the app expects) under a fresh
/// random IV.
pub fn encrypt(key: &AppKey, plaintext: &[u8]) -> Result<String, LaravelError> {
    let mut iv = [0u8; IV_LEN];
    getrandom::fill(&mut iv).map_err(|_| LaravelError::Payload("no randomness for the IV"))?;
    Ok(encrypt_with_iv(key, &iv, plaintext))
}

/// Encrypt with a given IV. Only for known-answer tests: reusing an IV
/// under one key leaks plaintext structure.
pub fn encrypt_with_iv(key: &AppKey, iv: &[u8; IV_LEN], plaintext: &[u8]) -> String {
    let padded_len = (plaintext.len() / IV_LEN + 1) * IV_LEN;
    let mut buf = Zeroizing::new(vec![0u8; padded_len]);
    buf[..plaintext.len()].copy_from_slice(plaintext);
    let cipher = Aes256CbcEnc::new(key.bytes().into(), iv.into());
    // The buffer holds the plaintext plus a full block, which PKCS7 never exceeds.
    let ct = cipher
        .encrypt_padded::<Pkcs7>(&mut buf, plaintext.len())
        .unwrap_or_else(|_| unreachable!("buffer sized for PKCS7"));
    let iv_b64 = B64.encode(iv);
    let value_b64 = B64.encode(ct);
    let mac = hex::encode(key.mac(&iv_b64, &value_b64).finalize().into_bytes());
    let json = serde_json::to_string(&Payload {
        iv: &iv_b64,
        value: &value_b64,
        mac: &mac,
        tag: "",
    })
    .unwrap_or_else(|_| unreachable!("strings always serialize"));
    B64.encode(json)
}

/// True when `payload` carries a valid MAC under `key`: a cheap way to tell
/// whether a key is the one rows were written with, without decrypting.
pub fn mac_matches(key: &AppKey, payload: &str) -> bool {
    parse_payload(payload)
        .map(|p| verify_mac(key, &p).is_ok())
        .unwrap_or(false)
}

struct Parsed {
    iv_b64: String,
    value_b64: String,
    mac: Vec<u8>,
}

fn parse_payload(payload: &str) -> Result<Parsed, LaravelError> {
    let json = B64
        .decode(payload.trim())
        .map_err(|_| LaravelError::Payload("not base64"))?;
    let v: serde_json::Value = serde_json::from_slice(&json)
        .map_err(|_| LaravelError::Payload("not JSON inside the base64"))?;
    let obj = v
        .as_object()
        .ok_or(LaravelError::Payload("not a JSON object inside the base64"))?;
    let field = |name: &'static str, missing: &'static str| {
        obj.get(name)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or(LaravelError::Payload(missing))
    };
    let iv_b64 = field("iv", "\"iv\" is missing or not a string")?;
    let value_b64 = field("value", "\"value\" is missing or not a string")?;
    let mac_hex = field("mac", "\"mac\" is missing or not a string")?;
    // Laravel: a tag on a non-AEAD cipher is refused; an absent or empty one is fine.
    match obj.get("tag") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(t)) if t.is_empty() => {}
        Some(_) => {
            return Err(LaravelError::Payload(
                "\"tag\" is set, but AES-256-CBC has no tag (was it written with AES-GCM?)",
            ));
        }
    }
    let mac = hex::decode(&mac_hex).map_err(|_| LaravelError::Mac)?;
    Ok(Parsed {
        iv_b64,
        value_b64,
        mac,
    })
}

fn verify_mac(key: &AppKey, p: &Parsed) -> Result<(), LaravelError> {
    // `verify_slice` compares in constant time.
    key.mac(&p.iv_b64, &p.value_b64)
        .verify_slice(&p.mac)
        .map_err(|_| LaravelError::Mac)
}

/// Check the MAC, then decrypt. Returns the raw plaintext (still
/// serialized), zeroized on drop.
pub fn decrypt(key: &AppKey, payload: &str) -> Result<Zeroizing<Vec<u8>>, LaravelError> {
    let p = parse_payload(payload)?;
    verify_mac(key, &p)?;
    let iv = B64
        .decode(&p.iv_b64)
        .map_err(|_| LaravelError::Payload("\"iv\" is not base64"))?;
    let iv: [u8; IV_LEN] = iv
        .as_slice()
        .try_into()
        .map_err(|_| LaravelError::Payload("\"iv\" is not 16 bytes"))?;
    let mut buf = Zeroizing::new(
        B64.decode(&p.value_b64)
            .map_err(|_| LaravelError::Payload("\"value\" is not base64"))?,
    );
    if buf.is_empty() || buf.len() % IV_LEN != 0 {
        return Err(LaravelError::Payload(
            "\"value\" is not a whole number of AES blocks",
        ));
    }
    let cipher = Aes256CbcDec::new(key.bytes().into(), (&iv).into());
    let n = cipher
        .decrypt_padded::<Pkcs7>(&mut buf)
        .map_err(|_| LaravelError::Decrypt)?
        .len();
    buf.truncate(n);
    Ok(buf)
}

/// How the plaintext was framed: `Crypt::encrypt` (PHP-serialized) or
/// `Crypt::encryptString` (as is). Write-back keeps the row's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    PhpSerialized,
    Plain,
}

/// PHP `serialize()` of a string: `s:LEN:"TEXT";` with LEN in bytes.
pub fn php_serialize_str(s: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(s.len() + 16));
    out.push_str("s:");
    out.push_str(&s.len().to_string());
    out.push_str(":\"");
    out.push_str(s);
    out.push_str("\";");
    out
}

/// PHP `unserialize()` of a serialized string (`s:LEN:"TEXT";`). The length
/// counts bytes, so a multibyte text is cut exactly where PHP would cut it;
/// the text must then be UTF-8.
pub fn php_unserialize_str(data: &[u8]) -> Result<Zeroizing<String>, LaravelError> {
    let rest = data.strip_prefix(b"s:").ok_or(LaravelError::Plaintext(
        "a serialized string starts with s:",
    ))?;
    let colon = rest
        .iter()
        .position(|&b| b == b':')
        .ok_or(LaravelError::Plaintext("the length is not terminated"))?;
    let len_text = &rest[..colon];
    if len_text.is_empty() || len_text.len() > 12 || !len_text.iter().all(u8::is_ascii_digit) {
        return Err(LaravelError::Plaintext("the length is not a number"));
    }
    let len: usize = std::str::from_utf8(len_text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(LaravelError::Plaintext("the length is not a number"))?;
    let body = rest[colon + 1..]
        .strip_prefix(b"\"")
        .ok_or(LaravelError::Plaintext(
            "the text does not start with a quote",
        ))?;
    if body.len() < len + 2 {
        return Err(LaravelError::Plaintext(
            "the length is larger than the text",
        ));
    }
    if &body[len..len + 2] != b"\";" {
        return Err(LaravelError::Plaintext(
            "the length does not match the text",
        ));
    }
    if body[len + 2..].iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(LaravelError::Plaintext(
            "data follows the serialized string",
        ));
    }
    let text = std::str::from_utf8(&body[..len])
        .map_err(|_| LaravelError::Plaintext("the text is not UTF-8"))?;
    Ok(Zeroizing::new(text.to_string()))
}

/// The JSON text inside a decrypted value, and how it was framed.
pub fn unframe(plaintext: &[u8]) -> Result<(Zeroizing<String>, Framing), LaravelError> {
    if plaintext.starts_with(b"s:") {
        return Ok((php_unserialize_str(plaintext)?, Framing::PhpSerialized));
    }
    let text =
        std::str::from_utf8(plaintext).map_err(|_| LaravelError::Plaintext("it is not UTF-8"))?;
    if text.trim_start().starts_with('{') {
        Ok((Zeroizing::new(text.to_string()), Framing::Plain))
    } else {
        Err(LaravelError::Plaintext(
            "expected s:LEN:\"...\"; or a JSON object",
        ))
    }
}

/// Frame a JSON text the way the row had it.
pub fn frame(json: &str, framing: Framing) -> Zeroizing<String> {
    match framing {
        Framing::PhpSerialized => php_serialize_str(json),
        Framing::Plain => Zeroizing::new(json.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AppKey {
        AppKey::from_bytes(*b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn php_serialize_counts_bytes_not_chars() {
        assert_eq!(&*php_serialize_str("abc"), "s:3:\"abc\";");
        assert_eq!(&*php_serialize_str(""), "s:0:\"\";");
        // "é" is 2 bytes, "鍵" 3, "🔑" 4: 1 + 2 + 3 + 4 = 10 bytes, 4 chars.
        assert_eq!(&*php_serialize_str("aé鍵🔑"), "s:10:\"aé鍵🔑\";");
        // Quotes inside are not escaped in PHP's format: the length frames them.
        assert_eq!(
            &*php_serialize_str(r#"{"key":"v"}"#),
            r#"s:11:"{"key":"v"}";"#
        );
    }

    #[test]
    fn php_unserialize_round_trips_multibyte_text() {
        for s in [
            "",
            "plain",
            "aé鍵🔑",
            r#"{"key":"sk-ключ-🔑","x":"\";"}"#,
            "\";\";",
        ] {
            let ser = php_serialize_str(s);
            assert_eq!(&*php_unserialize_str(ser.as_bytes()).unwrap(), s, "{s}");
        }
    }

    #[test]
    fn php_unserialize_refuses_wrong_lengths_and_shapes() {
        let bad: &[&[u8]] = &[
            "s:3:\"aé鍵\";".as_bytes(), // char count, not byte count (6)
            "s:7:\"aé鍵\";".as_bytes(), // one byte too many
            b"s:5:\"ab\";",             // longer than the data
            b"s:x:\"ab\";",
            b"s::\"ab\";",
            b"s:2:\"ab\"", // no terminator
            b"s:2:\"ab\";junk",
            b"i:5;",
            b"s:2:ab;",
            b"s:99999999999999999999:\"a\";",
        ];
        for b in bad {
            assert!(
                php_unserialize_str(b).is_err(),
                "accepted {}",
                String::from_utf8_lossy(b)
            );
        }
        // A length that splits a multibyte character leaves no valid UTF-8.
        let split = [b"s:1:\"".as_slice(), &"é".as_bytes()[..1], b"\";"].concat();
        assert_eq!(
            php_unserialize_str(&split).err(),
            Some(LaravelError::Plaintext("the text is not UTF-8"))
        );
    }

    #[test]
    fn unframe_accepts_serialized_and_plain_json() {
        let (t, f) = unframe(br#"s:11:"{"key":"v"}";"#).unwrap();
        assert_eq!((&**t, f), (r#"{"key":"v"}"#, Framing::PhpSerialized));
        let (t, f) = unframe(br#"{"key":"v"}"#).unwrap();
        assert_eq!((&**t, f), (r#"{"key":"v"}"#, Framing::Plain));
        assert!(unframe(b"a:1:{i:0;s:1:\"x\";}").is_err());
        assert!(unframe(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn encrypt_then_decrypt_round_trips() {
        let k = key();
        for pt in ["", "x", "exactly16bytes!!", "s:10:\"aé鍵🔑\";"] {
            let payload = encrypt(&k, pt.as_bytes()).unwrap();
            assert_eq!(&**decrypt(&k, &payload).unwrap(), pt.as_bytes());
        }
    }

    #[test]
    fn fresh_iv_per_encryption() {
        let k = key();
        let a = encrypt(&k, b"same").unwrap();
        let b = encrypt(&k, b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn payload_has_laravels_shape() {
        let payload = encrypt_with_iv(&key(), &[7u8; 16], b"s:1:\"a\";");
        let json = String::from_utf8(B64.decode(payload).unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["iv", "value", "mac", "tag"]);
        assert_eq!(v["iv"], B64.encode([7u8; 16]));
        assert_eq!(v["tag"], "");
        let mac = v["mac"].as_str().unwrap();
        assert_eq!(mac.len(), 64);
        assert!(
            mac.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        // One block of ciphertext for 8 bytes of plaintext.
        assert_eq!(B64.decode(v["value"].as_str().unwrap()).unwrap().len(), 16);
    }

    fn rewrite(
        payload: &str,
        f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> String {
        let mut v: serde_json::Value =
            serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
        f(v.as_object_mut().unwrap());
        B64.encode(serde_json::to_string(&v).unwrap())
    }

    #[test]
    fn tampering_fails_the_mac_before_decryption() {
        let k = key();
        let p = encrypt(&k, b"s:6:\"secret\";").unwrap();
        let flip_mac = rewrite(&p, |o| {
            let m = o["mac"].as_str().unwrap();
            let first = if m.starts_with('0') { "1" } else { "0" };
            o.insert("mac".into(), format!("{first}{}", &m[1..]).into());
        });
        assert_eq!(decrypt(&k, &flip_mac).unwrap_err(), LaravelError::Mac);
        let other_iv = rewrite(&p, |o| {
            o.insert("iv".into(), B64.encode([9u8; 16]).into());
        });
        assert_eq!(decrypt(&k, &other_iv).unwrap_err(), LaravelError::Mac);
        let not_hex = rewrite(&p, |o| {
            o.insert("mac".into(), "zz".into());
        });
        assert_eq!(decrypt(&k, &not_hex).unwrap_err(), LaravelError::Mac);
        let wrong_key = AppKey::from_bytes([1u8; 32]);
        assert_eq!(decrypt(&wrong_key, &p).unwrap_err(), LaravelError::Mac);
        assert!(!mac_matches(&wrong_key, &p));
        assert!(mac_matches(&k, &p));
    }

    #[test]
    fn malformed_payloads_are_refused_without_quoting() {
        let k = key();
        let p = encrypt(&k, b"x").unwrap();
        let with_tag = rewrite(&p, |o| {
            o.insert("tag".into(), "c2VjcmV0LXNlY3JldA==".into());
        });
        let no_iv = rewrite(&p, |o| {
            o.remove("iv");
        });
        for bad in [
            "",
            "!!!",
            &B64.encode("sk-secret-not-json"),
            &with_tag,
            &no_iv,
        ] {
            let e = decrypt(&k, bad).unwrap_err();
            assert!(matches!(e, LaravelError::Payload(_)), "{bad}: {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
        // Without a tag field at all (older Laravel) the payload is fine.
        let no_tag = rewrite(&p, |o| {
            o.remove("tag");
        });
        assert_eq!(&**decrypt(&k, &no_tag).unwrap(), b"x");
    }

    #[test]
    fn app_key_forms() {
        let raw = [5u8; 32];
        let b64 = B64.encode(raw);
        for text in [
            format!("base64:{b64}"),
            format!("  \"base64:{b64}\"\n"),
            format!("'base64:{b64}'"),
            b64.clone(),
        ] {
            let k = AppKey::parse(&Secret::new(text.clone())).unwrap();
            assert_eq!(k.bytes(), &raw, "{text}");
        }
        // Laravel's raw form: a 32-character key used as bytes.
        let k = AppKey::parse(&Secret::new("abcdefghijklmnopqrstuvwxyz012345")).unwrap();
        assert_eq!(k.bytes(), b"abcdefghijklmnopqrstuvwxyz012345");
    }

    #[test]
    fn malformed_app_keys_are_refused_without_quoting() {
        let short = format!("base64:{}", B64.encode([5u8; 16]));
        for text in [
            "",
            "  ",
            "base64:not*base64*supersecret",
            short.as_str(),
            "supersecret-too-short",
        ] {
            let e = AppKey::parse(&Secret::new(text)).unwrap_err();
            assert!(matches!(e, LaravelError::BadKey(_)));
            let msg = e.to_string();
            assert!(!msg.contains("supersecret"), "{msg}");
            if !text.trim().is_empty() {
                assert!(!msg.contains(text.trim()), "{msg}");
            }
        }
        assert!(!format!("{:?}", key()).contains("0123"));
    }
}
