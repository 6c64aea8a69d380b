//! How the wizard copes with 100,000 items: from the store's credentials to
//! an interactive inventory screen (classify, load, first frame), one frame
//! of the inventory, one filter keystroke, one frame of the dry run, a
//! coalesced batch of progress events, and the process's peak RSS. Run with
//! `cargo bench --bench tui`; prints per-operation times (no assertions:
//! speed is measured here, not in tests).
//!
//! Peers in the same run: the inventory frame with 100 items (a frame's
//! cost should not grow with the inventory), and a keystroke the way the
//! wizard filtered before (lowercasing every id on every keystroke).
//!
//! Last, the real program: `credshift wizard` on a 100,000-line `.env` in a
//! tmux pseudo-terminal (skipped without tmux), driven to the inventory
//! screen and a filter keystroke; its peak RSS is read from its own
//! `/proc/PID/status`, and the time from the consent key to the drawn
//! inventory is taken from the screen (polled every 10 ms).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use credshift::credential::{Credential, CredentialId, Kind, Metadata};
use credshift::engine::types::*;
use credshift::store::{Capability, StoreSpec};
use credshift::tui::app::App;
use credshift::tui::screens;
use credshift::tui::theme::Theme;
use credshift::wizard::{Config, Event, Wizard};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const N: usize = 100_000;

fn spec(s: &str) -> StoreSpec {
    s.parse().unwrap()
}

/// CPU time of this thread (the wizard is single-threaded): on a machine
/// busy with other work, wall-clock time mostly measures the wait for a core.
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Per run: CPU time (returned) and wall-clock time (printed too).
fn time<T>(what: &str, runs: u32, mut f: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    let cpu = cpu_now();
    for _ in 0..runs {
        black_box(f());
    }
    let per = (cpu_now() - cpu) / runs;
    let wall = start.elapsed() / runs;
    println!("{what:<52} {per:>12.2?} CPU {wall:>12.2?} wall");
    per
}

