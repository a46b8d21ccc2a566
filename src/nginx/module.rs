//! The module as nginx sees it: directives, configuration hooks, the phase
//! handlers it installs, and the process hooks. The top of the glue:
//! nothing imports this file (`conf::accessor` declares the module object).

use core::ffi::{c_char, c_void};
use core::ptr;

use nginx_sys::{
    ngx_array_push, ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_http_phases_NGX_HTTP_LOG_PHASE,
    ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE, ngx_int_t, ngx_module_t, ngx_uint_t, NGX_CONF_1MORE,
    NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_MODULE, NGX_HTTP_SRV_CONF,
};
use ngx::core::Status;
use ngx::http::{HttpModule, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_string;

use crate::nginx::base::guard;
use crate::nginx::conf::accessor::Module;
use crate::nginx::conf::directives as conf;
use crate::nginx::conf::main::MainConf;
use crate::nginx::crowdsec::handle::{self as crowdsec, Crowdsec};
use crate::nginx::fleet::node::{self as fleet, Fleet};
use crate::nginx::http::{access, api, realip, variables};
use crate::nginx::state::state_file as persist;
use crate::nginx::state::zone::Zone;

/// nginx calls this before the http block is read.
///
/// # Safety
/// `cf` is the configuration being read, as nginx passes it.
unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: nginx passes the configuration being read.
    let cf = unsafe { &mut *cf };
    guard::catch(cf.log, "preconfiguration", Status::NGX_ERROR.into(), || {
        variables::add_variables(cf)
    })
}

/// nginx calls this once the http block is read.
///
/// # Safety
/// `cf` is the configuration being read, as nginx passes it.
unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: nginx passes the configuration being read.
    let cf = unsafe { &mut *cf };
    guard::catch(
        cf.log,
        "postconfiguration",
        Status::NGX_ERROR.into(),
        || {
            postconfigure(cf)
                .map_or(Status::NGX_ERROR, |()| Status::NGX_OK)
                .into()
        },
    )
}

/// After the http block is read: the references to zones and the API
/// locations are checked, and the handlers installed.
fn postconfigure(cf: &mut ngx_conf_t) -> Result<(), ()> {
    conf::check_references(cf)?;
    api::check_locations(cf)?;
    let cmcf = NgxHttpCoreModule::main_conf_mut(cf).ok_or(())?;
    // Installed last, the access handler runs first in its phase: a ban
    // is decided before auth_basic, allow/deny or auth_request.
    let phases: [(_, ngx_http_handler_pt); 3] = [
        (
            ngx_http_phases_NGX_HTTP_ACCESS_PHASE,
            access::ACCESS_HANDLER,
        ),
        // Installed last, it runs before try_files and mirror.
        (
            ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE,
            access::PRECONTENT_HANDLER,
        ),
        (ngx_http_phases_NGX_HTTP_LOG_PHASE, access::LOG_HANDLER),
    ];
    access::install_header_filter();
    realip::find_module(cf);
    for (phase, handler) in phases {
        let handlers = &mut cmcf.phases[phase as usize].handlers;
        // SAFETY: phases[] arrays are initialised by the core module before
        // postconfiguration runs, with handler-sized elements; the slot is
        // null or room for one.
        let slot = unsafe {
            ngx_array_push(handlers)
                .cast::<ngx_http_handler_pt>()
                .as_mut()
        };
        *slot.ok_or(())? = handler;
    }
    Ok(())
}

const ANY_LEVEL: ngx_uint_t = (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF) as _;

const fn command(
    name: nginx_sys::ngx_str_t,
    type_: ngx_uint_t,
    set: extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char,
    conf: ngx_uint_t,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_,
        set: Some(set),
        conf,
        offset: 0,
        post: ptr::null_mut(),
    }
}

