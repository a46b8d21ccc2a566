//! The directive handlers that fill the configuration. Parsing itself
//! lives in `engine::directive`; this file turns its results into nginx
//! configuration and reports errors the nginx way.

use core::cell::OnceCell;
use core::ffi::{c_char, c_void};
use core::ptr;
use std::rc::Rc;

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_http_compile_complex_value, ngx_http_compile_complex_value_t,
    ngx_http_complex_value_t, ngx_int_t, ngx_pcalloc, ngx_shared_memory_add, ngx_shm_zone_t,
    ngx_str_t, NGX_LOG_EMERG, NGX_LOG_WARN, NGX_OK,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_conf_log_error;

use crate::engine::crowdsec::directive::parse_crowdsec;
use crate::engine::directive;
use crate::engine::fleet::Signer;
use crate::nginx::base::{guard, log};
use crate::nginx::conf::accessor::{self, Module};
use crate::nginx::conf::declared::{DeclaredZone, ZoneSlot};
use crate::nginx::conf::loc::{note_fail_status, note_familiar, LocConf, ZoneChoice};
use crate::nginx::conf::main::{CrowdsecReference, MainConf, ZoneReference};
use crate::nginx::conf::zone_init;
use crate::nginx::crowdsec::conf::CrowdsecConf;
use crate::nginx::crowdsec::handle::Crowdsec;
use crate::nginx::fleet::conf::FleetConf;
use crate::nginx::fleet::node::Fleet;
use crate::nginx::net::tls::Tls;
use crate::nginx::state::zone::{KeyZone, Zone};

/// The directive's arguments after its name, as UTF-8. They live in the
/// cycle's pool (nginx reads configuration words into cf->pool), so they
/// may back names nginx keeps, such as a shared zone's.
fn args(words: &'static [ngx_str_t]) -> Result<Vec<&'static str>, String> {
    words
        .iter()
        .skip(1)
        .map(|w| {
            w.to_str()
                .map_err(|_| "arguments must be UTF-8".to_string())
        })
        .collect()
}

/// A directive being read, as its handler sees it.
pub struct Directive<'a> {
    pub cf: &'a mut ngx_conf_t,
    /// The directive's arguments after its name (see [`args`]).
    words: &'static [ngx_str_t],
    /// nginx's prefix, which relative paths are relative to.
    pub prefix: &'a str,
    /// The configuration's directory, which nginx's own key and
    /// certificate files are relative to.
    pub conf_prefix: &'a str,
    /// Where the directive is: the configuration file and the line.
    pub file: String,
    pub line: usize,
}

/// The entry point of every directive handler: nginx's pointers become
/// references once, here, and a panic in `body` is reported at `alert`
/// and fails the configuration.
pub fn handle(
    cf: *mut ngx_conf_t,
    name: &str,
    body: impl FnOnce(Directive<'_>) -> *mut c_char,
) -> *mut c_char {
    guard::catch_conf(cf, name, || {
        // SAFETY: nginx passes a valid configuration context to handlers,
        // with cf->args holding the directive's words, whose bytes are
        // allocated from cf->pool and outlive the cycle's configuration;
        // cf->cycle is the cycle being configured, and cf->conf_file the
        // file being read (set while a file is parsed). Only the cycle's
        // prefixes and the file's name and line are kept past this block.
        let (cf, words, prefix, conf_prefix, (file, line)) = unsafe {
            let cf = &mut *cf;
            let words: &'static [ngx_str_t] = (*cf.args).as_slice();
            let prefix: &[u8] = (*cf.cycle).prefix.as_bytes();
            let conf_prefix: &[u8] = (*cf.cycle).conf_prefix.as_bytes();
            let position = cf.conf_file.as_ref().map_or((String::from("?"), 0), |f| {
                (f.file.name.to_str().unwrap_or("?").to_string(), f.line)
            });
            (cf, words, prefix, conf_prefix, position)
        };
        body(Directive {
            cf,
            words,
            prefix: core::str::from_utf8(prefix).unwrap_or(""),
            conf_prefix: core::str::from_utf8(conf_prefix).unwrap_or(""),
            file,
            line,
        })
    })
}

/// Runs a directive body, turning its error into nginx's error report
/// ("DIRECTIVE: message", then nginx's "in FILE:LINE"), and a panic into
/// an alert. Both fail the configuration.
fn directive(
    cf: *mut ngx_conf_t,
    name: &str,
    body: impl FnOnce(&mut Directive<'_>, &[&'static str]) -> Result<(), String>,
) -> *mut c_char {
    handle(cf, name, |mut d| {
        match args(d.words).and_then(|args| body(&mut d, &args)) {
            Ok(()) => NGX_CONF_OK,
            Err(message) => {
                ngx_conf_log_error!(NGX_LOG_EMERG, d.cf, "{}: {}", name, message);
                NGX_CONF_ERROR
            }
        }
    })
}

