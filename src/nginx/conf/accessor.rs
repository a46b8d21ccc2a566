//! How the rest of the glue reaches this module's configuration: the
//! module object nginx loaded, and the types of its http-level and
//! location configuration.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::ngx_module_t;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};

use crate::nginx::conf::loc::LocConf;
use crate::nginx::conf::main::MainConf;

extern "C" {
    // Defined by the top of the stack (`nginx::module`) with the directives
    // and handlers it lists; declared here, as nginx's C modules declare
    // one another, so that nothing below imports it.
    #[allow(non_upper_case_globals)]
    static mut ngx_http_authban_module: ngx_module_t;
}

/// The module, as the `ngx` crate's configuration accessors want it.
pub struct Module;

/// The tag nginx compares when it reuses a zone across reloads.
pub fn tag() -> *mut c_void {
    // Taking the address of the static does not read it.
    ptr::addr_of_mut!(ngx_http_authban_module).cast()
}

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module object is only written by nginx while loading.
        unsafe { &*ptr::addr_of!(ngx_http_authban_module) }
    }
}

// SAFETY: MainConf is what create_main_conf allocates for this module.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}

// SAFETY: LocConf is what create_loc_conf allocates for this module.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}
