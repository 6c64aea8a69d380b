#[test]
fn joined_fragments_are_the_encoded_list() {
    let mut m = Metadata::new();
    m.insert("scopes".into(), serde_json::json!(["a", "b\"c"]));
    let creds = [
        Credential::new(CredentialId::new("env", "A"), Kind::ApiKey, "x\ny \"q\" ü"),
        Credential::new(
            CredentialId::new("account:acc/x", "t"),
            Kind::OauthAccess,
            "",
        )
        .with_metadata(m),
    ];
    for n in 0..=creds.len() {
        let frags: Vec<_> = creds[..n]
            .iter()
            .map(|c| encode_credential_fragment(c).unwrap())
            .collect();
        for (f, c) in frags.iter().zip(&creds) {
            // Exactly sized (a store keeps one per item), and read back whole.
            assert_eq!(f.capacity(), f.len());
            let back = decode_credential_fragment(f, "t").unwrap();
            // As text: `namespace/name` with a `/` in the namespace reads
            // back split at the first `/` (the format's, not new).
            assert_eq!((back.id.to_string(), back.kind), (c.id.to_string(), c.kind));
            assert_eq!(back.secret.expose(), c.secret.expose());
            assert_eq!(back.metadata, c.metadata);
        }
        assert_eq!(
            *join_fragments(frags.iter()),
            *encode_credentials(&creds[..n]).unwrap()
        );
    }
}
use super::*;
use crate::credential::{CredentialId, Kind, Metadata};

const LOC: &str = "test.enc";

fn pass(p: &str) -> KeySource {
    KeySource::Passphrase(Secret::new(p))
}

fn sample() -> Vec<Credential> {
    let mut meta = Metadata::new();
    meta.insert("expires_at".into(), 1790003600000i64.into());
    meta.insert("scopes".into(), serde_json::json!(["a", "b"]));
    vec![
        Credential::new(
            CredentialId::new("openai", "api_key"),
            Kind::ApiKey,
            "sk-proj-ABCDEFGHIJKLMNOP",
        ),
        Credential::new(
            CredentialId::new("account:ключ", "oauth_access_token"),
            Kind::OauthAccess,
            "tok-\"quoted\"-\u{1F511}",
        )
        .with_metadata(meta),
    ]
}

fn same(a: &[Credential], b: &[Credential]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.id, y.id);
        assert!(x.same_as(y), "{}", x.id);
    }
}

fn as_json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn round_trip_with_passphrase_and_key() {
    let creds = sample();
    let bytes = seal_credentials(&creds, &pass("correct horse"), 1000).unwrap();
    let back = open_credentials(&bytes, &pass("correct horse"), LOC, true).unwrap();
    same(&creds, &back);

    let key = KeySource::Key(Zeroizing::new([5u8; 32]));
    let bytes = seal_credentials(&creds, &key, 1000).unwrap();
    let v = as_json(&bytes);
    assert_eq!(v["kdf"], serde_json::json!({"alg": "none"}));
    same(&creds, &open_credentials(&bytes, &key, LOC, false).unwrap());
}

#[test]
fn header_has_the_documented_shape_and_order() {
    let bytes = seal_credentials(&sample(), &pass("pw"), 1234).unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    let keys: Vec<&str> = [
        "\"format\"",
        "\"version\"",
        "\"kdf\"",
        "\"alg\"",
        "\"iterations\"",
    ]
    .into_iter()
    .chain(["\"salt\"", "\"cipher\"", "\"nonce\"", "\"ciphertext\""])
    .collect();
    let positions: Vec<usize> = keys.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    let v = as_json(&bytes);
    assert_eq!(v["format"], FORMAT);
    assert_eq!(v["version"], 1);
    assert_eq!(v["kdf"]["alg"], ALG_PBKDF2);
    assert_eq!(v["kdf"]["iterations"], 1234);
    assert_eq!(
        B64.decode(v["kdf"]["salt"].as_str().unwrap())
            .unwrap()
            .len(),
        16
    );
    assert_eq!(v["cipher"], CIPHER);
    assert_eq!(B64.decode(v["nonce"].as_str().unwrap()).unwrap().len(), 12);
    assert!(!text.contains("sk-proj"));
}

