//! Security: a hostile client must find no way around a ban, and a careless
//! admin no configuration that silently means nothing. Each point is proved
//! against a real nginx (several workers) with the real module; one file per
//! concern under `tests/security/`.

mod common;

#[path = "security/api_grammar.rs"]
mod api_grammar;
#[path = "security/bypass.rs"]
mod bypass;
#[path = "security/config.rs"]
mod config;
#[path = "security/state_file.rs"]
mod state_file;
