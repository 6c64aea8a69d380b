use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use keyring_core::api::{CredentialApi, CredentialStoreApi};

use super::companion::CompanionBackend;
use super::*;

fn spec(service: &str) -> StoreSpec {
    StoreSpec::Keyring(service.into())
}

const NO_LIMIT: Limit = Limit {
    max: None,
    utf16: false,
    name: "test keyring",
};

/// A backend whose every call blocks until the test ends: a hung D-Bus.
struct Hung(Mutex<mpsc::Receiver<()>>);
impl Hung {
    fn wait<T>(&self) -> Result<T, Fail> {
        let _ = self.0.lock().unwrap().recv();
        Err(Fail::Item("released".into()))
    }
}
impl Backend for Hung {
    fn state(&mut self) -> Result<State, Fail> {
        self.wait()
    }
    fn list(&mut self) -> Result<Vec<Listed>, Fail> {
        self.wait()
    }
    fn get(&mut self, _: &str) -> Result<Option<Stored>, Fail> {
        self.wait()
    }
    fn set(&mut self, _: &str, _: &Secret, _: &str, _: &str) -> Result<(), Fail> {
        self.wait()
    }
    fn delete(&mut self, _: &str) -> Result<bool, Fail> {
        self.wait()
    }
}

#[test]
fn a_hung_keyring_call_times_out_with_a_clear_error() {
    let (release, rx) = mpsc::channel::<()>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let store = KeyringStore::with_backend(
        spec("svc-hung"),
        "svc-hung".into(),
        Duration::from_millis(200),
        NO_LIMIT,
        Box::new(move |_| {
            let rx = rx.lock().unwrap().take().expect("connected once");
            Ok(Box::new(Hung(Mutex::new(rx))) as Box<dyn Backend>)
        }),
    )
    .unwrap();
    let id = CredentialId::new("openai", "api_key");
    let err = store.read(&id).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Timeout { .. }), "{msg}");
    assert!(
        msg.starts_with("keyring:svc-hung: timed out after 1 s"),
        "{msg}"
    );
    assert!(msg.contains("`read`"), "{msg}");
    // Later calls do not queue behind the hung one.
    let c = Credential::new(id, Kind::ApiKey, "sk-never-written-anywhere");
    let err = store.write(&c).unwrap_err().to_string();
    assert!(
        err.contains("earlier keyring call (read) timed out"),
        "{err}"
    );
    assert!(!err.contains("never-written"), "{err}");
    let cap = store.probe();
    assert!(!cap.available);
    assert!(cap.reason.unwrap().contains("timed out"));
    drop(release);
}

#[test]
fn a_connect_failure_is_reported_as_unavailable_with_its_reason() {
    let store = KeyringStore::with_backend(
        spec("svc-none"),
        "svc-none".into(),
        Duration::from_secs(5),
        NO_LIMIT,
        Box::new(|_| Err(Fail::Unavailable("no D-Bus session bus".into()))),
    )
    .unwrap();
    let cap = store.probe();
    assert!(!cap.available);
    assert_eq!(cap.reason.as_deref(), Some("no D-Bus session bus"));
    let err = store.list().unwrap_err();
    assert!(err.is_unavailable());
    assert_eq!(
        err.to_string(),
        "keyring:svc-none is unavailable: no D-Bus session bus"
    );
}

/// A connect closure over an in-memory keyring that reports each attempt
/// (its number) on `tx` and fails the attempts `fail` gives a failure for.
fn counting_connect(
    map: Shared,
    tx: mpsc::Sender<usize>,
    fail: impl Fn(usize) -> Option<Fail> + Send + 'static,
) -> Connect {
    let n = Mutex::new(0usize);
    Box::new(move |svc| {
        let mut n = n.lock().unwrap();
        *n += 1;
        let _ = tx.send(*n);
        if let Some(f) = fail(*n) {
            return Err(f);
        }
        let store: Arc<keyring_core::CredentialStore> = Arc::new(MemStore(map.clone()));
        Ok(Box::new(CompanionBackend::new(store, svc)) as Box<dyn Backend>)
    })
}

