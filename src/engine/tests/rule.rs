use super::*;

// ---- the more-than-half rule, as one table ----------------------------

/// The rule pinned by hand: (items, outcomes in plan order with `x` for a
/// failing write, rolled back). Every row below is also covered by the
/// exhaustive run that follows; these say what the rule is.
const RULE: &[(usize, &str, bool)] = &[
    (1, ".", false),
    (1, "x", true),
    (2, "x.", false),
    (2, ".x", false),
    (2, "xx", true),
    (3, "x..", false),
    (3, ".xx", true), // the last item triggers it
    (3, "xx.", true),
    (4, "xx..", false),
    (4, "..xx", false),
    (4, ".xxx", true), // the last item
    (4, "xxx.", true),
    (5, "..xxx", true), // the last item
    (5, "x.x..", false),
    (6, "x.x.x.", true),
    (7, "...xxxx", true), // the last item
    (7, ".x.x.x.", false),
    (8, ".x.x.x.x", false),
    (8, "xx..xx..", true),
    (8, ".......x", false),
    (8, "xxxxxxxx", true),
];

/// Run one pattern through the engine (batched): the report, the target
/// afterwards, and what the target holds when nothing is rolled back.
type PatternRun = (Report, Vec<(String, String)>, Vec<(String, String)>);

fn run_pattern(n: usize, failing: &[bool]) -> PatternRun {
    let state = tempfile::tempdir().unwrap();
    let items = source_items(n);
    let spec = |name: &str| StoreSpec::Dotenv(state.path().join(name));
    let src = MemStore::new(spec("a.env"), items.clone(), true);
    let before = vec![cred("zz/unrelated", "untouched-value")];
    let dst = MemStore::new(spec("b.env"), before, true);
    let globs: Vec<String> = (0..n)
        .filter(|i| failing[*i])
        .map(|i| format!("write:svc{i:02}/api_key"))
        .collect();
    let (r, _) = run_faulty(
        &src,
        &dst,
        ConflictPolicy::Skip,
        &globs.join(","),
        state.path(),
    );
    let mut expected_if_kept = vec![("zz/unrelated".to_string(), "untouched-value".to_string())];
    for (i, c) in items.iter().enumerate() {
        if !failing[i] {
            expected_if_kept.push((c.id.to_string(), c.secret.expose().to_string()));
        }
    }
    expected_if_kept.sort();
    (r, values(&dst), expected_if_kept)
}

/// Check one pattern against the rule applied item by item; `Err` says how
/// the engine differed.
fn check_pattern(n: usize, failing: &[bool]) -> std::result::Result<(), String> {
    let mut failed = 0;
    let mut expect = false;
    for (k, f) in failing.iter().enumerate() {
        failed += usize::from(*f);
        expect |= exceeds_failure_limit(k + 1, failed, n);
    }
    let (r, after, kept) = run_pattern(n, failing);
    let label: String = failing.iter().map(|f| if *f { 'x' } else { '.' }).collect();
    let unrelated = vec![("zz/unrelated".to_string(), "untouched-value".to_string())];
    let n_failing = failing.iter().filter(|f| **f).count();
    let ok = if expect {
        r.rolled_back && after == unrelated && r.copied == 0
    } else {
        !r.rolled_back && after == kept && r.failed == n_failing && r.copied + r.failed == n
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{n} items {label}: expected rolled_back={expect}, got {r:?}, target {after:?}"
        ))
    }
}

#[test]
fn the_more_than_half_rule_is_one_table_over_totals_1_to_8() {
    // The hand-written rows pin the rule itself.
    for (n, pattern, rolled_back) in RULE {
        let failing: Vec<bool> = pattern.chars().map(|c| c == 'x').collect();
        assert_eq!(failing.len(), *n);
        let mut failed = 0;
        let mut by_rule = false;
        for (k, f) in failing.iter().enumerate() {
            failed += usize::from(*f);
            by_rule |= exceeds_failure_limit(k + 1, failed, *n);
        }
        assert_eq!(by_rule, *rolled_back, "the rule, {n} items {pattern}");
    }
    // Every failing subset of every total 1..=8 goes through the batched
    // engine: it stops exactly when the rule, applied item by item, says
    // so, and then the target is exactly as before.
    let cases: Vec<Vec<bool>> = (1..=8usize)
        .flat_map(|n| (0u32..(1 << n)).map(move |m| (0..n).map(|i| m & (1 << i) != 0).collect()))
        .collect();
    assert_eq!(cases.len(), 510);
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(8))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|f| check_pattern(f.len(), f).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        errors.is_empty(),
        "{} patterns differ:\n{}",
        errors.len(),
        errors.join("\n")
    );
}
