//! Cryptography: credshift's own envelope and key derivation, and the
//! formats of the systems credshift reads and writes.

pub mod aead;
pub mod envelope;
pub mod kdf;
pub mod laravel;
pub mod prompttrain;
pub mod sql;
