//! credshift's own encrypted stores (`encrypted:`, `bundle:`, `sqlite:`):
//! round trips, privacy at rest, wrong keys, tampering, KDF limits, and an
//! independent implementation (Node's Web Crypto) opening our envelopes.

use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use credshift::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use credshift::crypto::kdf;
use credshift::error::StoreError;
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;
use rusqlite::Connection;

/// Low iterations keep the suite fast; one test runs the default 600,000.
fn opts(pass: &str) -> KeyOptions {
    KeyOptions {
        passphrase: Some(Secret::new(pass)),
        allow_weak_kdf: true,
        kdf_iterations: 2000,
        ..KeyOptions::default()
    }
}

fn key_opts(key_file: &Path) -> KeyOptions {
    KeyOptions {
        key_file: Some(key_file.to_path_buf()),
        ..KeyOptions::default()
    }
}

#[derive(Clone, Copy, Debug)]
enum Flavor {
    Encrypted,
    Bundle,
    Sqlite,
}

const ALL: [Flavor; 3] = [Flavor::Encrypted, Flavor::Bundle, Flavor::Sqlite];

fn spec(f: Flavor, path: &Path) -> StoreSpec {
    let p = path.to_path_buf();
    match f {
        Flavor::Encrypted => StoreSpec::Encrypted(p),
        Flavor::Bundle => StoreSpec::Bundle(p),
        Flavor::Sqlite => StoreSpec::Sqlite(p),
    }
}

fn file_name(f: Flavor) -> &'static str {
    match f {
        Flavor::Encrypted => "creds.enc",
        Flavor::Bundle => "transfer.bundle",
        Flavor::Sqlite => "creds.db",
    }
}

fn open(f: Flavor, path: &Path, o: &KeyOptions) -> Box<dyn Store> {
    store::open(&spec(f, path), o).unwrap()
}

/// A random-looking canary no file should ever contain in the clear.
fn canary(tag: &str) -> String {
    let r = kdf::random_bytes::<12>().unwrap();
    format!("sk-ant-api03-{tag}-{}", hex::encode(r))
}

fn sample() -> Vec<Credential> {
    let mut meta = Metadata::new();
    meta.insert("expires_at".into(), 1790003600000i64.into());
    meta.insert("scopes".into(), serde_json::json!(["user:inference"]));
    meta.insert("account_name".into(), "Ålpha ✓".into());
    let big: String = (0..6000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    vec![
        Credential::new(
            CredentialId::new("openai", "api_key"),
            Kind::ApiKey,
            canary("openai"),
        ),
        Credential::new(
            CredentialId::new("account:アカウント", "oauth_access_token"),
            Kind::OauthAccess,
            format!("{}-ключ-🔑", canary("oauth")),
        )
        .with_metadata(meta),
        Credential::new(
            CredentialId::new("train:team-alpha", "client_key/0"),
            Kind::ClientKey,
            format!("{}{big}", canary("big")),
        ),
        Credential::new(
            CredentialId::new("db", "password"),
            Kind::Password,
            "p@ss \"quoted\" \\ back\nslash",
        ),
    ]
}

fn assert_same(a: &Credential, b: &Credential) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.kind, b.kind, "{}", a.id);
    assert_eq!(a.metadata, b.metadata, "{}", a.id);
    assert!(a.secret.ct_eq(&b.secret), "{}: secret differs", a.id);
}

