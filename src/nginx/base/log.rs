//! Every line authban writes to nginx's error log, in one place.
//!
//! The documented lines (README, "Semantics") are read by fail2ban's filter
//! (`nginx-conf/fail2ban/filter.d/authban.conf`), SIEMs and the tests: their
//! text must not change. Each has one function here, so a line cannot be
//! spelled two ways.
//!
//! The debug lines trace a decision (`error_log ... debug;` or
//! `debug_http`). They are checked at run time against the log's
//! `debug_http` mask, as nginx's own `ngx_log_debug` does, but not compiled
//! out without `--with-debug`: the crate's `ngx_log_debug_http!` is, and
//! packaged nginx is usually built without it.
//!
//! Like `ngx_log_error!`, which they wrap, these functions take nginx's log
//! pointer as nginx hands it out (a request's connection log, a cycle's, a
//! zone's), which lives as long as what it belongs to.

use core::fmt::{self, Display};
use std::net::IpAddr;
use std::path::Path;

use nginx_sys::{
    ngx_conf_t, ngx_log_t, NGX_LOG_ALERT, NGX_LOG_DEBUG, NGX_LOG_DEBUG_HTTP, NGX_LOG_EMERG,
    NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::{ngx_conf_log_error, ngx_log_error};

use crate::engine::account::{hash_text, logged_value};
use crate::engine::key::Key;
use crate::engine::table::Ban;

/// `authban_log_level`'s default: warn. Lines outside any location (the
/// fleet's, a timer's) are written at it.
pub const DEFAULT_LOG_LEVEL: usize = 5;

/// What made a ban, for the fields that follow `offence=`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BanBy {
    /// The maxretry-th failure: `authban: ban ...`.
    Failures,
    /// The same in dry run: `authban: would ban ...`.
    DryRun,
    /// The management endpoint: `... by=api`.
    Api,
    /// `widen`: this many bans inside the network made it a ban.
    Widened(u8),
    /// Fleet sync: the fleet's failures reached maxretry: `... by=fleet`.
    Fleet,
    /// Fleet sync: another node's ban, applied here: `... by=sync`.
    Sync,
}

impl BanBy {
    fn verb(self) -> &'static str {
        match self {
            BanBy::DryRun => "would ban",
            _ => "ban",
        }
    }
}

impl Display for BanBy {
    /// The fields after `offence=K`, with their leading space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanBy::Failures | BanBy::DryRun => Ok(()),
            BanBy::Api => f.write_str(" by=api"),
            BanBy::Widened(members) => write!(f, " widened_from={members}"),
            BanBy::Fleet => f.write_str(" by=fleet"),
            BanBy::Sync => f.write_str(" by=sync"),
        }
    }
}

/// What a line names: `addr=ADDR` (an address or network), or in a key
/// zone `hash=HEX` (the key's hash, as the API lists it; never the value).
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    pub key: &'a Key,
    pub keyed: bool,
}

impl Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.keyed {
            write!(f, "hash={}", hash_text(self.key))
        } else {
            write!(f, "addr={}", self.key)
        }
    }
}

/// `authban: ban zone=NAME addr=ADDR failures=N bantime=Ss offence=K`, and
/// its dry-run, API and widen forms, at `authban_log_level` (`hash=HEX` in
/// a key zone: a ban from the fleet, which carries no value).
pub fn ban(
    log: *mut ngx_log_t,
    level: usize,
    zone: &str,
    ban: &Ban,
    bantime: u32,
    by: BanBy,
    keyed: bool,
) {
    ngx_log_error!(
        level,
        log,
        "authban: {} zone={} {} failures={} bantime={}s offence={}{}",
        by.verb(),
        zone,
        Subject {
            key: &ban.key,
            keyed
        },
        ban.failures,
        bantime,
        ban.offence,
        by
    );
}

/// `authban: ban zone=NAME key="VALUE" hash=HEX failures=N bantime=Ss
/// offence=K`: a key zone's ban, naming the value (escaped, cut to 64
/// bytes) so operators know which account is under attack, and the hash
/// the API lists.
pub fn ban_key(
    log: *mut ngx_log_t,
    level: usize,
    zone: &str,
    value: &[u8],
    ban: &Ban,
    bantime: u32,
    by: BanBy,
) {
    ngx_log_error!(
        level,
        log,
        "authban: {} zone={} key=\"{}\" hash={} failures={} bantime={}s offence={}{}",
        by.verb(),
        zone,
        logged_value(value),
        hash_text(&ban.key),
        ban.failures,
        bantime,
        ban.offence,
        by
    );
}

