//! A running credshift has a core-file limit of 0 and is not dumpable
//! (issue 11.3). The process is held at start-up by a `--passphrase-file`
//! that is a FIFO nobody writes to, then inspected through /proc.
#![cfg(target_os = "linux")]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn a_running_credshift_cannot_dump_core_and_is_not_dumpable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fifo = dir.path().join("passphrase");
    mkfifo(&fifo);
    // SAFETY: plain syscall.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_credshift"));
    cmd.args(["inventory", "--from"])
        .arg(format!("encrypted:{}", dir.path().join("x.enc").display()))
        .arg("--passphrase-file")
        .arg(&fifo)
        .env("CREDSHIFT_STATE_DIR", dir.path().join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let me = if root {
        // As root every /proc file is readable whatever the dumpable flag;
        // run credshift as an unprivileged user so its /proc owner tells.
        std::os::unix::fs::chown(&fifo, Some(NOBODY), Some(NOBODY)).unwrap();
        std::os::unix::process::CommandExt::uid(&mut cmd, NOBODY);
        std::os::unix::process::CommandExt::gid(&mut cmd, NOBODY);
        NOBODY
    } else {
        // SAFETY: plain syscall.
        unsafe { libc::geteuid() }
    };
    let mut child = cmd.spawn().unwrap();
    let proc_dir = format!("/proc/{}", child.id());
    // Wait until credshift is blocked opening the FIFO (past start-up).
    let t0 = Instant::now();
    let blocked = loop {
        let wchan = std::fs::read_to_string(format!("{proc_dir}/wchan")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("{proc_dir}/stat")).unwrap_or_default();
        let exe = std::fs::read_link(format!("{proc_dir}/exe")).ok();
        if exe.is_some_and(|e| e.ends_with("credshift"))
            && (wchan.contains("fifo") || wchan.contains("pipe") || stat.contains(") S "))
        {
            break true;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            break false;
        }
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let limits = std::fs::read_to_string(format!("{proc_dir}/limits")).unwrap_or_default();
    let owner = std::fs::metadata(format!("{proc_dir}/status")).map(|m| m.uid());
    let _ = child.kill();
    let _ = child.wait();
    assert!(blocked, "credshift did not start and wait on the FIFO");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core limit line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        &fields[4..6],
        &["0", "0"],
        "soft and hard core limits must be 0: {core}"
    );
    // The kernel gives a non-dumpable process's /proc files to root; a
    // dumpable one's belong to its user.
    assert_eq!(
        owner.unwrap(),
        0,
        "/proc/PID of credshift (running as uid {me}) must be root's: not dumpable"
    );
}
