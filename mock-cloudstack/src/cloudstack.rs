//! The CloudStack `/client/api` behaviour: parameter handling, signature
//! and login checks, CloudStack-shaped JSON/XML bodies, and the test
//! counters under `/_mock/`. Every `/client/api` answer carries the
//! received body's length and SHA-256 (`X-Mock-Body-Length`,
//! `X-Mock-Body-Sha256`), for tests of what a proxy passed on.
//!
//! Built-in accounts:
//! - demo admin: apiKey `authban-demo-key`, secretKey `authban-demo-secret`,
//!   may call any command;
//! - restricted user: apiKey `authban-user-key`, secretKey
//!   `authban-user-secret`, may call only `listZones` and
//!   `listVirtualMachines` (anything else gets 531);
//! - login: username `admin`, password `password`, domain `/` (or none).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::http::{Request, Response};
use crate::sign;

pub const VERSION: &str = "4.19.0.0";
pub const API_PATH: &str = "/client/api";

pub struct Account {
    pub api_key: &'static str,
    pub secret_key: &'static str,
    /// `None` means every command is allowed.
    pub allowed: Option<&'static [&'static str]>,
}

pub const DEMO_ACCOUNT: Account = Account {
    api_key: "authban-demo-key",
    secret_key: "authban-demo-secret",
    allowed: None,
};

pub const USER_ACCOUNT: Account = Account {
    api_key: "authban-user-key",
    secret_key: "authban-user-secret",
    allowed: Some(&["listZones", "listVirtualMachines"]),
};

pub const ACCOUNTS: [&Account; 2] = [&DEMO_ACCOUNT, &USER_ACCOUNT];

pub const LOGIN_USERNAME: &str = "admin";
pub const LOGIN_PASSWORD: &str = "password";
const ROOT_DOMAIN_UUID: &str = "8a3c8a1e-45d4-11ee-9b4e-0242ac110002";
const ADMIN_USER_UUID: &str = "8a3d1c52-45d4-11ee-9b4e-0242ac110002";
const ZONE_UUID: &str = "3f1d5c2e-7a9b-4c1d-8e2f-a0b1c2d3e4f5";
const SESSION_TIMEOUT_SECS: u32 = 1800;

const ERR_CREDENTIALS: &str = "unable to verify user credentials and/or request signature";
const ERR_NOT_AVAILABLE: &str = "The given command does not exist or it is not available for user";
const ERR_LOGIN_GET: &str = "Please use HTTP POST to authenticate using this API";

/// Statuses always present in `/_mock/stats` so tests can read them
/// without treating a missing key as zero.
const SEEDED_STATUSES: [u16; 5] = [200, 401, 405, 431, 531];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    Json,
    Xml,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    by_status: BTreeMap<u16, u64>,
}

#[derive(Default)]
pub struct Mock {
    stats: Mutex<Stats>,
}

impl Mock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn handle(&self, req: &Request) -> Response {
        match req.path.as_str() {
            API_PATH => {
                let mut resp = api(req);
                resp.headers.extend(body_digest(&req.body));
                let mut stats = self.stats();
                stats.requests += 1;
                *stats.by_status.entry(resp.status).or_insert(0) += 1;
                resp
            }
            "/_mock/stats" => match req.method.as_str() {
                "GET" | "HEAD" => self.stats_response(),
                _ => method_not_allowed("GET"),
            },
            "/_mock/reset" => match req.method.as_str() {
                "POST" => {
                    *self.stats() = Stats::default();
                    self.stats_response()
                }
                _ => method_not_allowed("POST"),
            },
            _ => Response::text(404, "not found"),
        }
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        // A panic elsewhere must not take the counters down with it.
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats_response(&self) -> Response {
        let stats = self.stats();
        let mut by_status: BTreeMap<u16, u64> = SEEDED_STATUSES.iter().map(|&s| (s, 0)).collect();
        by_status.extend(stats.by_status.iter().map(|(&k, &v)| (k, v)));
        let entries: Vec<String> = by_status
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        Response::new(
            200,
            "application/json",
            format!(
                "{{\"requests\":{},\"by_status\":{{{}}}}}\n",
                stats.requests,
                entries.join(",")
            ),
        )
    }
}