/// `authban: unban zone=NAME addr=ADDR reason=expired` (notice; `hash=HEX`
/// in a key zone).
pub fn unban_expired(log: *mut ngx_log_t, zone: &str, subject: Subject<'_>) {
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "authban: unban zone={} {} reason=expired",
        zone,
        subject
    );
}

/// `authban: unban zone=NAME addr=ADDR reason=api` (notice; `hash=HEX` in
/// a key zone).
pub fn unban_api(log: *mut ngx_log_t, zone: &str, subject: Subject<'_>) {
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "authban: unban zone={} {} reason=api",
        zone,
        subject
    );
}

/// `authban: unban zone=NAME addr=ADDR reason=sync` (notice): another
/// node's API unban.
pub fn unban_sync(log: *mut ngx_log_t, zone: &str, subject: Subject<'_>) {
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "authban: unban zone={} {} reason=sync",
        zone,
        subject
    );
}

/// `authban: zone=NAME sync link to URL is down (REASON); banning locally`
/// (warn), once per drop.
pub fn sync_down(log: *mut ngx_log_t, zone: &str, url: impl Display, reason: &str) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: zone={} sync link to {} is down ({}); banning locally",
        zone,
        url,
        reason
    );
}

/// `authban: zone=NAME sync to URL refused: REDIS ERROR` (error), once per
/// drop: a wrong password, an unknown database.
pub fn sync_refused(log: *mut ngx_log_t, zone: &str, url: impl Display, text: &str) {
    ngx_log_error!(
        NGX_LOG_ERR,
        log,
        "authban: zone={} sync to {} refused: {}; banning locally",
        zone,
        url,
        text
    );
}

/// `authban: zone=NAME sync link to URL is up, N bans loaded, M published`
/// (notice), at start and once per recovery.
pub fn sync_up(
    log: *mut ngx_log_t,
    zone: &str,
    url: impl Display,
    loaded: usize,
    published: usize,
) {
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "authban: zone={} sync link to {} is up, {} bans loaded, {} published",
        zone,
        url,
        loaded,
        published
    );
}

/// `authban: zone=NAME loaded N bans from URL` (notice) at nginx start,
/// or, when the load stopped early, what it loaded and why (warn).
pub fn sync_snapshot(
    log: *mut ngx_log_t,
    zone: &str,
    url: impl Display,
    loaded: usize,
    skipped: u64,
    error: Option<&str>,
) {
    match error {
        None => {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "authban: zone={} loaded {} bans from {} ({} records skipped)",
                zone,
                loaded,
                url,
                skipped
            );
        }
        Some(why) => {
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "authban: zone={} could not load bans from {} ({}); starting with {} loaded and local state",
                zone,
                url,
                why,
                loaded
            );
        }
    }
}

/// `authban: zone=NAME refused a ban from the fleet: addr=KEY until=T
/// (WHY)` (warn): a record the zone's policy could not have made.
pub fn sync_record_refused(log: *mut ngx_log_t, zone: &str, ban: &Ban, why: impl Display) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: zone={} refused a ban from the fleet: addr={} since={} until={} ({})",
        zone,
        ban.key,
        ban.since,
        ban.until,
        why
    );
}

/// `authban: zone=NAME refused N bans or unbans from the fleet: bad or
/// missing signature` (warn): `sync_key=` is set and they were not signed
/// with it (or a signed unban came back late: a replay).
pub fn sync_forged(log: *mut ngx_log_t, zone: &str, n: u64) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: zone={} refused {} bans or unbans from the fleet: bad or missing signature",
        zone,
        n
    );
}

/// `authban: zone=NAME sync error from URL: TEXT` (info): Redis refused a
/// command; counted in the API's `errors`.
pub fn sync_command_error(log: *mut ngx_log_t, zone: &str, url: impl Display, text: &str) {
    ngx_log_error!(
        NGX_LOG_INFO,
        log,
        "authban: zone={} sync error from {}: {}",
        zone,
        url,
        text
    );
}

/// `authban: unban zone=NAME addr=ADDR reason=zone_full (zone too small)`
/// (warn).
pub fn unban_zone_full(log: *mut ngx_log_t, zone: &str, subject: Subject<'_>) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: unban zone={} {} reason=zone_full (zone too small)",
        zone,
        subject
    );
}

/// `authban: failure from trusted proxy ADDR not counted zone=NAME (realip
/// found no client address)` (warn).
pub fn trusted_proxy_failure(log: *mut ngx_log_t, zone: &str, ip: IpAddr) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: failure from trusted proxy {} not counted zone={} (realip found no client address)",
        ip,
        zone
    );
}

