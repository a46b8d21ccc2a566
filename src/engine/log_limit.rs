//! Rate limits for log lines an attacker can multiply (a zone flushed by
//! bans, expiries by the thousand): the first few lines of each second are
//! written, the rest are counted and summed up in one line later.

use core::cell::Cell;

/// Lines of one kind written per second (per process) before the rest are
/// only counted: enough to see what happens, too few to flood the log.
pub const BURST: u32 = 5;

/// What to do with one more line of a kind.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write it; `suppressed` lines of its kind were dropped since the last
    /// one written, over `over_secs` seconds: write a summary first.
    Write {
        suppressed: u32,
        over_secs: u32,
    },
    Drop,
}

/// One kind of line, per process (each worker writes its own summaries).
#[derive(Default)]
pub struct LogLimit {
    second: Cell<u32>,
    written: Cell<u32>,
    suppressed: Cell<u32>,
    suppressed_since: Cell<u32>,
}

impl LogLimit {
    pub fn admit(&self, now_secs: u32) -> Admit {
        if now_secs > self.second.get() {
            self.second.set(now_secs);
            self.written.set(0);
        }
        if self.written.get() >= BURST {
            if self.suppressed.get() == 0 {
                self.suppressed_since.set(now_secs);
            }
            self.suppressed.set(self.suppressed.get().saturating_add(1));
            return Admit::Drop;
        }
        self.written.set(self.written.get() + 1);
        let suppressed = self.suppressed.replace(0);
        let over_secs = match suppressed {
            0 => 0,
            _ => now_secs.saturating_sub(self.suppressed_since.get()).max(1),
        };
        Admit::Write {
            suppressed,
            over_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(suppressed: u32, over_secs: u32) -> Admit {
        Admit::Write {
            suppressed,
            over_secs,
        }
    }

    #[test]
    fn a_burst_a_second_and_a_count_of_the_rest() {
        let limit = LogLimit::default();
        for _ in 0..BURST {
            assert_eq!(limit.admit(100), written(0, 0));
        }
        for _ in 0..5000 {
            assert_eq!(limit.admit(100), Admit::Drop);
        }
        assert_eq!(limit.admit(101), written(5000, 1));
        assert_eq!(limit.admit(101), written(0, 0));
        for _ in 2..BURST {
            limit.admit(101);
        }
        assert_eq!(limit.admit(101), Admit::Drop);
        assert_eq!(limit.admit(104), written(1, 3));
        // A clock that steps back stays within the current second's burst.
        assert_eq!(limit.admit(90), written(0, 0));
    }
}