/// The shared zone `name` (`size` 0 to look it up, or reserve it for a
/// later `authban_zone`, as limit_req does): none if it is declared for
/// another use. `name` lives in the configuration pool (see `args`), as
/// nginx keeps it.
fn add_shared_zone<'cf>(
    cf: &'cf mut ngx_conf_t,
    name: &'static str,
    size: usize,
) -> Option<&'cf mut ngx_shm_zone_t> {
    let mut name = ngx_str_t {
        len: name.len(),
        data: name.as_ptr().cast_mut(),
    };
    // SAFETY: cf is the configuration being read; the tag is this module,
    // so nginx reuses the zone on reload only for us, and only with the
    // same name and size. The entry is null or lives in the cycle.
    unsafe { ngx_shared_memory_add(cf, &mut name, size, accessor::tag()).as_mut() }
}

/// The location (or server, or http) level configuration being set.
fn loc_conf(cf: &ngx_conf_t) -> Result<&'static mut LocConf, String> {
    Module::location_conf_mut(cf).ok_or_else(|| "no configuration".to_string())
}

/// The http block's configuration.
fn main_conf(cf: &ngx_conf_t) -> Result<&'static mut MainConf, String> {
    Module::main_conf_mut(cf).ok_or_else(|| "no http block".to_string())
}

pub extern "C" fn set_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    directive(cf, "authban_zone", |d, args| {
        let main = main_conf(d.cf)?;
        let spec = directive::parse_zone(args, rustix::param::page_size())?;
        // The name's bytes must outlive the cycle: take them from the
        // argument itself, which lives in the configuration pool.
        let arg = args
            .iter()
            .find(|a| a.starts_with("zone="))
            .ok_or("no zone")?;
        let name = &arg["zone=".len()..][..spec.name.len()];
        let cycle = d.cf.cycle;
        // Relative paths are relative to nginx's prefix, as elsewhere.
        let state = spec
            .state
            .as_deref()
            .map(|path| std::path::Path::new(d.prefix).join(path));
        if let Some(path) = &state {
            // However spelled: `..`, symlinked directories, hard links.
            let taken = main.declared_zones().any(|z| {
                z.state
                    .as_deref()
                    .is_some_and(|p| crate::engine::state_file::same_file(p, path))
            });
            if taken {
                return Err(format!(
                    "state file \"{}\" is used by another zone",
                    path.display()
                ));
            }
        }
        let sync_key = match &spec.sync_key {
            Some(file) => {
                let path = std::path::Path::new(d.conf_prefix).join(file);
                let key = crate::engine::fleet::sign::read_key(&path)
                    .map_err(|why| format!("invalid sync_key \"{}\": {why}", path.display()))?;
                Some(key)
            }
            None => None,
        };
        let signer = match &sync_key {
            Some(key) => Some(Signer::new(key, &spec.name).ok_or("invalid sync_key")?),
            None => None,
        };
        let key_zone = match args.iter().find_map(|a| a.strip_prefix("key=")) {
            Some(text) => Some(KeyZone::new(
                compile_key(d.cf, text)?,
                sync_key.filter(|_| spec.sync.is_some()),
                spec.familiar,
            )),
            None => None,
        };
        let wide = spec.sync_wide;
        let http_core =
            ptr::from_ref(NgxHttpCoreModule::location_conf(d.cf).ok_or("no http block")?);
        let tls = match (&spec.sync, &spec.sync_ca) {
            (Some(url), Some(ca)) if url.tls => {
                let cert = spec.sync_cert.as_deref().zip(spec.sync_cert_key.as_deref());
                Some(Tls::new(d.cf, ca, cert)?)
            }
            _ => None,
        };
        let fleet = spec
            .sync
            .clone()
            .map(|url| FleetConf::new(url, wide, signer, tls, http_core));
        if let Some(f) = fleet.as_ref().filter(|f| f.addr.is_none()) {
            ngx_conf_log_error!(
                NGX_LOG_WARN,
                d.cf,
                "authban_zone: host not found in sync \"{}\": zone \"{}\" runs alone until it resolves (with a \"resolver\" at the http level, or at the next reload)",
                f.url,
                spec.name
            );
        }
        let Some(shm) = add_shared_zone(d.cf, name, spec.size) else {
            return Err(format!("cannot add zone \"{}\"", spec.name));
        };
        if !shm.data.is_null() {
            return Err(format!("duplicate zone \"{}\"", spec.name));
        }
        if spec.familiar.is_some() {
            note_familiar();
        }
        let mut zone = Zone::new(spec, state, cycle);
        zone.set_key(key_zone);
        let zone = Rc::new(zone);
        let fleet = fleet.map(|conf| Fleet::new(conf, Rc::clone(&zone)));
        let declared = Rc::new(DeclaredZone {
            zone,
            fleet,
            crowdsec: OnceCell::new(),
        });
        // Only ever read through shared references (see `Zone`).
        shm.data = Rc::as_ptr(&declared).cast_mut().cast();
        shm.init = Some(zone_init::init_zone);
        main.zones.push(declared);
        Ok(())
    })
}

