//! `env:PREFIX`: the process environment, variables whose name starts with
//! PREFIX (an empty prefix means all). Ids are `env/<NAME>`. Read-only: a
//! migration can take secrets out of the environment but cannot put them
//! back into a parent shell, so write and delete refuse with a reason.
//!
//! credshift's own unlock variables ([`UNLOCK_VARS`] and the variable
//! `--passphrase-env` names) are left out: they open the stores a migration
//! reads and writes, and copying them would put the key beside what it
//! locks. A spec whose prefix is exactly one of those names
//! (`env:APP_KEY`) takes that one variable in.

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::error::{Result, StoreError};
use crate::keys;
use crate::store::{Capability, Listing, LocationError, Scan, Store, StoreSpec, read_only};
use crate::unlock::KeyOptions;

/// Variables that unlock credshift's stores and the apps' formats.
pub const UNLOCK_VARS: &[&str] = &[
    keys::ENV_PASSPHRASE,
    keys::ENV_PROMPTTRAIN_KEY,
    keys::ENV_APP_KEY,
    "PGPASSWORD",
];

pub fn open(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn Store>> {
    let StoreSpec::Env(prefix) = spec else {
        return Err(StoreError::Other(format!("{spec} is not an env spec")));
    };
    let mut excluded: Vec<String> = UNLOCK_VARS.iter().map(|v| v.to_string()).collect();
    excluded.extend(opts.passphrase_env.iter().cloned());
    // Naming the variable exactly is the explicit way in.
    excluded.retain(|v| v != prefix);
    Ok(Box::new(EnvStore {
        spec: spec.clone(),
        prefix: prefix.clone(),
        excluded,
    }))
}

pub struct EnvStore {
    spec: StoreSpec,
    prefix: String,
    /// Unlock variables left out (names only).
    excluded: Vec<String>,
}

const READ_ONLY_REASON: &str = "the process environment cannot be changed for other programs; write to a file or keyring store instead";

impl EnvStore {
    fn takes(&self, name: &str) -> bool {
        name.starts_with(&self.prefix) && !self.excluded.iter().any(|v| v == name)
    }

    /// The unlock variables that are set and would match but are left out.
    fn left_out(&self) -> Vec<&str> {
        self.excluded
            .iter()
            .filter(|v| v.starts_with(&self.prefix) && std::env::var_os(v).is_some())
            .map(String::as_str)
            .collect()
    }

    fn credential(name: &str, value: String) -> Credential {
        Credential {
            id: CredentialId::new("env", name),
            kind: Kind::guess(name),
            secret: Secret::new(value),
            metadata: Metadata::new(),
        }
    }

    /// Every matching variable; names that are not UTF-8, or whose value is
    /// not, become errors naming the variable (never its value).
    fn scan(&self) -> Scan {
        let mut scan = Scan::default();
        for (name, value) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if !self.takes(&name_text) {
                continue;
            }
            match (name.to_str(), value.into_string()) {
                (Some(n), Ok(v)) => scan.credentials.push(Self::credential(n, v)),
                (_, Err(raw)) => {
                    // Zeroize what we can of the undecodable value.
                    drop(zeroize::Zeroizing::new(raw.into_encoded_bytes()));
                    scan.errors.push(LocationError {
                        severity: crate::store::Severity::Error,
                        location: format!("env:{name_text}"),
                        error: "value is not valid UTF-8".into(),
                    });
                }
                (None, Ok(v)) => {
                    drop(zeroize::Zeroizing::new(v));
                    scan.errors.push(LocationError {
                        severity: crate::store::Severity::Error,
                        location: format!("env:{name_text}"),
                        error: "variable name is not valid UTF-8".into(),
                    });
                }
            }
        }
        scan.credentials.sort_by(|a, b| a.id.cmp(&b.id));
        scan
    }
}

impl Store for EnvStore {
    /// Every `env:` prefix reads one process environment.
    fn identity(&self) -> Result<crate::store::StoreIdentity> {
        Ok(crate::store::StoreIdentity::named(
            crate::store::IdentityKind::Env,
            "process environment",
        ))
    }

    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    fn probe(&self) -> Capability {
        let scan = self.scan();
        let mut warnings =
            vec!["the environment is read-only and lasts only as long as this process".to_string()];
        let left_out = self.left_out();
        if !left_out.is_empty() {
            warnings.push(format!(
                "left out credshift's own unlock variable(s) {}: name one exactly (env:{}) to take it",
                left_out.join(", "),
                left_out[0]
            ));
        }
        if !scan.errors.is_empty() {
            warnings.push(format!(
                "{} variable(s) could not be read as UTF-8",
                scan.errors.len()
            ));
        }
        Capability {
            available: true,
            readable: true,
            writable: false,
            persistent: false,
            encrypted_at_rest: false,
            exists: true,
            keeps_metadata: false,
            item_count: Some(scan.credentials.len()),
            warnings,
            ..Default::default()
        }
    }

