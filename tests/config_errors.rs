//! `nginx -t` on good and bad authban configurations: every bad one must be
//! refused with an `[emerg]` that names the directive, the problem and the
//! offending line of nginx.conf; every good one must pass; nothing may crash.
//!
//! Table-driven: a case is an http block in which the offending line carries
//! the marker comment `# <-`, so the test knows which line nginx must name.

mod common;

use std::sync::OnceLock;

use common::*;

/// Marks the line a bad case's error must point at.
const MARK: &str = "# <-";

/// A bad configuration and what nginx must say about it.
struct Bad {
    what: &'static str,
    block: String,
    /// The directive the message names (None: nginx's own message, which
    /// names no directive, e.g. a shared memory name clash).
    directive: Option<&'static str>,
    /// Texts that must all be in the message.
    problem: &'static [&'static str],
}

fn bad(
    what: &'static str,
    block: &str,
    directive: Option<&'static str>,
    problem: &'static [&'static str],
) -> Bad {
    Bad {
        what,
        block: block.to_string(),
        directive,
        problem,
    }
}

/// A one-line `authban_zone` case at http level.
fn bad_zone(what: &'static str, args: &str, problem: &'static [&'static str]) -> Bad {
    bad(
        what,
        &format!("authban_zone {args}; {MARK}\n"),
        Some("authban_zone"),
        problem,
    )
}

/// A location-level directive inside a minimal server with a valid zone.
fn in_location(line: &str) -> String {
    format!(
        "authban_zone zone=z:1m;\n\
         server {{\n\
         listen 127.0.0.1:{{port}};\n\
         location / {{\n\
         authban z;\n\
         {line} {MARK}\n\
         return 200;\n\
         }}\n\
         }}\n"
    )
}

fn bad_loc(
    what: &'static str,
    line: &str,
    directive: &'static str,
    problem: &'static [&'static str],
) -> Bad {
    bad(what, &in_location(line), Some(directive), problem)
}

/// How many lines the harness puts before the http block: found once by
/// letting nginx report an unknown directive on the block's first line.
fn block_offset() -> usize {
    static OFFSET: OnceLock<usize> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let (ok, out) = nginx_test_config("authban_calibration_bogus on;\n");
        assert!(!ok, "{out}");
        let line = out
            .lines()
            .find(|l| l.contains("authban_calibration_bogus"))
            .unwrap_or_else(|| panic!("no calibration message in:\n{out}"));
        let (_, n) = location_of(line).unwrap_or_else(|e| panic!("{e}"));
        n - 1
    })
}

/// The trailing ` in <path>:<line>` of a message line; the path must be
/// the test's nginx.conf.
fn location_of(line: &str) -> Result<(String, usize), String> {
    let (_, loc) = line
        .rsplit_once(" in ")
        .ok_or_else(|| format!("no \" in <path>:<line>\" in {line:?}"))?;
    let (path, n) = loc
        .rsplit_once(':')
        .ok_or_else(|| format!("no \":<line>\" in {line:?}"))?;
    if !path.starts_with('/') || !path.ends_with("/nginx.conf") {
        return Err(format!(
            "location {loc:?} is not the test's nginx.conf: {line:?}"
        ));
    }
    let n = n
        .parse::<usize>()
        .map_err(|_| format!("line number {n:?} is not a number: {line:?}"))?;
    Ok((path.to_string(), n))
}

/// nginx exited by itself, saying so; a crash prints none of this.
fn check_no_crash(out: &str) -> Result<(), String> {
    for sign in [
        "Segmentation",
        "signal",
        "core dumped",
        "panicked",
        "Aborted",
    ] {
        if out.contains(sign) {
            return Err(format!("nginx -t crashed ({sign:?})"));
        }
    }
    Ok(())
}

