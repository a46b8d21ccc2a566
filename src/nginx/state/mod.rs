//! A zone's shared memory and its state file: what persists, and what every
//! worker shares. Knows nothing of the configuration or the network.

pub mod state_file;
pub mod zone;