#[test]
fn round_trip_write_list_read_delete_for_every_store() {
    for f in ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(f));
        let s = open(f, &path, &opts("correct horse battery"));
        let creds = sample();
        for c in &creds[..2] {
            s.write(c).unwrap();
        }
        assert!(s.write_many(&creds[2..]).iter().all(|r| r.is_ok()), "{f:?}");

        // A fresh store (new key derivation) sees the same data.
        let s = open(f, &path, &opts("correct horse battery"));
        let listing = s.list().unwrap();
        assert!(listing.errors.is_empty(), "{f:?}: {:?}", listing.errors);
        let mut ids: Vec<_> = listing.entries.iter().map(|e| e.id.clone()).collect();
        let mut want: Vec<_> = creds.iter().map(|c| c.id.clone()).collect();
        ids.sort();
        want.sort();
        assert_eq!(ids, want, "{f:?}");
        for c in &creds {
            let got = s
                .read(&c.id)
                .unwrap()
                .unwrap_or_else(|| panic!("{f:?}: {}", c.id));
            assert_same(c, &got);
            let entry = listing.entries.iter().find(|e| e.id == c.id).unwrap();
            assert_eq!(entry.metadata, c.metadata);
            assert_eq!(entry.kind, c.kind);
        }
        let scan = s.read_all().unwrap();
        assert_eq!(scan.credentials.len(), creds.len(), "{f:?}");

        // Overwrite replaces, delete removes, a second delete finds nothing.
        let mut changed = creds[0].clone();
        changed.secret = Secret::new(canary("rotated"));
        s.write(&changed).unwrap();
        assert_same(&changed, &s.read(&changed.id).unwrap().unwrap());
        assert_eq!(s.list().unwrap().entries.len(), creds.len());
        assert!(s.delete(&creds[1].id).unwrap(), "{f:?}");
        assert!(!s.delete(&creds[1].id).unwrap(), "{f:?}");
        assert!(s.read(&creds[1].id).unwrap().is_none());
        assert!(s.read(&CredentialId::new("no", "such")).unwrap().is_none());
        assert_eq!(s.list().unwrap().entries.len(), creds.len() - 1);
    }
}

#[test]
fn stores_are_private_files() {
    for f in ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new-dir").join(file_name(f));
        let s = open(f, &path, &opts("pw for the tests"));
        s.write_many(&sample());
        assert_eq!(credshift::fsutil::mode_of(&path), Some(0o600), "{f:?}");
        assert_eq!(
            credshift::fsutil::mode_of(path.parent().unwrap()),
            Some(0o700),
            "{f:?}"
        );
        if let Flavor::Sqlite = f {
            for suffix in ["-wal", "-shm"] {
                let side = sidecar(&path, suffix);
                assert!(side.exists(), "{} should exist while open", side.display());
                assert_eq!(credshift::fsutil::mode_of(&side), Some(0o600), "{suffix}");
            }
        }
        let cap = s.probe();
        assert!(
            cap.available && cap.encrypted_at_rest && cap.keeps_metadata,
            "{cap:?}"
        );
        assert!(cap.warnings.is_empty(), "{f:?}: {:?}", cap.warnings);
        assert_eq!(cap.item_count, Some(4), "{f:?}");
    }
}

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Every spelling a careless implementation might leave at rest: raw,
/// base64 at each of the three alignments, hex in either case.
fn forbidden_forms(secret: &str) -> Vec<Vec<u8>> {
    let raw = secret.as_bytes();
    let mut forms = vec![raw.to_vec()];
    for shift in 0..3 {
        let mut v = vec![0u8; shift];
        v.extend_from_slice(raw);
        let enc = B64.encode(&v);
        // Drop the edges, which depend on the neighbouring bytes.
        forms.push(enc.as_bytes()[4..enc.len() - 4].to_vec());
    }
    forms.push(hex::encode(raw).into_bytes());
    forms.push(hex::encode_upper(raw).into_bytes());
    forms
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The first file found holding any credential's value in the clear.
fn find_plaintext(files: &[PathBuf], creds: &[Credential]) -> Option<String> {
    for file in files {
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        for c in creds {
            // The first and last 24 chars: unique (the canary) and short
            // enough to catch a long value split across database pages.
            let chars: Vec<char> = c.secret.expose().chars().collect();
            let head: String = chars.iter().take(24).collect();
            let tail: String = chars[chars.len().saturating_sub(24)..].iter().collect();
            for form in forbidden_forms(&head)
                .into_iter()
                .chain(forbidden_forms(&tail))
            {
                if contains(&bytes, &form) {
                    return Some(format!(
                        "{} holds {} in the clear ({} bytes form)",
                        file.display(),
                        c.id,
                        form.len()
                    ));
                }
            }
        }
    }
    None
}

fn assert_no_plaintext(files: &[PathBuf], creds: &[Credential]) {
    if let Some(found) = find_plaintext(files, creds) {
        panic!("{found}");
    }
}

#[test]
fn no_plaintext_at_rest() {
    for f in ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(f));
        let creds = sample();
        let s = open(f, &path, &opts("pw for the tests"));
        for c in &creds {
            s.write(c).unwrap();
        }
        let files: Vec<PathBuf> = vec![
            path.clone(),
            sidecar(&path, "-wal"),
            sidecar(&path, "-shm"),
            sidecar(&path, "-journal"),
        ];
        // The values (one is 6 KB) are really in these files, encrypted.
        let at_rest: u64 = files
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        assert!(at_rest > 6000, "{f:?}: {at_rest} bytes");
        if let Flavor::Sqlite = f {
            assert!(
                sidecar(&path, "-wal").exists(),
                "WAL should hold the writes"
            );
        }
        assert_no_plaintext(&files, &creds);
        // And after the store is closed (checkpointed into the main file).
        drop(s);
        assert_no_plaintext(&files, &creds);
        // The checker itself finds a planted value.
        let planted = dir.path().join("planted");
        std::fs::write(&planted, B64.encode(creds[0].secret.expose())).unwrap();
        assert!(
            find_plaintext(&[planted], &creds[..1]).is_some(),
            "the plaintext check must be able to fail"
        );
    }
}