#[test]
fn aad_is_the_compact_header_json() {
    // Decrypt by hand with the documented recipe, independently of Envelope.
    let bytes = seal_credentials(&sample(), &pass("pw"), 1000).unwrap();
    let mut v = as_json(&bytes);
    let obj = v.as_object_mut().unwrap();
    let ct = B64
        .decode(obj.remove("ciphertext").unwrap().as_str().unwrap())
        .unwrap();
    let aad = serde_json::to_string(&obj).unwrap();
    assert!(aad.starts_with(r#"{"format":"credshift-envelope","version":1,"kdf":{"alg":"pbkdf2-hmac-sha256","iterations":1000,"salt":""#), "{aad}");
    let salt = B64.decode(obj["kdf"]["salt"].as_str().unwrap()).unwrap();
    let nonce: [u8; 12] = B64
        .decode(obj["nonce"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = kdf::pbkdf2_sha256(b"pw", &salt, 1000);
    let plain = aead::open(&key, &nonce, aad.as_bytes(), &ct).unwrap();
    let list: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(list[0]["id"], "openai/api_key");
    assert_eq!(list[0]["kind"], "api_key");
    assert_eq!(list[0]["secret"], "sk-proj-ABCDEFGHIJKLMNOP");
    assert_eq!(list[1]["metadata"]["scopes"], serde_json::json!(["a", "b"]));
}

#[test]
fn wrong_passphrase_is_a_crypto_error_naming_the_file() {
    let bytes = seal_credentials(&sample(), &pass("right"), 1000).unwrap();
    let e = open_credentials(&bytes, &pass("wrong"), LOC, true).unwrap_err();
    assert!(matches!(e, StoreError::Crypto { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("test.enc: "), "{msg}");
    assert!(msg.contains("wrong passphrase"), "{msg}");
}

fn tamper(
    bytes: &[u8],
    f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Vec<u8> {
    let mut v = as_json(bytes);
    f(v.as_object_mut().unwrap());
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn tampered_headers_and_ciphertexts_fail() {
    let bytes = seal_credentials(&sample(), &pass("pw"), 1000).unwrap();
    let p = pass("pw");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "iterations",
            tamper(&bytes, |o| o["kdf"]["iterations"] = 1001.into()),
        ),
        (
            "salt",
            tamper(&bytes, |o| o["kdf"]["salt"] = B64.encode([1u8; 16]).into()),
        ),
        (
            "nonce",
            tamper(&bytes, |o| o["nonce"] = B64.encode([1u8; 12]).into()),
        ),
        (
            "ciphertext",
            tamper(&bytes, |o| {
                let mut ct = B64.decode(o["ciphertext"].as_str().unwrap()).unwrap();
                ct[3] ^= 1;
                o["ciphertext"] = B64.encode(ct).into();
            }),
        ),
    ];
    for (what, t) in cases {
        let e = open_credentials(&t, &p, LOC, true).unwrap_err();
        assert!(matches!(e, StoreError::Crypto { .. }), "{what}: {e:?}");
    }
    // An added header field is refused (it would not be authenticated).
    let t = tamper(&bytes, |o| {
        o.insert("note".into(), "x".into());
    });
    let e = open_credentials(&t, &p, LOC, true).unwrap_err();
    assert!(matches!(e, StoreError::Parse { .. }), "{e:?}");
    // Truncated files.
    for cut in [0, 1, bytes.len() / 2, bytes.len() - 3] {
        let e = open_credentials(&bytes[..cut], &p, LOC, true).unwrap_err();
        assert!(
            matches!(e, StoreError::Parse { .. } | StoreError::Crypto { .. }),
            "cut {cut}: {e:?}"
        );
        assert!(e.to_string().contains("test.enc"));
    }
    let t = tamper(&bytes, |o| o["ciphertext"] = B64.encode([0u8; 10]).into());
    let e = open_credentials(&t, &p, LOC, true).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn wrong_formats_are_parse_errors() {
    let p = pass("pw");
    for (bytes, needle) in [
        (&b"not json"[..], "malformed JSON"),
        (&br#"{"providers":{}}"#[..], "not a credshift envelope"),
        (&b"[1,2]"[..], "not a credshift envelope"),
        (
            &br#"{"format":"credshift-envelope","version":2,"kdf":{"alg":"none"},"cipher":"aes-256-gcm","nonce":"","ciphertext":""}"#[..],
            "version 2",
        ),
        (
            &br#"{"format":"credshift-envelope","version":1,"kdf":{"alg":"scrypt"},"cipher":"aes-256-gcm","nonce":"","ciphertext":""}"#[..],
            "unsupported kdf",
        ),
        (
            &br#"{"format":"credshift-envelope","version":1,"kdf":{"alg":"none"},"cipher":"chacha","nonce":"","ciphertext":""}"#[..],
            "unsupported cipher",
        ),
    ] {
        let e = open_credentials(bytes, &p, LOC, true).unwrap_err();
        assert!(matches!(e, StoreError::Parse { .. }), "{e:?}");
        assert!(e.to_string().contains(needle), "{e}");
        assert!(e.to_string().contains("test.enc"), "{e}");
    }
}

#[test]
fn absurd_and_weak_iteration_counts_are_refused_before_deriving() {
    let bytes = seal_credentials(&sample(), &pass("pw"), 1000).unwrap();
    let p = pass("pw");
    for n in [4_000_000_000u64, 10_000_001, 1u64 << 40] {
        let t = tamper(&bytes, |o| o["kdf"]["iterations"] = n.into());
        let e = open_credentials(&t, &p, LOC, true).unwrap_err();
        assert!(matches!(e, StoreError::Crypto { .. }), "{e:?}");
        assert!(e.to_string().contains("limit is 10000000"), "{e}");
    }
    let e = open_credentials(&bytes, &p, LOC, false).unwrap_err();
    assert!(matches!(e, StoreError::Crypto { .. }), "{e:?}");
    assert!(e.to_string().contains("--allow-weak-kdf"), "{e}");
    assert!(open_credentials(&bytes, &p, LOC, true).is_ok());
    let t = tamper(&bytes, |o| o["kdf"]["iterations"] = 0.into());
    assert!(open_credentials(&t, &p, LOC, true).is_err());
    assert!(seal_credentials(&sample(), &p, MAX_ITERATIONS + 1).is_err());
}

#[test]
fn key_source_follows_the_options() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("k");
    kdf::generate_key_file(&key_path).unwrap();
    let mut opts = KeyOptions::default();
    let e = KeySource::from_options(&opts, "x.enc").unwrap_err();
    assert!(matches!(e, StoreError::MissingKey { .. }));
    let msg = e.to_string();
    for needle in [
        "x.enc",
        "--passphrase-file",
        "--passphrase-env",
        "CREDSHIFT_PASSPHRASE",
        "--key-file",
    ] {
        assert!(msg.contains(needle), "{msg}");
    }
    opts.key_file = Some(key_path);
    assert!(matches!(
        KeySource::from_options(&opts, "x").unwrap(),
        KeySource::Key(_)
    ));
    opts.passphrase = Some(Secret::new("pw"));
    assert!(matches!(
        KeySource::from_options(&opts, "x").unwrap(),
        KeySource::Passphrase(_)
    ));
    // Data sealed with a key file is opened with the key file even when a
    // passphrase is also given.
    let src = KeySource::for_params(&opts, Some(&KdfParams::None), "x").unwrap();
    assert!(matches!(src, KeySource::Key(_)));
    opts.key_file = None;
    let e = KeySource::for_params(&opts, Some(&KdfParams::None), "x").unwrap_err();
    assert!(e.to_string().contains("--key-file"), "{e}");
    opts.passphrase = Some(Secret::new(""));
    assert!(KeySource::from_options(&opts, "x").is_err());
    assert!(!format!("{:?}", pass("hunter2")).contains("hunter2"));
}

#[test]
fn mismatched_key_kind_says_which_is_needed() {
    let key = KeySource::Key(Zeroizing::new([5u8; 32]));
    let bytes = seal_credentials(&sample(), &key, 1000).unwrap();
    let e = open_credentials(&bytes, &pass("pw"), LOC, true).unwrap_err();
    assert!(matches!(e, StoreError::MissingKey { .. }), "{e:?}");
    assert!(e.to_string().contains("--key-file"));
    let other = KeySource::Key(Zeroizing::new([6u8; 32]));
    let e = open_credentials(&bytes, &other, LOC, true).unwrap_err();
    assert!(e.to_string().contains("wrong key file"), "{e}");
}

#[test]
fn sealing_key_reuses_salt_with_fresh_nonces() {
    let key = SealingKey::new(&pass("pw"), 1000).unwrap();
    let a = as_json(&key.seal(b"[]").unwrap());
    let b = as_json(&key.seal(b"[]").unwrap());
    assert_eq!(a["kdf"], b["kdf"]);
    assert_ne!(a["nonce"], b["nonce"]);
    let env = Envelope::parse(&serde_json::to_vec(&b).unwrap(), LOC, true).unwrap();
    assert_eq!(&**key.open(&env).unwrap(), b"[]");
}

#[test]
fn bad_plaintext_is_reported_without_content() {
    let key = SealingKey::new(&pass("pw"), 1000).unwrap();
    let bytes = key
        .seal(br#"[{"id":"a/b","kind":"api_key","secret":12,"metadata":{}},"sk-leak"]"#)
        .unwrap();
    let e = open_credentials(&bytes, &pass("pw"), LOC, true).unwrap_err();
    assert!(matches!(e, StoreError::Parse { .. }), "{e:?}");
    assert!(e.to_string().contains("decrypted content"), "{e}");
    assert!(!e.to_string().contains("sk-leak"));
}

#[test]
fn options_pick_the_key_that_fits_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("k");
    kdf::generate_key_file(&key_path).unwrap();
    let key_only = KeyOptions {
        key_file: Some(key_path.clone()),
        allow_weak_kdf: true,
        ..KeyOptions::default()
    };
    let both = KeyOptions {
        passphrase: Some(Secret::new("pw for the tests")),
        kdf_iterations: 1000,
        allow_weak_kdf: true,
        ..key_only.clone()
    };
    let creds = sample();
    let by_key = seal_credentials_with_options(&creds, &key_only, LOC).unwrap();
    assert_eq!(as_json(&by_key)["kdf"]["alg"], ALG_NONE);
    let by_pass = seal_credentials_with_options(&creds, &both, LOC).unwrap();
    assert_eq!(as_json(&by_pass)["kdf"]["iterations"], 1000);
    same(
        &creds,
        &open_credentials_with_options(&by_key, &both, LOC).unwrap(),
    );
    same(
        &creds,
        &open_credentials_with_options(&by_pass, &both, LOC).unwrap(),
    );
    let e = open_credentials_with_options(&by_pass, &key_only, LOC).unwrap_err();
    assert!(matches!(e, StoreError::MissingKey { .. }), "{e:?}");
    let e = seal_credentials_with_options(&creds, &KeyOptions::default(), LOC).unwrap_err();
    assert!(matches!(e, StoreError::MissingKey { .. }), "{e:?}");
    // Writing weak is refused unless allowed (it could not be reopened).
    let weak = KeyOptions {
        allow_weak_kdf: false,
        ..both.clone()
    };
    let e = seal_credentials_with_options(&creds, &weak, LOC).unwrap_err();
    assert!(e.to_string().contains("--allow-weak-kdf"), "{e}");
    assert!(seal_credentials_with_options(&creds, &key_only, LOC).is_ok());
}

#[test]
fn default_iterations_round_trip() {
    let creds = sample();
    let bytes =
        seal_credentials(&creds, &pass("pw"), crate::unlock::DEFAULT_KDF_ITERATIONS).unwrap();
    assert_eq!(as_json(&bytes)["kdf"]["iterations"], 600_000);
    same(
        &creds,
        &open_credentials(&bytes, &pass("pw"), LOC, false).unwrap(),
    );
}

#[test]
fn envelope_bytes_are_what_serde_json_writes_for_the_envelope() {
    // Written by hand into an exact-size buffer: byte for byte the compact
    // JSON of the envelope's fields in the documented order, then a newline,
    // for empty, short and long plaintexts, from both seal paths; and each
    // opens.
    let key = SealingKey::new(&pass("pw"), 1000).unwrap();
    for len in [0usize, 1, 2, 3, 4, 100, 4096] {
        let pt: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        for bytes in [
            key.seal(&pt).unwrap(),
            key.seal_owned(Zeroizing::new(pt.clone())).unwrap(),
        ] {
            let mut canonical = serde_json::to_vec(&as_json(&bytes)).unwrap();
            canonical.push(b'\n');
            assert_eq!(bytes, canonical, "{len}");
            let env = Envelope::parse(&bytes, "t", true).unwrap();
            assert_eq!(*key.open(&env).unwrap(), pt);
        }
    }
}

/// Issue #26 (the wizard's verify at 100,000 items): the envelopes
/// credshift writes are read with the ciphertext's text borrowed from the
/// file's bytes (no parsed tree holding a copy of it), decoded once and
/// opened in that buffer; what the tree's way reads is the same.
#[test]
fn an_envelope_credshift_wrote_is_read_with_its_ciphertext_borrowed() {
    let key = SealingKey::new(&pass("pw"), 1000).unwrap();
    let sealed = key
        .seal_for_writing(encode_credentials(&sample()).unwrap())
        .unwrap();
    let mut store_bytes = Vec::new();
    sealed.write_to(&mut store_bytes).unwrap();
    for bytes in [
        store_bytes,
        seal_credentials(&sample(), &pass("pw"), 1000).unwrap(),
    ] {
        let text: EnvelopeText<'_> = serde_json::from_slice(&bytes).unwrap();
        assert!(matches!(text.ciphertext, std::borrow::Cow::Borrowed(_)));
        assert!(matches!(text.nonce, std::borrow::Cow::Borrowed(_)));
        let env = Envelope::parse(&bytes, LOC, true).unwrap();
        // The same as the tree's way reads it.
        let tree: EnvelopeJson = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(env.aad, tree.header_aad().unwrap());
        assert_eq!(env.ciphertext, B64.decode(&tree.ciphertext).unwrap());
        let key = SealingKey::derive(env.params(), &pass("pw"), LOC).unwrap();
        let copied = key.open(&env).unwrap();
        let in_place = key.open_owned(env).unwrap();
        assert_eq!(*copied, *in_place);
        same(&sample(), &decode_credentials(&in_place, LOC).unwrap());
    }
    // A wrong key opens nothing in place either.
    let bytes = seal_credentials(&sample(), &pass("pw"), 1000).unwrap();
    let env = Envelope::parse(&bytes, LOC, true).unwrap();
    let wrong = SealingKey::derive(env.params(), &pass("other"), LOC).unwrap();
    let err = wrong.open_owned(env).unwrap_err().to_string();
    assert!(err.contains("wrong passphrase"), "{err}");
}

/// The borrowing fast path reads objects only: the same fields as a JSON
/// array are refused, as the tree's way refuses them (audit10 L5).
#[test]
fn an_envelope_as_a_json_array_is_refused() {
    let bytes = seal_credentials(&sample(), &pass("pw"), 1000).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let fields = ["format", "version", "kdf", "cipher", "nonce", "ciphertext"];
    let array: Vec<serde_json::Value> = fields.iter().map(|f| v[*f].clone()).collect();
    let array = serde_json::to_vec(&array).unwrap();
    assert!(Envelope::parse(&array, LOC, true).is_err());
    // The object itself, with leading space, still takes the fast path.
    let spaced = [b" \n".to_vec(), bytes].concat();
    assert!(Envelope::parse(&spaced, LOC, true).is_ok());
}
