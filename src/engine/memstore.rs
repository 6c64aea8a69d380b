//! The in-memory store moved to [`crate::store::memory`] (one test double
//! with the fault injection); this path stays for existing callers.

pub use crate::store::memory::MemStore;