/// `authban: ban zone=NAME addr=ADDR failures=0 bantime=Ss offence=0
/// by=crowdsec scenario=SCENARIO origin=ORIGIN` (warn): a LAPI decision
/// applied. The labels are bounded and printable (`engine::crowdsec`).
pub fn ban_crowdsec(log: *mut ngx_log_t, zone: &str, ban: &Ban, scenario: &str, origin: &str) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: ban zone={} addr={} failures={} bantime={}s offence={} by=crowdsec scenario={} origin={}",
        zone,
        ban.key,
        ban.failures,
        ban.until.saturating_sub(ban.since),
        ban.offence,
        scenario,
        origin
    );
}

/// `authban: unban zone=NAME addr=ADDR reason=crowdsec` (notice): LAPI
/// deleted the decision the ban came from.
pub fn unban_crowdsec(log: *mut ngx_log_t, zone: &str, key: &Key) {
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "authban: unban zone={} addr={} reason=crowdsec",
        zone,
        key
    );
}

/// `authban: zone=NAME crowdsec LAPI at URL is unreachable (REASON); bans
/// pulled stay until their end` (warn), once per outage.
pub fn crowdsec_down(log: *mut ngx_log_t, zone: &str, url: impl Display, reason: &str) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: zone={} crowdsec LAPI at {} is unreachable ({}); bans pulled stay until their end",
        zone,
        url,
        reason
    );
}

/// `authban: zone=NAME crowdsec LAPI at URL is reachable, N decisions
/// applied` (notice), at the first pull and once per recovery.
pub fn crowdsec_up(log: *mut ngx_log_t, zone: &str, url: impl Display, applied: usize) {
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "authban: zone={} crowdsec LAPI at {} is reachable, {} decisions applied",
        zone,
        url,
        applied
    );
}

/// `authban: zone=NAME crowdsec LAPI at URL refused WHAT (HTTP STATUS);
/// WHAT_NOW` (error), once: a wrong bouncer key or machine password.
pub fn crowdsec_refused(
    log: *mut ngx_log_t,
    zone: &str,
    url: impl Display,
    what: &str,
    status: u16,
    what_now: &str,
) {
    ngx_log_error!(
        NGX_LOG_ERR,
        log,
        "authban: zone={} crowdsec LAPI at {} refused {} (HTTP {}); {}",
        zone,
        url,
        what,
        status,
        what_now
    );
}

/// `authban: zone=NAME crowdsec decision for ADDR refused: WHY` (warn,
/// rate-limited): more than the zone's policy allows.
pub fn crowdsec_decision_refused(log: *mut ngx_log_t, zone: &str, ban: &Ban, why: impl Display) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: zone={} crowdsec decision for {} refused: {}",
        zone,
        ban.key,
        why
    );
}

/// `authban: zone=NAME crowdsec alert for ADDR not sent: REASON` (warn,
/// rate-limited).
pub fn crowdsec_alert_failed(log: *mut ngx_log_t, zone: &str, key: &Key, reason: &str) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: zone={} crowdsec alert for {} not sent: {}",
        zone,
        key,
        reason
    );
}

/// `authban: zone=NAME N more "KIND" lines in the last Ss not logged`, at
/// the level of the lines it sums up.
pub fn suppressed(
    log: *mut ngx_log_t,
    level: usize,
    zone: &str,
    count: impl Display,
    kind: &str,
    over_secs: impl Display,
) {
    ngx_log_error!(
        level,
        log,
        "authban: zone={} {} more \"{}\" lines in the last {}s not logged",
        zone,
        count,
        kind,
        over_secs
    );
}

/// `authban: zone "NAME" kept across reload with N addresses` (notice).
pub fn zone_kept(log: *mut ngx_log_t, zone: &str, tracked: impl Display) {
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "authban: zone \"{}\" kept across reload with {} addresses",
        zone,
        tracked
    );
}

/// `authban: zone "NAME" kept without familiar networks ...` (warn): a
/// `familiar=` zone adopted on a reload from a zone without them.
pub fn familiar_unavailable(log: *mut ngx_log_t, zone: &str) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: zone \"{}\" kept across reload without familiar networks: \"familiar=\" applies once the zone is made anew (a restart, or a change of its size)",
        zone
    );
}

/// `authban: zone "NAME" holds data of another layout, starting it empty`
/// (warn).
pub fn zone_other_layout(log: *mut ngx_log_t, zone: &str) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: zone \"{}\" holds data of another layout, starting it empty",
        zone
    );
}

