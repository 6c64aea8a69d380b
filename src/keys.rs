//! Where passphrases and keys come from. Never argv: a file, a named
//! environment variable, `CREDSHIFT_PASSPHRASE`, or an interactive prompt;
//! agent-prompttrain's `CREDENTIAL_ENCRYPTION_KEY` and Laravel's `APP_KEY`
//! from their own variables (or files named by `--prompttrain-key-file` /
//! `--app-key-file`).

use std::path::Path;

use crate::credential::Secret;
use crate::error::{Result, StoreError};

pub const ENV_PASSPHRASE: &str = "CREDSHIFT_PASSPHRASE";
pub const ENV_PROMPTTRAIN_KEY: &str = "CREDENTIAL_ENCRYPTION_KEY";
pub const ENV_APP_KEY: &str = "APP_KEY";

/// Read a secret from a file: the first line, without its line ending.
/// An empty file is an error.
pub fn secret_from_file(path: &Path) -> Result<Secret> {
    let text = crate::fsutil::read_text(path)?;
    let first = text.lines().next().unwrap_or("").to_string();
    drop(zeroize::Zeroizing::new(text));
    if first.is_empty() {
        return Err(StoreError::MissingKey {
            location: path.display().to_string(),
            message: "the file is empty".into(),
        });
    }
    Ok(Secret::new(first))
}

/// Refuse a key or passphrase file that group or others may read or write
/// (any of the mode bits 0o077), as ssh does for private keys: such a key
/// is no longer only the owner's. The error names the file, the flag it
/// came from and the fix. A file that does not exist is left to the reader
/// (its error names the file too).
pub fn require_private_file(path: &Path, flag: &str) -> std::result::Result<(), String> {
    let Some(mode) = crate::fsutil::mode_of(path) else {
        return Ok(());
    };
    if mode & 0o077 == 0 {
        return Ok(());
    }
    Err(format!(
        "{flag} {}: the file is accessible to group or others (mode {:03o}); \
         refusing a key that is not only yours. Fix: chmod 600 {}",
        path.display(),
        mode & 0o777,
        path.display()
    ))
}

/// A secret from an environment variable, if set and non-empty.
pub fn secret_from_env(var: &str) -> Option<Secret> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

/// The passphrase per the CLI contract: `--passphrase-file`, then
/// `--passphrase-env VAR`, then `CREDSHIFT_PASSPHRASE`.
pub fn resolve_passphrase(file: Option<&Path>, env_var: Option<&str>) -> Result<Option<Secret>> {
    if let Some(f) = file {
        return secret_from_file(f).map(Some);
    }
    if let Some(var) = env_var {
        return match secret_from_env(var) {
            Some(s) => Ok(Some(s)),
            None => Err(StoreError::MissingKey {
                location: format!("${var}"),
                message: "--passphrase-env names a variable that is not set or empty".into(),
            }),
        };
    }
    Ok(secret_from_env(ENV_PASSPHRASE))
}

/// The fewest characters (Unicode scalar values) a passphrase for new
/// encrypted data may have. At 600,000 PBKDF2 rounds a guess costs about a
/// quarter second on one core; eight characters from even a small alphabet
/// put a search out of reach, one character takes a minute.
pub const MIN_NEW_PASSPHRASE: usize = 8;

/// The rule, in the words every refusal uses (the page says the same).
pub const PASSPHRASE_RULE: &str =
    "at least 8 characters, not one character repeated, and not one of the most common passwords";

/// The commonest passwords of 8 characters or more (compared ignoring
/// case), from the published top-100 lists (SecLists, NCSC): what an
/// attacker tries first. `assets/web/envelope.js` holds the same list.
pub const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "12345678",
    "123456789",
    "1234567890",
    "0123456789",
    "987654321",
    "87654321",
    "11111111",
    "00000000",
    "88888888",
    "12341234",
    "11223344",
    "123123123",
    "123456123",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "q1w2e3r4",
    "q1w2e3r4t5",
    "1qaz2wsx",
    "zaq12wsx",
    "qazwsxedc",
    "qwertyui",
    "qwertyuiop",
    "qwerty123",
    "qwerty12",
    "1234qwer",
    "qwer1234",
    "asdfghjk",
    "asdfghjkl",
    "abcd1234",
    "abc12345",
    "aa123456",
    "iloveyou",
    "iloveyou1",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "basketball",
    "welcome1",
    "welcome123",
    "trustno1",
    "superman",
    "starwars",
    "letmein1",
    "changeme",
    "administrator",
    "admin123",
    "computer",
    "whatever",
    "michael1",
    "jennifer",
    "corvette",
    "mercedes",
    "liverpool",
    "chelsea1",
    "blink182",
    "charlie1",
    "internet",
    "samsung1",
    "abcdefgh",
    "qwertyuio",
    "zxcvbnm1",
    "zxcvbnma",
    "passpass",
    "testtest",
    "test1234",
    "secret123",
    "credshift",
];