/// What the API received as its body, for tests that check a proxy
/// passed it on byte for byte: its length and SHA-256 (hex).
pub fn body_digest(body: &[u8]) -> [(String, String); 2] {
    let hex: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    [
        ("X-Mock-Body-Length".into(), body.len().to_string()),
        ("X-Mock-Body-Sha256".into(), hex),
    ]
}

fn method_not_allowed(allow: &str) -> Response {
    let mut resp = Response::text(405, "method not allowed");
    resp.headers.push(("Allow".into(), allow.into()));
    resp
}

/// Request parameters as the servlet container sees them: query first,
/// then a form body, first value winning for repeated names.
struct Params(Vec<(String, String)>);

impl Params {
    fn from_request(req: &Request) -> Self {
        let mut all = sign::parse_pairs(&req.query);
        let is_form = req.header("content-type").is_some_and(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        if req.method == "POST" && is_form {
            all.extend(sign::parse_pairs(&String::from_utf8_lossy(&req.body)));
        }
        let mut unique: Vec<(String, String)> = Vec::with_capacity(all.len());
        for (k, v) in all {
            if !unique.iter().any(|(seen, _)| *seen == k) {
                unique.push((k, v));
            }
        }
        Params(unique)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// CloudStack matches apiKey and signature case-insensitively.
    fn get_ci(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn api(req: &Request) -> Response {
    let params = Params::from_request(req);
    let format = match params.get("response") {
        Some(r) if r.eq_ignore_ascii_case("json") => Format::Json,
        _ => Format::Xml,
    };
    let command = params.get("command").filter(|c| !c.is_empty());
    let key = response_key(command);
    let mut resp = dispatch(req, &params, format, command, &key);
    if let Some(c) = command {
        resp.log_note = format!("command={c}");
    }
    resp
}

fn dispatch(
    req: &Request,
    params: &Params,
    format: Format,
    command: Option<&str>,
    key: &str,
) -> Response {
    if !matches!(req.method.as_str(), "GET" | "POST" | "HEAD") {
        let text = format!("HTTP method {} is not supported by this URL", req.method);
        let mut resp = error(format, key, 405, &text);
        resp.headers.push(("Allow".into(), "GET, POST".into()));
        return resp;
    }
    let Some(command) = command else {
        return error(format, key, 431, "missing parameter command");
    };
    if command.eq_ignore_ascii_case("login") {
        return login(req, params, format, key);
    }
    let (Some(api_key), Some(signature)) = (params.get_ci("apikey"), params.get_ci("signature"))
    else {
        return error(format, key, 401, ERR_CREDENTIALS);
    };
    let Some(account) = ACCOUNTS.iter().find(|a| a.api_key == api_key) else {
        return error(format, key, 401, ERR_CREDENTIALS);
    };
    let expected = sign::signature(params.iter(), account.secret_key);
    if !sign::constant_time_eq(signature, &expected) {
        return error(format, key, 401, ERR_CREDENTIALS);
    }
    if let Some(allowed) = account.allowed {
        if !allowed.contains(&command) {
            return error(format, key, 531, ERR_NOT_AVAILABLE);
        }
    }
    if command == "listZones" {
        list_zones(format, key)
    } else {
        success(format, key, " ", "")
    }
}

/// `<command>response`, reduced to characters that are safe both as a JSON
/// key and as an XML element name, since the command is client input.
fn response_key(command: Option<&str>) -> String {
    let name: String = command
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        "errorresponse".into()
    } else {
        format!("{name}response")
    }
}

fn login(req: &Request, params: &Params, format: Format, key: &str) -> Response {
    if req.method != "POST" {
        return error(format, key, 405, ERR_LOGIN_GET);
    }
    let Some(username) = params.get("username").filter(|u| !u.is_empty()) else {
        return error(format, key, 431, "missing parameter username");
    };
    let password = params.get("password").unwrap_or("");
    // CloudStack resolves the domain path (or takes domainId) and reports
    // the domain's internal id on failure; ROOT is id 1.
    let domain_id = match (params.get("domain"), params.get("domainId")) {
        (Some(path), _) if !path.is_empty() => {
            let trimmed = path.trim_matches('/');
            if !trimmed.is_empty() {
                let normalised = format!("/{trimmed}/");
                let text = format!("Unable to find the domain from the path {normalised}");
                return error(format, key, 531, &text);
            }
            "1".to_string()
        }
        (_, Some(id)) if !id.is_empty() => {
            if id == ROOT_DOMAIN_UUID || id == "1" {
                "1".to_string()
            } else {
                id.to_string()
            }
        }
        _ => "1".to_string(),
    };
    let credentials_ok = sign::constant_time_eq(username, LOGIN_USERNAME)
        & sign::constant_time_eq(password, LOGIN_PASSWORD);
    if !credentials_ok || domain_id != "1" {
        let text = format!(
            "Failed to authenticate user {username} in domain {domain_id}; please provide valid credentials"
        );
        return error(format, key, 531, &text);
    }
    let session = sign::session_key();
    let fields: [(&str, String); 11] = [
        ("username", username.to_string()),
        ("userid", ADMIN_USER_UUID.into()),
        ("domainid", ROOT_DOMAIN_UUID.into()),
        ("timeout", SESSION_TIMEOUT_SECS.to_string()),
        ("account", "admin".into()),
        ("firstname", "Admin".into()),
        ("lastname", "User".into()),
        ("type", "1".into()),
        ("timezone", "UTC".into()),
        ("registered", "false".into()),
        ("sessionkey", session.clone()),
    ];
    let json = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\" : \"{}\"", json_escape(v)))
        .collect::<Vec<_>>()
        .join(", ");
    let xml: String = fields
        .iter()
        .map(|(k, v)| format!("<{k}>{}</{k}>", xml_escape(v)))
        .collect();
    let mut resp = success(format, key, &format!(" {json} "), &xml);
    resp.headers.push((
        "Set-Cookie".into(),
        format!("sessionkey={session}; Path=/client; HttpOnly"),
    ));
    resp.headers.push((
        "Set-Cookie".into(),
        format!("JSESSIONID={}; Path=/client; HttpOnly", sign::session_key()),
    ));
    resp
}

fn list_zones(format: Format, key: &str) -> Response {
    let json = format!(
        " \"count\":1 ,\"zone\" : [  {{\"id\":\"{ZONE_UUID}\",\"name\":\"authban-demo-zone\",\
         \"description\":\"Zone served by mock-cloudstack\",\"networktype\":\"Advanced\",\
         \"securitygroupsenabled\":false,\"allocationstate\":\"Enabled\",\
         \"dhcpprovider\":\"VirtualRouter\",\"localstorageenabled\":false,\"tags\":[]}} ] "
    );
    let xml = format!(
        "<count>1</count><zone><id>{ZONE_UUID}</id><name>authban-demo-zone</name>\
         <description>Zone served by mock-cloudstack</description>\
         <networktype>Advanced</networktype><securitygroupsenabled>false</securitygroupsenabled>\
         <allocationstate>Enabled</allocationstate><dhcpprovider>VirtualRouter</dhcpprovider>\
         <localstorageenabled>false</localstorageenabled></zone>"
    );
    success(format, key, &json, &xml)
}

fn success(format: Format, key: &str, json_inner: &str, xml_inner: &str) -> Response {
    let body = match format {
        Format::Json => format!("{{ \"{key}\" : {{{json_inner}}} }}"),
        Format::Xml => xml_document(key, xml_inner),
    };
    with_format(format, 200, body)
}

fn error(format: Format, key: &str, code: u16, text: &str) -> Response {
    let body = match format {
        Format::Json => format!(
            "{{ \"{key}\" : {{\"uuidList\":[],\"errorcode\":{code},\"errortext\":\"{}\"}} }}",
            json_escape(text)
        ),
        Format::Xml => xml_document(
            key,
            &format!(
                "<errorcode>{code}</errorcode><errortext>{}</errortext>",
                xml_escape(text)
            ),
        ),
    };
    with_format(format, code, body)
}

fn xml_document(key: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{key} cloud-stack-version=\"{VERSION}\">{inner}</{key}>"
    )
}

