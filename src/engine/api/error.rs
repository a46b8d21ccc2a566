//! Every refusal of the management endpoint, with its HTTP status and its
//! reason; and the paging limits a query may ask for, which they state.

use crate::engine::key::Key;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// A zone holds fewer than 2^32 bans.
pub const MAX_OFFSET: u64 = u32::MAX as u64;

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
    /// The value is not echoed: it may be a secret given by mistake.
    #[error("invalid hash: expected the 32 hex digits of a listed key_hash")]
    InvalidHash,
    /// An empty key is never counted, so never banned.
    #[error("empty key")]
    EmptyKey,
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
    /// The parameter naming the one key (`addr`, `key` or `hash`).
    #[error("format, limit and offset do not apply to one {0}")]
    NotForOne(&'static str),
    #[error("{0} needs zone")]
    NeedsZone(&'static str),
    #[error("zone and addr (or key, hash) are required")]
    ZoneAndAddrRequired,
    #[error("give only one of addr, key and hash")]
    OneSubject,
    /// A hash that no ban is listed under would be a ban no request meets.
    #[error("hash applies only to GET and DELETE: ban a key by its value")]
    NoBanByHash,
    // 400: a subject the zone's kind does not take.
    #[error("zone \"{0}\" is a key zone: name a key with key= or hash=, not addr=")]
    AddrInKeyZone(String),
    #[error("zone \"{zone}\" is an address zone: {param}= applies only to key zones")]
    KeyInAddressZone { zone: String, param: &'static str },
    // 400: the request itself.
    #[error("no request body is expected")]
    BodyRefused,
    // 404
    #[error("unknown zone \"{0}\"")]
    UnknownZone(String),
    #[error("{key} is not tracked in zone \"{zone}\"")]
    Untracked { key: Key, zone: String },
    /// A key zone's key, named by its hash, never its value.
    #[error("key_hash {hash} is not tracked in zone \"{zone}\"")]
    UntrackedKey { hash: String, zone: String },
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
            ApiError::UnknownZone(_)
            | ApiError::Untracked { .. }
            | ApiError::UntrackedKey { .. } => 404,
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
