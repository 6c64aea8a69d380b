//! The migration engine: assess, inventory, plan, execute, verify, cleanup,
//! and the recovery steps. Never imports ratatui or crossterm.

pub mod types;

pub use types::*;
pub mod assess;
pub mod inventory;