#[test]
fn wrong_passphrase_is_a_clear_error_for_every_store() {
    for f in ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(f));
        open(f, &path, &opts("right passphrase")).write_many(&sample());
        let before = std::fs::read(&path).unwrap();
        let s = open(f, &path, &opts("wrong passphrase"));
        let id = sample()[0].id.clone();
        let errors = match f {
            // A database lists ids and metadata without the key; values fail.
            Flavor::Sqlite => {
                assert_eq!(s.list().unwrap().entries.len(), 4);
                vec![
                    s.read(&id).unwrap_err(),
                    s.read_all().unwrap_err(),
                    s.write(&sample()[0]).unwrap_err(),
                ]
            }
            _ => vec![
                s.list().unwrap_err(),
                s.read(&id).unwrap_err(),
                s.write(&sample()[0]).unwrap_err(),
                s.delete(&id).unwrap_err(),
            ],
        };
        for e in errors {
            assert!(matches!(e, StoreError::Crypto { .. }), "{f:?}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(file_name(f)), "{msg}");
            assert!(msg.contains("wrong passphrase"), "{msg}");
            assert!(
                !msg.contains("right passphrase") && !msg.contains("sk-ant"),
                "{msg}"
            );
        }
        if !matches!(f, Flavor::Sqlite) {
            assert_eq!(std::fs::read(&path).unwrap(), before, "{f:?} was changed");
        }
        let cap = s.probe();
        assert!(!cap.readable, "{f:?}: {cap:?}");
        assert!(cap.reason.unwrap().contains("wrong passphrase"));
        // The right passphrase still opens it.
        assert_eq!(
            open(f, &path, &opts("right passphrase"))
                .list()
                .unwrap()
                .entries
                .len(),
            4
        );
    }
}

#[test]
fn no_key_at_all_says_how_to_give_one() {
    for f in ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(f));
        let no_key = KeyOptions {
            allow_weak_kdf: true,
            ..KeyOptions::default()
        };
        let e = open(f, &path, &no_key).write(&sample()[0]).unwrap_err();
        assert!(matches!(e, StoreError::MissingKey { .. }), "{f:?}: {e:?}");
        for needle in [
            "--passphrase-file",
            "--passphrase-env",
            "CREDSHIFT_PASSPHRASE",
            "--key-file",
        ] {
            assert!(e.to_string().contains(needle), "{e}");
        }
        open(f, &path, &opts("pw for the tests")).write_many(&sample());
        let s = open(f, &path, &no_key);
        let cap = s.probe();
        assert!(cap.available && cap.exists, "{f:?}: {cap:?}");
        assert!(
            cap.reason.unwrap_or_default().contains("--passphrase-file"),
            "{f:?}"
        );
        let e = s.read(&sample()[0].id).unwrap_err();
        assert!(matches!(e, StoreError::MissingKey { .. }), "{f:?}: {e:?}");
    }
}

