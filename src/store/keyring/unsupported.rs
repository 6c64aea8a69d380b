//! No OS keyring credshift can use on this platform.

use super::{Backend, Fail, Limit};

pub(crate) const LIMIT: Limit = Limit {
    max: None,
    utf16: false,
    name: "the OS keyring",
};

pub(crate) fn connect(_service: &str) -> Result<Box<dyn Backend>, Fail> {
    Err(Fail::Unavailable(
        "credshift has no OS keyring for this platform; use encrypted:PATH".into(),
    ))
}