fn check_bad(case: &Bad) -> Result<(), String> {
    let (ok, out) = nginx_test_config(&case.block);
    let fail =
        |why: String| -> Result<(), String> { Err(format!("{why}\n--- nginx -t output:\n{out}")) };
    if ok {
        return fail("nginx -t accepted it".into());
    }
    if let Err(e) = check_no_crash(&out) {
        return fail(e);
    }
    if !out.contains("test failed") {
        return fail("no \"test failed\": nginx did not finish normally".into());
    }
    let emerg: Vec<&str> = out.lines().filter(|l| l.contains("[emerg]")).collect();
    if emerg.is_empty() {
        return fail("no [emerg] line".into());
    }
    // The message about this case: the line that states the problem.
    let Some(message) = emerg
        .iter()
        .copied()
        .find(|l| case.problem.iter().all(|p| l.contains(p)))
    else {
        return fail(format!(
            "no [emerg] line contains all of {:?}",
            case.problem
        ));
    };
    if let Some(directive) = case.directive {
        if !message.contains(directive) {
            return fail(format!("{message:?} does not name {directive:?}"));
        }
    }
    // Every message line ends with " in <nginx.conf>:<line>"...
    let mut conf_path = None;
    for line in &emerg {
        match location_of(line) {
            Ok((path, _)) => conf_path = Some(path),
            Err(e) => return fail(e),
        }
    }
    let conf_path = conf_path.unwrap_or_default();
    // ...and the message names the offending line.
    let marked = case
        .block
        .lines()
        .position(|l| l.contains(MARK))
        .expect("a bad case marks its offending line")
        + 1;
    let want = format!("{conf_path}:{}", block_offset() + marked);
    if !message.contains(&format!(" in {want}")) {
        return fail(format!("{message:?} does not point at {want}"));
    }
    Ok(())
}

