//! The documented test aids (docs/test-aids.md): environment variables that
//! make credshift fail on purpose, so tests can watch it recover. `main`
//! reads them all, once ([`TestAids::from_env`]), prints a warning for each
//! one that is active and [`install`]s them; the library only asks
//! [`get`], never the environment. Inert unless set (and in a library
//! user that installs none).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::store::faults::Faults;

/// Every test aid, as read from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestAids {
    /// `CREDSHIFT_FAULTS`: the rules (already checked), armed on every
    /// store opened.
    pub faults: Option<String>,
    /// `CREDSHIFT_CRASH_AT=K`: abort right after the K-th journal record.
    pub crash_at: Option<u64>,
    /// `CREDSHIFT_CRASH_IN_WRITE=NAME`: abort mid-write of the file NAME.
    pub crash_in_write: Option<OsString>,
    /// `CREDSHIFT_HOLD_LOCKS=PATH`: hold the locks until PATH is removed.
    pub hold_locks: Option<PathBuf>,
    /// `CREDSHIFT_PANIC_AFTER_DRAW=1`: the wizard panics after its first frame.
    pub panic_after_draw: bool,
}

/// Every variable [`TestAids::from_env`] reads.
pub const NAMES: [&str; 5] = [
    "CREDSHIFT_FAULTS",
    "CREDSHIFT_CRASH_AT",
    "CREDSHIFT_CRASH_IN_WRITE",
    "CREDSHIFT_HOLD_LOCKS",
    "CREDSHIFT_PANIC_AFTER_DRAW",
];

impl TestAids {
    /// The test aids `var` gives (`std::env::var_os` in `main`), with one
    /// warning per variable that is set: what it does, or why its value is
    /// ignored. A malformed `CREDSHIFT_FAULTS` is an error: a test that
    /// means to inject faults must not pass because none were.
    pub fn from_env(
        var: impl Fn(&str) -> Option<OsString>,
    ) -> Result<(TestAids, Vec<String>), String> {
        let mut aids = TestAids::default();
        let mut warnings = Vec::new();
        let mut warn = |s: String| warnings.push(format!("credshift: warning: {s}"));
        if let Some(v) = var("CREDSHIFT_FAULTS") {
            let v = v.to_string_lossy().into_owned();
            if let Err(e) = Faults::parse_strict(&v) {
                return Err(format!(
                    "CREDSHIFT_FAULTS (a test aid) is malformed: {e}; unset it or use \
                     OP:GLOB[,OP:GLOB...] with OP write, read, delete or lie"
                ));
            }
            warn(format!(
                "CREDSHIFT_FAULTS={v} is set (a test aid): matching store operations fail on \
                 purpose"
            ));
            aids.faults = Some(v);
        }
        if let Some(v) = var("CREDSHIFT_CRASH_AT") {
            let v = v.to_string_lossy();
            match parse_crash_at(&v) {
                Some(k) => {
                    warn(format!(
                        "CREDSHIFT_CRASH_AT={k} is set (a test aid): the process aborts right \
                         after its journal record {k}"
                    ));
                    aids.crash_at = Some(k);
                }
                None => warn(format!(
                    "CREDSHIFT_CRASH_AT is set to {v:?}, which is not a record number (1, 2, \
                     ...); ignored"
                )),
            }
        }
        if let Some(v) = var("CREDSHIFT_CRASH_IN_WRITE") {
            warn(format!(
                "CREDSHIFT_CRASH_IN_WRITE={} is set (a test aid): the process aborts in the \
                 middle of writing that file",
                v.to_string_lossy()
            ));
            aids.crash_in_write = Some(v);
        }
        if let Some(v) = var("CREDSHIFT_HOLD_LOCKS") {
            let path = PathBuf::from(v);
            warn(format!(
                "CREDSHIFT_HOLD_LOCKS={} is set (a test aid): an operation holds its locks \
                 until that file is removed",
                path.display()
            ));
            aids.hold_locks = Some(path);
        }
        if let Some(v) = var("CREDSHIFT_PANIC_AFTER_DRAW") {
            if v == "1" {
                warn(
                    "CREDSHIFT_PANIC_AFTER_DRAW=1 is set (a test aid): the wizard panics after \
                     drawing its first screen"
                        .into(),
                );
                aids.panic_after_draw = true;
            } else {
                warn(format!(
                    "CREDSHIFT_PANIC_AFTER_DRAW is set to {:?}, not 1; ignored",
                    v.to_string_lossy()
                ));
            }
        }
        Ok((aids, warnings))
    }
}

/// `CREDSHIFT_CRASH_AT`: exactly a decimal number from 1 (no sign, no
/// spaces).
pub fn parse_crash_at(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|n| *n > 0)
}

static AIDS: OnceLock<TestAids> = OnceLock::new();

/// Make `aids` the process's test aids (`main`, once, before any work).
/// A second call changes nothing.
pub fn install(aids: TestAids) {
    let _ = AIDS.set(aids);
}

/// The installed test aids; none when nothing was installed.
pub fn get() -> &'static TestAids {
    AIDS.get_or_init(TestAids::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<(TestAids, Vec<String>), String> {
        TestAids::from_env(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn nothing_set_is_no_aid_and_no_warning() {
        assert_eq!(read(&[]).unwrap(), (TestAids::default(), vec![]));
    }

    #[test]
    fn every_aid_set_is_read_and_warned_about_by_name() {
        let all = [
            ("CREDSHIFT_FAULTS", "write:env/*"),
            ("CREDSHIFT_CRASH_AT", "3"),
            ("CREDSHIFT_CRASH_IN_WRITE", "t.env"),
            ("CREDSHIFT_HOLD_LOCKS", "/tmp/hold"),
            ("CREDSHIFT_PANIC_AFTER_DRAW", "1"),
        ];
        let (aids, warnings) = read(&all).unwrap();
        assert_eq!(
            aids,
            TestAids {
                faults: Some("write:env/*".into()),
                crash_at: Some(3),
                crash_in_write: Some("t.env".into()),
                hold_locks: Some("/tmp/hold".into()),
                panic_after_draw: true,
            }
        );
        assert_eq!(warnings.len(), NAMES.len(), "{warnings:#?}");
        for (name, w) in NAMES.iter().zip(&warnings) {
            assert!(w.starts_with(&format!("credshift: warning: {name}")), "{w}");
            assert!(w.contains("a test aid"), "{w}");
        }
    }

    #[test]
    fn a_wrong_value_is_ignored_with_a_warning_and_bad_faults_refused() {
        let (aids, warnings) = read(&[
            ("CREDSHIFT_CRASH_AT", "3x"),
            ("CREDSHIFT_PANIC_AFTER_DRAW", "yes"),
        ])
        .unwrap();
        assert_eq!(aids, TestAids::default());
        assert_eq!(warnings.len(), 2);
        assert!(
            warnings.iter().all(|w| w.contains("ignored")),
            "{warnings:#?}"
        );
        let e = read(&[("CREDSHIFT_FAULTS", "explode:*")]).unwrap_err();
        assert!(e.contains("CREDSHIFT_FAULTS"), "{e}");
    }

    #[test]
    fn the_crash_point_is_an_exact_record_number() {
        assert_eq!(parse_crash_at("1"), Some(1));
        assert_eq!(parse_crash_at("42"), Some(42));
        for bad in [
            "",
            "0",
            "-1",
            "+3",
            " 3",
            "3 ",
            "3x",
            "x",
            "1.5",
            "1e3",
            "99999999999999999999",
        ] {
            assert_eq!(parse_crash_at(bad), None, "{bad:?}");
        }
    }
}
