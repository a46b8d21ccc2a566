//! (filled in by the state_file work)

#[allow(unused_imports)]
use crate::common::*;
