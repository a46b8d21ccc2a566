//! Fleet sync through Redis, with no nginx in it: what several nginx nodes
//! share about a zone and how it is said to Redis.
//!
//! - `url`: the `sync=redis://...` value.
//! - `names`: Redis key names, the channel, and the text of ban records
//!   and of the messages nodes publish.
//! - `session`: one Redis connection's conversation (handshake, commands,
//!   replies) as a byte-in, byte-out state machine; the nginx glue moves
//!   the bytes over nginx's own connections, the master over a socket.
//! - `sign`: `sync_key=`, HMAC-SHA256 over records and messages.
//! - `snapshot`: every ban in Redis, read over a blocking socket (the
//!   master, filling a new zone).
//! - `wire`: the failure command and its reply, written and read in place
//!   (the hot path; all other RESP goes through the `redis-protocol` crate).
//!
//! What is shared: failures (a sliding findtime window per key in Redis,
//! on Redis's clock), bans (records with a TTL, and a message to every
//! node), API unbans. Decisions are always taken from the node's own zone;
//! Redis only feeds it.

pub mod names;
pub mod session;
pub mod sign;
pub mod snapshot;
pub mod url;
mod wire;

pub use names::{Names, RemoteBan};
pub use session::{Event, Role, Session};
pub use sign::Signer;
pub use url::SyncUrl;
