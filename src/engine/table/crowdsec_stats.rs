//! The CrowdSec counters a zone keeps in its shared memory, so that the API
//! answers the same from every worker. Written with the zone locked, by the
//! worker that talked to the LAPI.

use super::sync_stats::{keep_error, read_error, LAST_ERROR_LEN};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct CrowdsecStats {
    /// Ban decisions that made a ban, or changed one in force.
    pub decisions_applied: u64,
    /// Bans lifted because the LAPI deleted their decision.
    pub decisions_deleted: u64,
    /// Decisions not acted on: not a ban, simulated, of an unknown scope,
    /// or the deletion of a ban authban did not take from CrowdSec.
    pub decisions_ignored: u64,
    /// Bans the zone's policy refused: a wider network or a longer ban
    /// than the zone allows.
    pub decisions_refused: u64,
    /// Entries of an answer that could not be read.
    pub decisions_malformed: u64,
    pub alerts_sent: u64,
    pub alerts_failed: u64,
    /// Successful pulls of the decision stream.
    pub pulls: u64,
    pub errors: u64,
    /// 1 while the last exchange with the LAPI succeeded.
    pub connected: u32,
    /// Unix seconds of the last successful pull, 0 never.
    pub last_pull: u32,
    pub last_error_len: u32,
    pub last_error: [u8; LAST_ERROR_LEN],
}

impl CrowdsecStats {
    // SAFETY: every field is an integer or an array of them, for which all
    // zero bytes are a valid value (and the one wanted).
    pub const EMPTY: CrowdsecStats = unsafe { core::mem::zeroed() };

    /// Counts an error and keeps its text (cut at a character boundary).
    pub fn record_error(&mut self, text: &str) {
        self.errors += 1;
        self.last_error_len = keep_error(&mut self.last_error, text);
    }

    pub fn last_error(&self) -> Option<String> {
        read_error(&self.last_error, self.last_error_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_and_the_last_kept() {
        let mut s = CrowdsecStats::EMPTY;
        assert_eq!((s.errors, s.last_error()), (0, None));
        // 3-byte characters: 40 fill the 120 bytes, the 41st is cut whole.
        s.record_error(&"€".repeat(41));
        assert_eq!(s.last_error(), Some("€".repeat(40)));
        // A shorter text replaces a longer one entirely.
        s.record_error("refused");
        assert_eq!((s.errors, s.last_error().as_deref()), (2, Some("refused")));
        // A length the memory cannot hold is clamped, not trusted.
        s.last_error_len = u32::MAX;
        assert!(s.last_error().is_some_and(|e| e.starts_with("refused")));
    }
}