pub extern "C" fn set_crowdsec(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    directive(cf, "authban_crowdsec", |d, args| {
        let spec = parse_crowdsec(args).map_err(|e| e.to_string())?;
        let tls = match &spec.ca {
            Some(ca) => Some(Tls::new(d.cf, ca, None)?),
            None => None,
        };
        let conf = CrowdsecConf::new(spec, d.conf_prefix, tls)?;
        if conf.addr.is_none() {
            ngx_conf_log_error!(
                NGX_LOG_WARN,
                d.cf,
                "authban_crowdsec: host not found in url \"{}\": zone \"{}\" pulls nothing until it resolves at a reload",
                conf.spec.url,
                conf.spec.zone
            );
        }
        main_conf(d.cf)?.crowdsec.push(CrowdsecReference {
            conf: Some(conf),
            file: d.file.clone(),
            line: d.line,
        });
        Ok(())
    })
}

/// `key=`: an nginx complex value (variables and text), compiled as
/// limit_req_zone's key is; nginx names an unknown variable itself.
fn compile_key(
    cf: &mut ngx_conf_t,
    text: &'static str,
) -> Result<*mut ngx_http_complex_value_t, String> {
    // SAFETY: the configuration's pool; zeroed, as nginx's callers
    // allocate the value and its compile context.
    let cv = unsafe { ngx_pcalloc(cf.pool, core::mem::size_of::<ngx_http_complex_value_t>()) }
        .cast::<ngx_http_complex_value_t>();
    if cv.is_null() {
        return Err("out of memory".into());
    }
    // The argument's bytes live in the configuration pool (see `args`).
    let mut value = ngx_str_t {
        len: text.len(),
        data: text.as_ptr().cast_mut(),
    };
    // SAFETY: all-zero is how nginx's own callers start a compile context.
    let mut ccv: ngx_http_compile_complex_value_t = unsafe { core::mem::zeroed() };
    ccv.cf = cf;
    ccv.value = &mut value;
    ccv.complex_value = cv;
    // SAFETY: a complete context for the configuration being read.
    if unsafe { ngx_http_compile_complex_value(&mut ccv) } != NGX_OK as ngx_int_t {
        return Err(format!("invalid key \"{text}\""));
    }
    Ok(cv)
}

pub extern "C" fn set_authban(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    directive(cf, "authban", |d, args| {
        let lcf = loc_conf(d.cf)?;
        if !matches!(lcf.zone, ZoneChoice::Unset) {
            return Err("is duplicate".into());
        }
        if args[0] == "off" {
            if args.len() > 1 {
                return Err("\"off\" takes no zone".into());
            }
            lcf.zone = ZoneChoice::Off;
            return Ok(());
        }
        let mut slots = Vec::with_capacity(args.len());
        for (i, &name) in args.iter().enumerate() {
            if args[..i].contains(&name) {
                return Err(format!("zone \"{name}\" is named twice"));
            }
            if name == "off" {
                return Err("\"off\" takes no zone".into());
            }
            if add_shared_zone(d.cf, name, 0).is_none() {
                return Err(format!("zone \"{name}\" is declared for another use"));
            }
            let slot = Rc::new(ZoneSlot::new());
            main_conf(d.cf)?.references.push(ZoneReference {
                name: name.to_string(),
                file: d.file.clone(),
                line: d.line,
                slot: Rc::clone(&slot),
            });
            slots.push(slot);
        }
        let first = slots.remove(0);
        lcf.zone = ZoneChoice::Zone(first);
        lcf.more_zones = slots;
        Ok(())
    })
}

