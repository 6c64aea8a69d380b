//! `credshift exec`: run a command with a store's credentials in its
//! environment, the way `aws-vault exec`, `op run` and `chamber exec` do.
//!
//! Secrets reach the child only through its environment: never argv, never
//! credshift's stdout or stderr. The environment is built in zeroizing
//! buffers and handed to `posix_spawnp` (nix's safe wrapper) as views of
//! those buffers, so no copy lingers in a `std::process::Command`. credshift's own unlock secrets are taken out of
//! the child's environment unless kept explicitly. The child's exit status
//! becomes credshift's (128 + N for a death by signal N, as shells report
//! it), and SIGINT, SIGTERM and SIGHUP sent to credshift are passed on.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::str::FromStr;
use std::sync::Mutex;

use rustix::process::{self, Pid, Signal, WaitOptions};

use zeroize::Zeroizing;

use crate::credential::{Credential, CredentialId};
use crate::keys;
use crate::store::faults::glob_match;

/// How credential ids become environment variable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `env/NAME` -> `NAME`; any other `NAMESPACE/NAME` -> `NAMESPACE_NAME`
    /// upper-cased, with `-`, `.`, `:` and `/` turned into `_`.
    Plain,
    /// model-forge's variables: `P/api_key` -> `MODELFORGE_<P>_API_KEY`,
    /// `P/access_token` -> `MODELFORGE_<P>_ACCESS_TOKEN`.
    ModelForge,
}

impl FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(Layout::Plain),
            "modelforge" => Ok(Layout::ModelForge),
            other => Err(format!("--layout takes plain or modelforge, not {other:?}")),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Plain => "plain",
            Layout::ModelForge => "modelforge",
        })
    }
}

/// Where one credential goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// Into this variable.
    Var(String),
    /// Nowhere: the layout has no variable for it (why, for stderr).
    Skip(&'static str),
}

/// The variables credshift itself reads its unlock secrets from. They are
/// not passed on unless `--keep-env` names them.
pub const UNLOCK_VARS: &[&str] = &[
    keys::ENV_PASSPHRASE,
    keys::ENV_PROMPTTRAIN_KEY,
    keys::ENV_APP_KEY,
    "PGPASSWORD",
    // The Vault/OpenBao token `exec --from vault:` read with.
    "VAULT_TOKEN",
    "BAO_TOKEN",
];

/// A POSIX-portable variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// model-forge's `_normalize_provider_name_for_env`: upper-case, `-` to `_`.
fn modelforge_provider(namespace: &str) -> String {
    namespace.to_uppercase().replace('-', "_")
}

/// The variable `id` maps to under `layout`. `Err` when the id has no
/// valid variable name (the message says why; no secret in it).
pub fn map_id(layout: Layout, id: &CredentialId) -> Result<Mapping, String> {
    match layout {
        Layout::ModelForge => {
            let suffix = match id.name.as_str() {
                "api_key" => "API_KEY",
                "access_token" => "ACCESS_TOKEN",
                "refresh_token" => {
                    return Ok(Mapping::Skip(
                        "model-forge reads no refresh token from its environment",
                    ));
                }
                _ => return Ok(Mapping::Skip("model-forge has no variable for this field")),
            };
            // model-forge would look up any name it builds, but a shell, a
            // Makefile or `env` cannot hold one outside the POSIX set, so
            // the same rule as the plain layout applies (README: exit 2).
            let name = format!("MODELFORGE_{}_{suffix}", modelforge_provider(&id.namespace));
            if id.namespace.is_empty() || !valid_var_name(&name) {
                return Err(format!(
                    "{id}: maps to {name:?}, which is not a valid variable name \
                     ([A-Za-z_][A-Za-z0-9_]*)"
                ));
            }
            Ok(Mapping::Var(name))
        }
        Layout::Plain => {
            if id.namespace == "env" {
                return if valid_var_name(&id.name) {
                    Ok(Mapping::Var(id.name.to_string()))
                } else {
                    Err(format!(
                        "{id}: {:?} is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
                        id.name
                    ))
                };
            }
            let name: String = format!("{}_{}", id.namespace, id.name)
                .chars()
                .map(|c| match c {
                    '-' | '.' | ':' | '/' => '_',
                    c => c.to_ascii_uppercase(),
                })
                .collect();
            if valid_var_name(&name) {
                Ok(Mapping::Var(name))
            } else {
                Err(format!(
                    "{id}: maps to {name:?}, which is not a valid variable name \
                     ([A-Za-z_][A-Za-z0-9_]*)"
                ))
            }
        }
    }
}

/// Why an exec cannot start. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    BadName(String),
    #[error("{var} would be set by both {first} and {second}; narrow the selection with --only")]
    Clash {
        var: String,
        first: CredentialId,
        second: CredentialId,
    },
    #[error("--only {globs} matches none of the store's credentials")]
    NothingSelected { globs: String },
}