fn edit_envelope(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn tampered_envelopes_fail() {
    for f in [Flavor::Encrypted, Flavor::Bundle] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(f));
        open(f, &path, &opts("pw for the tests")).write_many(&sample());
        let good = std::fs::read(&path).unwrap();
        type Edit = fn(&mut serde_json::Value);
        let edits: [(&str, Edit); 4] = [
            ("ciphertext", |v| {
                let mut ct = B64.decode(v["ciphertext"].as_str().unwrap()).unwrap();
                let mid = ct.len() / 2;
                ct[mid] ^= 0x01;
                v["ciphertext"] = B64.encode(ct).into();
            }),
            ("tag", |v| {
                let mut ct = B64.decode(v["ciphertext"].as_str().unwrap()).unwrap();
                let last = ct.len() - 1;
                ct[last] ^= 0x80;
                v["ciphertext"] = B64.encode(ct).into();
            }),
            ("iterations", |v| v["kdf"]["iterations"] = 2001.into()),
            ("nonce", |v| {
                let mut n = B64.decode(v["nonce"].as_str().unwrap()).unwrap();
                n[0] ^= 1;
                v["nonce"] = B64.encode(n).into();
            }),
        ];
        for (what, edit) in edits {
            std::fs::write(&path, &good).unwrap();
            edit_envelope(&path, edit);
            let e = open(f, &path, &opts("pw for the tests"))
                .list()
                .unwrap_err();
            assert!(
                matches!(e, StoreError::Crypto { .. }),
                "{f:?} {what}: {e:?}"
            );
            assert!(e.to_string().contains(file_name(f)));
        }
        // Truncated and wrong-format files are parse errors naming the file.
        for bytes in [
            &good[..good.len() / 2],
            &b""[..],
            &b"{\"providers\":{}}"[..],
        ] {
            std::fs::write(&path, bytes).unwrap();
            let e = open(f, &path, &opts("pw for the tests"))
                .list()
                .unwrap_err();
            assert!(matches!(e, StoreError::Parse { .. }), "{f:?}: {e:?}");
            assert!(e.to_string().contains(file_name(f)), "{e}");
        }
    }
}

#[test]
fn tampered_database_values_and_meta_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("creds.db");
    open(Flavor::Sqlite, &path, &opts("pw for the tests")).write_many(&sample());
    let conn = Connection::open(&path).unwrap();
    let mut ct: Vec<u8> = conn
        .query_row(
            "SELECT ciphertext FROM credshift_credentials WHERE namespace = 'openai'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    ct[5] ^= 0x01;
    conn.execute(
        "UPDATE credshift_credentials SET ciphertext = ?1 WHERE namespace = 'openai'",
        [&ct],
    )
    .unwrap();
    let s = open(Flavor::Sqlite, &path, &opts("pw for the tests"));
    let e = s.read(&CredentialId::new("openai", "api_key")).unwrap_err();
    assert!(matches!(e, StoreError::Crypto { .. }), "{e:?}");
    assert!(e.to_string().contains("openai/api_key"), "{e}");
    // One bad row does not hide the good ones.
    let scan = s.read_all().unwrap();
    assert_eq!(scan.credentials.len(), 3);
    assert_eq!(scan.errors.len(), 1);
    assert!(scan.errors[0].location.contains("openai/api_key"));

    // Changing the stored iteration count fails the key check.
    conn.execute("UPDATE credshift_meta SET kdf_iterations = 2001", [])
        .unwrap();
    let e = open(Flavor::Sqlite, &path, &opts("pw for the tests"))
        .read(&sample()[1].id)
        .unwrap_err();
    assert!(matches!(e, StoreError::Crypto { .. }), "{e:?}");
    assert!(e.to_string().contains("key check"), "{e}");
}

