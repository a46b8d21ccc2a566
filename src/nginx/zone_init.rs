//! nginx's callback for a zone's memory: the one place that joins the
//! zone's table (`zone`) and its state file (`state_file`), so neither of
//! them needs the other's entry points.

use core::ffi::c_void;

use nginx_sys::{ngx_int_t, ngx_shm_zone_t};
use ngx::core::Status;

use crate::nginx::state_file;
use crate::nginx::zone::{self, Init, Zone};
use crate::nginx::{fleet, guard};

/// nginx calls this in the master when it maps the zone: at start-up, and
/// on every reload (then with the old zone's data if the name, size and tag
/// are unchanged, so counts and bans carry over). A new zone is filled from
/// its state file, then from its fleet's Redis.
pub unsafe extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx passes the zone it created, with its log; the zone's
    // data is the `Zone` set by `authban_zone`, which lives in the cycle's
    // configuration and is only ever shared.
    let (shm_zone, zone) = unsafe {
        let shm_zone = &*shm_zone;
        (shm_zone, &*shm_zone.data.cast::<Zone>())
    };
    let log = shm_zone.shm.log;
    let fail: ngx_int_t = Status::NGX_ERROR.into();
    guard::catch(log, "init_zone", fail, || {
        if state_file::check_state_dir(zone, log).is_err() {
            return fail;
        }
        // SAFETY: as nginx calls this: a zone it created and mapped, whose
        // data is `zone`.
        match unsafe { zone::init(zone, shm_zone, log) } {
            Err(()) => fail,
            Ok(Init::Adopted) => Status::NGX_OK.into(),
            Ok(Init::Fresh) => {
                state_file::fill_new_zone(zone, log);
                fleet::snapshot::fill_new_zone(zone, log);
                Status::NGX_OK.into()
            }
        }
    })
}