/// What goes into the child's environment, decided before it starts.
#[derive(Default)]
pub struct EnvPlan {
    /// Variable name -> (the credential it comes from, its index in the input).
    pub vars: BTreeMap<String, (CredentialId, usize)>,
    /// Selected credentials the layout has no variable for.
    pub skipped: Vec<(CredentialId, &'static str)>,
}

/// Select (`only`: any glob matches the id; empty: all), map, and check
/// for clashes and bad names. Every problem is found before anything runs.
pub fn plan_env(
    layout: Layout,
    creds: &[Credential],
    only: &[String],
) -> Result<EnvPlan, ExecError> {
    let mut plan = EnvPlan::default();
    let mut selected = 0usize;
    let mut bad = Vec::new();
    for (i, c) in creds.iter().enumerate() {
        let id_text = c.id.to_string();
        if !only.is_empty() && !only.iter().any(|g| glob_match(g, &id_text)) {
            continue;
        }
        selected += 1;
        match map_id(layout, &c.id) {
            Ok(Mapping::Var(var)) => {
                if let Some((first, _)) = plan.vars.get(&var) {
                    return Err(ExecError::Clash {
                        var,
                        first: first.clone(),
                        second: c.id.clone(),
                    });
                }
                plan.vars.insert(var, (c.id.clone(), i));
            }
            Ok(Mapping::Skip(why)) => plan.skipped.push((c.id.clone(), why)),
            Err(e) => bad.push(e),
        }
    }
    if !bad.is_empty() {
        return Err(ExecError::BadName(bad.join("; ")));
    }
    if selected == 0 && !only.is_empty() {
        return Err(ExecError::NothingSelected {
            globs: only.join(", --only "),
        });
    }
    Ok(plan)
}

/// One `NAME=value` entry of an environment block, NUL-terminated, wiped on drop.
pub type EnvEntry = Zeroizing<Vec<u8>>;

fn entry(name: &[u8], value: &[u8]) -> EnvEntry {
    let mut e = Zeroizing::new(Vec::with_capacity(name.len() + value.len() + 2));
    e.extend_from_slice(name);
    e.push(b'=');
    e.extend_from_slice(value);
    e.push(0);
    e
}

/// The child's environment: the parent's, without `strip` (unless in
/// `keep`), with the planned credentials set over it. A credential value
/// holding a NUL byte cannot be passed and is an error naming its id.
pub fn child_env(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    strip: &[String],
    keep: &[String],
    plan: &EnvPlan,
    creds: &[Credential],
) -> Result<Vec<EnvEntry>, ExecError> {
    let dropped = |name: &OsStr| {
        plan.vars.contains_key(name.to_string_lossy().as_ref())
            || (strip.iter().any(|s| OsStr::new(s) == name)
                && !keep.iter().any(|k| OsStr::new(k) == name))
    };
    let mut out = Vec::new();
    for (k, v) in parent {
        if dropped(&k) || k.as_bytes().contains(&0) {
            continue;
        }
        let v = Zeroizing::new(v.into_vec());
        out.push(entry(k.as_bytes(), &v));
    }
    for (var, (id, i)) in &plan.vars {
        let value = creds[*i].secret.expose().as_bytes();
        if value.contains(&0) {
            return Err(ExecError::BadName(format!(
                "{id}: the value holds a NUL byte and cannot go into an environment variable"
            )));
        }
        out.push(entry(var.as_bytes(), value));
    }
    Ok(out)
}

/// The variables `strip` should remove for a run: credshift's unlock
/// variables and the one `--passphrase-env` names.
pub fn unlock_vars(passphrase_env: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = UNLOCK_VARS.iter().map(|s| s.to_string()).collect();
    if let Some(p) = passphrase_env.filter(|p| !v.iter().any(|x| x == p)) {
        v.push(p.to_string());
    }
    v
}

/// How the child ended, as a shell would report it.
pub fn exit_status_code(status: libc::c_int) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else if libc::WIFSIGNALED(status) {
        (128 + libc::WTERMSIG(status)).min(255) as u8
    } else {
        1
    }
}

/// Why the child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{program}: command not found")]
    NotFound { program: String },
    #[error("{program}: permission denied")]
    Denied { program: String },
    #[error("{program}: {error}")]
    Other {
        program: String,
        error: std::io::Error,
    },
}

impl SpawnError {
    /// The shell's codes: 127 not found, 126 found but not runnable.
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::NotFound { .. } => 127,
            SpawnError::Denied { .. } | SpawnError::Other { .. } => 126,
        }
    }
}

