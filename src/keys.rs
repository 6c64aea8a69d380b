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

/// Read a passphrase from the terminal without echo. `None` when stdin is
/// not a terminal.
pub fn prompt_passphrase(prompt: &str) -> Option<Secret> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios calls on the process's own stdin, restored below.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    let have_term = unsafe { libc::tcgetattr(fd, &mut term) } == 0;
    let saved = term;
    if have_term {
        term.c_lflag &= !libc::ECHO;
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    if have_term {
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
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
    fn named_env_var_must_be_set() {
        let e = resolve_passphrase(None, Some("CREDSHIFT_TEST_SURELY_UNSET_VAR")).unwrap_err();
        assert!(e.to_string().contains("CREDSHIFT_TEST_SURELY_UNSET_VAR"));
    }
}
