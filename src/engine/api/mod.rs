//! The management endpoint, free of nginx. `nginx::http::api` feeds it a real
//! request and sends what it returns.
//!
//! - [`request`]: the query grammar and routing, from a query string and a
//!   method to an [`Action`].
//! - [`response`]: the answers' model: `Serialize` structs that are the JSON
//!   schema, and the Prometheus text.
//! - [`error`]: every refusal ([`ApiError`]), with its HTTP status and its
//!   reason, and the paging limits the refusals state.

pub mod error;
pub mod request;
pub mod response;

pub use error::{AddrError, ApiError, DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET};
pub use request::{
    parse_addr, parse_hash, parse_query, route, Action, Format, Method, Query, Subject, Target,
};
pub use response::{
    address_json, ban_json, error_json, iso8601, prometheus, unban_json, zone_json, zones_json,
    CrowdsecView, Naming, SyncView, ZoneView,
};
