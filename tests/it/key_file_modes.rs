//! A key or passphrase file that group or others can read is refused
//! (exit 2, naming the file and the `chmod 600` fix), as ssh does for
//! private keys (issue 11.4). One test per flag; 0600 and 0400 pass.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const FLAGS: &[&str] = &[
    "--key-file",
    "--passphrase-file",
    "--prompttrain-key-file",
    "--app-key-file",
];

fn run(dir: &Path, flag: &str, file: &Path) -> (Option<i32>, String) {
    let env = dir.join("app.env");
    std::fs::write(&env, "OPENAI_API_KEY=sk-test-value\n").unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_credshift"))
        .args(["inventory", "--from"])
        .arg(format!("dotenv:{}", env.display()))
        .arg(flag)
        .arg(file)
        .env("CREDSHIFT_STATE_DIR", dir.join("state"))
        .env_remove("CREDSHIFT_PASSPHRASE")
        .env_remove("APP_KEY")
        .env_remove("CREDENTIAL_ENCRYPTION_KEY")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn key_file(dir: &Path, mode: u32) -> std::path::PathBuf {
    let p = dir.join(format!("key-{mode:o}"));
    // A key that every reader accepts: 64 hex characters, one line.
    std::fs::write(&p, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn refused_when_others_can_read(flag: &str) {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660, 0o606] {
        let file = key_file(dir.path(), mode);
        let (code, stderr) = run(dir.path(), flag, &file);
        assert_eq!(code, Some(2), "{flag} mode {mode:o}: {stderr}");
        assert!(stderr.contains(flag), "{stderr}");
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
        assert!(
            stderr.contains(&format!("chmod 600 {}", file.display())),
            "{stderr}"
        );
        assert!(
            !stderr.contains(&"ab".repeat(32)),
            "the key is never printed"
        );
    }
    for mode in [0o600, 0o400] {
        let file = key_file(dir.path(), mode);
        let (code, stderr) = run(dir.path(), flag, &file);
        assert_eq!(code, Some(0), "{flag} mode {mode:o}: {stderr}");
    }
}

#[test]
fn key_file_readable_by_others_is_refused() {
    refused_when_others_can_read(FLAGS[0]);
}

#[test]
fn passphrase_file_readable_by_others_is_refused() {
    refused_when_others_can_read(FLAGS[1]);
}

#[test]
fn prompttrain_key_file_readable_by_others_is_refused() {
    refused_when_others_can_read(FLAGS[2]);
}

#[test]
fn app_key_file_readable_by_others_is_refused() {
    refused_when_others_can_read(FLAGS[3]);
}
