//! What nginx calls for requests: phase handlers, the header filter, the
//! management endpoint and the variables.

pub mod access;
pub mod api;
pub mod body;
pub mod key;
pub mod param;
pub mod realip;
pub mod record;
pub mod variables;