static mut COMMANDS: [ngx_command_t; 11] = [
    command(
        ngx_string!("authban_zone"),
        (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as _,
        conf::set_zone,
        NGX_HTTP_MAIN_CONF_OFFSET as _,
    ),
    command(
        ngx_string!("authban_crowdsec"),
        (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as _,
        conf::set_crowdsec,
        NGX_HTTP_MAIN_CONF_OFFSET as _,
    ),
    command(
        ngx_string!("authban"),
        ANY_LEVEL | NGX_CONF_1MORE as ngx_uint_t,
        conf::set_authban,
        NGX_HTTP_LOC_CONF_OFFSET as _,
    ),
    command(
        ngx_string!("authban_fail_status"),
        ANY_LEVEL | NGX_CONF_1MORE as ngx_uint_t,
        conf::set_fail_status,
        NGX_HTTP_LOC_CONF_OFFSET as _,
    ),
    command(
        ngx_string!("authban_status"),
        ANY_LEVEL | NGX_CONF_TAKE1 as ngx_uint_t,
        conf::set_refuse_status,
        NGX_HTTP_LOC_CONF_OFFSET as _,
    ),
    command(
        ngx_string!("authban_ignore"),
        ANY_LEVEL | NGX_CONF_1MORE as ngx_uint_t,
        conf::set_ignore,
        NGX_HTTP_LOC_CONF_OFFSET as _,
    ),
    command(
        ngx_string!("authban_dry_run"),
        ANY_LEVEL | NGX_CONF_TAKE1 as ngx_uint_t,
        conf::set_dry_run,
        NGX_HTTP_LOC_CONF_OFFSET as _,
    ),
    command(
        ngx_string!("authban_log_level"),
        ANY_LEVEL | NGX_CONF_TAKE1 as ngx_uint_t,
        conf::set_log_level,
        NGX_HTTP_LOC_CONF_OFFSET as _,
    ),
    command(
        ngx_string!("authban_read_body"),
        ANY_LEVEL | NGX_CONF_TAKE1 as ngx_uint_t,
        conf::set_read_body,
        NGX_HTTP_LOC_CONF_OFFSET as _,
    ),
    command(
        ngx_string!("authban_api"),
        (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as _,
        api::set_api,
        NGX_HTTP_LOC_CONF_OFFSET as _,
    ),
    ngx_command_t::empty(),
];

static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(preconfiguration),
    postconfiguration: Some(postconfiguration),
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(Module::create_loc_conf),
    merge_loc_conf: Some(Module::merge_loc_conf),
};

/// The running configuration's http block, if it has one.
fn main_conf(cycle: &ngx_cycle_t) -> Option<&'static MainConf> {
    Module::main_conf(cycle)
}

fn zones(cycle: &ngx_cycle_t) -> impl Iterator<Item = &'static Zone> {
    main_conf(cycle)
        .into_iter()
        .flat_map(MainConf::declared_zones)
}

fn fleets(cycle: &ngx_cycle_t) -> impl Iterator<Item = &'static Fleet> {
    main_conf(cycle).into_iter().flat_map(MainConf::fleets)
}

fn crowdsecs(cycle: &ngx_cycle_t) -> impl Iterator<Item = &'static Crowdsec> {
    main_conf(cycle).into_iter().flat_map(MainConf::crowdsecs)
}

/// Each worker starts its state file timer (worker 0), its fleet links,
/// and worker 0 its CrowdSec pulls.
///
/// # Safety
/// `cycle` is the running cycle, as nginx passes it.
unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the running cycle.
    let Some(cycle) = (unsafe { cycle.as_ref() }) else {
        return Status::NGX_OK.into();
    };
    let rc = persist::init_process(cycle, zones(cycle));
    if rc != ngx_int_t::from(Status::NGX_OK) {
        return rc;
    }
    guard::catch(cycle.log, "init_process", Status::NGX_ERROR.into(), || {
        crowdsec::init_process(cycle, crowdsecs(cycle));
        fleet::init_process(cycle, fleets(cycle))
    })
}

/// # Safety
/// `cycle` is the running cycle, as nginx passes it.
unsafe extern "C" fn exit_process(cycle: *mut ngx_cycle_t) {
    // SAFETY: nginx passes the running cycle, alive while its processes exit.
    if let Some(cycle) = unsafe { cycle.as_ref() } {
        persist::exit_process(cycle, zones(cycle));
        guard::catch(cycle.log, "exit_process", (), || {
            fleet::exit_process(fleets(cycle));
            crowdsec::exit_process(crowdsecs(cycle));
        });
    }
}

ngx::ngx_modules!(ngx_http_authban_module);

// Exported by name: `conf::accessor` declares it.
#[used]
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_authban_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(MODULE_CTX) as _,
    // Taking the address of a static does not read it.
    commands: ptr::addr_of_mut!(COMMANDS).cast(),
    type_: NGX_HTTP_MODULE as _,
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};