fn run_bad(cases: &[Bad]) {
    assert!(!cases.is_empty());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check_bad(case)
                .err()
                .map(|e| format!("=== {}:\n{}\n{e}", case.what, case.block))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} bad configurations misreported:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn authban_zone_errors() {
    with_timeout(120, || {
        run_bad(&[
            bad_zone(
                "missing zone=",
                "maxretry=3",
                &["missing \"zone=NAME:SIZE\""],
            ),
            bad_zone(
                "zone without size",
                "zone=x",
                &["invalid zone \"x\"", "expected zone=NAME:SIZE"],
            ),
            bad_zone("empty zone name", "zone=:1m", &["empty name"]),
            // A name is one word of letters, digits, _ - . (the fail2ban
            // filter and the logs read it up to a space).
            bad_zone(
                "zone name with a space",
                "\"zone=x addr=6.6.6.6:1m\"",
                &["invalid zone name \"x addr=6.6.6.6\": only letters, digits, \"_\", \"-\" and \".\" are allowed"],
            ),
            bad_zone(
                "zone name with a quote",
                "'zone=a\"b:1m'",
                &["invalid zone name \"a\\\"b\"", "only letters, digits"],
            ),
            bad_zone(
                "zone name with a slash",
                "zone=a/b:1m",
                &["invalid zone name \"a/b\"", "only letters, digits"],
            ),
            bad_zone(
                "zone name not ASCII",
                "zone=zöne:1m",
                &["invalid zone name \"zöne\"", "only letters, digits"],
            ),
            bad_zone(
                "zone name with a tab",
                "\"zone=a\tb:1m\"",
                &["invalid zone name \"a\\tb\"", "only letters, digits"],
            ),
            bad_zone(
                "size not a number",
                "zone=x:abc",
                &["invalid zone size \"abc\""],
            ),
            bad_zone(
                "size unit unknown",
                "zone=x:10x",
                &["invalid zone size \"10x\""],
            ),
            bad_zone(
                "zone= given twice",
                "zone=ab:1m zone=x:1m",
                &["duplicate parameter \"zone=\""],
            ),
            bad_zone(
                "maxretry given twice",
                "zone=x:1m maxretry=3 maxretry=4",
                &["duplicate parameter \"maxretry=\""],
            ),
            bad_zone(
                "zone too small",
                "zone=x:16k",
                &["zone \"x\" is too small", "at least 32k"],
            ),
            bad_zone(
                "zone one byte short of 32k",
                "zone=x:32767",
                &["too small", "32767 bytes"],
            ),
            bad_zone(
                "maxretry 0",
                "zone=x:1m maxretry=0",
                &["invalid maxretry \"0\"", "must be 1 to 65535"],
            ),
            bad_zone(
                "maxretry 70000",
                "zone=x:1m maxretry=70000",
                &["invalid maxretry \"70000\"", "must be 1 to 65535"],
            ),
            bad_zone(
                "maxretry abc",
                "zone=x:1m maxretry=abc",
                &["invalid maxretry \"abc\""],
            ),
            bad_zone(
                "findtime word",
                "zone=x:1m findtime=soon",
                &["invalid findtime \"soon\""],
            ),
            bad_zone(
                "findtime milliseconds",
                "zone=x:1m findtime=500ms",
                &["invalid findtime \"500ms\"", "1s or more"],
            ),
            bad_zone(
                "findtime 0",
                "zone=x:1m findtime=0",
                &["invalid findtime \"0\"", "1s or more"],
            ),
            bad_zone(
                "findtime units out of order",
                "zone=x:1m findtime=1m1h",
                &["invalid findtime \"1m1h\""],
            ),
            bad_zone(
                "bantime milliseconds",
                "zone=x:1m bantime=500ms",
                &["invalid bantime \"500ms\"", "1s or more"],
            ),
            bad_zone(
                "bantime 0",
                "zone=x:1m bantime=0",
                &["invalid bantime \"0\"", "1s or more"],
            ),
            bad_zone(
                "bantime empty",
                "zone=x:1m bantime=",
                &["invalid bantime \"\""],
            ),
            bad_zone(
                "unknown parameter",
                "zone=x:1m color=red",
                &["invalid parameter \"color=red\""],
            ),
            bad_zone(
                "parameter without =",
                "zone=x:1m oops",
                &["invalid parameter \"oops\""],
            ),
            // Parameters added with escalating bans, network keys and the
            // state file.
            bad_zone(
                "increment yes",
                "zone=x:1m increment=yes",
                &["invalid increment \"yes\"", "must be on or off"],
            ),
            bad_zone(
                "factor below 1",
                "zone=x:1m increment=on factor=0.5",
                &["invalid factor \"0.5\"", "must be 1 to 1000"],
            ),
            bad_zone(
                "factor nan",
                "zone=x:1m factor=nan",
                &["invalid factor \"nan\""],
            ),
            bad_zone(
                "widen 1",
                "zone=x:1m widen=1",
                &["invalid widen \"1\"", "must be off or 2 to 255"],
            ),
            bad_zone(
                "ipv4_prefix 33",
                "zone=x:1m ipv4_prefix=33",
                &["invalid ipv4_prefix \"33\"", "must be 1 to 32"],
            ),
            bad_zone(
                "ipv6_prefix 129",
                "zone=x:1m ipv6_prefix=129",
                &["invalid ipv6_prefix \"129\"", "must be 1 to 128"],
            ),
            bad_zone(
                "maxtime shorter than bantime",
                "zone=x:1m bantime=1h maxtime=10m",
                &["maxtime (600s) is shorter than bantime (3600s)"],
            ),
            bad_zone(
                "history 0",
                "zone=x:1m history=0",
                &["invalid history \"0\""],
            ),
            bad_zone(
                "empty state path",
                "zone=x:1m state=",
                &["invalid state \"\""],
            ),
            bad_zone(
                "state_interval in milliseconds",
                "zone=x:1m state_interval=500ms",
                &["invalid state_interval \"500ms\""],
            ),
            // A malformed sync= value is echoed without its credentials.
            bad_zone(
                "malformed sync with a password",
                "zone=x:1m sync=redis://:hunter2@127.0.0.1:notaport",
                &["invalid sync \"redis://***@127.0.0.1:notaport\"", "expected redis://"],
            ),
            bad(
                "one state file for two zones",
                &format!(
                    "authban_zone zone=x:1m state={{dir}}/s.state;\n\
                     authban_zone zone=y:1m state={{dir}}/s.state; {MARK}\n"
                ),
                Some("authban_zone"),
                &["state file", "is used by another zone"],
            ),
            bad(
                "duplicate zone name",
                &format!("authban_zone zone=x:1m;\nauthban_zone zone=x:1m; {MARK}\n"),
                Some("authban_zone"),
                &["duplicate zone \"x\""],
            ),
            bad(
                "duplicate zone name with another size",
                &format!("authban_zone zone=x:1m;\nauthban_zone zone=x:2m; {MARK}\n"),
                None,
                &["\"x\"", "conflicts with already declared size"],
            ),
            bad(
                "authban_zone inside server{}",
                &format!(
                    "server {{\nlisten 127.0.0.1:{{port}};\nauthban_zone zone=x:1m; {MARK}\n}}\n"
                ),
                Some("\"authban_zone\""),
                &["directive is not allowed here"],
            ),
            bad(
                "authban_zone inside location{}",
                &format!(
                    "server {{\nlisten 127.0.0.1:{{port}};\nlocation / {{\n\
                     authban_zone zone=x:1m; {MARK}\n}}\n}}\n"
                ),
                Some("\"authban_zone\""),
                &["directive is not allowed here"],
            ),
        ]);
    });
}

