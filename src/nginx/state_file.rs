//! Keeping a zone's bans beyond its shared memory: filling a new zone (from
//! the previous cycle's zone of the same name on a resize, else from the
//! state file) and writing the state file from worker 0, periodically and
//! at exit. The file format itself is in `state`.
//!
//! Only worker 0 writes (or nginx itself without a master), so the file is
//! owned by the workers' user. The master reads it at zone creation and
//! trusts it only if that user or root owns it and no one else can write
//! it; at configuration time it checks that the workers' user can write
//! into its directory.

use core::ffi::{c_char, c_void, CStr};
use core::ptr;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nginx_sys::{
    ngx_add_timer, ngx_core_conf_t, ngx_core_module, ngx_cycle, ngx_cycle_t, ngx_event_t,
    ngx_exiting, ngx_int_t, ngx_list_part_t, ngx_log_t, ngx_pcalloc, ngx_process, ngx_shm_zone_t,
    ngx_worker, NGX_LOG_EMERG, NGX_LOG_NOTICE, NGX_LOG_WARN, NGX_OK, NGX_PROCESS_SINGLE,
    NGX_PROCESS_WORKER,
};
use ngx::http::HttpModuleMainConf;
use ngx::ngx_log_error;

use crate::engine::state_file;
use crate::engine::table::{Events, Record};
use crate::nginx::handlers::now;
use crate::nginx::module::{self, Module};
use crate::nginx::zone::Zone;

/// Called in the master right after a new (not reused) zone is formatted.
pub fn fill_new_zone(zone: &Zone, log: *mut ngx_log_t) {
    let now = now();
    let (records, source) = match previous_zone(&zone.name) {
        Some(old) => match old.with_table(|t| t.records(now)) {
            Some(records) => (records, "the previous zone".to_string()),
            None => return,
        },
        None => {
            let Some(path) = &zone.state else { return };
            let writer = Writer::of(zone.cycle);
            let capacity = zone.with_table(|t| t.capacity()).unwrap_or(0);
            match state_file::load(
                path,
                &zone.name,
                writer.uid,
                state_file::max_file_len(capacity),
            ) {
                Ok(Some(records)) => (records, path.display().to_string()),
                Ok(None) => return,
                Err(reason) => {
                    ngx_log_error!(
                        NGX_LOG_WARN,
                        log,
                        "authban: zone \"{}\": state file \"{}\" ignored ({}), starting empty",
                        zone.name,
                        path.display(),
                        reason
                    );
                    return;
                }
            }
        }
    };
    let restored = restore(zone, &records);
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "authban: zone \"{}\": restored {} of {} bans and histories from {}",
        zone.name,
        restored,
        records.len(),
        source
    );
}

/// The user that writes the state files: the `user` directive's (nginx's
/// default `nobody` if absent) when a master running as root starts the
/// workers, else the user nginx runs as.
struct Writer {
    uid: u32,
    gid: u32,
    name: Option<CString>,
}

impl Writer {
    fn of(cycle: *mut ngx_cycle_t) -> Writer {
        // SAFETY: geteuid and getegid have no preconditions.
        let (euid, egid) = unsafe { (nginx_sys::geteuid(), nginx_sys::getegid()) };
        // SAFETY: `cycle` is the cycle being initialised (set at
        // authban_zone); its core conf was created before the configuration
        // was read and completed by the core module's init_conf, which
        // runs before shared memory zones are initialised.
        let ccf = unsafe {
            cycle.as_ref().and_then(|c| {
                (*c.conf_ctx.add(ngx_core_module.index))
                    .cast::<ngx_core_conf_t>()
                    .as_ref()
            })
        };
        match ccf {
            Some(ccf) if euid == 0 && ccf.master != 0 && ccf.user != u32::MAX => Writer {
                uid: ccf.user,
                gid: ccf.group,
                // SAFETY: set with the user (the directive's word, or the
                // static NGX_USER), NUL-terminated.
                name: (!ccf.username.is_null())
                    .then(|| unsafe { CStr::from_ptr(ccf.username) }.to_owned()),
            },
            _ => Writer {
                uid: euid,
                gid: egid,
                name: user_name(euid),
            },
        }
    }

    fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("\"{}\" (uid {})", name.to_string_lossy(), self.uid),
            None => format!("with uid {}", self.uid),
        }
    }

    /// The groups the worker has: its group and the user's others, as
    /// nginx sets them with initgroups().
    fn groups(&self) -> Vec<u32> {
        let mut groups = vec![self.gid];
        let Some(name) = &self.name else {
            return groups;
        };
        let mut buf = vec![0u32; 64];
        for _ in 0..2 {
            let mut n = buf.len() as i32;
            // SAFETY: `buf` has room for `n` gids; `name` is NUL-terminated.
            let rc = unsafe {
                nginx_sys::getgrouplist(name.as_ptr(), self.gid, buf.as_mut_ptr(), &mut n)
            };
            if rc >= 0 {
                groups.extend(buf.iter().take(rc as usize));
                break;
            }
            // Too small: n is how many there are.
            buf.resize(n.max(0) as usize + 1, 0);
        }
        groups
    }

    /// Whether the writer may create and rename files in `dir`: search on
    /// every directory down to it, write and search on it.
    fn can_write_into(&self, dir: &Path) -> bool {
        // SAFETY: geteuid has no preconditions.
        if self.uid == unsafe { nginx_sys::geteuid() } {
            // This process's own rights, ACLs and read-only mounts included.
            let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
                return false;
            };
            // SAFETY: a NUL-terminated path; no other preconditions.
            let rc = unsafe {
                nginx_sys::faccessat(
                    nginx_sys::AT_FDCWD,
                    c.as_ptr(),
                    (nginx_sys::W_OK | nginx_sys::X_OK) as i32,
                    nginx_sys::AT_EACCESS as i32,
                )
            };
            return rc == 0;
        }
        // Root checks for another user: by the mode bits.
        let groups = self.groups();
        let Ok(dir) = std::fs::canonicalize(dir) else {
            return false;
        };
        let may = |p: &Path, want: u32| {
            std::fs::metadata(p).is_ok_and(|m| {
                state_file::permits(m.mode(), m.uid(), m.gid(), self.uid, &groups, want)
            })
        };
        dir.ancestors().skip(1).all(|a| may(a, 0o1)) && may(&dir, 0o3)
    }
}

fn user_name(uid: u32) -> Option<CString> {
    // SAFETY: getpwuid returns null or a static entry; nginx's master is
    // single-threaded, and the name is copied at once.
    unsafe {
        let pw = nginx_sys::getpwuid(uid).as_ref()?;
        (!pw.pw_name.is_null()).then(|| CStr::from_ptr(pw.pw_name.cast::<c_char>()).to_owned())
    }
}

/// At configuration (`nginx -t`, start, reload), in the master: the
/// directory of the zone's state file must exist (else the configuration
/// fails), and the workers' user should be able to write into it (else a
/// warning: ACLs and capabilities, which the mode bits do not show, may
/// still allow it, so this cannot be certain enough to refuse nginx).
pub fn check_state_dir(zone: &Zone, log: *mut ngx_log_t) -> Result<(), ()> {
    let Some(path) = &zone.state else {
        return Ok(());
    };
    let dir = state_file::dir_of(path);
    let problem = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => None,
        Ok(_) => Some("is not a directory".to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist".to_string()),
        Err(e) => Some(format!("cannot be used ({e})")),
    };
    if let Some(problem) = problem {
        ngx_log_error!(
            NGX_LOG_EMERG,
            log,
            "authban: zone \"{}\": directory \"{}\" of state file \"{}\" {}",
            zone.name,
            dir.display(),
            path.display(),
            problem
        );
        return Err(());
    }
    let writer = Writer::of(zone.cycle);
    if !writer.can_write_into(dir) {
        ngx_log_error!(
            NGX_LOG_WARN,
            log,
            "authban: zone \"{}\": state file \"{}\" cannot be written: directory \"{}\" \
             is not writable by user {}, which writes it; bans will not be saved",
            zone.name,
            path.display(),
            dir.display(),
            writer.describe()
        );
    }
    Ok(())
}

fn restore(zone: &Zone, records: &[Record]) -> usize {
    let now = now();
    let mut events = Events::default();
    zone.with_table(|t| {
        records
            .iter()
            .filter(|r| t.restore(r, now, &mut events))
            .count()
    })
    .unwrap_or(0)
}

