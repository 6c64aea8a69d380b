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

#[cfg(unix)]
pub mod credential;
#[cfg(unix)]
pub mod crypto;
#[cfg(unix)]
pub mod engine;
#[cfg(unix)]
pub mod error;
#[cfg(unix)]
pub mod exec;
#[cfg(unix)]
pub mod fsutil;
#[doc(hidden)]
#[cfg(unix)]
pub mod fuzzing;
#[cfg(unix)]
pub mod keys;
#[cfg(unix)]
pub mod locations;
#[cfg(unix)]
pub mod qr;
#[cfg(unix)]
pub mod scrub;
#[cfg(unix)]
pub mod store;
#[cfg(unix)]
pub mod test_aids;
#[cfg(unix)]
pub mod tui;
#[cfg(unix)]
pub mod unlock;
#[cfg(unix)]
pub mod web;
#[cfg(unix)]
pub mod wizard;
#[cfg(unix)]
pub mod zeroing_alloc;