#[test]
fn authban_directive_errors() {
    with_timeout(120, || {
        run_bad(&[
            bad(
                "unknown zone",
                &format!(
                    "authban_zone zone=z:1m;\nserver {{\nlisten 127.0.0.1:{{port}};\n\
                     location / {{\nauthban nosuch; {MARK}\nreturn 200;\n}}\n}}\n"
                ),
                Some("authban"),
                &["authban: unknown zone \"nosuch\""],
            ),
            bad(
                "unknown zone at http level, no zone at all",
                &format!("authban nosuch; {MARK}\n"),
                Some("authban"),
                &["authban: unknown zone \"nosuch\""],
            ),
            bad(
                "unknown zone among known ones",
                &format!(
                    "authban_zone zone=a:1m;\nauthban_zone zone=b:1m;\nserver {{\n\
                     listen 127.0.0.1:{{port}};\nauthban a;\n\
                     location /x {{ authban b; }}\n\
                     location /y {{ authban c; {MARK}\n}}\n}}\n"
                ),
                Some("authban"),
                &["unknown zone \"c\""],
            ),
            bad_loc(
                "duplicate authban in one location",
                "authban off;",
                "authban",
                &["is duplicate"],
            ),
            bad(
                "duplicate authban in one server",
                &format!(
                    "authban_zone zone=z:1m;\nserver {{\nlisten 127.0.0.1:{{port}};\n\
                     authban z;\nauthban z; {MARK}\n}}\n"
                ),
                Some("authban"),
                &["is duplicate"],
            ),
            bad(
                "authban naming a zone twice",
                &format!("authban_zone zone=z:1m;\nauthban z z; {MARK}\n"),
                Some("authban"),
                &["zone \"z\" is named twice"],
            ),
            bad(
                "authban off with a zone",
                &format!("authban_zone zone=z:1m;\nauthban off z; {MARK}\n"),
                Some("authban"),
                &["\"off\" takes no zone"],
            ),
            bad(
                "authban with an unknown second zone",
                &format!("authban_zone zone=z:1m;\nauthban z nosuch; {MARK}\n"),
                Some("authban"),
                &["unknown zone \"nosuch\""],
            ),
            bad_zone(
                "a key zone with a prefix",
                "zone=k:1m key=$arg_apikey ipv4_prefix=24",
                &["\"ipv4_prefix=\" is for zones keyed on the client address"],
            ),
            bad_zone(
                "a key zone with sync and no sync_key",
                "zone=k:1m key=$arg_apikey sync=redis://127.0.0.1",
                &["needs \"sync_key=\""],
            ),
            bad_zone("an empty key", "zone=k:1m key=", &["invalid key \"\""]),
            bad_zone(
                "familiar without a key",
                "zone=k:1m familiar=30d",
                &["\"familiar=\" without \"key=\""],
            ),
            bad_zone(
                "familiar of no time",
                "zone=k:1m key=$arg_apikey familiar=0",
                &["invalid familiar \"0\"", "expected a time of 1s or more"],
            ),
            bad_zone(
                "familiar twice",
                "zone=k:1m key=$arg_apikey familiar=1d familiar=2d",
                &["duplicate parameter \"familiar=\""],
            ),
        ]);
    });
}