/// The child a forwarded signal goes to, or the signal that came before
/// there was one (sent to it as soon as it exists). One lock orders the two,
/// so a signal is never lost between the spawn and the hand-over.
#[derive(Default)]
struct Forward {
    child: Option<Pid>,
    pending: Option<Signal>,
}

static FORWARD: Mutex<Forward> = Mutex::new(Forward {
    child: None,
    pending: None,
});

fn forward() -> std::sync::MutexGuard<'static, Forward> {
    FORWARD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Pass SIGINT, SIGTERM and SIGHUP on to the child, from a thread of
/// signal-hook's (the handler itself only records the signal). A signal
/// the kernel sent, such as the terminal's Ctrl-C to its whole foreground
/// process group, already reached the child, so it is not sent twice (a
/// second Ctrl-C often means "force quit").
fn forward_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::SignalsInfo;
    use signal_hook::iterator::exfiltrator::WithOrigin;
    use signal_hook::low_level::siginfo::Cause;
    let Ok(mut signals) = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("credshift-exec-signals".into())
        .spawn(move || {
            for origin in signals.forever() {
                if origin.cause == Cause::Kernel {
                    continue;
                }
                let Some(sig) = Signal::from_named_raw(origin.signal) else {
                    continue;
                };
                let mut f = forward();
                match f.child {
                    Some(pid) => {
                        let _ = process::kill_process(pid, sig);
                    }
                    None => f.pending = Some(sig),
                }
            }
        });
}

