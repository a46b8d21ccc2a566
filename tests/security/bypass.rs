//! (filled in by the bypass work)

#[allow(unused_imports)]
use crate::common::*;