fn with_format(format: Format, status: u16, body: String) -> Response {
    let content_type = match format {
        Format::Json => "application/json;charset=utf-8",
        Format::Xml => "text/xml;charset=utf-8",
    };
    Response::new(status, content_type, body)
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            // Keeps user text from closing a <script> if someone renders it.
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            c => out.push(c),
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(query: &str) -> Request {
        Request {
            method: "GET".into(),
            path: API_PATH.into(),
            query: query.into(),
            minor_version: 1,
            headers: vec![("host".into(), "x".into())],
            body: Vec::new(),
        }
    }

    fn body(resp: &Response) -> String {
        String::from_utf8_lossy(&resp.body).into_owned()
    }

    #[test]
    fn api_answers_echo_the_body_digest() {
        let mut req = get("command=listZones");
        req.method = "POST".into();
        req.body = b"abc".to_vec();
        let resp = Mock::new().handle(&req);
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("X-Mock-Body-Length").as_deref(), Some("3"));
        assert_eq!(
            header("X-Mock-Body-Sha256").as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn response_keys_are_sanitised() {
        assert_eq!(response_key(Some("listZones")), "listzonesresponse");
        assert_eq!(response_key(None), "errorresponse");
        assert_eq!(response_key(Some("<>\"")), "errorresponse");
        assert_eq!(response_key(Some("a<b>")), "abresponse");
    }

    #[test]
    fn json_error_body_matches_cloudstack_shape() {
        let resp = error(Format::Json, "listzonesresponse", 401, ERR_CREDENTIALS);
        assert_eq!(
            body(&resp),
            "{ \"listzonesresponse\" : {\"uuidList\":[],\"errorcode\":401,\
             \"errortext\":\"unable to verify user credentials and/or request signature\"} }"
        );
    }

    #[test]
    fn signature_parameter_name_is_case_insensitive() {
        let q = sign::signed_query(
            &sign::parse_pairs("command=listZones&response=json"),
            DEMO_ACCOUNT.api_key,
            DEMO_ACCOUNT.secret_key,
        );
        let mock = Mock::new();
        assert_eq!(mock.handle(&get(&q)).status, 200);
        let renamed = q
            .replace("apiKey=", "APIKEY=")
            .replace("signature=", "Signature=");
        assert_eq!(mock.handle(&get(&renamed)).status, 200);
    }

    #[test]
    fn missing_command_is_431_and_counted() {
        let mock = Mock::new();
        let resp = mock.handle(&get("response=json"));
        assert_eq!(resp.status, 431);
        assert!(body(&resp).starts_with("{ \"errorresponse\" : {"));
        assert!(body(&resp).contains("missing parameter command"));
        let stats = body(&mock.handle(&Request {
            path: "/_mock/stats".into(),
            ..get("")
        }));
        assert_eq!(
            stats,
            "{\"requests\":1,\"by_status\":{\"200\":0,\"401\":0,\"405\":0,\"431\":1,\"531\":0}}\n"
        );
    }

    #[test]
    fn login_error_text_escapes_username() {
        let mut req = get("command=login&username=%3Cx%3E&password=no");
        req.method = "POST".into();
        let resp = Mock::new().handle(&req);
        assert_eq!(resp.status, 531);
        assert!(body(&resp).contains("Failed to authenticate user &lt;x&gt; in domain 1;"));
    }

    #[test]
    fn login_unknown_domain_fails() {
        let mut req = get("command=login&username=admin&password=password&domain=%2Fother");
        req.method = "POST".into();
        assert_eq!(Mock::new().handle(&req).status, 531);
        req.query = "command=login&username=admin&password=password&domain=%2F".into();
        assert_eq!(Mock::new().handle(&req).status, 200);
    }
}
