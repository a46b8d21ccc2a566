//! End-to-end: real server on an ephemeral loopback port, real sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use crate::cloudstack::{Mock, DEMO_ACCOUNT, USER_ACCOUNT};
use crate::http::{Request, Server};
use crate::sign;

const TIMEOUT: Duration = Duration::from_secs(5);

/// One server shared by all tests in this process; it is never stopped,
/// which is fine because the test binary exits.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let server = Server::bind("127.0.0.1:0").expect("bind port 0");
        let addr = server.local_addr().expect("local_addr");
        assert_ne!(addr.port(), 0);
        let mock = Arc::new(Mock::new());
        thread::spawn(move || server.run(Arc::new(move |req: &Request| mock.handle(req))));
        addr
    })
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn connect() -> TcpStream {
    let stream = TcpStream::connect_timeout(&server(), TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Sends raw bytes and reads until the server closes.
fn exchange(raw: &[u8]) -> String {
    let mut stream = connect();
    stream.write_all(raw).expect("write");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_reply(text: &str) -> Reply {
    let (head, body) = text.split_once("\r\n\r\n").expect("complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn get(target: &str) -> Reply {
    parse_reply(&exchange(
        format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    ))
}

fn post_form(target: &str, body: &str) -> Reply {
    parse_reply(&exchange(
        format!(
            "POST {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    ))
}

fn signed(query: &str, api_key: &str, secret: &str) -> String {
    format!(
        "/client/api?{}",
        sign::signed_query(&sign::parse_pairs(query), api_key, secret)
    )
}

#[test]
fn good_signed_request_gets_200_json() {
    let r = get(&signed(
        "command=listZones&response=json",
        DEMO_ACCOUNT.api_key,
        DEMO_ACCOUNT.secret_key,
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    assert!(
        r.body.starts_with("{ \"listzonesresponse\" : {"),
        "{}",
        r.body
    );
    assert!(r.body.contains("\"name\":\"authban-demo-zone\""));
}

#[test]
fn restricted_key_may_call_its_commands() {
    let r = get(&signed(
        "command=listVirtualMachines&response=json&name=web 01",
        USER_ACCOUNT.api_key,
        USER_ACCOUNT.secret_key,
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "{ \"listvirtualmachinesresponse\" : { } }");
}

#[test]
fn bad_signature_gets_401_with_errortext() {
    let target = signed(
        "command=listZones&response=json",
        DEMO_ACCOUNT.api_key,
        "wrong-secret",
    );
    let r = get(&target);
    assert_eq!(r.status, 401);
    assert!(r.head.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
    assert_eq!(
        r.body,
        "{ \"listzonesresponse\" : {\"uuidList\":[],\"errorcode\":401,\
         \"errortext\":\"unable to verify user credentials and/or request signature\"} }"
    );

    // Unknown key and missing signature are the same failure.
    let unknown = signed("command=listZones&response=json", "nobody", "x");
    assert_eq!(get(&unknown).status, 401);
    assert_eq!(
        get("/client/api?command=listZones&apiKey=authban-demo-key").status,
        401
    );
}

#[test]
fn tampered_parameter_invalidates_signature() {
    let target = signed(
        "command=listZones&response=json",
        DEMO_ACCOUNT.api_key,
        DEMO_ACCOUNT.secret_key,
    );
    assert_eq!(get(&target).status, 200);
    let tampered = target.replace("response=json", "response=json&id=1");
    assert_eq!(get(&tampered).status, 401);
}

#[test]
fn restricted_key_other_command_gets_531() {
    let r = get(&signed(
        "command=deployVirtualMachine&response=json&zoneid=1",
        USER_ACCOUNT.api_key,
        USER_ACCOUNT.secret_key,
    ));
    assert_eq!(r.status, 531, "{}", r.body);
    assert!(r.body.starts_with("{ \"deployvirtualmachineresponse\" : {"));
    assert!(r
        .body
        .contains("The given command does not exist or it is not available for user"));
}

#[test]
fn admin_key_may_call_anything() {
    let r = get(&signed(
        "command=deployVirtualMachine&response=json&zoneid=1",
        DEMO_ACCOUNT.api_key,
        DEMO_ACCOUNT.secret_key,
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "{ \"deployvirtualmachineresponse\" : { } }");
}

#[test]
fn login_wrong_password_gets_531() {
    let r = post_form(
        "/client/api",
        "command=login&username=admin&password=guess&domain=%2F&response=json",
    );
    assert_eq!(r.status, 531);
    assert_eq!(
        r.body,
        "{ \"loginresponse\" : {\"uuidList\":[],\"errorcode\":531,\"errortext\":\
         \"Failed to authenticate user admin in domain 1; please provide valid credentials\"} }"
    );
}

#[test]
fn login_right_password_gets_session() {
    // Parameters split between query and body, as some clients send them.
    let r = post_form(
        "/client/api?command=login&response=json",
        "username=admin&password=password",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.starts_with("{ \"loginresponse\" : {"));
    assert!(r.body.contains("\"username\" : \"admin\""));
    assert!(r.body.contains("\"timeout\" : \"1800\""));
    assert!(r.body.contains("\"sessionkey\" : \""));
    assert!(r.head.contains("Set-Cookie: sessionkey="));
}

#[test]
fn login_via_get_gets_405() {
    let r = get("/client/api?command=login&username=admin&password=password&response=json");
    assert_eq!(r.status, 405);
    assert!(r.head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    assert!(r.body.contains("\"errorcode\":405"));
}

#[test]
fn xml_is_the_default_format() {
    let r = get(&signed(
        "command=listZones",
        DEMO_ACCOUNT.api_key,
        "wrong-secret",
    ));
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("text/xml;charset=utf-8"));
    assert_eq!(
        r.body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><listzonesresponse cloud-stack-version=\"4.19.0.0\">\
         <errorcode>401</errorcode><errortext>unable to verify user credentials and/or request \
         signature</errortext></listzonesresponse>"
    );
    let ok = get(&signed(
        "command=listZones",
        DEMO_ACCOUNT.api_key,
        DEMO_ACCOUNT.secret_key,
    ));
    assert_eq!(ok.status, 200);
    assert!(ok.body.contains("<name>authban-demo-zone</name>"));
}

#[test]
fn missing_command_and_unknown_path() {
    let r = get("/client/api?response=json");
    assert_eq!(r.status, 431);
    assert!(r
        .body
        .contains("\"errortext\":\"missing parameter command\""));
    assert_eq!(get("/client/other").status, 404);
}

#[test]
fn keep_alive_pipelining_and_http10() {
    let ok = signed(
        "command=listZones&response=json",
        DEMO_ACCOUNT.api_key,
        DEMO_ACCOUNT.secret_key,
    );
    let raw = format!(
        "GET {ok} HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /client/api?command=listZones HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    );
    let text = exchange(raw.as_bytes());
    assert_eq!(text.matches("HTTP/1.1 ").count(), 2, "{text}");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(text.contains("Connection: keep-alive"));
    assert!(text.contains("HTTP/1.1 401 Unauthorized"));

    // HTTP/1.0 without keep-alive: one answer, then close.
    let r = parse_reply(&exchange(format!("GET {ok} HTTP/1.0\r\n\r\n").as_bytes()));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn chunked_body_and_expect_continue() {
    let body = "command=login&username=admin&password=nope";
    let raw = format!(
        "POST /client/api HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        10,
        &body[..10],
        body.len() - 10,
        &body[10..]
    );
    assert_eq!(parse_reply(&exchange(raw.as_bytes())).status, 531);

    let mut stream = connect();
    stream
        .write_all(
            format!(
                "POST /client/api HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\n\
                 Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert_eq!(parse_reply(&rest).status, 531);
}

#[test]
fn malformed_and_oversized_requests_are_rejected() {
    let r = parse_reply(&exchange(b"NONSENSE\r\n\r\n"));
    assert_eq!(r.status, 400);

    let huge_header = format!(
        "GET /client/api HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    assert_eq!(parse_reply(&exchange(huge_header.as_bytes())).status, 400);

    let r = parse_reply(&exchange(
        b"POST /client/api HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
    ));
    assert_eq!(r.status, 413);

    let r = parse_reply(&exchange(
        b"POST /client/api HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    ));
    assert_eq!(r.status, 400);

    // Invalid UTF-8 and control bytes must not upset anything.
    let r = parse_reply(&exchange(
        b"GET /client/api?command=%ff%fe\xff HTTP/1.1\r\nHost: \x01\xfe\r\nConnection: close\r\n\r\n",
    ));
    assert_eq!(r.status, 401);
}

#[test]
fn stats_count_only_api_requests() {
    // Other tests run concurrently against the same server, so check with
    // a private server instance instead of the shared one.
    let server = Server::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let mock = Arc::new(Mock::new());
    thread::spawn(move || server.run(Arc::new(move |req: &Request| mock.handle(req))));
    let send = |raw: &str| {
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        parse_reply(&out)
    };
    let get = |target: &str| {
        send(&format!(
            "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ))
    };
    get("/client/api?command=listZones");
    get("/client/api?command=listZones");
    get(&signed(
        "command=listZones",
        DEMO_ACCOUNT.api_key,
        DEMO_ACCOUNT.secret_key,
    ));
    get("/elsewhere");
    let stats = get("/_mock/stats");
    assert_eq!(
        stats.body,
        "{\"requests\":3,\"by_status\":{\"200\":1,\"401\":2,\"405\":0,\"431\":0,\"531\":0}}\n"
    );
    let reset = send("POST /_mock/reset HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(reset.status, 200);
    assert!(get("/_mock/stats").body.starts_with("{\"requests\":0,"));
}