/// `authban: zone "NAME" damaged (WHY), starting it empty` (alert): the
/// table in shared memory contradicted itself and was re-formatted.
pub fn zone_damaged(log: *mut ngx_log_t, zone: &str, why: &str) {
    ngx_log_error!(
        NGX_LOG_ALERT,
        log,
        "authban: zone \"{}\" damaged ({}), starting it empty",
        zone,
        why
    );
}

/// `"authban_api" directive cannot be combined with ... (location "L") in
/// FILE:LINE` (emerg), found after the location was read.
pub fn api_combined(log: *mut ngx_log_t, problem: &str, location: &str, file: &str, line: usize) {
    ngx_log_error!(
        NGX_LOG_EMERG,
        log,
        "\"authban_api\" directive {} (location \"{}\") in {}:{}",
        problem,
        location,
        file,
        line
    );
}

/// `authban: zone "NAME": restored N of M bans and histories from SOURCE`
/// (notice).
pub fn restored(log: *mut ngx_log_t, zone: &str, restored: usize, of: usize, source: &str) {
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "authban: zone \"{}\": restored {} of {} bans and histories from {}",
        zone,
        restored,
        of,
        source
    );
}

/// `authban: zone "NAME": restored N of M familiar networks from SOURCE`
/// (notice).
pub fn restored_familiar(
    log: *mut ngx_log_t,
    zone: &str,
    restored: usize,
    of: usize,
    source: &str,
) {
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "authban: zone \"{}\": restored {} of {} familiar networks from {}",
        zone,
        restored,
        of,
        source
    );
}

/// `authban: zone "NAME": state file "PATH" ignored (REASON), starting
/// empty` (warn).
pub fn state_file_ignored(log: *mut ngx_log_t, zone: &str, path: &Path, reason: impl Display) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: zone \"{}\": state file \"{}\" ignored ({}), starting empty",
        zone,
        path.display(),
        reason
    );
}

/// `authban: zone "NAME": directory "DIR" of state file "PATH" PROBLEM`
/// (emerg: the configuration fails).
pub fn state_dir_unusable(log: *mut ngx_log_t, zone: &str, dir: &Path, path: &Path, problem: &str) {
    ngx_log_error!(
        NGX_LOG_EMERG,
        log,
        "authban: zone \"{}\": directory \"{}\" of state file \"{}\" {}",
        zone,
        dir.display(),
        path.display(),
        problem
    );
}

/// `authban: zone "NAME": state file "PATH" cannot be written: directory
/// "DIR" is not writable by user USER, which writes it; bans will not be
/// saved` (warn).
pub fn state_dir_not_writable(
    log: *mut ngx_log_t,
    zone: &str,
    path: &Path,
    dir: &Path,
    user: &str,
) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: zone \"{}\": state file \"{}\" cannot be written: directory \"{}\" \
         is not writable by user {}, which writes it; bans will not be saved",
        zone,
        path.display(),
        dir.display(),
        user
    );
}

/// `authban: zone "NAME": directory "DIR" of state file "PATH" is writable
/// by other users: ...` (warn).
pub fn state_dir_shared(log: *mut ngx_log_t, zone: &str, dir: &Path, path: &Path, sticky: bool) {
    let risk = if sticky {
        "another user can create the file first, so bans are not saved"
    } else {
        "another user can replace or delete the file"
    };
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: zone \"{}\": directory \"{}\" of state file \"{}\" is writable by \
         other users: {}; use a directory only the workers' user can write",
        zone,
        dir.display(),
        path.display(),
        risk
    );
}

/// `authban: zone "NAME": cannot write state file "PATH": ERROR` (warn).
pub fn state_file_unwritable(log: *mut ngx_log_t, zone: &str, path: &Path, err: impl Display) {
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "authban: zone \"{}\": cannot write state file \"{}\": {}",
        zone,
        path.display(),
        err
    );
}

/// `authban: unknown zone "NAME" (declare it with authban_zone) in
/// FILE:LINE` (emerg: the configuration fails).
pub fn unknown_zone(log: *mut ngx_log_t, zone: &str, file: &str, line: usize) {
    ngx_log_error!(
        NGX_LOG_EMERG,
        log,
        "authban: unknown zone \"{}\" (declare it with authban_zone) in {}:{}",
        zone,
        file,
        line
    );
}

