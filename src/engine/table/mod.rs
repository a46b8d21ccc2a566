//! The jail's table: a fixed-size table of addresses laid out in one byte
//! region (nginx shared memory in production, a plain buffer in tests).
//!
//! The region never grows. It holds a header, a hash index of `u32` bucket
//! heads (two slots per bucket on average) and 48-byte slots, so one address
//! costs 50 bytes: about 20,600 per MiB with the ~5 KiB header, IPv6
//! included. Slots sit on intrusive lists: addresses that are only counted,
//! most recently failing first; remembered offenders; and bans, ordered by
//! their end. When the table is full the least recently failing counted
//! address is forgotten, then remembered offenders; a ban is dropped only
//! when nothing else is left, and then the one ending soonest.
//!
//! Callers serialise access (the zone's slab-pool mutex); nothing here
//! allocates or blocks, so the lock is held for a few hundred instructions.
//! One read needs no lock: `may_be_banned`, over atomics in the header, lets
//! a request that no ban can cover skip the lock altogether. Another lets a
//! worker refuse a client it already found banned under the lock
//! ([`refused_from_memory`]), while no ban of the zone changed since.
//!
//! One concern per file:
//!
//! - `layout`: the region's layout and versioning (header, magic,
//!   [`LAYOUT_VERSION`], `format`, `attach`, [`stored_len`]); the header is
//!   split into the part used under the lock and the atomics read without.
//! - `hash`: the key hash and the filter's size, shared by `index`,
//!   `filter` and `layout` (below all three).
//! - `index`: the hash index and the intrusive lists, every walk bounded.
//! - `filter`: the lock-free ban filter ([`may_be_banned`], the counting
//!   filter, the mask of banned network lengths).
//! - `refusals`: a worker's memory of the bans it saw under the lock
//!   ([`Refusals`]), valid while the zone's ban generation stands.
//! - `jail`: counting, banning, escalation, widening, expiry.
//! - `remote`: what other nodes of a fleet decided (fleet sync).
//! - `sync_stats`: the fleet sync counters the zone keeps in its header, so
//!   that the API answers the same from every worker.
//! - `crowdsec_stats`: likewise for the zone's CrowdSec bouncer.
//! - `types`: what callers give and get (policy, time, verdicts, bans...).
//!
//! # Policy and reload
//!
//! The policy is configuration, not shared state: the region never stores
//! it, and a table applies the policy it is attached with
//! ([`Table::attach`]), that is the zone's configured one. What a reload
//! (a new configuration over the same zone) may change:
//!
//! - **findtime**: the window step (`ceil(findtime/3)`) the running counts
//!   were made with is shared state in the header. The master applies a new
//!   findtime once, on adopting the zone ([`Table::apply_findtime`]): all
//!   running counts restart from zero under the new step. Attaching with
//!   another findtime changes nothing, so the old cycle's workers, still
//!   finishing their requests, count on the same step as the new ones.
//! - **maxretry, bantime, increment, factor, maxtime, history, prefixes,
//!   widen**: apply from the next operation on, to the counts and offence
//!   histories already held: an address whose count already reaches a
//!   lower maxretry is banned at its next failure, not at the reload; a
//!   new bantime applies to bans made from then on.
//! - **bans in force** are kept as they are, with the end they were given
//!   (whatever the new bantime), and bans made under another prefix keep
//!   refusing the addresses they cover.
//!
//! Until the old cycle's workers exit, they apply the old policy to what
//! they serve; the new workers apply the new one.
//!
//! # Damaged memory
//!
//! Nothing read from the region is trusted to index or loop: [`Table::attach`]
//! refuses a header that contradicts itself (`LayoutError::Damaged`), and
//! every walk along links is bounded by the capacity. A walk that would
//! exceed it, or a link out of range, marks the table damaged
//! ([`Table::damaged`]); the caller then discards the results and formats
//! the region again rather than trusting it.

mod attach;
pub mod crowdsec_stats;
mod filter;
mod handle;
mod hash;
mod index;
mod jail;
mod layout;
mod refusals;
mod remote;
pub mod sync_stats;
mod types;

pub use crowdsec_stats::CrowdsecStats;
pub use filter::{holds_bans, may_be_banned, may_be_banned_within};
pub use handle::Table;
pub use layout::{
    capacity_for, header_len, stored_len, LayoutError, BYTES_PER_ADDRESS, LAYOUT_VERSION,
};
pub use refusals::{refused_from_memory, Refusals};
pub use remote::{Unacceptable, MAX_CLOCK_SKEW};
pub use sync_stats::SyncStats;
pub use types::{
    wider_prefix, Ban, Event, Events, Failure, KeyStatus, Now, Policy, Record, Stats, Verdict,
    MAX_BAN_SECS,
};

/// The former name of [`KeyStatus`], kept while callers move to it.
pub type AddressState = KeyStatus;

#[cfg(test)]
mod tests;
