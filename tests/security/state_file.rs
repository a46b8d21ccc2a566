//! The state file (`state=PATH`) is trusted input read by the master (root)
//! and written by a worker: no local user may plant bans through it, lift
//! their own, make nginx follow a link, replace a device, hang or exhaust
//! the master; and a directory the file cannot be written into is told at
//! `nginx -t`, not found at the first write.
//!
//! Failures are made as in production: `/z/fail` on the front server
//! (`{port}`, realip from `X-Forwarded-For`) is proxied to a back server
//! whose `/fail` answers 401. Workers run as root (`user root;`) unless a
//! test says otherwise.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;

/// Waits for things nginx does asynchronously (log lines, file writes).
const SETTLE: Duration = Duration::from_secs(5);

fn opts() -> NginxOptions {
    Nginx::options().workers(2).main_line("user root;")
}

/// One zone `z` with `state=PATH` and the given extra arguments; `/z/` is
/// protected, `/z/fail` fails.
fn config(state: &Path, extra: &str) -> String {
    format!(
        r#"    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    authban_zone zone=z:1m maxretry=1 bantime=1h state={} {extra};
    server {{
        listen 127.0.0.1:{{port}} reuseport;
        location /z/ {{ authban z; proxy_pass http://127.0.0.1:{{port2}}/; }}
    }}
    server {{
        listen 127.0.0.1:{{port2}};
        location / {{ return 200 "ok\n"; }}
        location /fail {{ return 401; }}
    }}
"#,
        state.display()
    )
}

fn probe(n: &Nginx, addr: &str) -> Option<u16> {
    get_from(n.port(), "/z/", addr).status()
}

fn fail(n: &Nginx, addr: &str) {
    let reply = get_from(n.port(), "/z/fail", addr);
    assert_eq!(reply.status(), Some(401), "failure of {addr}: {reply:?}");
}

/// A directory of its own, outside nginx's, removed unless the test failed.
struct StateDir(PathBuf);

impl StateDir {
    fn new() -> StateDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "authban-secstate-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        StateDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("kept state dir {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A well-formed state file for zone `z` banning every IPv4 client for an
/// hour: what an attacker would plant.
fn ban_everyone() -> String {
    let now = unix_now();
    format!(
        "authban-state 1\nzone z\nban 0.0.0.0/0 1 0 {now} {} 1\nend 1\n",
        now + 3600
    )
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// The `[warn]` line about the state file being ignored; its reason.
fn ignored_reason(n: &Nginx, path: &Path) -> String {
    let prefix = format!(
        "authban: zone \"z\": state file \"{}\" ignored (",
        path.display()
    );
    let mut line = None;
    let found = wait_until(SETTLE, || {
        line = n
            .error_log()
            .lines()
            .find(|l| l.contains(&prefix))
            .map(str::to_string);
        line.is_some()
    });
    assert!(found, "no warning {prefix:?}\n{}", n.diagnostics());
    let line = line.unwrap();
    assert!(line.contains("[warn] "), "{line}");
    let rest = &line[line.find(&prefix).unwrap() + prefix.len()..];
    rest.split("), starting empty")
        .next()
        .unwrap_or_else(|| panic!("malformed warning {line}"))
        .to_string()
}

fn is_symlink(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// The peak memory of a process, in kB.
fn peak_rss_kb(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

// ---- what nginx writes -----------------------------------------------------

/// The file a worker writes is 0600 (nginx runs with umask 0 when it
/// daemonizes, 022 here: either way not readable or writable by others) and
/// owned by the workers' user; no temporary file is left.
#[test]
fn saved_state_file_is_private() {
    with_timeout(60, || {
        let dir = StateDir::new();
        let path = dir.file("z.state");
        let n = opts().start(&config(&path, "state_interval=1s"));
        fail(&n, "192.0.2.1");
        let written = wait_until(SETTLE, || {
            fs::read_to_string(&path).is_ok_and(|t| t.contains("ban 192.0.2.1 "))
        });
        assert!(written, "no state file with the ban\n{}", n.diagnostics());
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.mode() & 0o7777, 0o600, "mode after a periodic save");
        assert_eq!(meta.uid(), 0, "owned by the workers' user (root)");
        n.assert_clean();
        assert!(n.stop().success());
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600, "mode after the exit save");
        assert_eq!(dir.names(), ["z.state"], "temporary files left");
    });
}

// ---- what nginx reads ------------------------------------------------------

/// A state file that someone other than the workers' user or root could
/// have written is refused whole with a warning: a planted `ban 0.0.0.0/0`
/// bans no one. The same file, private and root's, is restored (so it is
/// the permissions that were refused, not the content).
#[test]
fn state_file_others_could_write_is_refused() {
    with_timeout(120, || {
        let dir = StateDir::new();
        let path = dir.file("z.state");
        let conf = config(&path, "state_interval=1h");
        let cases: [(&str, u32, Option<u32>, &str); 4] = [
            (
                "world-writable",
                0o666,
                None,
                "writable by group or others (mode 0666)",
            ),
            (
                "group-writable",
                0o660,
                None,
                "writable by group or others (mode 0660)",
            ),
            ("world-writable only", 0o602, None, "mode 0602"),
            (
                "owned by another user",
                0o644,
                Some(12345),
                "owned by uid 12345",
            ),
        ];
        for (what, mode, owner, hint) in cases {
            let _ = fs::remove_file(&path);
            write_mode(&path, &ban_everyone(), mode);
            if let Some(uid) = owner {
                std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
            }
            let n = opts().start(&conf);
            let reason = ignored_reason(&n, &path);
            assert!(reason.contains(hint), "{what}: {reason:?} lacks {hint:?}");
            assert!(!n.error_log().contains("restored"), "{what}");
            for addr in ["192.0.2.1", "198.51.100.7"] {
                assert_eq!(probe(&n, addr), Some(200), "{what}: {addr} refused");
            }
            n.assert_clean();
            drop(n);
        }

        // Control: root's private file with the same content bans everyone.
        let _ = fs::remove_file(&path);
        write_mode(&path, &ban_everyone(), 0o600);
        let n = opts().start(&conf);
        assert!(
            n.wait_for_error_log("restored 1 of 1", SETTLE),
            "{}",
            n.diagnostics()
        );
        assert_eq!(probe(&n, "192.0.2.1"), Some(403));
        n.assert_clean();
    });
}

/// A symlink, a FIFO or a directory at the state path is refused when
/// reading (a link is not followed, a FIFO does not hang the start) and is
/// not replaced by the writes: the save fails with a warning instead.
#[test]
fn non_regular_state_path_is_neither_read_nor_replaced() {
    with_timeout(120, || {
        let dir = StateDir::new();
        let path = dir.file("z.state");
        let target = dir.file("elsewhere");
        let conf = config(&path, "state_interval=1s");
        let planted = ban_everyone();

        type Plant = fn(&Path, &Path, &str);
        let cases: [(&str, Plant, &str); 3] = [
            (
                "symlink",
                |path, target, text| {
                    write_mode(target, text, 0o600);
                    std::os::unix::fs::symlink(target, path).unwrap();
                },
                "a symbolic link, not followed",
            ),
            ("fifo", |path, _, _| mkfifo(path), "not a regular file"),
            (
                "directory",
                |path, _, _| fs::create_dir(path).unwrap(),
                "not a regular file",
            ),
        ];
        for (what, plant, hint) in cases {
            plant(&path, &target, &planted);
            let kind = || fs::symlink_metadata(&path).unwrap().file_type();
            let before = kind();
            let n = opts().start_timeout(Duration::from_secs(8)).start(&conf);
            let reason = ignored_reason(&n, &path);
            assert!(reason.contains(hint), "{what}: {reason:?} lacks {hint:?}");
            assert_eq!(probe(&n, "192.0.2.1"), Some(200), "{what}: restored");
            // A save (every second, with something to save) fails, once.
            fail(&n, "192.0.2.2");
            let cannot = format!(
                "authban: zone \"z\": cannot write state file \"{}\"",
                path.display()
            );
            assert!(
                n.wait_for_error_log(&cannot, SETTLE),
                "{what}: the save did not fail\n{}",
                n.diagnostics()
            );
            n.assert_clean();
            assert!(n.stop().success());
            let after = kind();
            assert_eq!(
                (after.is_symlink(), after.is_fifo(), after.is_dir()),
                (before.is_symlink(), before.is_fifo(), before.is_dir()),
                "{what}: replaced"
            );
            if what == "symlink" {
                assert_eq!(fs::read_to_string(&target).unwrap(), planted);
                fs::remove_file(&target).unwrap();
            }
            if what == "directory" {
                fs::remove_dir(&path).unwrap();
            } else {
                fs::remove_file(&path).unwrap();
            }
            assert!(dir.names().is_empty(), "{what}: left {:?}", dir.names());
        }
    });
}

/// A file far larger than the zone could hold is refused by its size,
/// without the master reading it (its peak memory stays small).
#[test]
fn huge_state_file_is_refused_unread() {
    with_timeout(60, || {
        let dir = StateDir::new();
        let path = dir.file("z.state");
        // 200 MB, sparse: a valid start, then zeros.
        fs::write(&path, "authban-state 1\nzone z\n").unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(200 << 20)
            .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let n = opts().start(&config(&path, "state_interval=1h"));
        let reason = ignored_reason(&n, &path);
        let peak = peak_rss_kb(n.master_pid());
        assert!(peak < 64 << 10, "the master peaked at {peak} kB");
        assert!(
            reason.starts_with("larger than ") && reason.contains(" bytes"),
            "{reason:?}"
        );
        n.assert_clean();
    });
}

// ---- temporary files -------------------------------------------------------

/// Symlinks planted at every predictable temporary name (`<state>.tmp.<pid>`
/// for the master's and each worker's pid) are not followed: their targets
/// keep their content, the links stay, and the state file is written.
#[test]
fn planted_symlinks_at_temp_names_are_not_followed() {
    with_timeout(60, || {
        let dir = StateDir::new();
        let path = dir.file("z.state");
        let victim = dir.file("victim");
        fs::write(&victim, "precious\n").unwrap();
        let n = opts().start(&config(&path, "state_interval=1s"));
        let mut pids = n.worker_pids();
        pids.push(n.master_pid());
        let links: Vec<PathBuf> = pids
            .iter()
            .map(|pid| {
                let link = dir.file(&format!("z.state.tmp.{pid}"));
                std::os::unix::fs::symlink(&victim, &link).unwrap();
                link
            })
            .collect();
        fail(&n, "192.0.2.3");
        let written = wait_until(SETTLE, || {
            fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file())
                && fs::read_to_string(&path).is_ok_and(|t| t.contains("ban 192.0.2.3 "))
        });
        assert!(written, "no state file with the ban\n{}", n.diagnostics());
        n.assert_clean();
        assert!(n.stop().success());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(links.iter().all(|l| is_symlink(l)), "{:?}", dir.names());
        assert!(!is_symlink(&path));
        assert_eq!(
            dir.names().len(),
            2 + links.len(),
            "temporary files left: {:?}",
            dir.names()
        );
    });
}

// ---- the directory, at nginx -t ---------------------------------------------

/// A state directory that does not exist fails `nginx -t` with an emerg
/// naming the zone, the directory and the file.
#[test]
fn missing_state_dir_fails_the_configuration() {
    with_timeout(60, || {
        let dir = StateDir::new();
        for (state, missing) in [
            (dir.file("nope/z.state"), dir.file("nope")),
            // Relative to the prefix.
            (PathBuf::from("nope/z.state"), PathBuf::from("/nope")),
        ] {
            let (ok, out) = opts().test_config(&config(&state, ""));
            assert!(!ok, "nginx -t accepted state={}:\n{out}", state.display());
            let line = out
                .lines()
                .find(|l| l.contains("[emerg]"))
                .unwrap_or_else(|| panic!("no emerg:\n{out}"));
            assert!(line.contains("zone \"z\""), "{line}");
            assert!(line.contains("does not exist"), "{line}");
            assert!(
                line.contains(&format!("{}\" of state file \"", missing.display())),
                "{line}"
            );
            assert!(line.contains("/nope/z.state\""), "{line}");
        }
        // A file where the directory should be.
        fs::write(dir.file("plain"), "").unwrap();
        let (ok, out) = opts().test_config(&config(&dir.file("plain/z.state"), ""));
        assert!(!ok && out.contains("is not a directory"), "{out}");
    });
}

/// A directory the workers' user cannot write into is reported at
/// `nginx -t` and at start, naming the zone, the file and the user; one it
/// can write into is not.
#[test]
fn unwritable_state_dir_is_reported_with_the_user() {
    with_timeout(60, || {
        let dir = StateDir::new(); // root's, 0755
        let path = dir.file("z.state");
        let conf = config(&path, "");
        let as_nobody = || Nginx::options().main_line("user nobody nogroup;");
        let warning = |out: &str| -> Option<String> {
            out.lines()
                .find(|l| l.contains("cannot be written"))
                .map(str::to_string)
        };

        let (ok, out) = as_nobody().test_config(&conf);
        assert!(ok, "{out}");
        let line = warning(&out).unwrap_or_else(|| panic!("no warning:\n{out}"));
        assert!(line.contains("[warn]"), "{line}");
        assert!(line.contains("zone \"z\""), "{line}");
        assert!(
            line.contains(&format!("state file \"{}\"", path.display())),
            "{line}"
        );
        assert!(line.contains("user \"nobody\" (uid 65534)"), "{line}");

        let n = as_nobody().start(&conf);
        let line = warning(&n.error_log()).unwrap_or_else(|| panic!("{}", n.diagnostics()));
        assert!(line.contains("user \"nobody\""), "{line}");
        drop(n);

        // Not when the user can: as root, or into a directory it may write.
        let (ok, out) = opts().test_config(&conf);
        assert!(ok && warning(&out).is_none(), "{out}");
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o1777)).unwrap();
        let (ok, out) = as_nobody().test_config(&conf);
        assert!(ok && warning(&out).is_none(), "{out}");
        // Nor if a group of the user's may (nogroup, the worker's group).
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o770)).unwrap();
        std::os::unix::fs::chown(&dir.0, Some(0), Some(65534)).unwrap();
        let (ok, out) = as_nobody().test_config(&conf);
        assert!(ok && warning(&out).is_none(), "{out}");
    });
}