#[test]
fn the_credential_id_is_bound_to_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("creds.db");
    let creds = sample();
    open(Flavor::Sqlite, &path, &opts("pw for the tests")).write_many(&creds);
    let conn = Connection::open(&path).unwrap();
    let (a, b) = (&creds[0].id, &creds[1].id);
    let get = |id: &CredentialId| -> (Vec<u8>, Vec<u8>) {
        conn.query_row(
            "SELECT nonce, ciphertext FROM credshift_credentials WHERE namespace = ?1 AND name = ?2",
            [id.namespace.as_str(), id.name.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (na, ca) = get(a);
    let (nb, cb) = get(b);
    let put = |id: &CredentialId, n: &Vec<u8>, c: &Vec<u8>| {
        conn.execute(
            "UPDATE credshift_credentials SET nonce = ?1, ciphertext = ?2 \
             WHERE namespace = ?3 AND name = ?4",
            rusqlite::params![n, c, id.namespace.as_str(), id.name.as_str()],
        )
        .unwrap();
    };
    put(a, &nb, &cb);
    put(b, &na, &ca);
    let s = open(Flavor::Sqlite, &path, &opts("pw for the tests"));
    for id in [a, b] {
        let e = s.read(id).unwrap_err();
        assert!(matches!(e, StoreError::Crypto { .. }), "{e:?}");
        assert!(e.to_string().contains(&id.to_string()), "{e}");
        assert!(e.to_string().contains("another id"), "{e}");
    }
    // Put back, and both read again: the failure was the swap, nothing else.
    put(a, &na, &ca);
    put(b, &nb, &cb);
    assert_same(&creds[0], &s.read(a).unwrap().unwrap());
    assert_same(&creds[1], &s.read(b).unwrap().unwrap());
}

#[test]
fn absurd_iteration_counts_are_refused_by_kind() {
    for f in ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(f));
        open(f, &path, &opts("pw for the tests")).write_many(&sample());
        match f {
            Flavor::Sqlite => {
                Connection::open(&path)
                    .unwrap()
                    .execute("UPDATE credshift_meta SET kdf_iterations = 4000000000", [])
                    .unwrap();
            }
            _ => edit_envelope(&path, |v| v["kdf"]["iterations"] = 4_000_000_000u64.into()),
        }
        let s = open(f, &path, &opts("pw for the tests"));
        let e = s.read_all().unwrap_err();
        assert!(matches!(e, StoreError::Crypto { .. }), "{f:?}: {e:?}");
        assert!(e.to_string().contains("4000000000"), "{e}");
        assert!(e.to_string().contains("limit is 10000000"), "{e}");
    }
}

#[test]
fn weak_iteration_counts_need_allow_weak_kdf() {
    for f in ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(f));
        open(f, &path, &opts("pw for the tests")).write_many(&sample());
        let strict = KeyOptions {
            allow_weak_kdf: false,
            ..opts("pw for the tests")
        };
        let e = open(f, &path, &strict).read_all().unwrap_err();
        assert!(matches!(e, StoreError::Crypto { .. }), "{f:?}: {e:?}");
        assert!(e.to_string().contains("--allow-weak-kdf"), "{e}");
        assert_eq!(
            open(f, &path, &opts("pw for the tests"))
                .read_all()
                .unwrap()
                .credentials
                .len(),
            4
        );
    }
}

#[test]
fn creating_a_store_with_weak_iterations_needs_allow_weak_kdf() {
    for f in ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(f));
        let weak = KeyOptions {
            allow_weak_kdf: false,
            ..opts("pw for the tests")
        };
        let s = open(f, &path, &weak);
        assert!(
            s.probe()
                .reason
                .unwrap_or_default()
                .contains("--allow-weak-kdf")
        );
        let e = s.write(&sample()[0]).unwrap_err();
        assert!(matches!(e, StoreError::Crypto { .. }), "{f:?}: {e:?}");
        assert!(e.to_string().contains("--allow-weak-kdf"), "{e}");
        assert!(!path.exists(), "{f:?}: nothing may be created");
    }
}

#[test]
fn default_iterations_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("creds.enc");
    let o = KeyOptions {
        passphrase: Some(Secret::new("pw for the tests")),
        ..KeyOptions::default()
    };
    assert_eq!(o.kdf_iterations, 600_000);
    let s = open(Flavor::Encrypted, &path, &o);
    s.write_many(&sample());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["kdf"]["iterations"], 600_000);
    let fresh = open(Flavor::Encrypted, &path, &o);
    assert_eq!(fresh.read_all().unwrap().credentials.len(), 4);
}

