//! Turns what `nginx-sys` found in the nginx tree the bindings were generated
//! from into cfgs, so that code depending on the nginx version or on how
//! nginx was configured is gated on facts, never guessed (the approach of
//! nginx-acme's build.rs).
//!
//! `nginx-sys` (`links = "nginx"`) exports, to the build scripts of crates
//! that depend on it directly (hence `nginx-sys` in our [dependencies]):
//!
//! - `DEP_NGINX_VERSION_NUMBER`: `nginx_version`, e.g. `1022001` for 1.22.1;
//! - `DEP_NGINX_VERSION`: `NGINX_VER`, e.g. `nginx/1.22.1`;
//! - `DEP_NGINX_FEATURES` / `_CHECK`: the `NGX_*` flags set by configure;
//! - `DEP_NGINX_OS` / `_CHECK`: the operating system configure detected.
//!
//! Emitted cfgs:
//!
//! - `nginx1_N` for every minor version from 1.22 up to the one built
//!   against: `#[cfg(nginx1_23)]` means "nginx 1.23.0 or later";
//! - `ngx_feature = "..."` and `ngx_os = "..."`, as in nginx-sys itself.

use std::env;

/// The oldest nginx authban supports (that of the `ngx` crate).
const MIN_VERSION: u64 = 1_022_000;
/// Minor versions `check-cfg` accepts in `nginx1_N`, beyond the one built
/// against, so code may name a release newer than the source in use.
const MAX_KNOWN_MINOR: u64 = 31;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    // Without the `nginx` feature (the engine alone, for fuzz/) there is no
    // nginx-sys and no nginx code to gate: only declare the cfg names.
    if env::var_os("CARGO_FEATURE_NGINX").is_none() {
        for m in 22..=MAX_KNOWN_MINOR {
            println!("cargo::rustc-check-cfg=cfg(nginx1_{m})");
        }
        println!("cargo::rustc-check-cfg=cfg(ngx_feature, values(any()))");
        println!("cargo::rustc-check-cfg=cfg(ngx_os, values(any()))");
        return;
    }
    nginx_version();
    nginx_features();
}

fn nginx_version() {
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION");
    let Ok(number) = env::var("DEP_NGINX_VERSION_NUMBER") else {
        panic!(
            "authban build.rs: nginx-sys did not export DEP_NGINX_VERSION_NUMBER; \
             nginx-sys must be a direct dependency of authban"
        );
    };
    let number: u64 = number
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("authban build.rs: DEP_NGINX_VERSION_NUMBER={number:?}: {e}"));
    let name = env::var("DEP_NGINX_VERSION").unwrap_or_default();
    let (major, minor) = (number / 1_000_000, number / 1_000 % 1_000);
    if number < MIN_VERSION || major != 1 {
        panic!(
            "authban supports nginx 1.22.0 and later; the nginx source the bindings were \
             generated from is {name} ({number})"
        );
    }
    for m in 22..=minor.max(MAX_KNOWN_MINOR) {
        println!("cargo::rustc-check-cfg=cfg(nginx1_{m})");
        if m <= minor {
            println!("cargo::rustc-cfg=nginx1_{m}");
        }
    }
}

fn nginx_features() {
    for (var, cfg) in [("FEATURES", "ngx_feature"), ("OS", "ngx_os")] {
        println!("cargo::rerun-if-env-changed=DEP_NGINX_{var}_CHECK");
        println!("cargo::rerun-if-env-changed=DEP_NGINX_{var}");
        let check = env::var(format!("DEP_NGINX_{var}_CHECK")).unwrap_or("any()".into());
        println!("cargo::rustc-check-cfg=cfg({cfg}, values({check}))");
        for value in env::var(format!("DEP_NGINX_{var}"))
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            println!("cargo::rustc-cfg={cfg}=\"{value}\"");
        }
    }
}
