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

use core::ffi::{c_void, CStr};
use core::ptr;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nginx_sys::{
    ngx_add_timer, ngx_cycle_t, ngx_event_t, ngx_exiting, ngx_int_t, ngx_log_t, ngx_pcalloc,
    NGX_ERROR, NGX_OK,
};
use ngx::core::{CoreModuleMainConf, NgxCoreModule};

use crate::engine::state_file::{self, Familiar, Saved};
use crate::engine::table::{Events, Now, Record, Table};
use crate::nginx::base::clock::now;
use crate::nginx::base::process::is_worker_zero;
use crate::nginx::base::{guard, log};
use crate::nginx::state::zone::Zone;

/// The cycle a zone is configured in.
fn cycle_of(zone: &Zone) -> Option<&ngx_cycle_t> {
    // SAFETY: set at `authban_zone` to the cycle being configured, which
    // outlives its zones.
    unsafe { zone.cycle.as_ref() }
}

/// Called in the master right after a new (not reused) zone is formatted:
/// `previous` is the zone of the same name in the cycle being replaced, if
/// it was not reused (its size changed).
pub fn fill_new_zone(zone: &Zone, previous: Option<&Zone>, log: *mut ngx_log_t) {
    let now = now();
    let (saved, source) = match previous {
        Some(old) => match old.with_table(|t| (t.records(now), t.key_secret())) {
            Some((records, secret)) => (
                Saved {
                    records,
                    secret: zone.key_zone().map(|_| secret),
                    familiar: old
                        .with_familiar(|_, fam| familiar_pairs(fam, now))
                        .unwrap_or_default(),
                },
                "the previous zone".to_string(),
            ),
            None => return,
        },
        None => {
            let Some(path) = &zone.state else { return };
            let writer = Writer::of(cycle_of(zone));
            let capacity = zone.with_table(|t| t.capacity()).unwrap_or(0)
                + zone.with_familiar(|_, fam| fam.capacity()).unwrap_or(0);
            match state_file::load(
                path,
                &zone.name,
                writer.uid,
                state_file::max_file_len(capacity),
            ) {
                Ok(Some(saved)) => (saved, path.display().to_string()),
                Ok(None) => return,
                Err(reason) => {
                    log::state_file_ignored(log, &zone.name, path, reason);
                    return;
                }
            }
        }
    };
    // A key zone's records are hashes under the secret they were made
    // with: the zone takes it before it takes them.
    if let (Some(secret), true) = (saved.secret, zone.is_key_zone()) {
        zone.with_table(|t| t.set_key_secret(secret));
    }
    let records = saved.records;
    let restored = restore(zone, &records);
    log::restored(log, &zone.name, restored, records.len(), &source);
    if !saved.familiar.is_empty() {
        let kept = restore_familiar(zone, &saved.familiar);
        log::restored_familiar(log, &zone.name, kept, saved.familiar.len(), &source);
    }
}

/// A familiar table's pairs in force.
fn familiar_pairs(fam: &Table<'_>, now: Now) -> Vec<Familiar> {
    fam.records(now)
        .into_iter()
        .filter_map(|r| {
            r.ban.map(|b| Familiar {
                key: r.key,
                until: b.until,
            })
        })
        .collect()
}

/// Puts back familiar pairs still in force, if the zone has a familiar
/// table (a zone that no longer has `familiar=` drops them).
fn restore_familiar(zone: &Zone, pairs: &[Familiar]) -> usize {
    let now = now();
    let mut events = Events::default();
    zone.with_familiar(|_, fam| {
        let mut kept = 0;
        for p in pairs {
            let Some(secs) = p.until.checked_sub(now.secs()).filter(|&s| s > 0) else {
                continue;
            };
            fam.ban(&p.key, now, secs, &mut events);
            events = Events::default();
            kept += 1;
        }
        kept
    })
    .unwrap_or(0)
}

/// The user that writes the state files: the `user` directive's (nginx's
/// default `nobody` if absent) when a master running as root starts the
/// workers, else the user nginx runs as.
struct Writer {
    uid: u32,
    gid: u32,
    name: Option<CString>,
    /// The user this process runs as.
    euid: u32,
}

