//! The findtime window: how failures are remembered in a few bytes.
//!
//! The rule, as documented in the README: findtime is cut into
//! `BUCKETS - 1` steps of `ceil(findtime / (BUCKETS - 1))` seconds and each
//! failure is added to the bucket of its step. An address's count is the sum
//! of the current bucket and the `BUCKETS - 1` before it, so a failure counts
//! for at least findtime and for less than `BUCKETS` steps (findtime + one
//! step, plus up to 2 s where findtime is not a multiple of 3 s). No interval
//! of findtime can therefore hold maxretry failures without a ban; the price
//! is that failures up to one step older may still count. A window that resets
//! every findtime would let 2*maxretry-1 failures through; this never does.

pub const BUCKETS: usize = 4;

/// Seconds per bucket for a findtime, never zero.
pub fn bucket_secs(findtime: u32) -> u32 {
    findtime.div_ceil(BUCKETS as u32 - 1).max(1)
}

/// Failure counts of one address: `counts[b % BUCKETS]` holds step `b`, and
/// `newest` is the latest step written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub newest: u32,
    pub counts: [u16; BUCKETS],
}

impl Window {
    /// Adds one failure in `step` and returns the count in the window.
    pub fn add(&mut self, step: u32) -> u32 {
        self.advance(step);
        let slot = &mut self.counts[step as usize % BUCKETS];
        *slot = slot.saturating_add(1);
        self.total(step.max(self.newest))
    }

    /// Failures that still count at `step`.
    pub fn total(&self, step: u32) -> u32 {
        if step >= self.newest.saturating_add(BUCKETS as u32) {
            return 0;
        }
        let oldest = step.saturating_sub(BUCKETS as u32 - 1);
        let first = oldest.max(self.newest.saturating_sub(BUCKETS as u32 - 1));
        (first..=self.newest.min(step))
            .map(|b| u32::from(self.counts[b as usize % BUCKETS]))
            .sum()
    }

    /// Clears the buckets that `step` reuses; a clock that went back keeps
    /// the counts (they only age more slowly) rather than losing them.
    fn advance(&mut self, step: u32) {
        if step <= self.newest {
            if self.newest - step >= BUCKETS as u32 {
                *self = Window::default();
                self.newest = step;
            }
            return;
        }
        if step - self.newest >= BUCKETS as u32 {
            self.counts = [0; BUCKETS];
        } else {
            for b in self.newest + 1..=step {
                self.counts[b as usize % BUCKETS] = 0;
            }
        }
        self.newest = step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_covers_findtime() {
        assert_eq!(bucket_secs(600), 200);
        assert_eq!(bucket_secs(10), 4);
        assert_eq!(bucket_secs(1), 1);
        assert_eq!(bucket_secs(0), 1);
    }

    #[test]
    fn failures_age_out_bucket_by_bucket() {
        let mut w = Window::default();
        assert_eq!(w.add(10), 1);
        assert_eq!(w.add(11), 2);
        assert_eq!(w.total(13), 2);
        assert_eq!(w.total(14), 1);
        assert_eq!(w.total(15), 0);
        assert_eq!(w.add(15), 1);
    }

    #[test]
    fn a_long_pause_forgets_everything() {
        let mut w = Window::default();
        w.add(1);
        w.add(1);
        assert_eq!(w.add(100), 1);
    }

    #[test]
    fn clock_going_back_keeps_counts() {
        let mut w = Window::default();
        w.add(50);
        assert_eq!(w.add(49), 2);
        assert_eq!(w.newest, 50);
    }
}
