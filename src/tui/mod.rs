//! Placeholder: the terminal UI is being written.
