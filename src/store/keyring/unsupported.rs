//! A Unix without a Secret Service (macOS, iOS, Android): credshift offers
//! no OS keyring there (it supports Linux and other Unix with a Secret
//! Service; README, "Platforms"), and says so instead of pretending.

use super::{Backend, Fail, Limit};

pub(crate) const LIMIT: Limit = Limit {
    max: None,
    utf16: false,
    name: "the OS keyring",
};

pub(crate) fn connect(_service: &str) -> Result<Box<dyn Backend>, Fail> {
    Err(Fail::Unavailable(
        "keyring: credshift supports the OS keyring only through a Secret Service \
         (Linux and other Unix running gnome-keyring or KeePassXC); this system has \
         none, use encrypted:PATH instead"
            .into(),
    ))
}
