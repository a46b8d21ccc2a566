//! `mock-cloudstack`: a stand-in for Apache CloudStack's management API
//! (`/client/api`) used by authban's demo and integration tests.
//!
//! Built-in accounts:
//! - demo admin: apiKey `authban-demo-key`, secretKey `authban-demo-secret`,
//!   may call any command;
//! - restricted user: apiKey `authban-user-key`, secretKey
//!   `authban-user-secret`, may call only `listZones` and
//!   `listVirtualMachines` (anything else gets 531);
//! - login: username `admin`, password `password`, domain `/` (or none).

mod cloudstack;
mod http;
mod sign;

#[cfg(test)]
mod e2e_tests;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "\
mock-cloudstack - mock Apache CloudStack management API server (/client/api)

USAGE:
    mock-cloudstack serve [--listen ADDR]
        Serve the API on ADDR (default 127.0.0.1:8096; IPv6 as [::1]:PORT,
        port 0 picks a free port). Prints one line
        'mock-cloudstack listening on ADDR' once bound, logs one line per
        request to stderr, and runs until killed.

    mock-cloudstack sign [--api-key KEY] [--secret SECRET] QUERY
        Print QUERY (e.g. 'command=listZones&response=json') with apiKey and
        a CloudStack HMAC-SHA1 signature appended, URL-encoded, ready for
        curl \"http://HOST/client/api?$(mock-cloudstack sign ...)\".
        QUERY is a query string: write a literal '+' as %2B.
        Defaults to the demo admin account.

    mock-cloudstack --help | --version

BUILT-IN ACCOUNTS:
    demo admin       apiKey authban-demo-key   secretKey authban-demo-secret
                     may call any command
    restricted user  apiKey authban-user-key   secretKey authban-user-secret
                     may call only listZones and listVirtualMachines (else 531)
    login            username admin, password password, domain / (or none)

RESPONSES (/client/api; response=json for JSON, XML otherwise):
    200  valid signed request, or successful POST login
    401  missing/unknown apiKey, missing or wrong signature
    405  command=login sent with GET
    431  missing command parameter
    531  command not allowed for the key, or wrong login credentials

TEST HOOKS:
    GET  /_mock/stats   {\"requests\":N,\"by_status\":{\"200\":a,...}} (/client/api only)
    POST /_mock/reset   zero the counters
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            let _ = writeln!(
                std::io::stderr(),
                "mock-cloudstack: {msg}\nTry 'mock-cloudstack --help'."
            );
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let Some((sub, rest)) = args.split_first() else {
        return Err("missing subcommand (serve or sign)".into());
    };
    match sub.as_str() {
        "-h" | "--help" | "help" => {
            stdout(USAGE);
            Ok(())
        }
        "-V" | "--version" => {
            stdout(&format!("mock-cloudstack {}\n", env!("CARGO_PKG_VERSION")));
            Ok(())
        }
        "serve" => serve(rest),
        "sign" => sign_cmd(rest),
        other => Err(format!("unknown subcommand '{other}'")),
    }
}

/// `--name value` / `--name=value` options, in order, plus positionals.
type Options = Vec<(String, String)>;

fn parse_options(args: &[String], known: &[&str]) -> Result<(Options, Vec<String>), String> {
    let mut options = Vec::new();
    let mut positionals = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "-h" || arg == "--help" {
            stdout(USAGE);
            std::process::exit(0);
        }
        if arg == "--" {
            positionals.extend(iter.by_ref().cloned());
            break;
        }
        if let Some(name) = arg.strip_prefix("--") {
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            if !known.contains(&name) {
                return Err(format!("unknown option --{name}"));
            }
            let value = match inline {
                Some(v) => v,
                None => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("option --{name} needs a value"))?,
            };
            let name = name.to_string();
            options.push((name, value));
        } else {
            positionals.push(arg.clone());
        }
    }
    Ok((options, positionals))
}

fn option<'a>(options: &'a [(String, String)], name: &str) -> Option<&'a str> {
    // Last one wins, as with most CLIs.
    options
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn serve(args: &[String]) -> Result<(), String> {
    let (options, positionals) = parse_options(args, &["listen"])?;
    if let Some(extra) = positionals.first() {
        return Err(format!("unexpected argument '{extra}'"));
    }
    let listen = option(&options, "listen").unwrap_or("127.0.0.1:8096");
    let server =
        http::Server::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = server
        .local_addr()
        .map_err(|e| format!("cannot read bound address: {e}"))?;
    stdout(&format!("mock-cloudstack listening on {addr}\n"));
    let mock = Arc::new(cloudstack::Mock::new());
    server.run(Arc::new(move |req: &http::Request| mock.handle(req)));
    Ok(())
}

fn sign_cmd(args: &[String]) -> Result<(), String> {
    let (options, positionals) = parse_options(args, &["api-key", "secret"])?;
    let api_key = option(&options, "api-key").unwrap_or(cloudstack::DEMO_ACCOUNT.api_key);
    let secret = option(&options, "secret").unwrap_or(cloudstack::DEMO_ACCOUNT.secret_key);
    let query = match positionals.as_slice() {
        [q] => q,
        [] => return Err("sign needs a QUERY such as 'command=listZones&response=json'".into()),
        _ => return Err("sign takes exactly one QUERY (join parameters with '&')".into()),
    };
    let query = query.strip_prefix('?').unwrap_or(query);
    let params = sign::parse_pairs(query);
    stdout(&format!(
        "{}\n",
        sign::signed_query(&params, api_key, secret)
    ));
    Ok(())
}

/// print! panics when stdout is a closed pipe; a CLI should not.
fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