/// `open` connects on the worker before any call (so the connection's
/// cost overlaps the caller's own work), and a connection that failed
/// quickly then is made by the first call instead, once.
#[test]
fn opening_connects_ahead_and_a_quick_failure_is_retried_by_the_first_call() {
    let (tx, attempts) = mpsc::channel::<usize>();
    let connect = counting_connect(Shared::default(), tx, |n| {
        (n == 1).then(|| Fail::Unavailable("not yet".into()))
    });
    let opts = KeyOptions {
        keyring_timeout: Duration::from_secs(5),
        ..KeyOptions::default()
    };
    let store = open_with(&spec("svc-ahead"), "svc-ahead", &opts, NO_LIMIT, connect).unwrap();
    assert_eq!(
        attempts.recv_timeout(Duration::from_secs(5)),
        Ok(1),
        "connected with no call made"
    );
    let c = Credential::new(CredentialId::new("ns", "k"), Kind::ApiKey, "sk-ahead-value");
    store.write(&c).unwrap();
    assert_eq!(attempts.try_recv(), Ok(2), "the first call connected again");
    assert!(store.read(&c.id).unwrap().unwrap().same_as(&c));
    assert!(attempts.try_recv().is_err(), "and kept that connection");
}

/// A quick connect-ahead failure followed by a failed first attempt: the
/// caller gets the reason of the attempt it made.
#[test]
fn a_retried_connect_that_fails_again_reports_its_reason() {
    let (tx, attempts) = mpsc::channel::<usize>();
    let connect = counting_connect(Shared::default(), tx, |n| {
        Some(Fail::Unavailable(format!("no bus, attempt {n}")))
    });
    let store = KeyringStore::start(
        spec("svc-twice"),
        "svc-twice".into(),
        Duration::from_secs(5),
        NO_LIMIT,
        connect,
    )
    .unwrap();
    assert_eq!(attempts.recv_timeout(Duration::from_secs(5)), Ok(1));
    let err = store.list().unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().ends_with("no bus, attempt 2"), "{err}");
}

/// audit9 finding 1: a connect-ahead that fails slowly (here 1.2 s of a
/// 2 s timeout) is reported by the first call as it is, not tried again
/// (which would wait past the timeout: "hung?", and a second start of the
/// service); the call after that connects again.
#[test]
fn a_slow_connect_ahead_failure_is_reported_by_the_first_call() {
    let (tx, attempts) = mpsc::channel::<usize>();
    let connect = counting_connect(Shared::default(), tx, |n| {
        if n == 1 {
            std::thread::sleep(Duration::from_millis(1200));
            return Some(Fail::Unavailable("activation timed out: why".into()));
        }
        None
    });
    let store = KeyringStore::start(
        spec("svc-slow"),
        "svc-slow".into(),
        Duration::from_secs(2),
        NO_LIMIT,
        connect,
    )
    .unwrap();
    let id = CredentialId::new("ns", "k");
    let err = store.read(&id).unwrap_err();
    assert!(!matches!(err, StoreError::Timeout { .. }), "{err}");
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().ends_with("activation timed out: why"), "{err}");
    assert_eq!(attempts.try_recv(), Ok(1), "connected once, ahead");
    assert!(attempts.try_recv().is_err(), "not again by the first call");
    assert!(store.read(&id).unwrap().is_none(), "the next call reconnects");
    assert_eq!(attempts.try_recv(), Ok(2));
}

/// A backend whose session dies when `dead` is set: every call then fails
/// as the Secret Service backend reports a lost session.
struct Dies {
    inner: CompanionBackend,
    dead: Arc<Mutex<bool>>,
}
impl Dies {
    fn alive(&self) -> Result<(), Fail> {
        match *self.dead.lock().unwrap() {
            true => Err(Fail::Unavailable("session lost".into())),
            false => Ok(()),
        }
    }
}
impl Backend for Dies {
    fn state(&mut self) -> Result<State, Fail> {
        self.alive()?;
        self.inner.state()
    }
    fn list(&mut self) -> Result<Vec<Listed>, Fail> {
        self.alive()?;
        self.inner.list()
    }
    fn get(&mut self, u: &str) -> Result<Option<Stored>, Fail> {
        self.alive()?;
        self.inner.get(u)
    }
    fn set(&mut self, u: &str, s: &Secret, k: &str, m: &str) -> Result<(), Fail> {
        self.alive()?;
        self.inner.set(u, s, k, m)
    }
    fn delete(&mut self, u: &str) -> Result<bool, Fail> {
        self.alive()?;
        self.inner.delete(u)
    }
}

