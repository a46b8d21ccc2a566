//! Port allocation that is collision-free across threads *and* processes.
//!
//! Binding port 0 and handing out the number is racy between concurrently
//! running test binaries (and collides with the kernel's own ephemeral
//! ports used by outgoing connections). Instead we pick ports *below* the
//! ephemeral range and claim each one with an `flock` on a lock file in
//! `$TMPDIR/authban-ports/`. The lock is held for the life of the process
//! and released by the kernel when it exits, so a crashed run leaves
//! nothing stale behind.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

struct Allocator {
    lo: u16,
    len: u32,
    cursor: u32,
    handed_out: HashSet<u16>,
    // Keeping the files open keeps the locks.
    locks: Vec<File>,
    lock_dir: PathBuf,
}

static ALLOCATOR: Mutex<Option<Allocator>> = Mutex::new(None);

/// Returns a TCP port that is free on 127.0.0.1 (and ::1) and that no other
/// thread of this process and no other harness process will be given.
/// Ports are never recycled within a process.
pub fn free_port() -> u16 {
    let mut guard = ALLOCATOR.lock().unwrap_or_else(|e| e.into_inner());
    let alloc = guard.get_or_insert_with(Allocator::new);
    for _ in 0..alloc.len {
        let port = alloc.lo + (alloc.cursor % alloc.len) as u16;
        alloc.cursor = alloc.cursor.wrapping_add(1);
        if alloc.handed_out.contains(&port) {
            continue;
        }
        let Some(lock) = alloc.try_lock(port) else {
            continue;
        };
        if !bindable(port) {
            continue; // drops `lock`, releasing it
        }
        alloc.handed_out.insert(port);
        alloc.locks.push(lock);
        return port;
    }
    panic!("free_port: no free port left in the allocation range");
}

impl Allocator {
    fn new() -> Self {
        let (lo, hi) = port_range();
        let len = u32::from(hi - lo) + 1;
        // Start each process at a pseudo-random point so concurrent
        // binaries rarely contend for the same lock files; within a 4096
        // window so that the lock dir does not fill with stale files.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
        let lock_dir = std::env::temp_dir().join("authban-ports");
        fs::create_dir_all(&lock_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_dir.display()));
        Allocator {
            lo,
            len,
            cursor: seed % len.min(4096),
            handed_out: HashSet::new(),
            locks: Vec::new(),
            lock_dir,
        }
    }

    fn try_lock(&self, port: u16) -> Option<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o666)
            .open(self.lock_dir.join(port.to_string()))
            .ok()?;
        // SAFETY: flock on a valid, owned descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        (rc == 0).then_some(file)
    }
}

/// The range we allocate from: below the kernel's ephemeral range if there
/// is room there, else above it.
fn port_range() -> (u16, u16) {
    let (eph_lo, eph_hi) = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|t| t.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if eph_lo > 12_000 {
        (10_000, eph_lo - 1)
    } else if eph_hi < 63_000 {
        (eph_hi + 1, 65_000)
    } else {
        (10_000, 65_000)
    }
}

/// Whether something else (outside the harness) already holds the port.
fn bindable(port: u16) -> bool {
    if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
        return false;
    }
    // Tests may also listen on [::1]; a host without IPv6 is not a conflict.
    match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::AddrInUse,
    }
}
