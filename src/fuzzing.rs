//! Entry points for the fuzz targets in `fuzz/` (one per parser of outside
//! input) and for the regression tests of what they found. Not part of the
//! CLI contract: hidden from the docs and free to change.
//!
//! Each function takes the fuzzer's bytes, runs the real parser on them and
//! panics only when a property fails: no parser may panic, and where a
//! stronger property exists it is checked too (a `.env` or JSON document
//! that parses writes back to the same credentials; an envelope that opens
//! was sealed with the fuzz key).
//!
//! The file-based parsers (dotenv, model-forge, agent-prompttrain, the
//! journal, key files) are reached through the stores' public API on a file
//! in a private scratch directory: `CREDSHIFT_FUZZ_DIR` when set (the fuzz
//! script points it at a tmpfs and removes it afterwards), else the system
//! temp dir.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::credential::{Credential, CredentialId, Kind, Secret};
use crate::crypto::envelope::{self, Envelope, KdfParams, KeySource, SealingKey};
use crate::crypto::{laravel, prompttrain as pt_crypto};
use crate::store::{self, StoreSpec};
use crate::unlock::KeyOptions;

/// The key the envelope seeds are sealed with.
pub const ENVELOPE_KEY: [u8; 32] = [0x5a; 32];
/// The plaintext sealed in every envelope seed.
pub const ENVELOPE_PLAINTEXT: &[u8] =
    br#"[{"id":"openai/api_key","kind":"api_key","secret":"sk-fuzz-seed-value","metadata":{}}]"#;
/// agent-prompttrain's master key for the value-format seeds (>= 32 chars).
pub const PROMPTTRAIN_KEY: &str = "fuzz-master-key-0123456789abcdefghij";
/// The plaintext inside every prompttrain value seed.
pub const PROMPTTRAIN_PLAINTEXT: &str = "sk-ant-fuzz-seed-value";
/// Laravel's APP_KEY for the payload seeds.
pub const APP_KEY: [u8; 32] = [0x42; 32];
/// The plaintext (PHP-serialized JSON) inside every Laravel payload seed.
pub const LARAVEL_PLAINTEXT: &str = r#"s:26:"{"api_key":"sk-fuzz-seed"}";"#;

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

/// A fresh, empty private directory for one run of a file-based target.
fn scratch(name: &str) -> PathBuf {
    let base = SCRATCH.get_or_init(|| {
        let root = std::env::var_os("CREDSHIFT_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = root.join(format!("credshift-fuzz-{}", std::process::id()));
        crate::fsutil::ensure_private_dir(&dir).expect("fuzz scratch dir");
        dir
    });
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    crate::fsutil::ensure_private_dir(&dir).expect("fuzz scratch subdir");
    dir
}

fn write_file(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("fuzz scratch parent");
    }
    std::fs::write(path, data).expect("fuzz scratch write");
}

/// Ids and secrets, sorted: what "the same credentials" means across a
/// write-back (kind and metadata are each store's own business).
fn id_secret_pairs(creds: &[Credential]) -> Vec<(CredentialId, String)> {
    let mut v: Vec<_> = creds
        .iter()
        .map(|c| (c.id.clone(), c.secret.expose().to_string()))
        .collect();
    v.sort();
    v
}

/// Read a file store; when it parses, write every credential back (into
/// the same file, in place, then into a new empty store) and read again:
/// the credentials must be the same. Credentials the store refuses by name
/// (`check`) are left out of the comparison.
fn file_store_round_trip(spec: StoreSpec, fresh: StoreSpec) {
    let opts = KeyOptions::default();
    let s = store::open(&spec, &opts).expect("open");
    let Ok(scan) = s.read_all() else {
        return;
    };
    let creds: Vec<Credential> = scan
        .credentials
        .into_iter()
        .filter(|c| s.check(c).is_none())
        .collect();
    let before = id_secret_pairs(&creds);
    let results = s.write_many(&creds);
    let written: Vec<Credential> = creds
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(c, _)| c.clone())
        .collect();
    if written.len() == creds.len() {
        let again = s.read_all().expect("re-read after write-back in place");
        let mut after = id_secret_pairs(&again.credentials);
        after.retain(|(id, _)| before.iter().any(|(b, _)| b == id));
        assert_eq!(
            before.len(),
            after.len(),
            "write-back in place lost or duplicated credentials"
        );
        assert!(
            before == after,
            "write-back in place changed a credential's value"
        );
    }
    let t = store::open(&fresh, &opts).expect("open fresh");
    let results = t.write_many(&written);
    let ok: Vec<Credential> = written
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(c, _)| c.clone())
        .collect();
    if ok.is_empty() {
        return;
    }
    let back = t.read_all().expect("read of a store just written");
    assert!(
        id_secret_pairs(&ok) == id_secret_pairs(&back.credentials),
        "credentials written into a new store read back differently"
    );
}