/// During a reload, the cycle being replaced (still `ngx_cycle`) may hold a
/// zone of this name that was not reused because its size changed.
fn previous_zone(name: &str) -> Option<&'static Zone> {
    // SAFETY: in the master, while the new cycle initialises, ngx_cycle is
    // the running cycle; its shared memory list and zones are intact.
    let mut part: *const ngx_list_part_t = unsafe { &(*ngx_cycle).shared_memory.part };
    // SAFETY: the list's parts are chained by `next` and end with null.
    while let Some(p) = unsafe { part.as_ref() } {
        // At first start the running cycle is nginx's bare initial one,
        // whose list has no elements yet.
        if p.elts.is_null() || p.nelts == 0 {
            part = p.next;
            continue;
        }
        // SAFETY: each part holds nelts zone entries.
        let zones =
            unsafe { core::slice::from_raw_parts(p.elts.cast::<ngx_shm_zone_t>(), p.nelts) };
        for shm in zones {
            let ours = shm.tag == module::tag() && !shm.data.is_null() && !shm.shm.addr.is_null();
            if ours && shm.shm.name.to_str() == Ok(name) {
                // SAFETY: our zones' data is the Zone of that cycle.
                return unsafe { shm.data.cast::<Zone>().as_ref() };
            }
        }
        part = p.next;
    }
    None
}

/// Writes one zone's state file now.
pub fn save(zone: &Zone, log: *mut ngx_log_t) {
    let Some(path) = &zone.state else { return };
    let Some(records) = zone.with_table(|t| t.records(now())) else {
        return;
    };
    match state_file::write_atomic(path, &state_file::render(&zone.name, &records)) {
        Ok(()) => zone.state_failing.set(false),
        Err(err) if !zone.state_failing.replace(true) => {
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "authban: zone \"{}\": cannot write state file \"{}\": {}",
                zone.name,
                path.display(),
                err
            );
        }
        Err(_) => {}
    }
}

/// One process writes the files: worker 0, or nginx itself when it runs
/// without a master.
fn is_writer() -> bool {
    // SAFETY: process globals nginx sets before init_process.
    unsafe {
        ngx_process == NGX_PROCESS_SINGLE as nginx_sys::ngx_uint_t
            || (ngx_process == NGX_PROCESS_WORKER as nginx_sys::ngx_uint_t && ngx_worker == 0)
    }
}

fn zones_with_state(cycle: *mut ngx_cycle_t) -> Vec<&'static Zone> {
    // SAFETY: a running cycle; the http main conf exists if http{} does.
    let Some(main) = (unsafe { cycle.as_ref() }).and_then(Module::main_conf) else {
        return Vec::new();
    };
    main.zones
        .iter()
        // SAFETY: zones live in the configuration pool for the cycle.
        .filter_map(|&z| unsafe { z.as_ref() })
        .filter(|z| z.state.is_some())
        .collect()
}

pub unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    if !is_writer() {
        return NGX_OK as _;
    }
    for zone in zones_with_state(cycle) {
        // SAFETY: the cycle's pool outlives the worker's timers.
        let ev =
            unsafe { ngx_pcalloc((*cycle).pool, size_of::<ngx_event_t>()) }.cast::<ngx_event_t>();
        // SAFETY: null or a zeroed event from the pool.
        let Some(ev) = (unsafe { ev.as_mut() }) else {
            return nginx_sys::NGX_ERROR as _;
        };
        ev.handler = Some(on_timer);
        ev.data = ptr::from_ref(zone).cast_mut().cast::<c_void>();
        // SAFETY: a running cycle has a log.
        ev.log = unsafe { (*cycle).log };
        // A pending write must not hold up a graceful shutdown.
        ev.set_cancelable(1);
        // SAFETY: timers may be added once the event module is initialised.
        unsafe { ngx_add_timer(ev, ngx_msec(zone.state_interval)) };
    }
    NGX_OK as _
}

fn ngx_msec(secs: u32) -> nginx_sys::ngx_msec_t {
    secs as nginx_sys::ngx_msec_t * 1000
}

unsafe extern "C" fn on_timer(ev: *mut ngx_event_t) {
    // SAFETY: nginx passes the event set up in init_process.
    let ev = unsafe { &mut *ev };
    // SAFETY: ev.data is the zone, alive for the cycle.
    let zone = unsafe { &*ev.data.cast::<Zone>() };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| save(zone, ev.log)));
    // SAFETY: re-arming a fired timer from its handler is the nginx idiom.
    if unsafe { ngx_exiting } == 0 {
        unsafe { ngx_add_timer(ev, ngx_msec(zone.state_interval)) };
    }
}

pub unsafe extern "C" fn exit_process(cycle: *mut ngx_cycle_t) {
    if !is_writer() {
        return;
    }
    for zone in zones_with_state(cycle) {
        // SAFETY: the cycle is still alive while its processes exit.
        let log = unsafe { (*cycle).log };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| save(zone, log)));
    }
}