/// audit9 finding 2: a call or a batch that finds the session lost (the
/// daemon restarted) drops the connection, and the next call connects
/// afresh instead of failing on the dead session for the whole run.
#[test]
fn a_lost_session_is_replaced_by_the_next_call() {
    let (tx, attempts) = mpsc::channel::<usize>();
    let map = Shared::default();
    let n = Mutex::new(0usize);
    let deaths: Arc<Mutex<Vec<Arc<Mutex<bool>>>>> = Arc::default();
    let sessions = deaths.clone();
    let store = KeyringStore::with_backend(
        spec("svc-lost"),
        "svc-lost".into(),
        Duration::from_secs(5),
        NO_LIMIT,
        Box::new(move |svc| {
            let mut n = n.lock().unwrap();
            *n += 1;
            let _ = tx.send(*n);
            let dead = Arc::new(Mutex::new(false));
            sessions.lock().unwrap().push(dead.clone());
            let store: Arc<keyring_core::CredentialStore> = Arc::new(MemStore(map.clone()));
            Ok(Box::new(Dies {
                inner: CompanionBackend::new(store, svc),
                dead,
            }) as Box<dyn Backend>)
        }),
    )
    .unwrap();
    let kill = |i: usize| *deaths.lock().unwrap()[i].lock().unwrap() = true;
    let c = Credential::new(CredentialId::new("ns", "k"), Kind::ApiKey, "sk-lost-value");
    store.write(&c).unwrap();
    assert_eq!(attempts.try_recv(), Ok(1));
    // A single call on a dead session: unavailable, then reconnected.
    kill(0);
    let err = store.read(&c.id).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(store.read(&c.id).unwrap().unwrap().same_as(&c));
    assert_eq!(attempts.try_recv(), Ok(2), "the next call reconnected");
    // A batch on a dead session: every item unavailable, then reconnected.
    kill(1);
    let ids = [c.id.clone(), CredentialId::new("ns", "other")];
    for r in store.read_many(&ids) {
        assert!(r.unwrap_err().is_unavailable());
    }
    let again = store.read_many(&ids);
    assert!(again[0].as_ref().unwrap().as_ref().unwrap().same_as(&c));
    assert_eq!(attempts.try_recv(), Ok(3), "the next batch reconnected");
    assert!(attempts.try_recv().is_err());
}