/// `dotenv:` parser, with the write-back property.
pub fn dotenv(data: &[u8]) {
    let dir = scratch("dotenv");
    let path = dir.join("app.env");
    write_file(&path, data);
    file_store_round_trip(
        StoreSpec::Dotenv(path),
        StoreSpec::Dotenv(dir.join("fresh.env")),
    );
}

/// `modelforge:` config.json parser, with the write-back property.
pub fn modelforge_config(data: &[u8]) {
    let dir = scratch("modelforge");
    let path = dir.join("config.json");
    write_file(&path, data);
    file_store_round_trip(
        StoreSpec::ModelForge(path),
        StoreSpec::ModelForge(dir.join("fresh.json")),
    );
}

/// agent-prompttrain account file parser (`accounts/*.credentials.json`).
pub fn prompttrain_account(data: &[u8]) {
    let dir = scratch("prompttrain-account");
    let root = dir.join("credentials");
    write_file(&root.join("accounts/fuzz.credentials.json"), data);
    std::fs::create_dir_all(root.join("train-client-keys")).expect("mkdir");
    let fresh = dir.join("fresh");
    std::fs::create_dir_all(&fresh).expect("mkdir");
    file_store_round_trip(StoreSpec::PromptTrain(root), StoreSpec::PromptTrain(fresh));
}

/// agent-prompttrain client-keys file parser
/// (`train-client-keys/*.client-keys.json`).
pub fn prompttrain_client_keys(data: &[u8]) {
    let dir = scratch("prompttrain-keys");
    let root = dir.join("credentials");
    std::fs::create_dir_all(root.join("accounts")).expect("mkdir");
    write_file(&root.join("train-client-keys/fuzz.client-keys.json"), data);
    let fresh = dir.join("fresh");
    std::fs::create_dir_all(&fresh).expect("mkdir");
    file_store_round_trip(StoreSpec::PromptTrain(root), StoreSpec::PromptTrain(fresh));
}

/// The envelope (header and body) as the encrypted and bundle stores read
/// it. An envelope that opens with the fuzz key must hold exactly what was
/// sealed with it; a PBKDF2 header is parsed but not derived (cost).
pub fn envelope(data: &[u8]) {
    let Ok(env) = Envelope::parse(data, "fuzz.enc", true) else {
        return;
    };
    if *env.params() != KdfParams::None {
        return;
    }
    let source = KeySource::Key(zeroize::Zeroizing::new(ENVELOPE_KEY));
    let key = SealingKey::derive(env.params(), &source, "fuzz.enc").expect("derive for alg none");
    if let Ok(plain) = key.open(&env) {
        assert_eq!(
            plain.as_slice(),
            ENVELOPE_PLAINTEXT,
            "an envelope opened with the fuzz key but holds something never sealed with it"
        );
        envelope::decode_credentials(&plain, "fuzz.enc").expect("the sealed plaintext decodes");
    }
}

/// The envelope's plaintext (the JSON list of credentials): decodes, and
/// what decodes encodes and decodes to the same credentials.
pub fn envelope_body(data: &[u8]) {
    let Ok(creds) = envelope::decode_credentials(data, "fuzz.enc") else {
        return;
    };
    let bytes = envelope::encode_credentials(&creds).expect("encode what decoded");
    let again = envelope::decode_credentials(&bytes, "fuzz.enc").expect("decode what encoded");
    assert_eq!(creds.len(), again.len());
    for (a, b) in creds.iter().zip(&again) {
        assert_eq!(a.id, b.id);
        assert!(a.same_as(b), "an envelope body changed in a round trip");
    }
}

