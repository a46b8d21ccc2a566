//! Locations of the build artifacts the tests run, and unique temp dirs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// `$AUTHBAN_BUILD`, or `<crate>/build` (where `make build` puts things).
/// `$AUTHBAN_NGINX` and `$AUTHBAN_MODULE` override the nginx binary and the
/// module alone; the mock upstream always comes from here.
pub fn build_dir() -> PathBuf {
    std::env::var_os("AUTHBAN_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/build")))
}

/// An artifact under the build dir, as an absolute path. A missing artifact
/// is a hard failure, never a skip: a silently skipped suite proves nothing.
fn require(rel: &str, what: &str) -> PathBuf {
    let path = build_dir().join(rel);
    if !path.is_file() {
        panic!(
            "{what} not found at {}: run `make build` first \
             (or point AUTHBAN_BUILD at the build directory)",
            path.display()
        );
    }
    // nginx resolves relative paths against its prefix (our temp dir), so
    // everything handed to it must be absolute.
    fs::canonicalize(&path).unwrap_or(path)
}

/// An artifact named by an environment variable (absolute, or relative to
/// the current directory), which must exist; `None` when the variable is
/// unset or empty.
fn from_env(var: &str, what: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(var).filter(|v| !v.is_empty())?);
    if !path.is_file() {
        panic!("{what} not found at {} (from ${var})", path.display());
    }
    Some(fs::canonicalize(&path).unwrap_or(path))
}

/// The nginx binary: `$AUTHBAN_NGINX` (any nginx, e.g. a distribution's
/// `/usr/sbin/nginx`), else `sbin/nginx` under the build dir.
pub fn nginx_bin() -> PathBuf {
    from_env("AUTHBAN_NGINX", "nginx binary")
        .unwrap_or_else(|| require("sbin/nginx", "nginx binary"))
}

/// The authban dynamic module: `$AUTHBAN_MODULE` (one built for
/// `$AUTHBAN_NGINX`, e.g. by `make module`), else
/// `modules/ngx_http_authban_module.so` under the build dir.
pub fn module_path() -> PathBuf {
    from_env("AUTHBAN_MODULE", "authban module").unwrap_or_else(|| {
        require(
            "modules/ngx_http_authban_module.so",
            "authban module (ngx_http_authban_module.so)",
        )
    })
}

/// The mock CloudStack upstream (`bin/mock-cloudstack`).
pub fn mock_bin() -> PathBuf {
    require("bin/mock-cloudstack", "mock-cloudstack binary")
}

/// Creates a fresh directory `authban-<tag>-<pid>-<n>` under the system temp
/// dir. The pid separates concurrent test binaries, the counter separates
/// threads; `create_dir` (not `_all`) guarantees we never reuse a directory
/// kept by an earlier failed run whose pid happened to match.
pub fn fresh_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("authban-{tag}-{}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create temp dir {}: {e}", dir.display()),
        }
    }
}

/// The last `lines` lines of each file `names` in `dir` (a missing one is
/// empty), each under a header `--- LABEL/NAME (last N lines)`: a server's
/// logs for a failure message.
pub(crate) fn logs_tail(dir: &Path, names: &[&str], label: &str, lines: usize) -> String {
    let mut s = String::new();
    for name in names {
        let text =
            String::from_utf8_lossy(&fs::read(dir.join(name)).unwrap_or_default()).into_owned();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        s += &format!("--- {label}/{name} (last {} lines)\n", all.len() - from);
        for l in &all[from..] {
            s += l;
            s.push('\n');
        }
    }
    s
}

/// Whether to keep temp dirs even for passing tests (for debugging).
pub(crate) fn keep_tmp() -> bool {
    std::env::var_os("AUTHBAN_KEEP_TMP").is_some_and(|v| !v.is_empty() && v != "0")
}
