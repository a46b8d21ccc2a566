//! The key hash the index and the ban filter share, and the filter's size
//! (the header's layout holds the filter): below the three files that use
//! them, so none of them imports another in a circle.

use crate::engine::key::Key;

/// Counters in the ban filter (a power of two): 4 KiB of header, so that
/// with up to a few hundred bans most checks need no lock.
pub(super) const FILTER_SLOTS: usize = 2048;

/// A key's hash under the zone's seed.
#[inline]
pub(super) fn hash(seed: [u64; 2], key: &Key) -> u64 {
    fold_mul(first_round(seed, key), 0x9e37_79b9_7f4a_7c15 ^ seed[0])
}

/// The counter of the ban filter that `key` takes: one multiply-fold under
/// the zone's seed, cheaper than [`hash`] (it is on every request while
/// bans exist). A weaker spread only costs a colliding client the locked
/// check, never a wrong answer; the index, where collisions cost walks,
/// keeps [`hash`].
#[inline]
pub(super) fn filter_slot(seed: [u64; 2], key: &Key) -> usize {
    let h = first_round(seed, key);
    // The top bits: those every bit of the key reaches (an IPv4 address
    // lies in the upper half of `lo`, which the product's low bits never
    // see).
    (h >> (64 - FILTER_SLOTS.trailing_zeros())) as usize
}

/// The key's address and length folded with the seed: all of
/// [`filter_slot`]'s mixing, the first half of [`hash`]'s.
#[inline]
fn first_round(seed: [u64; 2], key: &Key) -> u64 {
    let addr = key.raw_addr();
    let hi = u64::from_le_bytes(addr[..8].try_into().unwrap_or_default());
    let lo = u64::from_le_bytes(addr[8..].try_into().unwrap_or_default());
    fold_mul(hi ^ seed[0], lo ^ seed[1] ^ u64::from(key.raw_prefix()))
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}