#[test]
fn key_file_mode_works_for_every_store() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys/credshift.key");
    kdf::generate_key_file(&key).unwrap();
    let other_key = dir.path().join("keys/other.key");
    kdf::generate_key_file(&other_key).unwrap();
    for f in ALL {
        let path = dir.path().join(file_name(f));
        let creds = sample();
        let s = open(f, &path, &key_opts(&key));
        assert!(s.write_many(&creds).iter().all(|r| r.is_ok()));
        let fresh = open(f, &path, &key_opts(&key));
        for c in &creds {
            assert_same(c, &fresh.read(&c.id).unwrap().unwrap());
        }
        match f {
            Flavor::Sqlite => {
                let alg: String = Connection::open(&path)
                    .unwrap()
                    .query_row("SELECT kdf_alg FROM credshift_meta", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(alg, "none");
            }
            _ => {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                assert_eq!(v["kdf"], serde_json::json!({"alg": "none"}));
            }
        }
        let e = open(f, &path, &key_opts(&other_key))
            .read(&sample()[0].id)
            .unwrap_err();
        assert!(matches!(e, StoreError::Crypto { .. }), "{f:?}: {e:?}");
        assert!(e.to_string().contains("wrong key file"), "{e}");
        // A passphrase alone cannot open key-file data, and says so.
        let e = open(f, &path, &opts("pw for the tests"))
            .read(&sample()[0].id)
            .unwrap_err();
        assert!(matches!(e, StoreError::MissingKey { .. }), "{f:?}: {e:?}");
        assert!(e.to_string().contains("--key-file"), "{e}");
    }
}