fn prompttrain_master() -> pt_crypto::MasterKey {
    pt_crypto::MasterKey::new(&Secret::new(PROMPTTRAIN_KEY)).expect("fuzz master key")
}

/// agent-prompttrain's stored value format `salt:iv:tag:ciphertext`. A value
/// that decrypts with the fuzz key holds what was encrypted with it.
pub fn prompttrain_value(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let looks = pt_crypto::looks_encrypted(text);
    // One master key and one key cache for the whole run: a key is derived
    // (100,000 PBKDF2 iterations) once per salt, so inputs that keep a salt
    // already seen cost only the parse and the AES-GCM open. Deriving for
    // every input ran the target at a few executions per second.
    static MASTER: OnceLock<pt_crypto::MasterKey> = OnceLock::new();
    static KEYS: OnceLock<pt_crypto::KeyCache> = OnceLock::new();
    let master = MASTER.get_or_init(prompttrain_master);
    let keys = KEYS.get_or_init(pt_crypto::KeyCache::default);
    // (No encrypt round trip here: it derives a key per input; the crypto
    // unit tests cover it.)
    if let Ok(s) = pt_crypto::decrypt_cached(master, text, keys) {
        assert!(looks, "decrypted a value that does not look encrypted");
        assert_eq!(
            s.expose(),
            PROMPTTRAIN_PLAINTEXT,
            "a value decrypted with the fuzz key but was never encrypted with it"
        );
    }
}

/// Laravel's encrypted payload (base64 JSON with iv, value, mac) and the
/// plaintext framing inside. A payload whose MAC checks with the fuzz key
/// holds what was encrypted with it.
pub fn laravel_payload(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = laravel::AppKey::from_bytes(APP_KEY);
    let mac_ok = laravel::mac_matches(&key, text);
    if let Ok(plain) = laravel::decrypt(&key, text) {
        assert!(mac_ok, "decrypted a payload whose MAC does not match");
        assert_eq!(
            plain.as_slice(),
            LARAVEL_PLAINTEXT.as_bytes(),
            "a payload decrypted with the fuzz key but was never encrypted with it"
        );
        let (json, framing) = laravel::unframe(&plain).expect("the seed plaintext unframes");
        assert_eq!(framing, laravel::Framing::PhpSerialized);
        let _ = serde_json::from_str::<serde_json::Value>(&json);
    }
}

/// PHP `unserialize()` of a string, and the framing around Laravel's
/// plaintext: what unserializes serializes back to a text that
/// unserializes to the same string, and to the same bytes (up to trailing
/// whitespace) unless the length had leading zeros, which PHP accepts too.
pub fn php_serialized(data: &[u8]) {
    if let Ok(s) = laravel::php_unserialize_str(data) {
        let again = laravel::php_serialize_str(&s);
        let back = laravel::php_unserialize_str(again.as_bytes()).expect("unserialize ours");
        assert_eq!(
            back.as_str(),
            s.as_str(),
            "serialize/unserialize changed a string"
        );
        if !data.starts_with(b"s:0") || data.starts_with(b"s:0:") {
            assert_eq!(
                again.as_bytes(),
                data.trim_ascii_end(),
                "a PHP-serialized string does not serialize back to itself"
            );
        }
    }
    if let Ok((json, framing)) = laravel::unframe(data) {
        let framed = laravel::frame(&json, framing);
        let (back, f2) = laravel::unframe(framed.as_bytes()).expect("unframe what we framed");
        assert_eq!(f2, framing);
        assert_eq!(back.as_str(), json.as_str());
    }
}

/// The APP_KEY parser (a `.env` value or `--app-key-file`).
pub fn laravel_app_key(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = laravel::AppKey::parse(&Secret::new(text));
    }
}

/// The journal line reader (a torn last line is ignored, a bad one before
/// it is an error).
pub fn journal(data: &[u8]) {
    let dir = scratch("journal");
    let path = dir.join("journal.jsonl");
    write_file(&path, data);
    let _ = crate::engine::journal::read_lines(&path);
}

