//! Where a user keeps credentials: the stores `status` probes and the
//! wizard offers when none is named.

use std::path::PathBuf;

use crate::store::{self, StoreSpec};

/// The stores `status` probes when none is named: where a user would have them.
pub fn default_locations() -> Vec<StoreSpec> {
    let mut specs = Vec::new();
    // model-forge's two places: the local one wins when it exists.
    specs.push(StoreSpec::ModelForge(PathBuf::from(
        store::modelforge::LOCAL_CONFIG,
    )));
    if let Some(home) = dirs::home_dir() {
        specs.push(StoreSpec::ModelForge(
            home.join(store::modelforge::GLOBAL_CONFIG),
        ));
    }
    specs.push(StoreSpec::Dotenv(PathBuf::from(".env")));
    specs.push(StoreSpec::Keyring("credshift".into()));
    // A Vault/OpenBao the shell points at: its default KV v2 mount.
    let addr = ["VAULT_ADDR", "BAO_ADDR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|a| !a.is_empty()));
    if let Some(spec) = addr.and_then(|a| {
        format!("vault:{}/secret/credshift", a.trim_end_matches('/'))
            .parse()
            .ok()
    }) {
        specs.push(spec);
    }
    specs
}
