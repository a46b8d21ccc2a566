//! (filled in by the config work)

#[allow(unused_imports)]
use crate::common::*;
