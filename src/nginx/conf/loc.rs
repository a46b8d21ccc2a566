//! A location's settings (`authban`, `authban_fail_status`, ...), as merged
//! from the server and http levels, and the set of statuses any location
//! counts.

use core::sync::atomic::{AtomicU64, Ordering};
use std::rc::Rc;

use ipnet::IpNet;
use ngx::http::{Merge, MergeConfigError};

use crate::nginx::base::log::DEFAULT_LOG_LEVEL;
use crate::nginx::conf::declared::{DeclaredZone, ZoneSlot};
use crate::nginx::state::zone::Zone;

pub const DEFAULT_FAIL_STATUS: &[u16] = &[401];

/// Every status some location counts as a failure (the default's 401 and
/// every `authban_fail_status` read), one bit each: the header filter and
/// the log phase, which run for every response, skip all others at once.
/// Set while configuration is read, in one thread; a code a reload no
/// longer uses only costs that response the full check.
static FAIL_STATUSES: [AtomicU64; 10] = [const { AtomicU64::new(0) }; 10];

pub fn note_fail_status(code: u16) {
    let code = usize::from(code);
    if let Some(word) = FAIL_STATUSES.get(code / 64) {
        word.fetch_or(1 << (code % 64), Ordering::Relaxed);
    }
}

/// Whether any location may count `status` as a failure.
pub fn may_be_fail_status(status: usize) -> bool {
    if DEFAULT_FAIL_STATUS
        .iter()
        .any(|&s| usize::from(s) == status)
    {
        return true;
    }
    FAIL_STATUSES
        .get(status / 64)
        .is_some_and(|word| word.load(Ordering::Relaxed) & (1 << (status % 64)) != 0)
}

/// A zone has `familiar=`: the header filter looks at successful (2xx)
/// responses too, through the failure statuses' one test (a reload that
/// drops `familiar=` leaves them noted, which costs each 2xx a look).
pub fn note_familiar() {
    for code in 200..300 {
        note_fail_status(code);
    }
}

pub const DEFAULT_REFUSE_STATUS: u16 = 403;

/// Where `authban` is set: unset (inherit), off, or the zone it names.
#[derive(Clone, Default)]
pub enum ZoneChoice {
    #[default]
    Unset,
    Off,
    Zone(Rc<ZoneSlot>),
}

#[derive(Default)]
pub struct LocConf {
    pub zone: ZoneChoice,
    /// `authban a b ...`: the zones after the first, checked and counted
    /// alike (set and inherited with `zone`).
    pub more_zones: Vec<Rc<ZoneSlot>>,
    /// Set by `merge`: this location reads bodies or names several zones,
    /// so its requests take the fuller check (one byte for the common
    /// path to test).
    pub beyond_plain: bool,
    pub fail_status: Option<Vec<u16>>,
    pub refuse_status: Option<u16>,
    pub ignore: Option<Vec<IpNet>>,
    pub dry_run: Option<bool>,
    pub log_level: Option<usize>,
    pub read_body: Option<bool>,
}

impl LocConf {
    /// The zone `authban NAME` names here, and its fleet.
    pub fn declared(&self) -> Option<&DeclaredZone> {
        match &self.zone {
            // Found in postconfiguration, before any request.
            ZoneChoice::Zone(slot) => slot.get().map(|z| &**z),
            _ => None,
        }
    }

    pub fn zone(&self) -> Option<&Zone> {
        self.declared().map(|d| &*d.zone)
    }

    /// Every zone `authban` names here, in its order.
    pub fn all_zones(&self) -> impl Iterator<Item = &DeclaredZone> {
        self.declared().into_iter().chain(
            self.more_zones
                .iter()
                .filter_map(|slot| slot.get().map(|z| &**z)),
        )
    }

    pub fn fail_status(&self) -> &[u16] {
        self.fail_status.as_deref().unwrap_or(DEFAULT_FAIL_STATUS)
    }

    pub fn refuse_status(&self) -> u16 {
        self.refuse_status.unwrap_or(DEFAULT_REFUSE_STATUS)
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run.unwrap_or(false)
    }

    /// `authban_read_body`: a byte compare, all a location without it
    /// pays in the access phase.
    #[inline(always)]
    pub fn read_body(&self) -> bool {
        self.read_body == Some(true)
    }

    pub fn log_level(&self) -> usize {
        self.log_level.unwrap_or(DEFAULT_LOG_LEVEL)
    }

    pub fn is_ignored(&self, ip: std::net::IpAddr) -> bool {
        self.ignore
            .as_deref()
            .is_some_and(|nets| nets.iter().any(|net| net.contains(&ip)))
    }
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        if let ZoneChoice::Unset = self.zone {
            self.zone.clone_from(&prev.zone);
            self.more_zones.clone_from(&prev.more_zones);
        }
        if self.fail_status.is_none() {
            self.fail_status.clone_from(&prev.fail_status);
        }
        self.refuse_status = self.refuse_status.or(prev.refuse_status);
        if self.ignore.is_none() {
            self.ignore.clone_from(&prev.ignore);
        }
        self.dry_run = self.dry_run.or(prev.dry_run);
        self.log_level = self.log_level.or(prev.log_level);
        self.read_body = self.read_body.or(prev.read_body);
        self.beyond_plain = self.read_body() || !self.more_zones.is_empty();
        Ok(())
    }
}