/// Why a passphrase for new encrypted data is refused. Names the rule,
/// never the passphrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassphrase {
    #[error(
        "the passphrase has only {chars} character{}; a new passphrase needs {}",
        if *chars == 1 { "" } else { "s" },
        PASSPHRASE_RULE
    )]
    TooShort { chars: usize },
    #[error(
        "the passphrase is one character repeated; a new passphrase needs {}",
        PASSPHRASE_RULE
    )]
    Repeated,
    #[error(
        "the passphrase is one of the most common passwords; a new passphrase needs {}",
        PASSPHRASE_RULE
    )]
    Common,
}

/// The one rule every new envelope's passphrase passes (bundles, backups,
/// encrypted targets, the wizard; the page applies the same in
/// `envelope.js`). Opening existing data never asks it.
pub fn check_new_passphrase(p: &str) -> std::result::Result<(), WeakPassphrase> {
    let chars = p.chars().count();
    if chars < MIN_NEW_PASSPHRASE {
        return Err(WeakPassphrase::TooShort { chars });
    }
    let mut it = p.chars();
    let first = it.next();
    if it.all(|c| Some(c) == first) {
        return Err(WeakPassphrase::Repeated);
    }
    let lower = zeroize::Zeroizing::new(p.to_lowercase());
    if COMMON_PASSWORDS.iter().any(|c| *c == lower.as_str()) {
        return Err(WeakPassphrase::Common);
    }
    Ok(())
}

/// Read a passphrase from the terminal without echo. `None` when stdin is
/// not a terminal.
pub fn prompt_passphrase(prompt: &str) -> Option<Secret> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let saved = tcgetattr(&stdin).ok();
    if let Some(mut term) = saved.clone() {
        term.local_modes.remove(LocalModes::ECHO);
        let _ = tcsetattr(&stdin, OptionalActions::Now, &term);
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = tcsetattr(&stdin, OptionalActions::Now, saved);
    }
    eprintln!();
    read.ok()?;
    let s = line.trim_end_matches(['\n', '\r']).to_string();
    (!s.is_empty()).then(|| Secret::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_passphrase_takes_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "correct horse\r\nignored\n").unwrap();
        assert_eq!(secret_from_file(&p).unwrap().expose(), "correct horse");
        std::fs::write(&p, "").unwrap();
        assert!(secret_from_file(&p).is_err());
    }

    #[test]
    fn only_owner_only_files_are_accepted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "k").unwrap();
        for mode in [0o600, 0o400, 0o700] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(require_private_file(&p, "--key-file"), Ok(()), "{mode:o}");
        }
        for mode in [0o640, 0o604, 0o644, 0o620, 0o602, 0o610] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = require_private_file(&p, "--key-file").unwrap_err();
            assert!(e.contains("--key-file"), "{e}");
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert!(e.contains(&format!("chmod 600 {}", p.display())), "{e}");
            assert!(e.contains(&format!("{mode:03o}")), "{e}");
        }
        // Missing: the reader reports it.
        assert_eq!(
            require_private_file(&dir.path().join("nope"), "--key-file"),
            Ok(())
        );
    }

    #[test]
    fn new_passphrases_follow_one_rule() {
        for ok in ["correct horse", "8 chars!", "Tr0ub4dor&3x", "ünïcödé!"] {
            assert_eq!(check_new_passphrase(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_new_passphrase("x"),
            Err(WeakPassphrase::TooShort { chars: 1 })
        );
        // Characters, not bytes: 7 two-byte characters are still 7.
        assert_eq!(
            check_new_passphrase("ééééééa"),
            Err(WeakPassphrase::TooShort { chars: 7 })
        );
        assert_eq!(
            check_new_passphrase("aaaaaaaaaa"),
            Err(WeakPassphrase::Repeated)
        );
        for common in [
            "password",
            "PassWord1",
            "12345678",
            "qwertyuiop",
            "iloveyou",
        ] {
            assert_eq!(
                check_new_passphrase(common),
                Err(WeakPassphrase::Common),
                "{common}"
            );
        }
        let msg = WeakPassphrase::TooShort { chars: 3 }.to_string();
        assert!(
            msg.contains("at least 8 characters") && msg.contains("3"),
            "{msg}"
        );
        // The deny list only holds what the length rule lets through.
        assert!(COMMON_PASSWORDS.iter().all(|c| c.chars().count() >= 8));
        assert!(COMMON_PASSWORDS.iter().all(|c| *c == c.to_lowercase()));
    }

    #[test]
    fn named_env_var_must_be_set() {
        let e = resolve_passphrase(None, Some("CREDSHIFT_TEST_SURELY_UNSET_VAR")).unwrap_err();
        assert!(e.to_string().contains("CREDSHIFT_TEST_SURELY_UNSET_VAR"));
    }
}
