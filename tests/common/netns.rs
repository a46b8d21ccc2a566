//! [`in_netns`]: runs a piece of a test in a fresh network namespace, so that
//! it can firewall loopback addresses (CrowdSec's firewall bouncer) without
//! touching the machine's own network or firewall.
//!
//! The trick: a network namespace belongs to a *thread*, not a process.
//! [`in_netns`] starts a dedicated thread that calls `unshare(CLONE_NEWNET)`
//! (root only), which moves that thread alone into a new, empty network
//! namespace: its only interface is `lo`, down, and its nftables/iptables
//! rule sets are empty. The thread brings `lo` up (`SIOCSIFFLAGS`, as
//! `ip link set lo up` does), then runs the closure. Everything the closure
//! does happens in the namespace: every socket it opens, every process it
//! spawns (a child inherits the namespace of the thread that forks it:
//! nginx, the CrowdSec LAPI, cscli, the bouncer, `nft`) and every thread it
//! starts (a listener's accept loop). The test's other threads and the rest
//! of the machine stay in theirs. On `lo` there, 127.0.0.1 and all of
//! 127.0.0.0/8 (bind any as a source) and `::1` work as usual; nothing else
//! is reachable. When the closure returns the thread ends; the namespace and
//! its firewall rules vanish with the last process in it (the harness kills
//! every process it started by pid, so that is right away).
//!
//! A panic in the closure is propagated unchanged; processes the closure
//! starts belong to the calling [`with_timeout`](super::with_timeout), which
//! kills them if the test hangs. Without the right to make a namespace (not
//! root) the test fails saying so; it is never skipped.

use std::fs;
use std::io;
use std::mem;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::panic;
use std::thread;

use super::process::{enter_timeout_scope, timeout_scope};

/// Runs `body` on a thread of its own in a fresh network namespace (see the
/// module doc) and returns what it returns.
pub fn in_netns<F, R>(body: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let scope = timeout_scope();
    // Reuse the test's name so panic messages still say which test failed.
    let name = thread::current().name().unwrap_or("test").to_string();
    thread::scope(|s| {
        let handle = thread::Builder::new()
            .name(name)
            .spawn_scoped(s, move || {
                enter_timeout_scope(scope);
                enter_fresh_netns();
                loopback_up();
                body()
            })
            .expect("cannot spawn the network namespace's thread");
        match handle.join() {
            Ok(r) => r,
            Err(payload) => panic::resume_unwind(payload),
        }
    })
}

/// Whether the current thread runs in another network namespace than the
/// process's main thread (so one [`in_netns`] made, or a thread started
/// from there): what guards code that changes the firewall.
pub fn in_private_netns() -> bool {
    let ns = |path: &str| fs::read_link(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    ns("/proc/thread-self/ns/net") != ns("/proc/self/ns/net")
}

fn enter_fresh_netns() {
    // SAFETY: unshare(2) changes which namespace the calling thread belongs
    // to; it touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        panic!(
            "cannot make a network namespace (unshare(CLONE_NEWNET): {e}): \
             this test must run as root (or with CAP_SYS_ADMIN)"
        );
    }
}

/// `ip link set lo up`, by ioctl: a fresh namespace's `lo` is down.
fn loopback_up() {
    // Any socket will do for the interface ioctls.
    let sock = UdpSocket::bind("0.0.0.0:0").expect("a socket for the lo ioctls");
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of `req`, a
    // valid, exclusively borrowed ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        panic!("SIOCGIFFLAGS lo: {}", io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `req`, valid as above.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        panic!("SIOCSIFFLAGS lo up: {}", io::Error::last_os_error());
    }
}
