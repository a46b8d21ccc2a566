//! The bottom of the glue: nothing here imports from the rest of it.

pub mod clock;
pub mod guard;
pub mod log;
pub mod process;
