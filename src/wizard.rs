//! Placeholder: the wizard's pure state machine is being written.
