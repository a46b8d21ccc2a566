//! (filled in by the api_grammar work)

#[allow(unused_imports)]
use crate::common::*;
