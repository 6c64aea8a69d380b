//! A terminal for end-to-end tests of the wizard: a private tmux server
//! running one command in a 100x30 pane, driven by keys and read by screen
//! captures (every capture checked for secrets).

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(name: &str, env: &[(&str, &str)], command: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            super::skip_without("tmux", "not installed");
            return None;
        }
        let socket = format!("credshift-e2e-{name}-{}", std::process::id());
        let mut c = Command::new("tmux");
        c.args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "100", "-y", "30"]);
        for (k, v) in env {
            c.arg("-e").arg(format!("{k}={v}"));
        }
        c.arg(command);
        let out = c.output().expect("run tmux");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Tmux { socket })
    }

    pub fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "0"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Send keys by tmux name (`Enter`, `Down`, `y`).
    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            let ok = Command::new("tmux")
                .args(["-L", &self.socket, "send-keys", "-t", "0", k])
                .status()
                .expect("tmux send-keys")
                .success();
            assert!(ok, "send-keys {k}");
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Type text literally.
    pub fn type_text(&self, text: &str) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0", "-l", text])
            .status()
            .expect("tmux send-keys")
            .success();
        assert!(ok);
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Answer each screen in turn: wait until it shows the text (checking
    /// every screen for secrets on the way), then press the key. The text
    /// must be one the screen only draws once it takes the key (a screen
    /// whose content arrives in the background draws its title first).
    pub fn walk(&self, script: &[(&str, &str)], forbidden: &[String]) {
        for (text, key) in script {
            self.wait_for(text, forbidden);
            self.keys(&[key]);
        }
    }

    /// Wait until the screen shows `text`; every screen seen is checked for
    /// secrets on the way.
    pub fn wait_for(&self, text: &str, forbidden: &[String]) -> String {
        self.wait_for_all(&[text], forbidden)
    }

    /// Wait until one capture shows every one of `texts`; every screen seen
    /// is checked for secrets on the way. Content drawn in the background
    /// (a list read by a worker, the rest of a frame still on its way
    /// through the terminal) is waited for itself, never asserted right
    /// after something drawn before it.
    pub fn wait_for_all(&self, texts: &[&str], forbidden: &[String]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.capture();
            for s in forbidden {
                assert!(
                    !shows_secret(&screen, s),
                    "a secret is on screen:\n{screen}"
                );
            }
            if texts.iter().all(|t| screen.contains(t)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {texts:?}; the screen shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// How much of a secret on screen counts as showing it: a 100-column pane
/// never holds a 108-character secret whole, so whole-secret checks could
/// not fail (issue 22 point 12).
pub const SECRET_WINDOW: usize = 12;

/// Whether `screen` shows any `SECRET_WINDOW`-character piece of `secret`
/// (a shorter secret: the whole of it).
pub fn shows_secret(screen: &str, secret: &str) -> bool {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= SECRET_WINDOW {
        return !secret.is_empty() && screen.contains(secret);
    }
    chars
        .windows(SECRET_WINDOW)
        .any(|w| screen.contains(&w.iter().collect::<String>()))
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}