/// Key files (`--key-file`, read by every store through one reader): raw
/// 32 bytes, 64 hex characters or base64. A key that loads, written back
/// as hex and as raw bytes, loads as the same key.
pub fn key_file(data: &[u8]) {
    let dir = scratch("keyfile");
    let path = dir.join("key");
    write_file(&path, data);
    let Ok(a) = crate::crypto::kdf::load_key_file(&path) else {
        return;
    };
    for spelled in [hex::encode(a.as_slice()).into_bytes(), a.to_vec()] {
        write_file(&path, &spelled);
        let b = crate::crypto::kdf::load_key_file(&path).expect("a key written back loads");
        assert_eq!(a.as_slice(), b.as_slice(), "a key written back differs");
    }
}

/// Store specs and URLs as given on the command line: what parses prints
/// without a password and parses back to the same spec.
pub fn store_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = store::redact_url(text);
    let Ok(spec) = text.parse::<StoreSpec>() else {
        return;
    };
    let raw = spec.raw();
    let back: StoreSpec = raw.parse().expect("a spec's raw form parses");
    assert_eq!(back, spec, "a spec does not parse back from its raw form");
    assert!(!spec.to_string().is_empty());
}

/// Credential ids and kinds as stored in rows, keyring attributes and
/// marker comments: what parses prints back to the same text.
pub fn credential_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = text.parse::<CredentialId>() {
        let back: CredentialId = id.to_string().parse().expect("an id's text parses");
        assert_eq!(back, id);
    }
    if let Ok(kind) = text.parse::<Kind>() {
        let back: Kind = kind.to_string().parse().expect("a kind's text parses");
        assert_eq!(back, kind);
    }
}

/// The credential sealed into the SQLite row seeds.
const SQLITE_SEED_ID: &str = "openai/api_key";

/// A credshift SQLite database under the fuzz key, holding one sealed
/// row; returns its path and that row's fields joined by 0x1F.
fn sqlite_fixture(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("fuzz.db");
    let key = dir.join("fuzz.key");
    std::fs::write(&key, ENVELOPE_KEY).expect("key");
    let opts = KeyOptions {
        key_file: Some(key),
        ..KeyOptions::default()
    };
    let s = store::open(&StoreSpec::Sqlite(path.clone()), &opts).expect("open sqlite");
    let c = Credential::new(
        SQLITE_SEED_ID.parse().expect("id"),
        Kind::ApiKey,
        Secret::new(PROMPTTRAIN_PLAINTEXT),
    );
    s.write(&c).expect("seal the seed row");
    drop(s);
    let conn = rusqlite::Connection::open(&path).expect("sqlite");
    let row: (String, String, String, String, Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT namespace, name, kind, metadata, nonce, ciphertext FROM credshift_credentials",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .expect("the seed row");
    let mut joined = Vec::new();
    for (i, f) in [
        row.0.as_bytes(),
        row.1.as_bytes(),
        row.2.as_bytes(),
        row.3.as_bytes(),
        &row.4,
        &row.5,
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            joined.push(0x1F);
        }
        joined.extend_from_slice(f);
    }
    (path, joined)
}