/// The Secret Service errors that mean the connection is gone (a broken
/// socket here) make the store unavailable, not one item's failure.
#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
#[test]
fn a_broken_connection_is_a_lost_session_not_an_item_error() {
    use ::secret_service::Error as SsError;
    let broken = SsError::Zbus(std::io::Error::other("broken pipe").into());
    assert!(super::secret_service::gone(&broken));
    match super::secret_service::ss_fail(broken) {
        Fail::Unavailable(why) => assert!(why.contains("lost"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(!super::secret_service::gone(&SsError::Locked));
    assert!(!super::secret_service::gone(&SsError::NoResult));
}

#[test]
fn windows_limit_counts_utf16_bytes_in_check_and_write() {
    let store = KeyringStore::with_backend(
        spec("svc-win"),
        "svc-win".into(),
        Duration::from_secs(5),
        Limit {
            max: Some(WINDOWS_MAX_SECRET_BYTES),
            utf16: true,
            name: "Windows Credential Manager",
        },
        Box::new(|_| Err(Fail::Unavailable("not connected in this test".into()))),
    )
    .unwrap();
    let id = CredentialId::new("a", "b");
    let fits = Credential::new(id.clone(), Kind::ApiKey, "x".repeat(1280));
    assert_eq!(store.check(&fits), None);
    let long = Credential::new(id.clone(), Kind::ApiKey, "x".repeat(1281));
    let why = store.check(&long).expect("too long");
    assert!(why.contains("2562 bytes") && why.contains("2560"), "{why}");
    assert!(!why.contains("xxxx"), "{why}");
    // write refuses before it reaches the keyring.
    let err = store.write(&long).unwrap_err();
    assert!(matches!(err, StoreError::Item { .. }), "{err}");
    assert!(
        store.probe().max_secret_len == Some(WINDOWS_MAX_SECRET_BYTES),
        "dry runs see the limit"
    );
}

/// An in-memory keyring-core store with service search, standing in
/// for Keychain / Credential Manager.
type Shared = Arc<Mutex<BTreeMap<(String, String), Vec<u8>>>>;

#[derive(Default)]
struct MemStore(Shared);
struct MemCred {
    map: Shared,
    key: (String, String),
}
impl CredentialApi for MemCred {
    fn set_secret(&self, secret: &[u8]) -> keyring_core::Result<()> {
        self.map
            .lock()
            .unwrap()
            .insert(self.key.clone(), secret.to_vec());
        Ok(())
    }
    fn get_secret(&self) -> keyring_core::Result<Vec<u8>> {
        self.map
            .lock()
            .unwrap()
            .get(&self.key)
            .cloned()
            .ok_or(keyring_core::Error::NoEntry)
    }
    fn delete_credential(&self) -> keyring_core::Result<()> {
        self.map
            .lock()
            .unwrap()
            .remove(&self.key)
            .map(|_| ())
            .ok_or(keyring_core::Error::NoEntry)
    }
    fn get_credential(&self) -> keyring_core::Result<Option<Arc<keyring_core::Credential>>> {
        Ok(None)
    }
    fn get_specifiers(&self) -> Option<(String, String)> {
        Some(self.key.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
impl CredentialStoreApi for MemStore {
    fn vendor(&self) -> String {
        "test".into()
    }
    fn id(&self) -> String {
        "mem".into()
    }
    fn build(
        &self,
        service: &str,
        user: &str,
        _: Option<&HashMap<&str, &str>>,
    ) -> keyring_core::Result<keyring_core::Entry> {
        Ok(keyring_core::Entry::new_with_credential(Arc::new(
            MemCred {
                map: self.0.clone(),
                key: (service.into(), user.into()),
            },
        )))
    }
    fn search(&self, spec: &HashMap<&str, &str>) -> keyring_core::Result<Vec<keyring_core::Entry>> {
        let service = spec.get("service").copied().unwrap_or_default();
        let keys: Vec<_> = self
            .0
            .lock()
            .unwrap()
            .keys()
            .filter(|(s, _)| s == service)
            .cloned()
            .collect();
        Ok(keys
            .into_iter()
            .map(|key| {
                keyring_core::Entry::new_with_credential(Arc::new(MemCred {
                    map: self.0.clone(),
                    key,
                }))
            })
            .collect())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn mem_keyring(service: &str) -> (KeyringStore, Shared) {
    let map = Shared::default();
    (mem_keyring_on(map.clone(), service), map)
}

/// A keyring store over `map`: two of them are two clients of one keyring.
fn mem_keyring_on(map: Shared, service: &str) -> KeyringStore {
    let mem = MemStore(map);
    let store: Arc<keyring_core::CredentialStore> = Arc::new(mem);
    KeyringStore::with_backend(
        spec(service),
        service.into(),
        Duration::from_secs(5),
        NO_LIMIT,
        Box::new(move |svc| {
            Ok(Box::new(CompanionBackend::new(store.clone(), svc)) as Box<dyn Backend>)
        }),
    )
    .unwrap()
}

#[test]
fn compare_and_delete_keeps_a_value_another_client_wrote_meanwhile() {
    let (s, map) = mem_keyring("svc-cad");
    let mut meta = Metadata::new();
    meta.insert("label".into(), "x".into());
    let orig =
        Credential::new(CredentialId::new("ns", "k"), Kind::ApiKey, "v1").with_metadata(meta);
    crate::store::test_support::assert_compare_and_delete_keeps_a_racing_write(
        &s,
        Box::new(mem_keyring_on(map, "svc-cad")),
        &orig,
        &Credential::new(CredentialId::new("ns", "k"), Kind::ApiKey, "theirs"),
    );
}

/// The keyring's compare-and-write runs on its worker as one job, not as
/// the read-then-write default: a value another client writes right after
/// a store-level read is never overwritten (this fails with the default).
#[test]
fn compare_and_replace_keeps_a_value_another_client_wrote_meanwhile() {
    let (s, map) = mem_keyring("svc-car");
    let mut meta = Metadata::new();
    meta.insert("label".into(), "x".into());
    let id = CredentialId::new("ns", "k");
    crate::store::test_support::assert_compare_and_replace_keeps_a_racing_write(
        &s,
        Box::new(mem_keyring_on(map, "svc-car")),
        &Credential::new(id.clone(), Kind::ApiKey, "ours").with_metadata(meta),
        &Credential::new(id.clone(), Kind::ApiKey, "old"),
        &Credential::new(id, Kind::ApiKey, "theirs"),
    );
}

#[test]
fn windows_search_pattern_escapes_the_service() {
    assert_eq!(
        super::companion::regex_escape("my.svc (x)+#"),
        "my\\.svc \\(x\\)\\+\\#"
    );
}

#[test]
fn companion_entries_carry_kind_and_metadata() {
    let (store, map) = mem_keyring("svc");
    let mut meta = Metadata::new();
    meta.insert("expires_at".into(), 1790003600000i64.into());
    meta.insert("scopes".into(), serde_json::json!(["a", "b"]));
    let a = Credential::new(
        CredentialId::new("account:acc_ü", "oauth_refresh_token"),
        Kind::OauthRefresh,
        "refresh-ключ-1234567890",
    )
    .with_metadata(meta);
    let b = Credential::new(
        CredentialId::new("openai", "api_key"),
        Kind::ApiKey,
        "sk-abc",
    );
    store.write(&a).unwrap();
    store.write(&b).unwrap();
    let listing = store.list().unwrap();
    assert!(listing.errors.is_empty(), "{:?}", listing.errors);
    let ids: Vec<String> = listing.entries.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, ["account:acc_ü/oauth_refresh_token", "openai/api_key"]);
    assert_eq!(listing.entries[0].metadata, a.metadata);
    let back = store.read(&a.id).unwrap().unwrap();
    assert!(back.same_as(&a));
    assert_eq!(store.probe().item_count, Some(2));
    // The value entry holds only the secret; the companion the rest.
    let raw = map
        .lock()
        .unwrap()
        .get(&("svc".into(), "openai/api_key".into()))
        .cloned();
    assert_eq!(raw.as_deref(), Some(&b"sk-abc"[..]));
    assert!(store.delete(&a.id).unwrap());
    assert!(!store.delete(&a.id).unwrap());
    assert!(store.read(&a.id).unwrap().is_none());
    assert_eq!(
        map.lock().unwrap().len(),
        2,
        "value and companion of b remain"
    );
}

#[test]
fn bad_entries_are_reported_by_location_without_their_content() {
    let (store, map) = mem_keyring("svc2");
    {
        let mut m = map.lock().unwrap();
        m.insert(
            ("svc2".into(), "plainuser".into()),
            b"hunter2-secret".to_vec(),
        );
        m.insert(("svc2".into(), "ns/bad".into()), b"sk-value-9".to_vec());
        m.insert(
            ("svc2#credshift".into(), "ns/bad".into()),
            br#"{"kind":"api_key","metadata":"sk-leaky-string"}"#.to_vec(),
        );
        m.insert(("svc2".into(), "ns/broken".into()), b"v".to_vec());
        m.insert(
            ("svc2#credshift".into(), "ns/broken".into()),
            b"{not json sk-leaky-2".to_vec(),
        );
        m.insert(("svc2".into(), "ns/good".into()), b"v2".to_vec());
    }
    let listing = store.list().unwrap();
    let ids: Vec<String> = listing.entries.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, ["ns/good"], "{:?}", listing.errors);
    assert_eq!(
        listing.entries[0].kind,
        Kind::Other,
        "guessed from the name"
    );
    assert_eq!(listing.errors.len(), 3, "{:?}", listing.errors);
    let text = format!("{:?}", listing.errors);
    assert!(
        text.contains("plainuser") && text.contains("ns/bad"),
        "{text}"
    );
    assert!(
        !text.contains("leaky") && !text.contains("hunter2"),
        "{text}"
    );
    let err = store
        .read(&CredentialId::new("ns", "bad"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("keyring:svc2 ns/bad"), "{err}");
    assert!(!err.contains("leaky") && !err.contains("sk-value"), "{err}");
}

/// A backend whose batches take `per_item` per item, ticking after each
/// one or not at all.
struct Slow {
    per_item: Duration,
    ticks: bool,
}
impl Backend for Slow {
    fn state(&mut self) -> Result<State, Fail> {
        Ok(State::default())
    }
    fn list(&mut self) -> Result<Vec<Listed>, Fail> {
        Ok(Vec::new())
    }
    fn get(&mut self, _: &str) -> Result<Option<Stored>, Fail> {
        Ok(None)
    }
    fn set(&mut self, _: &str, _: &Secret, _: &str, _: &str) -> Result<(), Fail> {
        std::thread::sleep(self.per_item);
        Ok(())
    }
    fn delete(&mut self, _: &str) -> Result<bool, Fail> {
        Ok(false)
    }
    fn set_many(&mut self, items: &[ToWrite], tick: Tick) -> Vec<Result<(), Fail>> {
        items
            .iter()
            .map(|w| {
                let r = self.set(&w.user, &w.secret, w.kind, &w.metadata);
                if self.ticks {
                    tick();
                }
                r
            })
            .collect()
    }
}

fn slow_store(ticks: bool) -> KeyringStore {
    KeyringStore::with_backend(
        spec("svc-slow"),
        "svc-slow".into(),
        Duration::from_millis(300),
        NO_LIMIT,
        Box::new(move |_| {
            Ok(Box::new(Slow {
                per_item: Duration::from_millis(120),
                ticks,
            }) as Box<dyn Backend>)
        }),
    )
    .unwrap()
}

fn six() -> Vec<Credential> {
    (0..6)
        .map(|i| {
            Credential::new(
                CredentialId::new("ns", format!("k{i}")),
                Kind::ApiKey,
                "sk-slow",
            )
        })
        .collect()
}

#[test]
fn a_batch_that_keeps_moving_outlives_the_timeout() {
    // 6 x 120 ms is more than the 300 ms timeout, but each item ticks.
    let store = slow_store(true);
    let results = store.write_many(&six());
    assert_eq!(results.len(), 6);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

#[test]
fn a_batch_that_stops_moving_times_out_per_item_by_name() {
    let store = slow_store(false);
    let results = store.write_many(&six());
    assert_eq!(results.len(), 6);
    for r in &results {
        let msg = r.as_ref().unwrap_err().to_string();
        assert!(
            msg.contains("`write_many`") && msg.contains("timed out"),
            "{msg}"
        );
        assert!(msg.starts_with("keyring:svc-slow"), "{msg}");
        assert!(!msg.contains("sk-slow"), "{msg}");
    }
    // The store is stuck now: later calls fail fast instead of queueing.
    let err = store.read(&CredentialId::new("ns", "k0")).unwrap_err();
    assert!(
        err.to_string()
            .contains("earlier keyring call (write_many)"),
        "{err}"
    );
}

#[test]
fn batches_over_a_looping_backend_equal_single_calls_and_fail_per_item() {
    let (store, map) = mem_keyring("svc-loop");
    let creds = vec![
        Credential::new(CredentialId::new("a", "one"), Kind::ApiKey, "v1"),
        Credential::new(CredentialId::new("a", "two"), Kind::Password, "v2"),
    ];
    let too_long = Limit {
        max: Some(3),
        utf16: false,
        name: "a small keyring",
    };
    for r in store.write_many(&creds) {
        r.unwrap();
    }
    map.lock().unwrap().insert(
        ("svc-loop#credshift".into(), "a/bad".into()),
        b"{not json".to_vec(),
    );
    map.lock()
        .unwrap()
        .insert(("svc-loop".into(), "a/bad".into()), b"v3".to_vec());
    let ids = [
        CredentialId::new("a", "one"),
        CredentialId::new("a", "bad"),
        CredentialId::new("a", "none"),
        CredentialId::new("a", "two"),
    ];
    let many = store.read_many(&ids);
    let one: Vec<_> = ids.iter().map(|i| store.read(i)).collect();
    assert_eq!(format!("{many:?}"), format!("{one:?}"));
    assert!(
        many[0]
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap()
            .same_as(&creds[0])
    );
    assert!(many[1].is_err() && many[2].as_ref().unwrap().is_none());
    let scan = store.read_all().unwrap();
    assert_eq!(scan.credentials.len(), 2);
    assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
    assert_eq!(
        format!("{:?}", store.delete_many(&ids)),
        "[Ok(true), Ok(true), Ok(false), Ok(true)]"
    );

    // The pre-flight check fails its own item only, before the keyring.
    let small = KeyringStore::with_backend(
        spec("svc-small"),
        "svc-small".into(),
        Duration::from_secs(5),
        too_long,
        Box::new(|_| Err(Fail::Unavailable("no keyring here".into()))),
    )
    .unwrap();
    let r = small.write_many(&[
        Credential::new(CredentialId::new("a", "long"), Kind::ApiKey, "long-value"),
        Credential::new(CredentialId::new("a", "ok"), Kind::ApiKey, "ok"),
    ]);
    let msgs: Vec<String> = r
        .iter()
        .map(|r| r.as_ref().unwrap_err().to_string())
        .collect();
    assert!(
        msgs[0].contains("a/long") && msgs[0].contains("too long"),
        "{msgs:?}"
    );
    assert!(!msgs[0].contains("long-value"), "{msgs:?}");
    assert!(msgs[1].contains("no keyring here"), "{msgs:?}");
}