/// Resident set size now, in MB.
fn rss_mb(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with(field))?;
    Some(l.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

fn main() {
    let from = spec("dotenv:/bench/.env");
    let to = spec("encrypted:/bench/t.enc");
    let cap = Capability {
        available: true,
        readable: true,
        writable: true,
        persistent: true,
        exists: true,
        ..Capability::default()
    };
    let (mut w, _) = Wizard::new(
        Config {
            candidates: vec![from.clone(), to.clone()],
            passphrase_given: true,
            state_dir: PathBuf::from("/bench/state"),
            ..Config::default()
        },
        0,
    );
    w.handle(Event::Assessed(vec![
        StoreReport {
            spec: from.clone(),
            capability: cap.clone(),
            location: None,
        },
        StoreReport {
            spec: to.clone(),
            capability: cap,
            location: None,
        },
    ]));
    w.handle(Event::Enter);
    w.handle(Event::Enter);
    w.handle(Event::Yes);
    let ids: Vec<CredentialId> = (0..N)
        .map(|i| CredentialId::new("bulk", format!("key-{i:06}")))
        .collect();
    let items: Vec<InventoryItem> = ids
        .iter()
        .map(|id| InventoryItem {
            id: id.clone(),
            kind: Kind::ApiKey,
            preview: "sk-…abcd (51 chars)".into(),
            metadata: Metadata::new(),
            status: ItemStatus::Eligible,
            reason: None,
            expires_at_ms: None,
        })
        .collect();
    let inv = Inventory {
        store: from.clone(),
        items,
        errors: vec![],
    };
    time("load a 100k inventory into the wizard", 5, || {
        let mut w2 = w.clone();
        w2.handle(Event::InventoryLoaded(Box::new(inv.clone())));
    });

    // From the store's credentials (what `read_all` returned) to the first
    // frame of an interactive inventory screen.
    let creds: Vec<Credential> = ids
        .iter()
        .map(|id| {
            Credential::new(
                id.clone(),
                Kind::ApiKey,
                format!("sk-{id}-abcdefghijklmnop"),
            )
        })
        .collect();
    let interactive = time("store read -> inventory drawn (100k items)", 3, || {
        let items = creds
            .iter()
            .map(|c| credshift::engine::inventory::classify(c, 0))
            .collect();
        let mut w2 = w.clone();
        w2.handle(Event::InventoryLoaded(Box::new(Inventory {
            store: from.clone(),
            items,
            errors: vec![],
        })));
        let app = App::new(w2, Theme::colored());
        let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
        term.draw(|f| screens::render(&app, f)).unwrap();
    });

    // Peer: the same screen over 100 items.
    let mut small = w.clone();
    small.handle(Event::InventoryLoaded(Box::new(Inventory {
        store: from.clone(),
        items: inv.items[..100].to_vec(),
        errors: vec![],
    })));
    small.handle(Event::End);
    let small_app = App::new(small, Theme::colored());
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let frame_small = time("draw the inventory (100 items, 80x24)", 200, || {
        term.draw(|f| screens::render(&small_app, f)).unwrap();
    });

    drop(creds);
    w.handle(Event::InventoryLoaded(Box::new(inv)));
    w.handle(Event::End);
    let mut app = App::new(w, Theme::colored());
    let rss_inventory = rss_mb("VmRSS:");
    let frame = time("draw the inventory (100k items, 80x24)", 200, || {
        term.draw(|f| screens::render(&app, f)).unwrap();
    });
    app.handle(Event::FilterStart);
    let key = time("filter keystroke over 100k items", 20, || {
        app.handle(Event::FilterChar('9'));
        app.handle(Event::FilterBackspace);
    }) / 2;
    // The worst first key: one that every id contains.
    let key_all = time("filter keystroke matching all 100k items", 20, || {
        app.handle(Event::FilterChar('k'));
        app.handle(Event::FilterBackspace);
    }) / 2;
    app.handle(Event::Back);
    // Peer: the filter as it was (every id formatted and lowercased per key).
    let items = &app.wizard.inventory.loaded.as_ref().unwrap().items;
    let old_key = time("  peer: lowercase every id per keystroke", 20, || {
        items
            .iter()
            .filter(|it| it.id.to_string().to_lowercase().contains("9"))
            .count()
    });

    let plan = Plan {
        from,
        to,
        on_conflict: ConflictPolicy::Skip,
        items: ids
            .iter()
            .map(|id| PlanItem {
                id: id.clone(),
                kind: Kind::ApiKey,
                preview: "sk-…abcd (51 chars)".into(),
                action: Action::Copy,
                warnings: vec![],
            })
            .collect(),
        counts: PlanCounts {
            total: N,
            copy: N,
            ..PlanCounts::default()
        },
        estimated: Duration::from_secs(10),
        source_errors: vec![],
        warnings: vec![],
        token: 0,
    };
    app.handle(Event::Enter);
    app.handle(Event::PlanReady(Box::new(plan)));
    time("draw the dry run (100k items, 80x24)", 200, || {
        term.draw(|f| screens::render(&app, f)).unwrap();
    });
    app.handle(Event::Enter); // start
    let batch: Vec<Progress> = ids
        .iter()
        .flat_map(|id| {
            [
                Progress::ItemWritten { id: id.clone() },
                Progress::ItemVerified { id: id.clone() },
            ]
        })
        .collect();
    let per = time("handle 200k progress events as one batch", 3, || {
        let mut a = app.wizard.clone();
        a.handle(Event::Progress(batch.clone()));
    });
    println!(
        "{:<52} {:>12.2?}",
        "  per event",
        per / (batch.len() as u32)
    );
    app.handle(Event::Progress(batch));
    time("draw the execute screen after 100k items", 200, || {
        term.draw(|f| screens::render(&app, f)).unwrap();
    });
    println!();
    println!(
        "store read -> interactive: {interactive:.2?} (target < 2 s); frame {frame:.2?} \
         (target < 1 ms; {:.2}x the 100-item frame); keystroke {key:.2?} (target < 5 ms; \
         the old filter took {old_key:.2?}, {:.1}x; a key every id contains: {key_all:.2?})",
        frame.as_secs_f64() / frame_small.as_secs_f64(),
        old_key.as_secs_f64() / key.as_secs_f64()
    );
    if let (Some(now), Some(peak)) = (rss_inventory, rss_mb("VmHWM:")) {
        println!(
            "RSS on the 100k inventory screen: {now:.0} MB (target < 150 MB; the bench's own \
             copies of the items included); peak over the whole bench (plan and 200k progress \
             events too): {peak:.0} MB"
        );
    }
    println!();
    real_process();
}

/// A private tmux server running one command; killed on drop.
struct Tmux(String);

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.0]);
        c
    }

    fn screen(&self) -> String {
        let out = self.cmd().args(["capture-pane", "-p", "-t", "0"]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let _ = self.cmd().args(["send-keys", "-t", "0", k]).status();
        }
    }

    /// Wait until the screen shows `text`; the wall time it took.
    fn wait_for(&self, text: &str, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.screen().contains(text) {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        println!(
            "  (timed out waiting for {text:?}; the screen shows:)\n{}",
            self.screen()
        );
        None
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

fn status_mb(pid: &str, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with(field))?;
    Some(l.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// `credshift wizard --from dotenv:FILE` with N items, in a real terminal.
fn real_process() {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("real process: skipped (tmux is not installed)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let env = dir.join("bench.env");
    let mut text = String::with_capacity(N * 48);
    for i in 0..N {
        text.push_str(&format!(
            "KEY_{i:06}=sk-{i:06}-abcdefghijklmnopqrstuvwxyz0123\n"
        ));
    }
    std::fs::write(&env, text).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_credshift"));
    let cmd = format!(
        "exec '{}' wizard --from 'dotenv:{}' --to 'encrypted:{}'",
        bin.display(),
        env.display(),
        dir.join("target.enc").display()
    );
    let t = Tmux(format!("credshift-bench-tui-{}", std::process::id()));
    let home = dir.display().to_string();
    let state = dir.join("state").display().to_string();
    let ok = Command::new("tmux")
        .args([
            "-L",
            &t.0,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
        ])
        .args([
            "-e",
            &format!("HOME={home}"),
            "-e",
            &format!("CREDSHIFT_STATE_DIR={state}"),
        ])
        .args(["-e", "TERM=xterm-256color", "-e", "NO_COLOR=1"])
        // As users run it: with RUST_BACKTRACE set, this debug-info build
        // spends its first second and ~300 MB loading symbols at startup.
        .args(["-e", "RUST_BACKTRACE=0", "-e", "RUST_LIB_BACKTRACE=0"])
        .arg(&cmd)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("real process: skipped (tmux new-session failed)");
        return;
    }
    let pid = t
        .cmd()
        .args(["list-panes", "-t", "0", "-F", "#{pane_pid}"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let limit = Duration::from_secs(120);
    // The stores are preselected: Enter confirms the target, y consents.
    if t.wait_for("step 1/8", limit).is_none() || t.wait_for("target encrypted:", limit).is_none() {
        return;
    }
    let peak_probed = status_mb(&pid, "VmHWM:");
    t.keys(&["Enter"]);
    if t.wait_for("step 2/8", limit).is_none() {
        return;
    }
    let cpu_before = cpu_ticks(&pid);
    t.keys(&["y"]);
    let Some(interactive) = t.wait_for(&format!("{N} items"), limit) else {
        return;
    };
    let cpu = cpu_ticks(&pid)
        .zip(cpu_before)
        .map(|(a, b)| Duration::from_secs_f64((a - b) as f64 / ticks_per_second()));
    let rss_screen = status_mb(&pid, "VmRSS:");
    t.keys(&["/", "9", "9", "9", "9", "9"]);
    let Some(filtered) = t.wait_for("filter: 99999", limit) else {
        return;
    };
    let rss_filtered = status_mb(&pid, "VmRSS:");
    let peak = status_mb(&pid, "VmHWM:");
    t.keys(&["Escape", "q"]);
    let mb = |m: Option<f64>| m.map_or("?".into(), |m| format!("{m:.0} MB"));
    println!(
        "real process (`credshift wizard`, {N}-line .env, tmux 100x30):\n  consent key -> \
         inventory drawn: {interactive:.2?} wall, {} CPU of all its threads (store read, \
         classify, first frame; target < 2 s)\n  / and 5 filter keys drawn in {filtered:.2?} \
         wall (screen polled every 10 ms)\n  RSS: {} on the inventory screen, {} after the \
         filter; peak {} (peak while probing the stores, before consent: {}); target < 150 MB",
        cpu.map_or("?".into(), |c| format!("{c:.2?}")),
        mb(rss_screen),
        mb(rss_filtered),
        mb(peak),
        mb(peak_probed),
    );
}

/// User + system CPU time of a process so far, in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}
