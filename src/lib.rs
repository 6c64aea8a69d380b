//! credshift: move stored credentials between storage backends without
//! losing or leaking one.
//!
//! Platforms: Linux and other Unix with a Secret Service (README,
//! "Platforms"; ARCHITECTURE.md). File modes, locks, `exec` and the
//! keyring are Unix ones, and nobody builds or tests anything else.

// Only this error on another target: the modules and the dependencies
// (Cargo.toml) are Unix-only, so nothing else fails first.
#[cfg(not(unix))]
compile_error!(
    "credshift supports Linux and other Unix with a Secret Service; \
     Windows and other non-Unix targets are not supported (see README, Platforms)"
);

/// The items it wraps exist only on Unix.
macro_rules! unix_only {
    ($($item:item)*) => { $(#[cfg(unix)] $item)* };
}

unix_only! {
    pub mod credential;
    pub mod crypto;
    pub mod engine;
    pub mod error;
    pub mod exec;
    pub mod fsutil;
    #[doc(hidden)]
    pub mod fuzzing;
    pub mod keys;
    pub mod locations;
    pub mod qr;
    pub mod scrub;
    pub mod store;
    pub mod test_aids;
    pub mod tui;
    pub mod unlock;
    pub mod web;
    pub mod wizard;
    pub mod zeroing_alloc;
}
