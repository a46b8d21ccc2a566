//! The sync counters a zone keeps in its shared memory, so that the API
//! answers the same from every worker. Written with the zone locked, by the
//! worker whose link saw the event.

/// Bytes of the last error kept.
pub const LAST_ERROR_LEN: usize = 120;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SyncStats {
    pub failures_sent: u64,
    pub bans_sent: u64,
    pub bans_received: u64,
    pub unbans_sent: u64,
    pub unbans_received: u64,
    pub errors: u64,
    /// Failures not sent: the link was down, or owed Redis too many
    /// replies already.
    pub failures_dropped: u64,
    /// Bans from the fleet this zone's policy refused.
    pub records_refused: u64,
    /// Ban records a load could not read (too long, or not a record).
    pub records_skipped: u64,
    /// 1 while worker 0's links (commands and subscription) are up.
    pub connected: u32,
    /// Since when (unix seconds) the link has been down: bans made from
    /// then on are published when it comes back. 0 while up.
    pub down_since: u32,
    pub last_error_len: u32,
    pub last_error: [u8; LAST_ERROR_LEN],
}

impl SyncStats {
    pub const EMPTY: SyncStats = SyncStats {
        failures_sent: 0,
        bans_sent: 0,
        bans_received: 0,
        unbans_sent: 0,
        unbans_received: 0,
        errors: 0,
        failures_dropped: 0,
        records_refused: 0,
        records_skipped: 0,
        connected: 0,
        down_since: 0,
        last_error_len: 0,
        last_error: [0; LAST_ERROR_LEN],
    };

    /// Counts an error and keeps its text (cut at a character boundary).
    pub fn record_error(&mut self, text: &str) {
        self.errors += 1;
        self.last_error_len = keep_error(&mut self.last_error, text);
    }

    pub fn last_error(&self) -> Option<String> {
        read_error(&self.last_error, self.last_error_len)
    }
}

/// Copies as much of `text` as fits into `buf`, cut at a character
/// boundary so the kept text stays UTF-8; returns the bytes kept.
pub(super) fn keep_error(buf: &mut [u8; LAST_ERROR_LEN], text: &str) -> u32 {
    let mut end = text.len().min(LAST_ERROR_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    buf[..end].copy_from_slice(&text.as_bytes()[..end]);
    end as u32
}

/// The text [`keep_error`] kept, `None` if none. The length is clamped and
/// the bytes read lossily: the header is shared memory, not trusted.
pub(super) fn read_error(buf: &[u8; LAST_ERROR_LEN], len: u32) -> Option<String> {
    let len = (len as usize).min(LAST_ERROR_LEN);
    (len > 0).then(|| String::from_utf8_lossy(&buf[..len]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_is_cut_at_a_character() {
        let mut s = SyncStats::EMPTY;
        assert_eq!(s.last_error(), None);
        s.record_error(&"é".repeat(100));
        assert_eq!(s.errors, 1);
        assert_eq!(s.last_error().unwrap().chars().count(), 60);
    }
}