/// A `sqlite:` database exactly as the landed store wrote it (schema, meta
/// row, key check under `credshift_meta`, values under their id), spelled
/// out here with the AES-GCM and PBKDF2 primitives rather than written by
/// the store: it opens, reads, and takes new writes in the same format.
#[test]
fn a_sqlite_database_in_the_landed_format_opens() {
    use credshift::crypto::aead;
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("k.key");
    std::fs::write(&key_path, [0x42u8; 32]).unwrap();
    let salt = [7u8; 16];
    let pass_key = kdf::pbkdf2_sha256(b"pw for the tests", &salt, 2000);
    let file_key = [0x42u8; 32];
    for (name, key, o) in [
        ("pass.db", *pass_key, opts("pw for the tests")),
        ("file.db", file_key, key_opts(&key_path)),
    ] {
        let path = dir.path().join(name);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE credshift_meta (id INTEGER PRIMARY KEY CHECK (id = 1),
               schema_version INTEGER NOT NULL, kdf_alg TEXT NOT NULL, kdf_iterations INTEGER,
               kdf_salt BLOB, check_nonce BLOB NOT NULL, check_ciphertext BLOB NOT NULL,
               created_at TEXT NOT NULL);
             CREATE TABLE credshift_credentials (namespace TEXT NOT NULL, name TEXT NOT NULL,
               kind TEXT NOT NULL, metadata TEXT NOT NULL DEFAULT '{}', nonce BLOB NOT NULL,
               ciphertext BLOB NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (namespace, name));",
        )
        .unwrap();
        let (cn, cc) = aead::seal(&key, b"credshift_meta", b"credshift-key-check-v1").unwrap();
        let (alg, iterations, salt) = if name == "pass.db" {
            ("pbkdf2-hmac-sha256", Some(2000i64), Some(salt.to_vec()))
        } else {
            ("none", None, None)
        };
        conn.execute(
            "INSERT INTO credshift_meta VALUES (1, 1, ?1, ?2, ?3, ?4, ?5, '2026-01-01T00:00:00Z')",
            rusqlite::params![alg, iterations, salt, cn.to_vec(), cc],
        )
        .unwrap();
        let (vn, vc) = aead::seal(&key, b"openai/api_key", b"sk-landed-format-value").unwrap();
        conn.execute(
            "INSERT INTO credshift_credentials VALUES ('openai', 'api_key', 'api_key', \
             '{\"label\":\"old\"}', ?1, ?2, '2026-01-01T00:00:00Z')",
            rusqlite::params![vn.to_vec(), vc],
        )
        .unwrap();
        let s = open(Flavor::Sqlite, &path, &o);
        let c = s
            .read(&CredentialId::new("openai", "api_key"))
            .unwrap()
            .unwrap();
        assert_eq!(c.secret.expose(), "sk-landed-format-value", "{name}");
        assert_eq!(c.metadata["label"], "old");
        s.write(&Credential::new(
            CredentialId::new("db", "password"),
            Kind::Password,
            "new",
        ))
        .unwrap();
        let fresh = open(Flavor::Sqlite, &path, &o);
        assert_eq!(fresh.read_all().unwrap().credentials.len(), 2, "{name}");
        let (alg_now, metas): (String, i64) = conn
            .query_row(
                "SELECT kdf_alg, (SELECT count(*) FROM credshift_meta) FROM credshift_meta",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((alg_now.as_str(), metas), (alg, 1), "{name}");
        // The new value is sealed under its id as before.
        let (n, ct): (Vec<u8>, Vec<u8>) = conn
            .query_row(
                "SELECT nonce, ciphertext FROM credshift_credentials WHERE namespace = 'db'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let n: [u8; 12] = n.try_into().unwrap();
        assert_eq!(
            &**aead::open(&key, &n, b"db/password", &ct).unwrap(),
            b"new"
        );
    }
}

// --- An independent implementation: Node's Web Crypto -----------------------

const NODE_OPEN: &str = r#"
const { webcrypto } = require('node:crypto');
const fs = require('node:fs');
const subtle = webcrypto.subtle;
(async () => {
  const passphrase = fs.readFileSync(0, 'utf8');
  const env = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const { ciphertext, ...header } = env;
  const b64 = (s) => Buffer.from(s, 'base64');
  const base = await subtle.importKey('raw', new TextEncoder().encode(passphrase), 'PBKDF2', false, ['deriveKey']);
  const key = await subtle.deriveKey(
    { name: 'PBKDF2', hash: 'SHA-256', salt: b64(header.kdf.salt), iterations: header.kdf.iterations },
    base, { name: 'AES-GCM', length: 256 }, false, ['decrypt', 'encrypt']);
  const plain = await subtle.decrypt(
    { name: 'AES-GCM', iv: b64(header.nonce), additionalData: new TextEncoder().encode(JSON.stringify(header)) },
    key, b64(ciphertext));
  process.stdout.write(Buffer.from(plain));
})().catch((e) => { console.error('node: ' + e.name); process.exit(3); });
"#;

const NODE_SEAL: &str = r#"
const { webcrypto } = require('node:crypto');
const fs = require('node:fs');
const subtle = webcrypto.subtle;
(async () => {
  const input = JSON.parse(fs.readFileSync(0, 'utf8'));
  const salt = webcrypto.getRandomValues(new Uint8Array(16));
  const nonce = webcrypto.getRandomValues(new Uint8Array(12));
  const b64 = (u) => Buffer.from(u).toString('base64');
  const header = { format: 'credshift-envelope', version: 1,
    kdf: { alg: 'pbkdf2-hmac-sha256', iterations: 150000, salt: b64(salt) },
    cipher: 'aes-256-gcm', nonce: b64(nonce) };
  const base = await subtle.importKey('raw', new TextEncoder().encode(input.passphrase), 'PBKDF2', false, ['deriveKey']);
  const key = await subtle.deriveKey({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations: 150000 },
    base, { name: 'AES-GCM', length: 256 }, false, ['encrypt']);
  const ct = await subtle.encrypt(
    { name: 'AES-GCM', iv: nonce, additionalData: new TextEncoder().encode(JSON.stringify(header)) },
    key, new TextEncoder().encode(JSON.stringify(input.credentials)));
  fs.writeFileSync(process.argv[2], JSON.stringify({ ...header, ciphertext: b64(new Uint8Array(ct)) }), { mode: 0o600 });
})().catch((e) => { console.error('node: ' + e.name); process.exit(3); });
"#;

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run a Node script with `stdin` on standard input (secrets never in argv).
fn node(script: &str, file: &Path, stdin: &[u8]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let js = dir.path().join("script.js");
    std::fs::write(&js, script).unwrap();
    let mut child = Command::new("node")
        .arg(&js)
        .arg(file)
        .env_remove("CREDSHIFT_PASSPHRASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn web_crypto_opens_what_credshift_seals() {
    if !node_available() && support::skip_without("node", "`node --version` did not run") {
        return;
    }
    for f in [Flavor::Encrypted, Flavor::Bundle] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(f));
        let creds = sample();
        let passphrase = "pässphrase with ünïcode ✓";
        open(f, &path, &opts(passphrase)).write_many(&creds);

        let out = node(NODE_OPEN, &path, passphrase.as_bytes());
        assert!(
            out.status.success(),
            "node failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list.len(), creds.len());
        for c in &creds {
            let item = list
                .iter()
                .find(|i| i["id"] == c.id.to_string())
                .unwrap_or_else(|| panic!("{} missing", c.id));
            assert_eq!(item["kind"], c.kind.as_str());
            assert_eq!(item["secret"].as_str().unwrap(), c.secret.expose());
            assert_eq!(
                item["metadata"],
                serde_json::Value::Object(c.metadata.clone())
            );
        }

        // The same script with the wrong passphrase is refused by Web Crypto
        // too (so the check above could fail).
        let out = node(NODE_OPEN, &path, b"wrong");
        assert_eq!(out.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&out.stderr).contains("OperationError"));
    }
}