/// Start `program` (looked up in PATH) with `args` and exactly `env`, wait
/// for it, and return its exit code as a shell would report it. The
/// environment buffers are wiped as soon as the child has started.
pub fn spawn_and_wait(
    program: &OsStr,
    args: &[OsString],
    env: Vec<EnvEntry>,
) -> Result<u8, SpawnError> {
    let shown = program.to_string_lossy().into_owned();
    let invalid = |what: &str| SpawnError::Other {
        program: shown.clone(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string()),
    };
    let to_c =
        |s: &OsStr| CString::new(s.as_bytes()).map_err(|_| invalid("an argument holds a NUL byte"));
    let prog_c = to_c(program)?;
    let mut argv_c = vec![prog_c.clone()];
    for a in args {
        argv_c.push(to_c(a)?);
    }
    // Views of the zeroizing buffers themselves: no copy of a secret.
    let envp: Vec<&CStr> = env
        .iter()
        .map(|e| CStr::from_bytes_with_nul(e))
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("an environment entry holds a NUL byte"))?;

    forward_signals();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let spawned = nix::spawn::PosixSpawnFileActions::init()
        .and_then(|actions| Ok((actions, nix::spawn::PosixSpawnAttr::init()?)))
        .and_then(|(actions, attr)| {
            nix::spawn::posix_spawnp(&prog_c, &actions, &attr, &argv_c, &envp)
        });
    drop(envp);
    drop(env);
    let child = match spawned {
        Ok(pid) => pid,
        Err(errno) => {
            return Err(match errno {
                nix::errno::Errno::ENOENT => SpawnError::NotFound { program: shown },
                nix::errno::Errno::EACCES | nix::errno::Errno::EPERM => {
                    SpawnError::Denied { program: shown }
                }
                other => SpawnError::Other {
                    program: shown,
                    error: std::io::Error::from_raw_os_error(other as i32),
                },
            });
        }
    };
    let Some(pid) = Pid::from_raw(child.as_raw()) else {
        return Err(invalid("posix_spawnp returned no process id"));
    };
    {
        let mut f = forward();
        f.child = Some(pid);
        if let Some(sig) = f.pending.take() {
            let _ = process::kill_process(pid, sig);
        }
    }
    let status = loop {
        match process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => break status,
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                forward().child = None;
                return Err(SpawnError::Other {
                    program: shown,
                    error: e.into(),
                });
            }
        }
    };
    forward().child = None;
    Ok(exit_status_code(status.as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Kind;

    fn id(s: &str) -> CredentialId {
        s.parse().unwrap()
    }

    fn cred(s: &str, v: &str) -> Credential {
        Credential::new(id(s), Kind::ApiKey, v)
    }

    #[test]
    fn modelforge_names_follow_model_forge() {
        let m = |s| map_id(Layout::ModelForge, &id(s)).unwrap();
        assert_eq!(
            m("openai/api_key"),
            Mapping::Var("MODELFORGE_OPENAI_API_KEY".into())
        );
        assert_eq!(
            m("github-copilot/access_token"),
            Mapping::Var("MODELFORGE_GITHUB_COPILOT_ACCESS_TOKEN".into())
        );
        assert!(matches!(
            m("github-copilot/refresh_token"),
            Mapping::Skip(_)
        ));
        assert!(matches!(m("gh/token_secret"), Mapping::Skip(_)));
        assert!(map_id(Layout::ModelForge, &CredentialId::new("a=b", "api_key")).is_err());
        // Names a shell cannot hold stop the run, naming the id (issue 23).
        for bad in ["my provider", "ünï", "a.b", "x/y"] {
            let e = map_id(Layout::ModelForge, &CredentialId::new(bad, "api_key")).unwrap_err();
            assert!(e.contains(&format!("{bad}/api_key")), "{e}");
        }
        assert_eq!(
            m("9lives/api_key"),
            Mapping::Var("MODELFORGE_9LIVES_API_KEY".into())
        );
    }

    #[test]
    fn plain_names() {
        let m = |s| map_id(Layout::Plain, &id(s));
        assert_eq!(
            m("env/OPENAI_API_KEY"),
            Ok(Mapping::Var("OPENAI_API_KEY".into()))
        );
        assert_eq!(m("env/lower_ok"), Ok(Mapping::Var("lower_ok".into())));
        assert_eq!(
            m("openai/api_key"),
            Ok(Mapping::Var("OPENAI_API_KEY".into()))
        );
        assert_eq!(
            m("account:acc-x/oauth_access_token"),
            Ok(Mapping::Var("ACCOUNT_ACC_X_OAUTH_ACCESS_TOKEN".into()))
        );
        assert_eq!(
            m("train:t1/client_key_hash/0"),
            Ok(Mapping::Var("TRAIN_T1_CLIENT_KEY_HASH_0".into()))
        );
        assert!(m("env/1BAD").is_err());
        assert!(m("env/HAS SPACE").is_err());
        assert!(m("9lives/key").is_err());
        assert!(m("my app/key").unwrap_err().contains("my app/key"));
    }

    #[test]
    fn clashes_and_bad_names_are_found_before_anything_runs() {
        let creds = [cred("env/OPENAI_API_KEY", "a"), cred("openai/api_key", "b")];
        let e = plan_env(Layout::Plain, &creds, &[]).err().unwrap();
        assert!(matches!(e, ExecError::Clash { ref var, .. } if var == "OPENAI_API_KEY"));
        let msg = e.to_string();
        assert!(
            msg.contains("env/OPENAI_API_KEY") && msg.contains("openai/api_key"),
            "{msg}"
        );
        // --only resolves the clash.
        let p = plan_env(Layout::Plain, &creds, &["env/*".into()]).unwrap();
        assert_eq!(p.vars.len(), 1);
        let e = plan_env(Layout::Plain, &[cred("env/A B", "x")], &[])
            .err()
            .unwrap();
        assert!(matches!(e, ExecError::BadName(_)));
        let e = plan_env(Layout::Plain, &creds, &["nope/*".into()])
            .err()
            .unwrap();
        assert!(matches!(e, ExecError::NothingSelected { .. }));
        // An empty store without --only is no error.
        assert!(plan_env(Layout::Plain, &[], &[]).unwrap().vars.is_empty());
    }

    #[test]
    fn environment_strips_unlock_vars_unless_kept() {
        let creds = [cred("env/TOKEN", "sk-secret")];
        let plan = plan_env(Layout::Plain, &creds, &[]).unwrap();
        let parent = [
            ("APP_KEY", "base64:k"),
            ("CREDSHIFT_PASSPHRASE", "pw"),
            ("MY_PW", "pw2"),
            ("PATH", "/bin"),
            ("TOKEN", "old"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let strip = unlock_vars(Some("MY_PW"));
        let text = |env: Vec<EnvEntry>| {
            env.iter()
                .map(|e| String::from_utf8_lossy(&e[..e.len() - 1]).into_owned())
                .collect::<Vec<_>>()
        };
        let env = text(child_env(parent.clone(), &strip, &[], &plan, &creds).unwrap());
        assert_eq!(env, ["PATH=/bin", "TOKEN=sk-secret"]);
        let env = text(child_env(parent, &strip, &["APP_KEY".into()], &plan, &creds).unwrap());
        assert_eq!(env, ["APP_KEY=base64:k", "PATH=/bin", "TOKEN=sk-secret"]);
        let bad = [cred("env/X", "a\0b")];
        let plan = plan_env(Layout::Plain, &bad, &[]).unwrap();
        let e = child_env(Vec::new(), &[], &[], &plan, &bad).err().unwrap();
        assert!(e.to_string().contains("env/X") && !e.to_string().contains("a\0b"));
    }

    #[test]
    fn exit_codes_are_the_shells() {
        // A normal exit with 3: status 3 << 8. Killed by SIGTERM: status 15.
        assert_eq!(exit_status_code(3 << 8), 3);
        assert_eq!(exit_status_code(libc::SIGTERM), 128 + 15);
    }
}
