use super::*;

// ---- fingerprint keys ------------------------------------------------------

#[test]
fn with_a_passphrase_the_state_dir_alone_cannot_confirm_a_guess() {
    let state = tempfile::tempdir().unwrap();
    let secret = "demo";
    let src = MemStore::new(
        StoreSpec::Dotenv("a.env".into()),
        vec![cred("env/APP_NAME", secret)],
        true,
    );
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
    let opts = KeyOptions {
        passphrase: Some(crate::credential::Secret::new("correct horse battery")),
        kdf_iterations: 1000,
        allow_weak_kdf: true,
        ..KeyOptions::default()
    };
    let h = start_with_stores(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(dst.clone()),
        state.path(),
        &opts,
        Default::default(),
    )
    .unwrap();
    let _: Vec<Progress> = h.events.iter().collect();
    let r = h.join().unwrap();
    assert_eq!(r.copied, 1);
    let st = state::State::load(state.path(), &r.migration_id).unwrap();
    let journaled = st
        .planned_item(&"env/APP_NAME".parse().unwrap())
        .and_then(|p| p.fp.clone())
        .unwrap();
    let guess = cred("env/APP_NAME", secret);
    // No key file beside the journal; no file in the state dir works as one.
    assert!(!st.dir.join(fingerprint::KEY_FILE).exists());
    let mut files = Vec::new();
    let mut stack = vec![state.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(!files.is_empty());
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for k in [
            fingerprint::FpKey::derive(&bytes, &r.migration_id.0),
            fingerprint::FpKey::derive(&bytes[..bytes.len().min(32)], &r.migration_id.0),
        ] {
            assert!(
                !fingerprint::same(&k.value(&guess), &journaled),
                "{} confirms the guess",
                f.display()
            );
        }
    }
    // With the passphrase, recovery derives the same key again.
    let keys = execute::recover_keys(&st, &opts).unwrap();
    assert!(fingerprint::same(&keys.fp.value(&guess), &journaled));
    let wrong = KeyOptions {
        passphrase: Some(crate::credential::Secret::new("wrong passphrase")),
        ..opts.clone()
    };
    // A wrong passphrase is refused outright (proven on the backup), never
    // turned into keys whose fingerprints make every value "differ".
    assert!(matches!(
        execute::recover_keys(&st, &wrong),
        Err(crate::engine::EngineError::WrongPassphrase { .. })
    ));
}