/// A row of credshift's SQLite table as the store decodes it: the input is
/// namespace, name, kind, metadata, nonce and ciphertext joined by 0x1F,
/// written into a database sealed with the fuzz key. A row that decrypts
/// holds the value sealed for exactly that id.
pub fn sqlite_row(data: &[u8]) {
    // One database per process; each input replaces its only row.
    static DB: OnceLock<PathBuf> = OnceLock::new();
    let dir = DB
        .get_or_init(|| {
            let dir = scratch("sqlite");
            sqlite_fixture(&dir);
            dir
        })
        .clone();
    let path = dir.join("fuzz.db");
    let fields: Vec<&[u8]> = data.splitn(6, |b| *b == 0x1F).collect();
    if fields.len() != 6 {
        return;
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    {
        let conn = rusqlite::Connection::open(&path).expect("sqlite");
        conn.execute(
            "UPDATE credshift_credentials SET namespace = ?1, name = ?2, kind = ?3, \
             metadata = ?4, nonce = ?5, ciphertext = ?6",
            rusqlite::params![
                text(fields[0]),
                text(fields[1]),
                text(fields[2]),
                text(fields[3]),
                fields[4],
                fields[5]
            ],
        )
        .expect("update the row");
    }
    let opts = KeyOptions {
        key_file: Some(dir.join("fuzz.key")),
        ..KeyOptions::default()
    };
    let s = store::open(&StoreSpec::Sqlite(path), &opts).expect("open sqlite");
    if let Ok(scan) = s.read_all() {
        for c in scan.credentials {
            assert_eq!(
                c.id.to_string(),
                SQLITE_SEED_ID,
                "a row decrypted under another id than it was sealed for"
            );
            assert_eq!(c.secret.expose(), PROMPTTRAIN_PLAINTEXT);
        }
    }
    let _ = s.list();
}

/// What `keyring:` makes of a Secret Service item's attributes, which any
/// program on the session bus may have written: the input is the
/// `username`, `credshift.kind` and `credshift.metadata` values joined by
/// 0x1F (fewer fields: those attributes are absent), then after a fourth
/// 0x1F the text of a companion entry (the companion backend). An item that
/// parses, written back as the store writes it (kind name, metadata JSON),
/// parses to the same item; an item that does not names one of the fixed
/// reasons, never the values.
pub fn keyring_attributes(data: &[u8]) {
    use crate::store::keyring::companion_attributes;
    let fields: Vec<String> = data
        .splitn(4, |b| *b == 0x1F)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let user = fields[0].as_str();
    check_keyring_item(
        user,
        fields.get(1).map(String::as_str),
        fields.get(2).map(String::as_str),
    );
    if let Some(text) = fields.get(3)
        && let Some((kind, metadata)) = companion_attributes(text)
    {
        check_keyring_item(user, Some(&kind), Some(&metadata));
    }
}

fn check_keyring_item(user: &str, kind: Option<&str>, metadata: Option<&str>) {
    use crate::store::keyring::{ATTR_KIND, ATTR_METADATA, AttrError, item_from_attributes};
    match item_from_attributes(user, kind, metadata) {
        Ok(e) => {
            let meta = serde_json::to_string(&e.metadata).expect("metadata encodes");
            let again = item_from_attributes(&e.id.to_string(), Some(e.kind.as_str()), Some(&meta))
                .expect("an item written back parses");
            assert_eq!((&again.id, again.kind), (&e.id, e.kind));
            assert_eq!(again.metadata, e.metadata);
        }
        Err(AttrError::NotOurs) => {}
        Err(AttrError::Bad { error, .. }) => {
            let fixed = [
                format!("{ATTR_KIND} is not a known kind"),
                format!("{ATTR_METADATA} is not a JSON object"),
                format!("{ATTR_METADATA} is not valid JSON"),
            ];
            assert!(fixed.contains(&error), "unexpected reason: {error}");
        }
    }
}

/// The credential sealed into the PostgreSQL row seed.
const POSTGRES_SEED_ID: &str = "openai/api_key";
/// The metadata column of the PostgreSQL row seed.
const POSTGRES_SEED_METADATA: &str = r#"{"label":"fuzz seed","expires_at":1790003600000}"#;

/// The fuzz key as credshift's PostgreSQL table holds it (a key file).
fn postgres_key() -> crate::crypto::sql::TableKey {
    let source = KeySource::Key(zeroize::Zeroizing::new(ENVELOPE_KEY));
    let key = SealingKey::new(&source, 0).expect("key");
    crate::crypto::sql::POSTGRES
        .new_key_from(key)
        .expect("table key")
        .0
}

/// A row of credshift's PostgreSQL table sealed under the fuzz key: its
/// id, kind, metadata, nonce and ciphertext columns joined by 0x1F.
fn postgres_seed_row() -> Vec<u8> {
    let key = postgres_key();
    // The nonce is random and must not hold the field separator (the
    // ciphertext is the last field and may): seal again until it does not
    // (each try fails with probability 12/256).
    let (nonce, ct) = std::iter::repeat_with(|| {
        key.seal(POSTGRES_SEED_ID, PROMPTTRAIN_PLAINTEXT.as_bytes())
            .expect("seal the seed row")
    })
    .find(|(nonce, _)| !nonce.contains(&0x1F))
    .expect("a nonce without 0x1F");
    let fields: [&[u8]; 5] = [
        POSTGRES_SEED_ID.as_bytes(),
        b"api_key",
        POSTGRES_SEED_METADATA.as_bytes(),
        &nonce,
        &ct,
    ];
    fields.join(&0x1F)
}

/// A fetched row of credshift's PostgreSQL table as the store decodes it
/// (the same functions its reads and listings run on a row, no server
/// needed): id, kind, metadata (JSONB as text), nonce and ciphertext
/// joined by 0x1F, under the fuzz key. A row that decrypts holds the value
/// sealed for exactly that id, and lists as the same id, kind and metadata.
pub fn postgres_row(data: &[u8]) {
    static KEY: OnceLock<crate::crypto::sql::TableKey> = OnceLock::new();
    let key = KEY.get_or_init(postgres_key);
    let fields: Vec<&[u8]> = data.splitn(5, |b| *b == 0x1F).collect();
    let [id, kind, metadata, nonce, ciphertext] = fields[..] else {
        return;
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (id, kind, metadata) = (text(id), text(kind), text(metadata));
    let entry = store::postgres::decode_entry(&id, &kind, &metadata);
    let value = crate::crypto::sql::SealedValue {
        kind: &kind,
        metadata: &metadata,
        nonce,
        ciphertext,
    };
    if let Ok(c) = store::postgres::decode_row(key, &id, &value) {
        assert_eq!(
            c.id.to_string(),
            POSTGRES_SEED_ID,
            "a row decrypted under another id than it was sealed for"
        );
        assert_eq!(c.secret.expose(), PROMPTTRAIN_PLAINTEXT);
        let entry = entry.expect("a row that decrypts lists");
        assert_eq!(
            (&entry.id, entry.kind, &entry.metadata),
            (&c.id, c.kind, &c.metadata),
            "a row reads and lists differently"
        );
    }
}

/// Seeds for the targets that need a valid secret-bearing input to get
/// past the cryptography: `(target, file name, bytes)`.
pub fn crypto_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let source = KeySource::Key(zeroize::Zeroizing::new(ENVELOPE_KEY));
    let key = SealingKey::new(&source, 0).expect("key");
    out.push((
        "envelope",
        "sealed.enc",
        key.seal(ENVELOPE_PLAINTEXT).expect("seal"),
    ));
    out.push(("envelope_body", "body.json", ENVELOPE_PLAINTEXT.to_vec()));
    let master = prompttrain_master();
    out.push((
        "prompttrain_value",
        "sealed.txt",
        pt_crypto::encrypt(&master, PROMPTTRAIN_PLAINTEXT)
            .expect("encrypt")
            .into_bytes(),
    ));
    let app = laravel::AppKey::from_bytes(APP_KEY);
    out.push((
        "laravel_payload",
        "payload.txt",
        laravel::encrypt(&app, LARAVEL_PLAINTEXT.as_bytes())
            .expect("encrypt")
            .into_bytes(),
    ));
    out.push((
        "php_serialized",
        "framed.txt",
        LARAVEL_PLAINTEXT.as_bytes().to_vec(),
    ));
    let dir = scratch("sqlite-seed");
    out.push(("sqlite_row", "row.bin", sqlite_fixture(&dir).1));
    out.push(("postgres_row", "row.bin", postgres_seed_row()));
    out
}

/// `qr --join`'s part parser and joiner, over the lines of the input: a
/// bundle that joins splits into parts that join back to the same bytes.
pub fn qr_part(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        let _ = crate::qr::parse_part(line, "fuzz input");
    }
    let lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (format!("line {}", i + 1), l));
    let joined = crate::qr::join(lines);
    if let Err(e) = &joined {
        // An error is sized by the input's lines, never by a count a part
        // claims (issue 23: 1/3000000 once printed a 25 MB message).
        let said = e.to_string().len();
        assert!(
            said <= 400 + 2 * text.len(),
            "a {said}-byte error for {} bytes of parts",
            text.len()
        );
    }
    if let Ok(bundle) = joined {
        let parts = crate::qr::split(&bundle);
        let back = crate::qr::join(
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("part {}", i + 1), p.as_str())),
        )
        .expect("the parts of a joined bundle join again");
        assert!(back == bundle, "a bundle split and joined changed");
    }
}

