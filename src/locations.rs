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
    specs
}
