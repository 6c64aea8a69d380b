//! credshift: move stored credentials between storage backends without
//! losing or leaking one.

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
