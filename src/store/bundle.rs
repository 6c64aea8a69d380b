//! Placeholder: this backend is being written (see the open issues).

use crate::error::{Result, StoreError};
use crate::store::{OpenOptions, Store, StoreSpec};

pub fn open(spec: &StoreSpec, _opts: &OpenOptions) -> Result<Box<dyn Store>> {
    Err(StoreError::Unavailable {
        store: spec.to_string(),
        reason: "this backend is not built yet".into(),
    })
}
