//! The management endpoint, free of nginx. `api_handler` feeds it a real
//! request and sends what it returns.
//!
//! - [`request`]: the query grammar and routing, from a query string and a
//!   method to an [`Action`].
//! - [`response`]: the answers' model: `Serialize` structs that are the JSON
//!   schema, and the Prometheus text.
//! - [`ApiError`]: every refusal, with its HTTP status and its reason.

pub mod request;
pub mod response;

use crate::engine::key::Key;

pub use request::{
    parse_addr, parse_query, route, Action, Format, Method, Query, Target, DEFAULT_LIMIT,
    MAX_LIMIT, MAX_OFFSET,
};
pub use response::{
    address_json, ban_json, error_json, iso8601, prometheus, unban_json, zone_json, zones_json,
    SyncView, ZoneView,
};

/// Why an `addr` is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("expected an IP address or CIDR network")]
    NotAnAddress,
    #[error("prefix length must be 0 to 32")]
    V4PrefixLen,
    #[error("an IPv4-mapped prefix length must be 96 to 128")]
    MappedPrefixLen,
    #[error("prefix length must be 0 to 128")]
    V6PrefixLen,
}

/// A request the endpoint refuses: [`ApiError::status`] is the HTTP status,
/// the `Display` text the reason in the JSON `error` field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    // 400: the query string.
    #[error("malformed query string")]
    MalformedQuery,
    #[error("unknown parameter \"{0}\"")]
    UnknownParameter(String),
    #[error("parameter \"{0}\" given twice")]
    Repeated(String),
    #[error("empty zone")]
    EmptyZone,
    #[error("invalid addr \"{value}\": {why}")]
    InvalidAddr { value: String, why: AddrError },
    #[error("invalid time \"{0}\": expected an nginx time such as 30m")]
    InvalidTime(String),
    /// Longer than [`crate::engine::table::MAX_BAN_SECS`].
    #[error("invalid time \"{0}\": at most 1y")]
    TimeTooLong(String),
    #[error("invalid format \"{0}\": expected json or prometheus")]
    InvalidFormat(String),
    #[error("invalid limit \"{0}\": expected 1 to {MAX_LIMIT}")]
    InvalidLimit(String),
    #[error("invalid offset \"{0}\"")]
    InvalidOffset(String),
    // 400: parameters that do not go together.
    #[error("time applies only to POST")]
    TimeOnlyForPost,
    #[error("format, limit and offset apply only to GET")]
    OnlyForGet,
    #[error("limit and offset need zone")]
    PagingNeedsZone,
    #[error("limit and offset apply only to JSON")]
    PagingOnlyJson,
    #[error("format, limit and offset do not apply to one addr")]
    NotForOneAddr,
    #[error("addr needs zone")]
    AddrNeedsZone,
    #[error("zone and addr are required")]
    ZoneAndAddrRequired,
    // 400: the request itself.
    #[error("no request body is expected")]
    BodyRefused,
    // 404
    #[error("unknown zone \"{0}\"")]
    UnknownZone(String),
    #[error("{key} is not tracked in zone \"{zone}\"")]
    Untracked { key: Key, zone: String },
    // 405, sent with `Allow`.
    #[error("method not allowed: use GET, POST or DELETE")]
    MethodNotAllowed,
    // 503
    #[error("zone \"{0}\" is not available")]
    Unavailable(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::UnknownZone(_) | ApiError::Untracked { .. } => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::Unavailable(_) => 503,
            _ => 400,
        }
    }

    /// The reason as the answer's `error` field gives it.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}
