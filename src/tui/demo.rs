//! `credshift demo`: the bundled demo data (fake values only) copied into a
//! fresh private folder, with an encrypted file there as the default target.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::fsutil;
use crate::store::StoreSpec;

macro_rules! asset {
    ($rel:literal) => {
        (
            $rel,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo/", $rel)),
        )
    };
}

/// Every demo file: path under the demo folder, contents.
pub const FILES: &[(&str, &str)] = &[
    asset!("prompttrain/credentials/accounts/demo-api.credentials.json"),
    asset!("prompttrain/credentials/accounts/demo-oauth.credentials.json"),
    asset!("prompttrain/credentials/accounts/demo-expired.credentials.json"),
    asset!("prompttrain/credentials/train-client-keys/demo-train.client-keys.json"),
    asset!("modelforge/config.json"),
    asset!("dotenv/.env"),
];

pub struct Demo {
    pub dir: PathBuf,
    pub state_dir: PathBuf,
}

impl Demo {
    pub fn source(&self) -> StoreSpec {
        StoreSpec::PromptTrain(self.dir.join("prompttrain/credentials"))
    }

    pub fn target(&self) -> StoreSpec {
        StoreSpec::Encrypted(self.dir.join("target.credshift"))
    }

    pub fn candidates(&self) -> Vec<StoreSpec> {
        vec![
            self.source(),
            StoreSpec::ModelForge(self.dir.join("modelforge/config.json")),
            StoreSpec::Dotenv(self.dir.join("dotenv/.env")),
            self.target(),
        ]
    }
}

/// Write the demo files into a new folder under the temp dir.
pub fn prepare() -> Result<Demo> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir =
        std::env::temp_dir().join(format!("credshift-demo-{}-{nanos:09}", std::process::id()));
    write_into(&dir)?;
    Ok(Demo {
        state_dir: dir.join("state"),
        dir,
    })
}

pub fn write_into(dir: &Path) -> Result<()> {
    fsutil::ensure_private_dir(dir)?;
    for (rel, text) in FILES {
        let path = dir.join(rel);
        let parent = fsutil::parent_dir(&path);
        let mut d = parent.as_path();
        // Private folders all the way down from the demo folder.
        let mut chain = Vec::new();
        while d != dir && d.starts_with(dir) {
            chain.push(d.to_path_buf());
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        for d in chain.iter().rev() {
            fsutil::ensure_private_dir(d)?;
        }
        fsutil::atomic_write(&path, text.as_bytes())?;
    }
    // The demo's .env is group-readable on purpose (its values are fake) so
    // the first screen shows the plaintext-permission warning.
    {
        use std::os::unix::fs::PermissionsExt;
        let env = dir.join("dotenv/.env");
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o640)).map_err(|e| {
            crate::error::StoreError::Io {
                location: env.display().to_string(),
                source: e,
            }
        })?;
    }
    Ok(())
}