/// `MESSAGE in FILE:LINE` (emerg): a directive found wrong once the http
/// block is read, named where it is.
pub fn conf_error_at(log: *mut ngx_log_t, message: &str, file: &str, line: usize) {
    ngx_log_error!(NGX_LOG_EMERG, log, "{} in {}:{}", message, file, line);
}

/// `authban: WHAT panicked: MESSAGE` (alert): a bug, caught before it
/// could unwind into nginx.
pub fn panicked(log: *mut ngx_log_t, what: &str, message: &str) {
    ngx_log_error!(
        NGX_LOG_ALERT,
        log,
        "authban: {} panicked: {}",
        what,
        message
    );
}

/// The same, for a directive handler: nginx adds `in FILE:LINE`.
pub fn panicked_in_conf(cf: *mut ngx_conf_t, what: &str, message: &str) {
    ngx_conf_log_error!(NGX_LOG_ALERT, cf, "authban: {} panicked: {}", what, message);
}

/// Writes a debug line if the log has the `debug_http` mask (`error_log
/// ... debug;` sets every mask).
macro_rules! debug_http {
    ($log:expr, $($arg:tt)+) => {{
        let log: *mut ngx_log_t = $log;
        if enabled(log) {
            ngx_log_error!(NGX_LOG_DEBUG, log, $($arg)+);
        }
    }};
}

/// Whether `log` takes http debug lines: callers skip work done only for them.
pub fn debug_enabled(log: *mut ngx_log_t) -> bool {
    enabled(log)
}

fn enabled(log: *mut ngx_log_t) -> bool {
    // SAFETY: null, or a log nginx handed out (see the module comment).
    unsafe { log.as_ref() }.is_some_and(|l| l.log_level & NGX_LOG_DEBUG_HTTP as usize != 0)
}

/// The access phase's check: `RESULT` is `$authban_status`'s value.
pub fn debug_check(log: *mut ngx_log_t, zone: &str, ip: IpAddr, key: &str, result: &str) {
    debug_http!(
        log,
        "authban: check zone={} addr={} key={} result={}",
        zone,
        ip,
        key,
        result
    );
}

/// A request refused by authban is refused again wherever it is sent
/// (`error_page`, a redirect), and so are its subrequests.
pub fn debug_refused_again(log: *mut ngx_log_t, status: u16, subrequest: bool) {
    let after = if subrequest {
        "in a subrequest"
    } else {
        "after an internal redirect"
    };
    debug_http!(log, "authban: refused again with {} {}", status, after);
}

/// A subrequest (which skips the access phase) refused in precontent.
pub fn debug_subrequest_refused(log: *mut ngx_log_t, zone: &str, ip: IpAddr, status: u16) {
    debug_http!(
        log,
        "authban: subrequest refused with {} zone={} addr={}",
        status,
        zone,
        ip
    );
}

/// A failed response counted: `failures` in the window now.
pub fn debug_counted(log: *mut ngx_log_t, zone: &str, key: &Key, status: usize, failures: u32) {
    debug_http!(
        log,
        "authban: failure counted zone={} addr={} status={} failures={}",
        zone,
        key,
        status,
        failures
    );
}

/// A success made (or kept) the client's network familiar with the key.
pub fn debug_familiar(log: *mut ngx_log_t, zone: &str, ip: std::net::IpAddr, secs: u32) {
    debug_http!(
        log,
        "authban: familiar network zone={} addr={} for={}s",
        zone,
        ip,
        secs
    );
}

/// A failure from a network familiar with the key: not counted.
pub fn debug_familiar_failure(
    log: *mut ngx_log_t,
    zone: &str,
    ip: std::net::IpAddr,
    status: usize,
) {
    debug_http!(
        log,
        "authban: failure not counted zone={} addr={} status={} (familiar network)",
        zone,
        ip,
        status
    );
}

/// A failed response of an address banned already: nothing to count.
pub fn debug_already_banned(log: *mut ngx_log_t, zone: &str, key: &Key, status: usize) {
    debug_http!(
        log,
        "authban: failure not counted zone={} addr={} status={} (banned already)",
        zone,
        key,
        status
    );
}

/// `authban_read_body`: what became of the request body (read, or why not).
pub fn debug_body(log: *mut ngx_log_t, what: &str) {
    debug_http!(log, "authban: request body {}", what);
}

/// A failed response of an address realip trusts, never charged (the
/// rate-limited warning may not show it).
pub fn debug_trusted_proxy(log: *mut ngx_log_t, zone: &str, ip: IpAddr, status: usize) {
    debug_http!(
        log,
        "authban: failure not counted zone={} addr={} status={} (trusted proxy)",
        zone,
        ip,
        status
    );
}
