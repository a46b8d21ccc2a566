//! What authban decided for a request, kept where an internal redirect
//! cannot clear it.
//!
//! nginx zeroes every module's request context on an internal redirect
//! (`try_files` to a named location, `error_page`, `X-Accel-Redirect`), so a
//! record there would be lost and the response judged by a location without
//! authban. It keeps `r->variables`, though: allocated (zeroed) once per
//! main request, kept across internal redirects and named locations, and
//! shared by its subrequests. The record is one slot of it, the value of a
//! variable authban declares for itself (never in the variables' hash, so
//! no configuration finds it by name at run time): the deciding location's
//! configuration in its `data`, and the decision in the bits nginx keeps a
//! value's length in. No allocation, a few loads and one store a request.
//!
//! A configuration that names the variable anyway cannot forge it (`set`,
//! `map` and the like refuse a variable that is not changeable) nor read
//! it: nginx asks its handler, which says "not found" and leaves the
//! record as it is.

use core::ptr;

use nginx_sys::{ngx_http_request_t, ngx_http_variable_value_t};
use ngx::http::{HttpModuleMainConf, Request};

use crate::nginx::conf::accessor::Module;
use crate::nginx::conf::loc::LocConf;

/// What authban did with a request, for `$authban_status`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    Passed,
    Banned,
    Ignored,
    DryRun,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Passed => "PASSED",
            Outcome::Banned => "BANNED",
            Outcome::Ignored => "IGNORED",
            Outcome::DryRun => "DRY_RUN",
        }
    }

    const ALL: [Outcome; 4] = [
        Outcome::Passed,
        Outcome::Banned,
        Outcome::Ignored,
        Outcome::DryRun,
    ];
}

/// The record's bits, in the 28 bits of a value's length (the 4 bits above
/// are nginx's flags, left alone).
const RECORDED: u32 = 1;
const OUTCOME_SHIFT: u32 = 1;
const OUTCOME_MASK: u32 = 0b11 << OUTCOME_SHIFT;
const COUNTED: u32 = 1 << 3;
const REFUSED_SHIFT: u32 = 4;
/// Ten bits: any HTTP status.
const REFUSED_MASK: u32 = 0x3ff << REFUSED_SHIFT;
/// Four bits: which of the location's zones banned the request (0: the
/// first, as the plain check of one zone leaves it).
const DECIDED_SHIFT: u32 = 14;
const DECIDED_MASK: u32 = 0xf << DECIDED_SHIFT;
const FLAGS: u32 = 0xf << 28;

/// A request's record: its slot in the main request's variables.
#[derive(Clone, Copy)]
pub struct RequestRecord {
    slot: *mut ngx_http_variable_value_t,
}

/// The slot of `r`'s record: the same for the main request, after any
/// internal redirect, and for every subrequest.
fn slot_of(r: &Request) -> Option<*mut ngx_http_variable_value_t> {
    let index = Module::main_conf(r.as_ref())?.record_index?;
    let req: &ngx_http_request_t = r.as_ref();
    // SAFETY: `variables` holds one value per indexed variable of the
    // request's cycle, ours among them (its index is that cycle's).
    (!req.variables.is_null()).then(|| unsafe { req.variables.add(index) })
}

impl RequestRecord {
    /// The bits of the slot's length word.
    fn bits(self) -> u32 {
        // SAFETY: a live request's variable value; its bitfield word is a
        // 4-byte aligned u32 (the struct's alignment field says so).
        unsafe { ptr::addr_of!((*self.slot)._bitfield_1).cast::<u32>().read() & !FLAGS }
    }

    fn set_bits(self, bits: u32) {
        // SAFETY: as in `bits`; nginx's flags are kept as they are.
        unsafe {
            let word = ptr::addr_of_mut!((*self.slot)._bitfield_1).cast::<u32>();
            word.write((word.read() & FLAGS) | (bits & !FLAGS));
        }
    }

    /// The record a check made for `r`'s main request, if any.
    #[inline]
    pub fn find(r: &Request) -> Option<RequestRecord> {
        let record = RequestRecord { slot: slot_of(r)? };
        (record.bits() & RECORDED != 0).then_some(record)
    }

    /// Makes the record of `r`'s main request (none may exist yet).
    #[inline]
    pub fn attach(r: &Request, lcf: &'static LocConf, outcome: Outcome) -> Option<RequestRecord> {
        let record = RequestRecord { slot: slot_of(r)? };
        // SAFETY: the slot is live for the request; the configuration
        // lives as long as the cycle.
        unsafe { (*record.slot).data = ptr::from_ref(lcf).cast_mut().cast() };
        record.set_bits(RECORDED | (outcome as u32) << OUTCOME_SHIFT);
        Some(record)
    }

    /// The location whose check took the request: its zone, failure
    /// statuses, ignore list and log level judge the final response.
    pub fn lcf(self) -> &'static LocConf {
        // SAFETY: `attach` stored a configuration of the running cycle
        // before setting RECORDED, which `find` checks.
        unsafe { &*(*self.slot).data.cast::<LocConf>() }
    }

    pub fn outcome(self) -> Outcome {
        Outcome::ALL[((self.bits() & OUTCOME_MASK) >> OUTCOME_SHIFT) as usize]
    }

    pub fn set_outcome(self, outcome: Outcome) {
        self.set_bits((self.bits() & !OUTCOME_MASK) | (outcome as u32) << OUTCOME_SHIFT);
    }

    /// The status authban refused the request with: it is refused again in
    /// any location it is redirected to.
    pub fn refused_with(self) -> Option<u16> {
        match (self.bits() & REFUSED_MASK) >> REFUSED_SHIFT {
            0 => None,
            status => Some(status as u16),
        }
    }

    pub fn set_refused_with(self, status: u16) {
        let status = (u32::from(status) << REFUSED_SHIFT) & REFUSED_MASK;
        self.set_bits((self.bits() & !REFUSED_MASK) | status);
    }

    /// Which of the location's zones (`authban a b ...`, by position)
    /// banned the request.
    pub fn decided_by(self) -> usize {
        ((self.bits() & DECIDED_MASK) >> DECIDED_SHIFT) as usize
    }

    pub fn set_decided_by(self, index: usize) {
        let index = (index.min(15) as u32) << DECIDED_SHIFT;
        self.set_bits((self.bits() & !DECIDED_MASK) | index);
    }

    /// The final status was counted (header filter or log phase, once).
    pub fn counted(self) -> bool {
        self.bits() & COUNTED != 0
    }

    pub fn set_counted(self) {
        self.set_bits(self.bits() | COUNTED);
    }
}