#[test]
fn credshift_opens_what_web_crypto_seals() {
    if !node_available() && support::skip_without("node", "`node --version` did not run") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from-browser.bundle");
    let secret = canary("browser");
    let input = serde_json::json!({
        "passphrase": "shared passphrase",
        "credentials": [{"id": "github/oauth_access_token", "kind": "oauth_access",
                         "secret": secret, "metadata": {"scopes": ["repo"]}}],
    });
    let out = node(NODE_SEAL, &path, input.to_string().as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let strict = KeyOptions {
        passphrase: Some(Secret::new("shared passphrase")),
        ..KeyOptions::default()
    };
    let s = open(Flavor::Bundle, &path, &strict);
    let got = s
        .read(&"github/oauth_access_token".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(got.secret.expose(), secret);
    assert_eq!(got.kind, Kind::OauthAccess);
    assert_eq!(got.metadata["scopes"], serde_json::json!(["repo"]));
}

// --- Through the binary --------------------------------------------------------

#[test]
fn cli_inventory_reads_an_encrypted_file_with_the_passphrase_from_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("creds.enc");
    let creds = sample();
    open(Flavor::Encrypted, &path, &opts("env passphrase")).write_many(&creds);
    let from = format!("encrypted:{}", path.display());

    let (out, stdout, stderr) = support::run(
        support::credshift(dir.path())
            .args(["inventory", "--from", &from, "--json", "--allow-weak-kdf"])
            .env("CREDSHIFT_PASSPHRASE", "env passphrase"),
    );
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v["items"].as_array().unwrap().len(),
        creds.len(),
        "{stdout}"
    );
    for c in &creds {
        let head: String = c.secret.expose().chars().take(20).collect();
        assert!(!stdout.contains(&head), "inventory printed a secret");
    }

    let (out, _, stderr) = support::run(
        support::credshift(dir.path())
            .args(["inventory", "--from", &from, "--json", "--allow-weak-kdf"])
            .env("CREDSHIFT_PASSPHRASE", "not it"),
    );
    assert!(!out.status.success());
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (out, _, stderr) = support::run(
        support::credshift(dir.path())
            .args(["inventory", "--from", &from, "--json"])
            .env("CREDSHIFT_PASSPHRASE", "env passphrase"),
    );
    assert!(!out.status.success());
    assert!(stderr.contains("--allow-weak-kdf"), "{stderr}");
}