/// A state directory every user can write into (a sticky one like /tmp
/// too) lets another user create the file before the workers do: `nginx
/// -t` and start warn, naming the zone, the directory and the file. A
/// directory only its owner can write into is not warned about.
#[test]
fn state_dir_writable_by_others_is_warned_about() {
    with_timeout(60, || {
        let dir = StateDir::new();
        let path = dir.file("z.state");
        let conf = config(&path, "");
        let warning = |out: &str| -> Option<String> {
            out.lines()
                .find(|l| l.contains("is writable by other users"))
                .map(str::to_string)
        };
        let check = |line: &str, sticky: bool| {
            assert!(line.contains("[warn]"), "{line}");
            assert!(line.contains("zone \"z\""), "{line}");
            assert!(
                line.contains(&format!(
                    "directory \"{}\" of state file \"{}\"",
                    dir.0.display(),
                    path.display()
                )),
                "{line}"
            );
            let risk = if sticky {
                "create the file first"
            } else {
                "replace or delete the file"
            };
            assert!(line.contains(risk), "{line}");
        };
        for (mode, sticky) in [(0o1777, true), (0o777, false), (0o1773, true)] {
            fs::set_permissions(&dir.0, fs::Permissions::from_mode(mode)).unwrap();
            let (ok, out) = opts().test_config(&conf);
            assert!(ok, "{mode:o}: {out}");
            let line = warning(&out).unwrap_or_else(|| panic!("{mode:o}: no warning:\n{out}"));
            check(&line, sticky);
        }
        // At start too.
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o1777)).unwrap();
        let n = opts().start(&conf);
        let line = warning(&n.error_log()).unwrap_or_else(|| panic!("{}", n.diagnostics()));
        check(&line, true);
        n.assert_clean();
        drop(n);
        // Not for a directory others cannot write into.
        for mode in [0o755, 0o775, 0o700] {
            fs::set_permissions(&dir.0, fs::Permissions::from_mode(mode)).unwrap();
            let (ok, out) = opts().test_config(&conf);
            assert!(ok && warning(&out).is_none(), "{mode:o}: {out}");
            assert!(!out.contains("[warn]"), "{mode:o}: {out}");
        }
    });
}

/// Two zones whose state paths name one file through `..` or a symlinked
/// directory are refused like the same literal path.
#[test]
fn state_paths_naming_one_file_are_refused() {
    with_timeout(60, || {
        let dir = StateDir::new();
        fs::create_dir(dir.file("sub")).unwrap();
        std::os::unix::fs::symlink(&dir.0, dir.file("alias")).unwrap();
        let two = |a: &Path, b: &Path| {
            format!(
                "    authban_zone zone=one:1m state={};\n    authban_zone zone=two:1m state={};\n",
                a.display(),
                b.display()
            )
        };
        let x = dir.file("x.state");
        for other in [dir.file("sub/../x.state"), dir.file("alias/x.state")] {
            let (ok, out) = opts().test_config(&two(&x, &other));
            assert!(
                !ok,
                "accepted {} and {}:\n{out}",
                x.display(),
                other.display()
            );
            assert!(
                out.contains(&format!(
                    "state file \"{}\" is used by another zone",
                    other.display()
                )),
                "{out}"
            );
        }
        let (ok, out) = opts().test_config(&two(&x, &dir.file("sub/x.state")));
        assert!(ok, "{out}");
    });
}
