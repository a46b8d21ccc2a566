//! nginx's callback for a zone's memory: the one place that joins the
//! zone's table (`state::zone`), its state file (`state::state_file`) and
//! its fleet's load (`fleet::snapshot`), so none of them needs the others.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{ngx_int_t, ngx_shm_zone_t};
use ngx::core::Status;
use ngx::http::{HttpModule, HttpModuleMainConf};

use crate::nginx::base::guard;
use crate::nginx::conf::accessor::Module;
use crate::nginx::conf::declared::DeclaredZone;
use crate::nginx::fleet::snapshot;
use crate::nginx::state::state_file;
use crate::nginx::state::zone::{self, Init, Zone};

/// nginx calls this in the master when it maps the zone: at start-up, and
/// on every reload (then with the old zone's data if the name, size and tag
/// are unchanged, so counts and bans carry over). A new zone is filled from
/// the previous cycle's zone or its state file, then from its fleet's Redis.
pub unsafe extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx passes the zone it created, with its log; the zone's
    // data is the `DeclaredZone` set by `authban_zone`, which lives in the
    // cycle's configuration and is only ever shared.
    let (shm_zone, declared) = unsafe {
        let shm_zone = &*shm_zone;
        (shm_zone, &*shm_zone.data.cast::<DeclaredZone>())
    };
    let zone = &*declared.zone;
    let log = shm_zone.shm.log;
    let fail: ngx_int_t = Status::NGX_ERROR.into();
    guard::catch(log, "init_zone", fail, || {
        if state_file::check_state_dir(zone, log).is_err() {
            return fail;
        }
        // SAFETY: as nginx calls this: a zone it created and mapped, whose
        // data is `zone`'s.
        match unsafe { zone::init(zone, shm_zone, log) } {
            Err(()) => fail,
            Ok(Init::Adopted) => {
                zone.set_key_secret();
                Status::NGX_OK.into()
            }
            Ok(Init::Fresh) => {
                // The secret first (the state file's, or the previous
                // zone's): the fleet's load and requests hash with it.
                state_file::fill_new_zone(zone, previous_zone(zone), log);
                zone.set_key_secret();
                if let Some(fleet) = &declared.fleet {
                    snapshot::fill_new_zone(fleet, log);
                }
                Status::NGX_OK.into()
            }
        }
    })
}

/// During a reload, the cycle being replaced (the new cycle's `old_cycle`)
/// may hold a zone of this name that was not reused because its size
/// changed. At start-up the old cycle is nginx's bare initial one.
fn previous_zone(zone: &Zone) -> Option<&'static Zone> {
    // SAFETY: set at `authban_zone` to the cycle being configured, which
    // outlives its zones.
    let old = unsafe { zone.cycle.as_ref() }?.old_cycle;
    // SAFETY: in the master, while the new cycle initialises, its old cycle
    // is the running one (or the initial one), intact; its module list is
    // null or null-terminated, its configuration null or complete.
    let old = unsafe {
        let old = old.as_ref()?;
        if old.conf_ctx.is_null() || old.modules.is_null() {
            return None;
        }
        core::slice::from_raw_parts(old.modules, old.modules_n)
            .iter()
            .any(|&m| ptr::eq(m, Module::module()))
            .then_some(old)?
    };
    // With the module in the old cycle too, nginx kept its ctx_index, so
    // the old http configuration has our main conf at the same place.
    Module::main_conf(old)?
        .declared_zones()
        .find(|z| z.name == zone.name)
}