#[test]
fn other_directive_errors() {
    with_timeout(120, || {
        run_bad(&[
            bad_loc(
                "fail status 600",
                "authban_fail_status 401 600;",
                "authban_fail_status",
                &["invalid status \"600\"", "must be 100 to 599"],
            ),
            bad_loc(
                "fail status 99",
                "authban_fail_status 99;",
                "authban_fail_status",
                &["invalid status \"99\"", "must be 100 to 599"],
            ),
            bad_loc(
                "fail status with a letter o",
                "authban_fail_status 4o1;",
                "authban_fail_status",
                &["invalid status \"4o1\""],
            ),
            bad_loc(
                "fail status with a sign",
                "authban_fail_status +401;",
                "authban_fail_status",
                &["invalid status \"+401\""],
            ),
            bad_loc(
                "refuse status 200",
                "authban_status 200;",
                "authban_status",
                &["invalid status \"200\"", "must be 400 to 599"],
            ),
            bad_loc(
                "refuse status 600",
                "authban_status 600;",
                "authban_status",
                &["invalid status \"600\"", "must be 400 to 599"],
            ),
            bad_loc(
                "ignore 300.1.1.1",
                "authban_ignore 300.1.1.1;",
                "authban_ignore",
                &["invalid address or network \"300.1.1.1\""],
            ),
            bad_loc(
                "ignore 10.0.0.0/33",
                "authban_ignore 10.0.0.0/8 10.0.0.0/33;",
                "authban_ignore",
                &["invalid address or network \"10.0.0.0/33\""],
            ),
            bad_loc(
                "ignore 2001:db8::/129",
                "authban_ignore 2001:db8::/129;",
                "authban_ignore",
                &["invalid address or network \"2001:db8::/129\""],
            ),
            bad_loc(
                "ignore nonsense",
                "authban_ignore nonsense;",
                "authban_ignore",
                &["invalid address or network \"nonsense\""],
            ),
            bad_loc(
                "dry run maybe",
                "authban_dry_run maybe;",
                "authban_dry_run",
                &["\"maybe\"", "must be on or off"],
            ),
            bad_loc(
                "log level debug",
                "authban_log_level debug;",
                "authban_log_level",
                &[
                    "invalid level \"debug\"",
                    "must be info, notice, warn or error",
                ],
            ),
            bad(
                "directive at http level",
                &format!("authban_status 302; {MARK}\n"),
                Some("authban_status"),
                &["invalid status \"302\""],
            ),
        ]);
    });
}

/// The zone name space is nginx's, shared with limit_req, limit_conn...:
/// a clash is refused by nginx itself, naming the zone.
#[test]
fn zone_name_clash_with_limit_req_zone() {
    with_timeout(120, || {
        let limit = "limit_req_zone $binary_remote_addr zone=x:1m rate=1r/s;";
        run_bad(&[
            bad(
                "limit_req_zone first, then authban_zone",
                &format!("{limit}\nauthban_zone zone=x:1m; {MARK}\n"),
                None,
                &["\"x\"", "already declared for a different use"],
            ),
            bad(
                "authban_zone first, then limit_req_zone",
                &format!("authban_zone zone=x:1m;\n{limit} {MARK}\n"),
                None,
                &["\"x\"", "already declared for a different use"],
            ),
            bad(
                "authban referring to a limit_req zone",
                &format!(
                    "{limit}\nserver {{\nlisten 127.0.0.1:{{port}};\n\
                     location / {{ authban x; {MARK}\n}}\n}}\n"
                ),
                None,
                &["\"x\"", "already declared for a different use"],
            ),
            bad(
                "authban referring to a limit_req zone declared later",
                &format!(
                    "server {{\nlisten 127.0.0.1:{{port}};\n\
                     location / {{ authban x; }}\n}}\n{limit} {MARK}\n"
                ),
                None,
                &["\"x\"", "already declared for a different use"],
            ),
        ]);
        // When authban_zone comes second the module adds its own line,
        // naming its directive and the zone.
        let (ok, out) = nginx_test_config(&format!("{limit}\nauthban_zone zone=x:1m;\n"));
        assert!(!ok, "{out}");
        assert!(
            out.lines().any(|l| l.contains("[emerg]")
                && l.contains("authban_zone")
                && l.contains("\"x\"")),
            "{out}"
        );
    });
}