impl Writer {
    /// `cycle` is the cycle being initialised: its core conf was created
    /// before the configuration was read and completed by the core module's
    /// init_conf, which runs before shared memory zones are initialised.
    fn of(cycle: Option<&ngx_cycle_t>) -> Writer {
        let euid = rustix::process::geteuid().as_raw();
        let egid = rustix::process::getegid().as_raw();
        match cycle.and_then(NgxCoreModule::main_conf) {
            Some(ccf) if euid == 0 && ccf.master != 0 && ccf.user != u32::MAX => Writer {
                uid: ccf.user,
                gid: ccf.group,
                euid,
                // SAFETY: set with the user (the directive's word, or the
                // static NGX_USER), NUL-terminated.
                name: (!ccf.username.is_null())
                    .then(|| unsafe { CStr::from_ptr(ccf.username) }.to_owned()),
            },
            _ => Writer {
                uid: euid,
                gid: egid,
                name: user_name(euid),
                euid,
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
        let gid = nix::unistd::Gid::from_raw(self.gid);
        if let Ok(others) = nix::unistd::getgrouplist(name, gid) {
            groups.extend(others.into_iter().map(nix::unistd::Gid::as_raw));
        }
        groups
    }

    /// Whether the writer may create and rename files in `dir`: search on
    /// every directory down to it, write and search on it.
    fn can_write_into(&self, dir: &Path) -> bool {
        if self.uid == self.euid {
            // This process's own rights, ACLs and read-only mounts included.
            use rustix::fs::{accessat, Access, AtFlags, CWD};
            return accessat(
                CWD,
                dir,
                Access::WRITE_OK | Access::EXEC_OK,
                AtFlags::EACCESS,
            )
            .is_ok();
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

/// The name of user `uid` in the user database (getpwuid_r).
fn user_name(uid: u32) -> Option<CString> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
    CString::new(user.name).ok()
}

/// At configuration (`nginx -t`, start, reload), in the master: the
/// directory of the zone's state file must exist (else the configuration
/// fails), should not be writable by every user (else a warning), and the
/// workers' user should be able to write into it (else a warning: ACLs and
/// capabilities, which the mode bits do not show, may still allow it, so
/// this cannot be certain enough to refuse nginx).
pub fn check_state_dir(zone: &Zone, log: *mut ngx_log_t) -> Result<(), ()> {
    let Some(path) = &zone.state else {
        return Ok(());
    };
    let dir = state_file::dir_of(path);
    let mode = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(m.mode()),
        Ok(_) => Err("is not a directory".to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("does not exist".to_string()),
        Err(e) => Err(format!("cannot be used ({e})")),
    };
    let mode = match mode {
        Ok(mode) => mode,
        Err(problem) => {
            log::state_dir_unusable(log, &zone.name, dir, path, &problem);
            return Err(());
        }
    };
    // Anyone may create the file there before the worker first does (even
    // in a sticky /tmp): the file is then refused and never replaced.
    if state_file::writable_by_others(mode) {
        let sticky = mode & 0o1000 != 0;
        log::state_dir_shared(log, &zone.name, dir, path, sticky);
    }
    let writer = Writer::of(cycle_of(zone));
    if !writer.can_write_into(dir) {
        log::state_dir_not_writable(log, &zone.name, path, dir, &writer.describe());
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

/// Writes one zone's state file now.
pub fn save(zone: &Zone, log: *mut ngx_log_t) {
    let Some(path) = &zone.state else { return };
    let Some((records, secret)) = zone.with_table(|t| (t.records(now()), zone.secret_to_keep(t)))
    else {
        return;
    };
    let familiar = zone
        .with_familiar(|_, fam| familiar_pairs(fam, now()))
        .unwrap_or_default();
    let text = state_file::render_with(&zone.name, secret, &records, &familiar);
    match state_file::write_atomic(path, &text) {
        Ok(()) => zone.state_failing.set(false),
        Err(err) if !zone.state_failing.replace(true) => {
            log::state_file_unwritable(log, &zone.name, path, err);
        }
        Err(_) => {}
    }
}

/// Worker 0 (or nginx without a master) starts one timer per zone with a
/// state file.
pub fn init_process(cycle: &ngx_cycle_t, zones: impl Iterator<Item = &'static Zone>) -> ngx_int_t {
    guard::catch(cycle.log, "init_process", NGX_ERROR as _, || {
        if is_worker_zero() {
            start_timers(cycle, zones)
        } else {
            NGX_OK as _
        }
    })
}

fn start_timers(cycle: &ngx_cycle_t, zones: impl Iterator<Item = &'static Zone>) -> ngx_int_t {
    for zone in zones.filter(|z| z.state.is_some()) {
        // SAFETY: the cycle's pool outlives the worker's timers; the event
        // is null or zeroed, which is a valid event.
        let ev = unsafe {
            ngx_pcalloc(cycle.pool, size_of::<ngx_event_t>())
                .cast::<ngx_event_t>()
                .as_mut()
        };
        let Some(ev) = ev else {
            return NGX_ERROR as _;
        };
        ev.handler = Some(on_timer);
        ev.data = ptr::from_ref(zone).cast_mut().cast::<c_void>();
        ev.log = cycle.log;
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

/// # Safety
/// `ev` is a timer set up by `start_timers`, as nginx passes it.
unsafe extern "C" fn on_timer(ev: *mut ngx_event_t) {
    // SAFETY: nginx passes the event set up in start_timers, whose data is
    // the zone, alive for the cycle.
    let (ev, zone) = unsafe {
        let ev = &mut *ev;
        let zone = &*ev.data.cast::<Zone>();
        (ev, zone)
    };
    guard::catch(ev.log, "state file timer", (), || save(zone, ev.log));
    // SAFETY: nginx's flag, set in this process only; re-arming a fired
    // timer from its handler is the nginx idiom.
    unsafe {
        if ngx_exiting == 0 {
            ngx_add_timer(ev, ngx_msec(zone.state_interval));
        }
    }
}

/// The writer saves every zone's state file as it exits.
pub fn exit_process(cycle: &ngx_cycle_t, zones: impl Iterator<Item = &'static Zone>) {
    guard::catch(cycle.log, "exit_process", (), || {
        if !is_worker_zero() {
            return;
        }
        for zone in zones.filter(|z| z.state.is_some()) {
            // One zone's failure does not keep the others unsaved.
            guard::catch(cycle.log, "exit_process", (), || save(zone, cycle.log));
        }
    });
}