    fn list(&self) -> Result<Listing> {
        Ok(Listing::from(self.scan()))
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        if id.namespace != "env" || !self.takes(&id.name) {
            return Ok(None);
        }
        // `var_os` panics on names with '=' or NUL; such a name cannot exist.
        if id.name.contains(['=', '\0']) {
            return Ok(None);
        }
        match std::env::var_os(id.name.as_str()) {
            None => Ok(None),
            Some(v) => match v.into_string() {
                Ok(v) => Ok(Some(Self::credential(&id.name, v))),
                Err(raw) => {
                    drop(zeroize::Zeroizing::new(raw.into_encoded_bytes()));
                    Err(StoreError::item(id, "value is not valid UTF-8"))
                }
            },
        }
    }

    fn read_all(&self) -> Result<Scan> {
        Ok(self.scan())
    }

    fn write(&self, _c: &Credential) -> Result<()> {
        Err(read_only(&self.spec, READ_ONLY_REASON))
    }

    fn delete(&self, _id: &CredentialId) -> Result<bool> {
        Err(read_only(&self.spec, READ_ONLY_REASON))
    }

    fn check(&self, _c: &Credential) -> Option<String> {
        Some(format!("{} is read-only: {READ_ONLY_REASON}", self.spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test harness runs tests on threads of one process; each test uses
    // its own variable prefix and only reads what it set up front.
    fn store(prefix: &str) -> Box<dyn Store> {
        open(&StoreSpec::Env(prefix.into()), &KeyOptions::default()).unwrap()
    }

    #[test]
    fn lists_and_reads_variables_with_the_prefix() {
        // SAFETY: tests in this module set distinct variables before reading.
        unsafe {
            std::env::set_var("CREDSHIFT_T1_API_KEY", "sk-test-value-0001");
            std::env::set_var("CREDSHIFT_T1_NAME", "demo");
        }
        let s = store("CREDSHIFT_T1_");
        let ids: Vec<String> = s
            .list()
            .unwrap()
            .entries
            .iter()
            .map(|e| e.id.to_string())
            .collect();
        assert_eq!(ids, ["env/CREDSHIFT_T1_API_KEY", "env/CREDSHIFT_T1_NAME"]);
        let c = s
            .read(&"env/CREDSHIFT_T1_API_KEY".parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(c.secret.expose(), "sk-test-value-0001");
        assert_eq!(c.kind, Kind::ApiKey);
        // Outside the prefix or the namespace: nothing.
        assert!(s.read(&"env/PATH".parse().unwrap()).unwrap().is_none());
        assert!(
            s.read(&"other/CREDSHIFT_T1_NAME".parse().unwrap())
                .unwrap()
                .is_none()
        );
    }

    /// The variable `--passphrase-env` names is an unlock variable too. (The
    /// fixed names are checked through the binary, in tests/it/leak_canary.rs,
    /// so this process's environment keeps no real unlock variable.)
    #[test]
    fn the_passphrase_env_variable_is_left_out_unless_named_exactly() {
        // SAFETY: tests in this module set distinct variables before reading.
        unsafe {
            std::env::set_var("CREDSHIFT_T3_MY_PASS", "unlock-value-t3");
            std::env::set_var("CREDSHIFT_T3_API_KEY", "sk-t3-value");
        }
        let opts = KeyOptions {
            passphrase_env: Some("CREDSHIFT_T3_MY_PASS".into()),
            ..KeyOptions::default()
        };
        let pass = CredentialId::new("env", "CREDSHIFT_T3_MY_PASS");
        for prefix in ["", "CREDSHIFT_", "CREDSHIFT_T3_", "CREDSHIFT_T3_MY"] {
            let s = open(&StoreSpec::Env(prefix.into()), &opts).unwrap();
            let ids: Vec<CredentialId> = s
                .read_all()
                .unwrap()
                .credentials
                .into_iter()
                .map(|c| c.id)
                .collect();
            assert!(!ids.contains(&pass), "env:{prefix} took the passphrase");
            assert!(s.read(&pass).unwrap().is_none(), "env:{prefix} read it");
            let w = s.probe().warnings.join("\n");
            assert!(
                w.contains("left out") && w.contains("CREDSHIFT_T3_MY_PASS"),
                "{w}"
            );
        }
        let s = store("CREDSHIFT_T3_");
        assert!(
            s.read(&pass).unwrap().is_some(),
            "no --passphrase-env: an ordinary variable"
        );
        let s = open(&StoreSpec::Env("CREDSHIFT_T3_MY_PASS".into()), &opts).unwrap();
        let scan = s.read_all().unwrap();
        assert_eq!(scan.credentials.len(), 1);
        assert_eq!(scan.credentials[0].secret.expose(), "unlock-value-t3");
        for v in [
            "CREDSHIFT_PASSPHRASE",
            "CREDENTIAL_ENCRYPTION_KEY",
            "APP_KEY",
            "PGPASSWORD",
        ] {
            assert!(UNLOCK_VARS.contains(&v), "{v}");
        }
    }

    #[test]
    fn writes_and_deletes_are_refused_with_a_reason() {
        let s = store("CREDSHIFT_T2_");
        let c = Credential::new("env/CREDSHIFT_T2_X".parse().unwrap(), Kind::Other, "v");
        let e = s.write(&c).unwrap_err();
        assert!(matches!(e, StoreError::ReadOnly { .. }), "{e}");
        assert!(e.to_string().contains("read-only"), "{e}");
        assert!(s.delete(&c.id).is_err());
        assert!(s.check(&c).is_some());
        let p = s.probe();
        assert!(p.available && p.readable && !p.writable && !p.persistent);
    }
}
