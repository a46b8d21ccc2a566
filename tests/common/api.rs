//! The management endpoint as the suites call it: `authban_api` at
//! `/authban` on the node's second port (`{port2}`), answers checked to be
//! JSON of the status expected.

use super::client::{http, Reply};
use super::json::Json;
use super::nginx::Nginx;

/// `METHOD /authban{query}` on node `n`.
pub fn api(n: &Nginx, method: &str, query: &str) -> Reply {
    http(n.port2(), method, &format!("/authban{query}"), &[], None)
}

/// A 200 JSON answer of the endpoint, parsed.
pub fn api_ok(n: &Nginx, method: &str, query: &str) -> Json {
    let what = format!("{method} /authban{query} on :{}", n.port2());
    let reply = api(n, method, query);
    if reply.status() != Some(200) {
        panic!(
            "{what}: {:?}, not 200: {}\n{}",
            reply.status(),
            reply.text(),
            n.log_tail()
        );
    }
    json_ok(&what, &reply)
}

/// A 200 answer of type `application/json`, parsed.
pub fn json_ok(what: &str, reply: &Reply) -> Json {
    let r = reply.response();
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    Json::parse(&r.text()).unwrap_or_else(|e| panic!("{what}: invalid JSON ({e}): {}", r.text()))
}

/// An error answer: the status, the JSON body `{"error","status"}` and its
/// content type checked; returns the reason (never empty).
pub fn json_error(what: &str, reply: &Reply, status: u16) -> String {
    let r = reply.response();
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    let body = Json::parse(&r.text())
        .unwrap_or_else(|e| panic!("{what}: invalid JSON ({e}): {:?}", r.text()));
    assert_eq!(body.keys(), ["error", "status"], "{what}: {body:?}");
    assert_eq!(body.u64("status"), u64::from(status), "{what}");
    let reason = body.str("error").to_string();
    assert!(!reason.is_empty(), "{what}: empty error");
    reason
}

/// `METHOD /authban{query}` answered with error `status`; its reason.
pub fn api_err(n: &Nginx, method: &str, query: &str, status: u16) -> String {
    json_error(
        &format!("{method} /authban{query}"),
        &api(n, method, query),
        status,
    )
}
