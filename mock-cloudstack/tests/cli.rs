//! Drives the real binary: `serve` on port 0 and `sign` feeding a request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mock-cloudstack");
const TIMEOUT: Duration = Duration::from_secs(5);

/// Kills the server even when an assertion fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(listen: &str) -> (Server, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mock-cloudstack");
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    // If the server dies instead of binding, this returns EOF, not a hang.
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("mock-cloudstack listening on ")
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
        .trim()
        .parse()
        .unwrap();
    (server, addr)
}

fn sign(args: &[&str]) -> String {
    let out = Command::new(BIN).arg("sign").args(args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn get(addr: SocketAddr, target: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serve_prints_banner_and_answers_signed_requests() {
    let (_server, addr) = start("127.0.0.1:0");
    assert_ne!(addr.port(), 0);

    let query = sign(&["command=listZones&response=json"]);
    assert!(query.starts_with("command=listZones&response=json&apiKey=authban-demo-key&signature="));
    let reply = get(addr, &format!("/client/api?{query}"));
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains("authban-demo-zone"));

    let user = sign(&[
        "--api-key",
        "authban-user-key",
        "--secret=authban-user-secret",
        "command=deployVirtualMachine",
    ]);
    let reply = get(addr, &format!("/client/api?{user}"));
    assert!(reply.starts_with("HTTP/1.1 531 "), "{reply}");
}

#[test]
fn serve_accepts_ipv6() {
    // Skip quietly on hosts without IPv6 loopback.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        return;
    }
    let (_server, addr) = start("[::1]:0");
    assert!(addr.is_ipv6());
    let reply = get(addr, "/client/api?command=listZones");
    assert!(
        reply.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{reply}"
    );
}

#[test]
fn bad_usage_exits_2_and_help_lists_accounts() {
    let out = Command::new(BIN).arg("bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for needle in [
        "authban-demo-key",
        "authban-demo-secret",
        "authban-user-key",
        "authban-user-secret",
        "username admin, password password",
    ] {
        assert!(text.contains(needle), "help lacks {needle}");
    }
}
