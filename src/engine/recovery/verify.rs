//! Verify: read back what a migration wrote and compare it with its fingerprints.

use super::*;

/// Items read back per `read_many`.
const VERIFY_BATCH: usize = 1024;

/// Read back what a migration wrote and compare it with the journal's
/// fingerprints (value, and metadata when the target keeps it).
pub fn verify(state_dir: &Path, id: &MigrationId, opts: &KeyOptions) -> Result<Report> {
    verify_with(state_dir, id, opts, &Control::default())
}

/// [`verify`] with progress (a `counts` event per item) and cancel (it
/// stops reading; the report counts what was read).
pub fn verify_with(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    ctl: &Control,
) -> Result<Report> {
    // Verify reads the target; the source is held shared when it is there
    // so no cleanup or other writer runs beside it. Before the locks only
    // the journal's first record is read (which stores, where); the whole
    // journal once, under them.
    let recovered = {
        let st = State::load_head(state_dir, id)?;
        session::recover_head(
            state_dir,
            &st,
            opts,
            Some(Use::READ_IF_THERE),
            Some(Use::READ),
        )?
    };
    // The items come from the open journal's state (the one copy).
    let Recovered {
        target,
        keys,
        mut journal,
        locks,
        ..
    } = recovered;
    let st = journal.state()?;
    let target = target.ok_or_else(|| EngineError::Refused("no target".into()))?;
    let fp = keys.fp;
    let keeps = target.probe().keeps_metadata;
    let mut failures = Vec::new();
    let mut ok = 0;
    let todo: Vec<&CredentialId> = st.verified_not_undone();
    let mut cancelled = false;
    // Read in batches, as a migration reads back (one `read` per item read
    // a whole-file store's file once per item: hours at 100,000 items).
    let mut read: std::vec::IntoIter<crate::error::Result<Option<Credential>>> =
        Vec::new().into_iter();
    for (n, cid) in todo.iter().copied().enumerate() {
        if ctl.cancelled() {
            cancelled = true;
            break;
        }
        if read.len() == 0 {
            let end = (n + VERIFY_BATCH).min(todo.len());
            let ids: Vec<CredentialId> = todo[n..end].iter().map(|&i| i.clone()).collect();
            read = target.read_many(&ids).into_iter();
        }
        let got = read
            .next()
            .unwrap_or_else(|| Err(StoreError::item(cid, "the store returned no result")));
        ctl.send(Progress::Counts(crate::engine::types::Counts {
            total: todo.len(),
            done: n,
            written: ok,
            failed: failures.len(),
            ..Default::default()
        }));
        // Only a damaged journal verifies an id it never planned: nothing to
        // compare with, so it cannot count as verified (finding A11).
        let Some(p) = st.planned_item(cid) else {
            failures.push(Failure {
                id: cid.clone(),
                error: "verified in the journal but not in its plan (the journal is damaged); \
                        nothing to compare the target with"
                    .into(),
            });
            continue;
        };
        let problem = match got {
            Ok(Some(c)) => {
                let value_ok =
                    p.fp.as_ref()
                        .is_some_and(|f| fingerprint::same(f, &fp.value(&c)));
                let meta_ok = !keeps
                    || p.mfp
                        .as_ref()
                        .is_some_and(|f| fingerprint::same(f, &fp.meta(&c)));
                match (value_ok, meta_ok) {
                    (true, true) => None,
                    (false, _) => Some("the value at the target differs from the one migrated"),
                    (true, false) => Some("the metadata at the target differs"),
                }
            }
            Ok(None) => Some("missing at the target"),
            Err(e) => {
                failures.push(Failure {
                    id: cid.clone(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        match problem {
            None => ok += 1,
            Some(msg) => failures.push(Failure {
                id: cid.clone(),
                error: msg.into(),
            }),
        }
    }
    drop(todo);
    journal.append(Record::VerifyRun {
        verified: ok,
        mismatched: failures.len(),
    })?;
    let st = journal.state()?;
    let mut report = st.report();
    report.verified = ok;
    report.failed = failures.len();
    report.failures = failures;
    report.cancelled = cancelled;
    // A stopped verify read only part: its counts are no verdict.
    let outcome = if cancelled {
        "cancelled"
    } else if report.failed == 0 {
        "verified"
    } else {
        "mismatched"
    };
    let counts = Totals {
        copied: ok,
        failed: report.failed,
        ..st.totals()
    };
    audit_action(state_dir, id, st, "verify", outcome, counts);
    report.notices = locks.notices();
    Ok(report)
}