pub extern "C" fn set_fail_status(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    directive(cf, "authban_fail_status", |d, args| {
        let lcf = loc_conf(d.cf)?;
        if lcf.fail_status.is_some() {
            return Err("is duplicate".into());
        }
        let codes = args
            .iter()
            .map(|a| directive::parse_status(a, 100..=599))
            .collect::<Result<Vec<_>, _>>()?;
        for &code in codes.iter().filter(|&&c| c < 400) {
            ngx_conf_log_error!(
                NGX_LOG_WARN,
                d.cf,
                "authban_fail_status: {} is not an error status: every such response counts as a failure",
                code
            );
        }
        codes.iter().copied().for_each(note_fail_status);
        lcf.fail_status = Some(codes);
        Ok(())
    })
}

pub extern "C" fn set_refuse_status(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    directive(cf, "authban_status", |d, args| {
        let lcf = loc_conf(d.cf)?;
        if lcf.refuse_status.is_some() {
            return Err("is duplicate".into());
        }
        lcf.refuse_status = Some(directive::parse_status(args[0], 400..=599)?);
        Ok(())
    })
}

pub extern "C" fn set_ignore(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    directive(cf, "authban_ignore", |d, args| {
        let nets = args
            .iter()
            .map(|a| directive::parse_network(a))
            .collect::<Result<Vec<_>, _>>()?;
        // Repeated directives add up, like nginx's allow/deny lists.
        loc_conf(d.cf)?
            .ignore
            .get_or_insert_with(Vec::new)
            .extend(nets);
        Ok(())
    })
}

pub extern "C" fn set_dry_run(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    directive(cf, "authban_dry_run", |d, args| {
        let lcf = loc_conf(d.cf)?;
        if lcf.dry_run.is_some() {
            return Err("is duplicate".into());
        }
        lcf.dry_run = Some(match args[0] {
            "on" => true,
            "off" => false,
            other => return Err(format!("invalid value \"{other}\": must be on or off")),
        });
        Ok(())
    })
}

pub extern "C" fn set_read_body(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    directive(cf, "authban_read_body", |d, args| {
        let lcf = loc_conf(d.cf)?;
        if lcf.read_body.is_some() {
            return Err("is duplicate".into());
        }
        lcf.read_body = Some(match args[0] {
            "on" => true,
            "off" => false,
            other => return Err(format!("invalid value \"{other}\": must be on or off")),
        });
        Ok(())
    })
}

pub extern "C" fn set_log_level(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    directive(cf, "authban_log_level", |d, args| {
        let lcf = loc_conf(d.cf)?;
        if lcf.log_level.is_some() {
            return Err("is duplicate".into());
        }
        lcf.log_level = Some(directive::parse_log_level(args[0])?);
        Ok(())
    })
}

/// After the whole http block is read: every `authban NAME` and
/// `authban_crowdsec zone=NAME` must name an `authban_zone`, which has at
/// most one `authban_crowdsec`.
pub fn check_references(cf: &ngx_conf_t) -> Result<(), ()> {
    let Some(main) = Module::main_conf_mut(cf) else {
        return Ok(());
    };
    for r in &main.references {
        let Some(zone) = main.zones.iter().find(|z| z.zone.name == r.name) else {
            // Not ngx_conf_log_error: it would add the position nginx reads
            // now (the end of the http block) instead of the directive's.
            log::unknown_zone(cf.log, &r.name, &r.file, r.line);
            return Err(());
        };
        let _ = r.slot.set(Rc::clone(zone));
    }
    for r in &mut main.crowdsec {
        let Some(conf) = r.conf.take() else {
            continue;
        };
        let name = conf.spec.zone.clone();
        let Some(declared) = main.zones.iter().find(|z| z.zone.name == name) else {
            let name = &name;
            log::unknown_zone(cf.log, name, &r.file, r.line);
            return Err(());
        };
        let cs = Rc::new(Crowdsec::new(conf, Rc::clone(&declared.zone)));
        if declared.crowdsec.set(Rc::clone(&cs)).is_err() {
            log::conf_error_at(
                cf.log,
                &format!("authban_crowdsec: zone \"{name}\" has another authban_crowdsec"),
                &r.file,
                r.line,
            );
            return Err(());
        }
        if let Some(fleet) = &declared.fleet {
            let _ = fleet.crowdsec.set(cs);
        }
    }
    Ok(())
}