/// PostgreSQL connection input: a URL (the first line) and a pgpass file
/// (the rest). Neither the URL's printable form nor its redaction depends
/// on the password; the pgpass reader reads any file without a panic.
pub fn pg_connection(data: &[u8]) {
    use crate::store::pgurl::{self, Target};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (url, passfile) = text.split_once('\n').unwrap_or((text, ""));
    check_pg_url(url, pgurl::redact);
    let dir = scratch("pg_connection");
    let path = dir.join("pgpass");
    write_file(&path, passfile.as_bytes());
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("fuzz scratch mode");
    }
    let target = Target {
        host: "db.example".into(),
        port: 5432,
        database: "app".into(),
        user: "app".into(),
    };
    let _ = pgurl::read_passfile(&path, &target);
}

/// The password oracle: the same URL with another password of the same
/// length must print and redact identically. A substring test cried wolf
/// when the password happened to be a piece of the redacted text itself
/// (issue 22, point 11); a comparison only fails if the password shows.
fn check_pg_url(url: &str, redact: fn(&str) -> String) {
    use crate::store::pgurl::PgUrl;
    let Ok(u) = PgUrl::parse(url) else {
        return;
    };
    let Some(pw) = u.password() else {
        return;
    };
    let pw = pw.expose();
    // Only a password written once, literally, can be swapped in place.
    if url.matches(pw).count() != 1 {
        return;
    }
    // Only its letters and digits change: `@`, `:`, `/`, `?` and `%` stay
    // where they are, so both URLs split into the same parts (a password
    // holding an `@` moved the authority's end when it was filled whole).
    let fill = if pw.bytes().any(|b| b.is_ascii_alphanumeric() && b != b'x') {
        'x'
    } else {
        'y'
    };
    let other: String = pw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { fill } else { c })
        .collect();
    if other == pw {
        return;
    }
    let swapped = url.replacen(pw, &other, 1);
    let Ok(v) = PgUrl::parse(&swapped) else {
        return;
    };
    // The literal occurrence was not the password (e.g. it was encoded).
    if v.password().map(|p| p.expose()) != Some(other.as_str()) {
        return;
    }
    assert!(
        u.without_password() == v.without_password(),
        "the password is in the URL's printable form"
    );
    assert!(
        redact(url) == redact(&swapped),
        "the password survived redaction"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crypto_seeds_pass_their_targets_and_open() {
        for (target, _, bytes) in crypto_seeds() {
            match target {
                "envelope" => {
                    let env = Envelope::parse(&bytes, "seed", true).unwrap();
                    let source = KeySource::Key(zeroize::Zeroizing::new(ENVELOPE_KEY));
                    let key = SealingKey::derive(env.params(), &source, "seed").unwrap();
                    assert_eq!(key.open(&env).unwrap().as_slice(), ENVELOPE_PLAINTEXT);
                    envelope(&bytes);
                }
                "envelope_body" => envelope_body(&bytes),
                "prompttrain_value" => prompttrain_value(&bytes),
                "laravel_payload" => {
                    let key = laravel::AppKey::from_bytes(APP_KEY);
                    let text = std::str::from_utf8(&bytes).unwrap();
                    assert!(laravel::decrypt(&key, text).is_ok());
                    laravel_payload(&bytes);
                }
                "php_serialized" => php_serialized(&bytes),
                "sqlite_row" => sqlite_row(&bytes),
                "postgres_row" => {
                    let key = postgres_key();
                    let f: Vec<&[u8]> = bytes.splitn(5, |b| *b == 0x1F).collect();
                    let value = crate::crypto::sql::SealedValue {
                        kind: "api_key",
                        metadata: POSTGRES_SEED_METADATA,
                        nonce: f[3],
                        ciphertext: f[4],
                    };
                    let c = store::postgres::decode_row(&key, POSTGRES_SEED_ID, &value).unwrap();
                    assert_eq!(c.secret.expose(), PROMPTTRAIN_PLAINTEXT);
                    postgres_row(&bytes);
                }
                other => panic!("unknown seed target {other}"),
            }
        }
    }

    /// Writes the crypto seeds into `fuzz/seeds/` (run by hand when the
    /// formats change: `cargo test --lib write_fuzz_seeds -- --ignored`).
    #[test]
    #[ignore]
    fn write_fuzz_seeds() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        for (target, name, bytes) in crypto_seeds() {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    #[test]
    fn a_postgres_row_moved_to_another_id_does_not_decrypt() {
        let seed = postgres_seed_row();
        let moved = [b"openai/other".as_slice(), &seed[POSTGRES_SEED_ID.len()..]].concat();
        let f: Vec<&[u8]> = moved.splitn(5, |b| *b == 0x1F).collect();
        let value = crate::crypto::sql::SealedValue {
            kind: "api_key",
            metadata: "{}",
            nonce: f[3],
            ciphertext: f[4],
        };
        assert!(store::postgres::decode_row(&postgres_key(), "openai/other", &value).is_err());
        postgres_row(&moved);
        // Columns that do not parse are errors, not panics.
        for bad in [
            &b"x\x1fapi_key\x1f{}\x1f\x1f"[..],
            b"a/b\x1fnope\x1f[1]\x1f1\x1f2",
            b"\x1f\x1f\x1f\x1f",
        ] {
            postgres_row(bad);
        }
    }

    #[test]
    fn an_envelope_sealed_with_another_key_does_not_open() {
        let other = KeySource::Key(zeroize::Zeroizing::new([1u8; 32]));
        let key = SealingKey::new(&other, 0).unwrap();
        // Sealed with another key and holding other content: must not open.
        envelope(&key.seal(b"[]").unwrap());
    }

    #[test]
    #[should_panic(expected = "never sealed with it")]
    fn the_envelope_property_can_fail() {
        let source = KeySource::Key(zeroize::Zeroizing::new(ENVELOPE_KEY));
        let key = SealingKey::new(&source, 0).unwrap();
        envelope(&key.seal(b"[]").unwrap());
    }

    /// The regression input of issue 22 point 11: the password is a piece of
    /// the redacted text, which is no leak.
    const PASSWORD_INSIDE_REDACTION: &str = "postgres://\0\\\r\r\0\0:gres://\0\\\r\r\0\0:***@@";

    #[test]
    fn the_pg_oracle_accepts_a_password_that_is_part_of_the_redaction() {
        let pw = crate::store::pgurl::PgUrl::parse(PASSWORD_INSIDE_REDACTION).unwrap();
        let pw = pw.password().unwrap().expose().to_string();
        // The old substring oracle's false alarm still holds for this input.
        assert!(crate::store::pgurl::redact(PASSWORD_INSIDE_REDACTION).contains(&pw));
        check_pg_url(PASSWORD_INSIDE_REDACTION, crate::store::pgurl::redact);
        pg_connection(PASSWORD_INSIDE_REDACTION.as_bytes());
    }

    #[test]
    fn the_pg_oracle_catches_a_redaction_that_leaks() {
        fn leaky(s: &str) -> String {
            s.to_string()
        }
        fn leaky_on_params(s: &str) -> String {
            let r = crate::store::pgurl::redact(s);
            match s.split_once("password=") {
                Some((_, v)) => format!("{r} {v}"),
                None => r,
            }
        }
        for (url, redact) in [
            ("postgres://app:hunter2@db/app", leaky as fn(&str) -> String),
            ("postgres://app:hunter2@db/app", crate::store::pgurl::redact),
            ("postgres://app@db/app?password=hunter2", leaky_on_params),
            (PASSWORD_INSIDE_REDACTION, leaky),
        ] {
            let caught = std::panic::catch_unwind(|| check_pg_url(url, redact)).is_err();
            let leaks = redact(url) != crate::store::pgurl::redact(url);
            assert_eq!(caught, leaks, "oracle on {url:?}");
        }
    }
}