/// A malformed `sync=` value's password is never in `nginx -t`'s output,
/// wherever its malformation is: what lies between `://` and the last `@`
/// is hidden.
#[test]
fn malformed_sync_values_hide_the_password() {
    with_timeout(60, || {
        for (value, shown) in [
            (
                "redis://:hunter2@127.0.0.1:notaport",
                "redis://***@127.0.0.1:notaport",
            ),
            ("redis://authban:hunter2@h/x", "redis://***@h/x"),
            ("redis://hunter2@h", "redis://***@h"),
            ("redis://:hun@ter2@h:1:2", "redis://***@h:1:2"),
            ("redis://:hunter2@", "redis://***@"),
            ("redis:/:hunter2@h", "***@h"),
            ("rediss://:hunter2@h:0", "rediss://***@h:0"),
            ("redis://:%zzhunter2@h", "redis://***@h"),
        ] {
            let (ok, out) = nginx_test_config(&format!("authban_zone zone=z:1m sync={value};\n"));
            assert!(!ok, "sync={value:?} accepted:\n{out}");
            assert!(
                out.lines().any(|l| l.contains("[emerg]")
                    && l.contains("authban_zone")
                    && l.contains(&format!("invalid sync \"{shown}\""))),
                "sync={value:?}: no {shown:?} in\n{out}"
            );
            for secret in ["hunter2", "ter2", "hun@"] {
                assert!(
                    !out.contains(secret),
                    "sync={value:?} shows {secret:?}:\n{out}"
                );
            }
            check_no_crash(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        }
    });
}

const GOOD: &[(&str, &str)] = &[
    (
        "zone used before it is declared later in the file",
        r#"
        server {
            listen 127.0.0.1:{port};
            location / { authban late; return 200; }
        }
        authban_zone zone=late:1m;
        "#,
    ),
    (
        "zone referenced at http level before its declaration",
        r#"
        authban z;
        authban_zone zone=z:1m;
        server { listen 127.0.0.1:{port}; location / { return 200; } }
        "#,
    ),
    (
        "every directive, every level",
        r#"
        authban_zone zone=a:32k;
        authban_zone zone=b:10m maxretry=65535 findtime=1h30m bantime=1w;
        authban_zone bantime=1d maxretry=1 zone=c:1M findtime=90;
        authban a;
        authban_fail_status 401 403 531;
        authban_status 429;
        authban_ignore 127.0.0.1 10.0.0.1/8 ::1 2001:db8::/32;
        authban_ignore 192.168.0.0/16;
        authban_dry_run off;
        authban_log_level notice;
        server {
            listen 127.0.0.1:{port};
            authban b;
            authban_status 444;
            authban_log_level error;
            location / { return 200; }
            location /c {
                authban c;
                authban_fail_status 100 599;
                authban_status 599;
                authban_dry_run on;
                authban_log_level info;
                return 200;
            }
            location /off { authban off; return 200; }
            location /warn { authban_log_level warn; authban_status 400; return 200; }
        }
        "#,
    ),
    (
        "escalation, network keys, widening and a state file",
        r#"
        authban_zone zone=e:1m maxretry=3 increment=on factor=1.5 maxtime=1d
                     history=2d ipv4_prefix=24 ipv6_prefix=64 widen=3
                     state={dir}/e.state state_interval=30s;
        authban_zone zone=f:1m increment=off widen=off;
        server { listen 127.0.0.1:{port}; location / { authban e; return 200; } }
        "#,
    ),
    (
        "zone names of every allowed character",
        r#"
        authban_zone zone=Az09_-.:1m;
        authban_zone zone=cloud.stack-v2_1:1m;
        server { listen 127.0.0.1:{port}; location / { authban cloud.stack-v2_1; return 200; } }
        "#,
    ),
    (
        "authban off without any zone",
        r#"
        server { listen 127.0.0.1:{port}; location / { authban off; return 200; } }
        "#,
    ),
    (
        "zones beside limit_req zones of other names",
        r#"
        limit_req_zone $binary_remote_addr zone=rl:1m rate=10r/s;
        authban_zone zone=ab:1m;
        server {
            listen 127.0.0.1:{port};
            location / { limit_req zone=rl; authban ab; return 200; }
        }
        "#,
    ),
    (
        "a key zone with familiar networks beside an address zone",
        r#"
        authban_zone zone=addr:1m;
        authban_zone zone=keys:32k key=$arg_apikey familiar=30d;
        server { listen 127.0.0.1:{port}; location / { authban addr keys; return 200; } }
        "#,
    ),
    (
        "one zone used in two servers",
        r#"
        authban_zone zone=shared:1m;
        server { listen 127.0.0.1:{port}; authban shared; location / { return 200; } }
        server { listen 127.0.0.1:{port2}; location / { authban shared; return 200; } }
        "#,
    ),
];

#[test]
fn good_configurations_pass() {
    with_timeout(120, || {
        let mut failures = Vec::new();
        for (what, block) in GOOD {
            let (ok, out) = nginx_test_config(block);
            let crashed = check_no_crash(&out).err();
            if !ok || crashed.is_some() || !out.contains("test is successful") {
                failures.push(format!(
                    "=== {what}: {crashed:?}\n{block}\n--- output:\n{out}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "good configurations refused:\n{}",
            failures.join("\n")
        );
    });
}

/// The table's own helper: a mark on the wrong line must fail the check,
/// so a passing table really checks the line numbers.
#[test]
fn line_check_is_not_vacuous() {
    with_timeout(60, || {
        let misplaced = bad(
            "mark on the wrong line",
            &format!("# {MARK}\nauthban_zone zone=x:1m maxretry=0;\n"),
            Some("authban_zone"),
            &["invalid maxretry \"0\""],
        );
        let err = check_bad(&misplaced).unwrap_err();
        assert!(err.contains("does not point at"), "{err}");
        let right = bad(
            "mark on the right line",
            &format!("#\nauthban_zone zone=x:1m maxretry=0; {MARK}\n"),
            Some("authban_zone"),
            &["invalid maxretry \"0\""],
        );
        check_bad(&right).unwrap();
    });
}

/// `authban_crowdsec`: each parameter's problem named, the files read and
/// checked by `nginx -t`, the zone found wherever it is declared.
#[test]
fn authban_crowdsec_errors() {
    with_timeout(120, || {
        let dir = fresh_dir("crowdsec-conf");
        let key = dir.join("bouncer.key");
        std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
        let two_keys = dir.join("two.key");
        std::fs::write(&two_keys, "a\nb\n").unwrap();
        let creds = dir.join("creds.yaml");
        std::fs::write(&creds, "url: http://127.0.0.1:8080/\nlogin: m\n").unwrap();
        let missing = dir.join("missing.key");
        let (key, two_keys, creds, missing) = (
            key.display().to_string(),
            two_keys.display().to_string(),
            creds.display().to_string(),
            missing.display().to_string(),
        );
        let zone = "authban_zone zone=z:1m;\n";
        let line = |args: &str| format!("{zone}authban_crowdsec {args}; {MARK}\n");
        let ok = format!("zone=z url=http://127.0.0.1:8080 bouncer_key_file={key}");
        let d = Some("authban_crowdsec");
        run_bad(&[
            bad("no url", &line(&format!("zone=z bouncer_key_file={key}")), d, &["missing \"url=\""]),
            bad("two urls", &line(&format!("{ok} url=http://127.0.0.1:1")), d, &["duplicate parameter \"url=\""]),
            bad(
                "ftp url",
                &line(&format!("zone=z url=ftp://x bouncer_key_file={key}")),
                d,
                &["invalid url \"ftp://x\""],
            ),
            bad("interval", &line(&format!("{ok} interval=0")), d, &["invalid interval \"0\""]),
            bad("wide", &line(&format!("{ok} wide=yes")), d, &["invalid wide \"yes\""]),
            bad(
                "https without ca",
                &line(&format!("zone=z url=https://127.0.0.1 bouncer_key_file={key}")),
                d,
                &["an https:// url needs \"ca=\""],
            ),
            bad(
                "missing key file",
                &line(&format!("zone=z url=http://127.0.0.1 bouncer_key_file={missing}")),
                d,
                &["cannot read bouncer_key_file", "No such file"],
            ),
            bad(
                "two keys",
                &line(&format!("zone=z url=http://127.0.0.1 bouncer_key_file={two_keys}")),
                d,
                &["invalid bouncer_key_file", "holds more than one line"],
            ),
            bad(
                "credentials without a password",
                &line(&format!("{ok} machine_credentials_file={creds}")),
                d,
                &["invalid machine_credentials_file", "has no \"password:\""],
            ),
            bad(
                "unknown zone",
                &format!("authban_crowdsec zone=nosuch url=http://127.0.0.1 bouncer_key_file={key}; {MARK}\n"),
                Some("authban"),
                &["unknown zone \"nosuch\""],
            ),
            bad(
                "two for one zone",
                &format!(
                    "{zone}authban_crowdsec {ok};\nauthban_crowdsec {ok} interval=5s; {MARK}\n"
                ),
                d,
                &["zone \"z\" has another authban_crowdsec"],
            ),
            bad(
                "in a server",
                &format!("{zone}server {{\nlisten 127.0.0.1:{{port}};\nauthban_crowdsec {ok}; {MARK}\n}}\n"),
                Some("\"authban_crowdsec\""),
                &["directive is not allowed here"],
            ),
        ]);
        // Before its zone, and with every parameter: accepted; the key is
        // never printed.
        let (ok_run, out) = nginx_test_config(&format!(
            "authban_crowdsec {ok} interval=30s wide=on;\n{zone}"
        ));
        assert!(ok_run, "{out}");
        assert!(!out.contains("0123456789abcdef"), "{out}");
    });
}
