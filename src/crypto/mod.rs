//! Cryptography: credshift's own envelope and key derivation, and the
//! formats of the systems credshift reads and writes.
