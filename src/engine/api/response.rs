//! The response side: what the endpoint answers. Each JSON answer is a
//! `Serialize` struct below, so the structs are the schema: fields in the
//! order they are sent, each time in unix seconds with an ISO 8601 UTC
//! companion (`since` and `since_iso`). Every JSON answer ends in a newline.
//! Metrics are the Prometheus text format.

use core::fmt::Write;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::ser::CharEscape;

use crate::engine::account::hash_text;
use crate::engine::api::error::ApiError;
use crate::engine::key::Key;
use crate::engine::table::{AddressState, Ban, Policy, Stats};
use crate::engine::table::{CrowdsecStats, SyncStats};

/// A zone as the endpoint reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneView {
    pub name: String,
    /// A key zone (`key=`): it counts hashed keys, not addresses.
    pub keyed: bool,
    pub size: usize,
    pub policy: Policy,
    pub capacity: u32,
    pub tracked: u32,
    pub bans: u32,
    pub stats: Stats,
    /// Zones with `sync=`: the fleet link.
    pub sync: Option<SyncView>,
    /// Zones `authban_crowdsec` names: the bouncer.
    pub crowdsec: Option<CrowdsecView>,
}

impl ZoneView {
    /// How the zone's answers name its keys.
    pub fn naming(&self) -> Naming {
        Naming::of(self.keyed)
    }
}

/// How an answer names a table key: an address zone's as `addr` (an
/// address or network), a key zone's as `key_hash` (32 hex digits: its
/// value is never kept, so never shown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    Addr,
    KeyHash,
}

impl Naming {
    /// `keyed`: the zone is a key zone.
    pub fn of(keyed: bool) -> Naming {
        if keyed {
            Naming::KeyHash
        } else {
            Naming::Addr
        }
    }
}

/// A table key under its name: `"addr": "192.0.2.1"` or
/// `"key_hash": "8f3a..."`, flattened into the answer that holds it.
pub struct Named {
    pub naming: Naming,
    pub key: Key,
}

impl Serialize for Named {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        match self.naming {
            Naming::Addr => map.serialize_entry("addr", &self.key.to_string())?,
            Naming::KeyHash => map.serialize_entry("key_hash", &hash_text(&self.key))?,
        }
        map.end()
    }
}

/// A zone's fleet sync as the endpoint reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncView {
    /// Without the password.
    pub url: String,
    pub stats: SyncStats,
}

/// A zone's CrowdSec bouncer as the endpoint reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct CrowdsecView {
    /// The LAPI's URL.
    pub url: String,
    pub stats: CrowdsecStats,
}

/// A zone's fleet sync: `sync` in a zone's answer, only with `sync=`.
#[derive(Serialize)]
pub struct SyncJson<'a> {
    pub url: &'a str,
    pub connected: bool,
    pub failures_sent: u64,
    pub bans_sent: u64,
    pub bans_received: u64,
    pub unbans_sent: u64,
    pub unbans_received: u64,
    pub errors: u64,
    pub failures_dropped: u64,
    pub records_refused: u64,
    pub records_skipped: u64,
    pub last_error: Option<String>,
}

/// A zone's CrowdSec bouncer: `crowdsec` in a zone's answer, only for the
/// zones `authban_crowdsec` names. `last_pull` is null before the first.
#[derive(Serialize)]
pub struct CrowdsecJson<'a> {
    pub url: &'a str,
    pub connected: bool,
    pub last_pull: Option<u32>,
    pub pulls: u64,
    pub decisions_applied: u64,
    pub decisions_deleted: u64,
    pub decisions_ignored: u64,
    pub decisions_refused: u64,
    pub decisions_malformed: u64,
    pub alerts_sent: u64,
    pub alerts_failed: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

/// A zone's policy as shown: what decides a ban.
#[derive(Serialize)]
pub struct PolicyJson {
    pub maxretry: u32,
    pub findtime: u32,
    pub bantime: u32,
}

/// A zone's counters since it was created (kept across reloads).
#[derive(Serialize)]
pub struct CountersJson {
    pub failures: u64,
    pub bans: u64,
    pub refused: u64,
    pub expired: u64,
    pub evicted: u64,
    pub bans_dropped: u64,
    pub widen_skipped: u64,
}

/// A zone: an item of `GET /authban`, the head of `GET ?zone=`.
#[derive(Serialize)]
pub struct ZoneJson<'a> {
    pub name: &'a str,
    /// Only in a key zone's, always true.
    #[serde(skip_serializing_if = "is_false")]
    pub key: bool,
    pub size: usize,
    pub capacity: u32,
    pub policy: PolicyJson,
    pub tracked: u32,
    pub bans: u32,
    pub counters: CountersJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<CrowdsecJson<'a>>,
}

/// `GET /authban`.
#[derive(Serialize)]
pub struct ZonesJson<'a> {
    pub zones: Vec<ZoneJson<'a>>,
}

/// A ban: an item of `ban_list`, `banned_by`, and the tail of a ban's answer.
#[derive(Serialize)]
pub struct BanJson {
    #[serde(flatten)]
    pub key: Named,
    pub since: u32,
    #[serde(serialize_with = "iso")]
    pub since_iso: u32,
    pub until: u32,
    #[serde(serialize_with = "iso")]
    pub until_iso: u32,
    pub failures: u32,
}

/// `GET ?zone=NAME`: the zone, then a page of its bans, soonest ending
/// first; `next_offset` only when more bans follow.
#[derive(Serialize)]
pub struct ZonePageJson<'a> {
    #[serde(flatten)]
    pub zone: ZoneJson<'a>,
    pub offset: usize,
    pub limit: usize,
    pub ban_list: Vec<BanJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

/// A ban's times, in an address's answer while it is banned.
#[derive(Serialize)]
pub struct BanTimesJson {
    pub since: u32,
    #[serde(serialize_with = "iso")]
    pub since_iso: u32,
    pub until: u32,
    #[serde(serialize_with = "iso")]
    pub until_iso: u32,
}

/// `GET ?zone=NAME&addr=ADDR`. `banned_by` is the ban that refuses a
/// client of this key now when it is not the key's own: a wider network's.
#[derive(Serialize)]
pub struct AddressJson<'a> {
    pub zone: &'a str,
    #[serde(flatten)]
    pub key: Named,
    pub failures: u32,
    pub banned: bool,
    #[serde(flatten)]
    pub ban: Option<BanTimesJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banned_by: Option<BanJson>,
}

/// `POST`: the ban made (`banned` is always true).
#[derive(Serialize)]
pub struct BanMadeJson<'a> {
    pub zone: &'a str,
    pub banned: bool,
    #[serde(flatten)]
    pub ban: BanJson,
}

/// `DELETE`: what was forgotten.
#[derive(Serialize)]
pub struct UnbanJson<'a> {
    pub zone: &'a str,
    #[serde(flatten)]
    pub key: Named,
    pub was_banned: bool,
    pub failures_forgotten: u32,
}

/// Any refusal.
#[derive(Serialize)]
pub struct ErrorJson {
    pub error: String,
    pub status: u16,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn iso<S: Serializer>(secs: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&iso8601(*secs))
}

/// Compact JSON that escapes every control character as `\u00XX`
/// (`\u000a`, not `\n`), as the endpoint always has.
struct Compact;

impl serde_json::ser::Formatter for Compact {
    fn write_char_escape<W: ?Sized + std::io::Write>(
        &mut self,
        out: &mut W,
        escape: CharEscape,
    ) -> std::io::Result<()> {
        let control = match escape {
            CharEscape::Quote => return out.write_all(b"\\\""),
            CharEscape::ReverseSolidus => return out.write_all(b"\\\\"),
            CharEscape::Solidus => b'/',
            CharEscape::Backspace => 0x08,
            CharEscape::FormFeed => 0x0c,
            CharEscape::LineFeed => b'\n',
            CharEscape::CarriageReturn => b'\r',
            CharEscape::Tab => b'\t',
            CharEscape::AsciiControl(byte) => byte,
        };
        write!(out, "\\u{control:04x}")
    }
}

/// The answer's text: compact JSON and a newline.
fn render(value: &impl Serialize) -> String {
    let mut out = Vec::with_capacity(256);
    let mut json = serde_json::Serializer::with_formatter(&mut out, Compact);
    // Writing to a Vec cannot fail, and nothing above fails to serialize
    // (no map has a non-string key).
    value.serialize(&mut json).expect("answers serialize");
    out.push(b'\n');
    // serde_json writes UTF-8 only.
    String::from_utf8(out).expect("JSON is UTF-8")
}

impl<'a> From<&'a ZoneView> for ZoneJson<'a> {
    fn from(z: &'a ZoneView) -> Self {
        let (p, s) = (z.policy, z.stats);
        ZoneJson {
            name: &z.name,
            key: z.keyed,
            size: z.size,
            capacity: z.capacity,
            policy: PolicyJson {
                maxretry: p.maxretry,
                findtime: p.findtime,
                bantime: p.bantime,
            },
            tracked: z.tracked,
            bans: z.bans,
            counters: CountersJson {
                failures: s.failures,
                bans: s.bans,
                refused: s.refused,
                expired: s.expired,
                evicted: s.evicted,
                bans_dropped: s.bans_dropped,
                widen_skipped: s.widen_skipped,
            },
            sync: z.sync.as_ref().map(|v| SyncJson {
                url: &v.url,
                connected: v.stats.connected != 0,
                failures_sent: v.stats.failures_sent,
                bans_sent: v.stats.bans_sent,
                bans_received: v.stats.bans_received,
                unbans_sent: v.stats.unbans_sent,
                unbans_received: v.stats.unbans_received,
                errors: v.stats.errors,
                failures_dropped: v.stats.failures_dropped,
                records_refused: v.stats.records_refused,
                records_skipped: v.stats.records_skipped,
                last_error: v.stats.last_error(),
            }),
            crowdsec: z.crowdsec.as_ref().map(|v| CrowdsecJson {
                url: &v.url,
                connected: v.stats.connected != 0,
                last_pull: (v.stats.last_pull != 0).then_some(v.stats.last_pull),
                pulls: v.stats.pulls,
                decisions_applied: v.stats.decisions_applied,
                decisions_deleted: v.stats.decisions_deleted,
                decisions_ignored: v.stats.decisions_ignored,
                decisions_refused: v.stats.decisions_refused,
                decisions_malformed: v.stats.decisions_malformed,
                alerts_sent: v.stats.alerts_sent,
                alerts_failed: v.stats.alerts_failed,
                errors: v.stats.errors,
                last_error: v.stats.last_error(),
            }),
        }
    }
}

impl BanJson {
    fn new(ban: &Ban, naming: Naming) -> Self {
        BanJson {
            key: Named {
                naming,
                key: ban.key,
            },
            since: ban.since,
            since_iso: ban.since,
            until: ban.until,
            until_iso: ban.until,
            failures: ban.failures,
        }
    }
}

pub fn zones_json(zones: &[ZoneView]) -> String {
    render(&ZonesJson {
        zones: zones.iter().map(ZoneJson::from).collect(),
    })
}

/// One zone with a page of its bans, soonest ending first; `next_offset`
/// is present when more bans follow.
pub fn zone_json(z: &ZoneView, bans: &[Ban], offset: usize, limit: usize) -> String {
    let shown = offset.saturating_add(bans.len());
    let more = bans.len() == limit && shown < z.bans as usize;
    render(&ZonePageJson {
        zone: ZoneJson::from(z),
        offset,
        limit,
        ban_list: bans.iter().map(|b| BanJson::new(b, z.naming())).collect(),
        next_offset: more.then_some(shown),
    })
}

/// One key's state; `banned_by` is given when it is not the key's own ban.
pub fn address_json(
    zone: &str,
    naming: Naming,
    addr: &Key,
    state: &AddressState,
    banned_by: Option<&Ban>,
) -> String {
    render(&AddressJson {
        zone,
        key: Named { naming, key: *addr },
        failures: state.failures,
        banned: state.ban.is_some(),
        ban: state.ban.map(|ban| BanTimesJson {
            since: ban.since,
            since_iso: ban.since,
            until: ban.until,
            until_iso: ban.until,
        }),
        banned_by: banned_by
            .filter(|b| b.key != *addr)
            .map(|b| BanJson::new(b, naming)),
    })
}

pub fn ban_json(zone: &str, naming: Naming, ban: &Ban) -> String {
    render(&BanMadeJson {
        zone,
        banned: true,
        ban: BanJson::new(ban, naming),
    })
}

pub fn unban_json(zone: &str, naming: Naming, addr: &Key, state: &AddressState) -> String {
    render(&UnbanJson {
        zone,
        key: Named { naming, key: *addr },
        was_banned: state.ban.is_some(),
        failures_forgotten: state.failures,
    })
}

pub fn error_json(err: &ApiError) -> String {
    render(&ErrorJson {
        error: err.reason(),
        status: err.status(),
    })
}

/// The Prometheus text exposition format, version 0.0.4.
pub fn prometheus(zones: &[ZoneView]) -> String {
    const METRICS: &[Metric<ZoneView>] = &[
        (
            "authban_failures_total",
            "counter",
            "Failed responses counted.",
            |z| z.stats.failures,
        ),
        (
            "authban_bans_total",
            "counter",
            "Bans issued, automatic and manual.",
            |z| z.stats.bans,
        ),
        (
            "authban_refused_total",
            "counter",
            "Requests refused because of a ban.",
            |z| z.stats.refused,
        ),
        (
            "authban_bans_expired_total",
            "counter",
            "Bans that ran out.",
            |z| z.stats.expired,
        ),
        (
            "authban_evicted_total",
            "counter",
            "Addresses forgotten to make room.",
            |z| z.stats.evicted,
        ),
        (
            "authban_bans_dropped_total",
            "counter",
            "Bans dropped because the zone was full.",
            |z| z.stats.bans_dropped,
        ),
        (
            "authban_widen_skipped_total",
            "counter",
            "Network counts widen skipped because the zone held only bans.",
            |z| z.stats.widen_skipped,
        ),
        (
            "authban_tracked_addresses",
            "gauge",
            "Addresses the zone holds now.",
            |z| u64::from(z.tracked),
        ),
        ("authban_active_bans", "gauge", "Bans in force now.", |z| {
            u64::from(z.bans)
        }),
        (
            "authban_capacity_addresses",
            "gauge",
            "Addresses the zone can hold.",
            |z| u64::from(z.capacity),
        ),
    ];
    const SYNC_METRICS: &[Metric<SyncStats>] = &[
        (
            "authban_sync_connected",
            "gauge",
            "1 while the fleet sync link to Redis is up.",
            |s| u64::from(s.connected != 0),
        ),
        (
            "authban_sync_failures_sent_total",
            "counter",
            "Failures sent to the fleet.",
            |s| s.failures_sent,
        ),
        (
            "authban_sync_bans_sent_total",
            "counter",
            "Bans published to the fleet.",
            |s| s.bans_sent,
        ),
        (
            "authban_sync_bans_received_total",
            "counter",
            "Bans received from other nodes.",
            |s| s.bans_received,
        ),
        (
            "authban_sync_unbans_sent_total",
            "counter",
            "Unbans published to the fleet.",
            |s| s.unbans_sent,
        ),
        (
            "authban_sync_unbans_received_total",
            "counter",
            "Unbans received from other nodes.",
            |s| s.unbans_received,
        ),
        (
            "authban_sync_errors_total",
            "counter",
            "Link failures and errors from Redis.",
            |s| s.errors,
        ),
        (
            "authban_sync_failures_dropped_total",
            "counter",
            "Failures not sent to the fleet (link down or too slow).",
            |s| s.failures_dropped,
        ),
        (
            "authban_sync_records_refused_total",
            "counter",
            "Bans from the fleet refused by the zone's policy.",
            |s| s.records_refused,
        ),
        (
            "authban_sync_records_skipped_total",
            "counter",
            "Ban records in Redis a load could not read.",
            |s| s.records_skipped,
        ),
    ];
    const CROWDSEC_METRICS: &[Metric<CrowdsecStats>] = &[
        (
            "authban_crowdsec_connected",
            "gauge",
            "1 while the last exchange with the CrowdSec LAPI succeeded.",
            |s| u64::from(s.connected != 0),
        ),
        (
            "authban_crowdsec_last_pull_timestamp_seconds",
            "gauge",
            "Unix time of the last successful pull of decisions, 0 never.",
            |s| u64::from(s.last_pull),
        ),
        (
            "authban_crowdsec_pulls_total",
            "counter",
            "Successful pulls of decisions from the LAPI.",
            |s| s.pulls,
        ),
        (
            "authban_crowdsec_decisions_applied_total",
            "counter",
            "Ban decisions that made or changed a ban.",
            |s| s.decisions_applied,
        ),
        (
            "authban_crowdsec_decisions_deleted_total",
            "counter",
            "Bans lifted because the LAPI deleted their decision.",
            |s| s.decisions_deleted,
        ),
        (
            "authban_crowdsec_decisions_ignored_total",
            "counter",
            "Decisions not acted on (not a ban, simulated, unknown scope).",
            |s| s.decisions_ignored,
        ),
        (
            "authban_crowdsec_decisions_refused_total",
            "counter",
            "Decisions refused by the zone's policy.",
            |s| s.decisions_refused,
        ),
        (
            "authban_crowdsec_decisions_malformed_total",
            "counter",
            "Decisions from the LAPI that could not be read.",
            |s| s.decisions_malformed,
        ),
        (
            "authban_crowdsec_alerts_sent_total",
            "counter",
            "Alerts sent to the LAPI.",
            |s| s.alerts_sent,
        ),
        (
            "authban_crowdsec_alerts_failed_total",
            "counter",
            "Alerts the LAPI did not take.",
            |s| s.alerts_failed,
        ),
        (
            "authban_crowdsec_errors_total",
            "counter",
            "Failed exchanges with the LAPI.",
            |s| s.errors,
        ),
    ];
    let mut out = String::new();
    let all: Vec<(&str, &ZoneView)> = zones.iter().map(|z| (z.name.as_str(), z)).collect();
    write_families(&mut out, METRICS, &all);
    write_part_families(&mut out, SYNC_METRICS, zones, |z| {
        z.sync.as_ref().map(|s| &s.stats)
    });
    write_part_families(&mut out, CROWDSEC_METRICS, zones, |z| {
        z.crowdsec.as_ref().map(|c| &c.stats)
    });
    out
}

/// [`write_families`] for the zones that have the part `part` picks (sync
/// or CrowdSec): only they have these families, and with none, none is
/// written.
fn write_part_families<T>(
    out: &mut String,
    metrics: &[Metric<T>],
    zones: &[ZoneView],
    part: fn(&ZoneView) -> Option<&T>,
) {
    let having: Vec<(&str, &T)> = zones
        .iter()
        .filter_map(|z| part(z).map(|p| (z.name.as_str(), p)))
        .collect();
    if !having.is_empty() {
        write_families(out, metrics, &having);
    }
}

/// A metric family: name, type, help, and its value in what a zone has.
type Metric<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

/// Each family of `metrics` with one sample per zone of `zones`.
fn write_families<T>(out: &mut String, metrics: &[Metric<T>], zones: &[(&str, &T)]) {
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (zone, item) in zones {
            let _ = writeln!(
                out,
                "{name}{{zone=\"{}\"}} {}",
                label_value(zone),
                value(item)
            );
        }
    }
}

fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Unix seconds as `YYYY-MM-DDThh:mm:ssZ`.
pub fn iso8601(secs: u32) -> String {
    let days = i64::from(secs / 86_400);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::api::parse_addr;
    use crate::engine::api::Target;

    fn k(text: &str) -> Key {
        match parse_addr(text).unwrap() {
            Target::Addr(ip) => Key::from_ip(ip),
            Target::Net(key) => key,
        }
    }

    /// A zone of 1 MiB with 3 addresses, 2 bans and 9 failures, neither
    /// synced nor named by `authban_crowdsec`.
    fn view(name: &str) -> ZoneView {
        ZoneView {
            name: name.into(),
            keyed: false,
            size: 1 << 20,
            policy: Policy {
                bantime: 60,
                ..Policy::default()
            },
            capacity: 20_000,
            tracked: 3,
            bans: 2,
            sync: None,
            crowdsec: None,
            stats: Stats {
                failures: 9,
                ..Stats::default()
            },
        }
    }

    /// `view(name)` named by `authban_crowdsec`, with `stats`.
    fn bouncing(name: &str, stats: CrowdsecStats) -> ZoneView {
        ZoneView {
            crowdsec: Some(CrowdsecView {
                url: "http://127.0.0.1:8080/".into(),
                stats,
            }),
            ..view(name)
        }
    }

    /// Checks a Prometheus exposition's shape as the parser reads it: each
    /// family once, HELP then TYPE then its samples, each sample named as
    /// its family and labelled with a zone. Returns the families in order.
    fn families(text: &str) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            let help = line.strip_prefix("# HELP ").expect(line);
            let (name, _) = help.split_once(' ').expect(line);
            let kind = lines
                .next()
                .and_then(|l| l.strip_prefix("# TYPE "))
                .unwrap();
            assert!(
                kind == format!("{name} counter") || kind == format!("{name} gauge"),
                "{kind}"
            );
            assert!(!names.iter().any(|n| n == name), "{name} twice");
            while let Some(sample) = lines.next_if(|l| !l.starts_with('#')) {
                let (head, value) = sample.rsplit_once(' ').unwrap();
                assert!(head.starts_with(&format!("{name}{{zone=\"")), "{sample}");
                assert!(head.ends_with("\"}"), "{sample}");
                value.parse::<u64>().expect(sample);
            }
            names.push(name.to_string());
        }
        names
    }

    #[test]
    fn crowdsec_only_for_the_zones_named() {
        let mut stats = CrowdsecStats {
            decisions_applied: 1,
            decisions_deleted: 2,
            decisions_ignored: 3,
            decisions_refused: 4,
            decisions_malformed: 5,
            alerts_sent: 6,
            alerts_failed: 7,
            pulls: 8,
            connected: 1,
            last_pull: 1_764_072_000,
            ..CrowdsecStats::EMPTY
        };
        stats.record_error("lapi: \"timed out\"");
        let zones = [view("plain"), bouncing("cs", stats)];
        let json = zones_json(&zones);
        let block = "\"crowdsec\":{\"url\":\"http://127.0.0.1:8080/\",\"connected\":true,\
             \"last_pull\":1764072000,\"pulls\":8,\"decisions_applied\":1,\
             \"decisions_deleted\":2,\"decisions_ignored\":3,\"decisions_refused\":4,\
             \"decisions_malformed\":5,\"alerts_sent\":6,\"alerts_failed\":7,\"errors\":1,\
             \"last_error\":\"lapi: \\\"timed out\\\"\"}}]}\n";
        assert!(json.ends_with(block), "{json}");
        assert_eq!(json.matches("crowdsec").count(), 1, "{json}");
        // Never pulled, no error: nulls, not zeros or "".
        let page = zone_json(&bouncing("cs", CrowdsecStats::EMPTY), &[], 0, 10);
        assert!(
            page.contains(
                "\"counters\":{\"failures\":9,\"bans\":0,\"refused\":0,\"expired\":0,\
                 \"evicted\":0,\"bans_dropped\":0,\"widen_skipped\":0},\
                 \"crowdsec\":{\"url\":\"http://127.0.0.1:8080/\",\"connected\":false,\
                 \"last_pull\":null,\"pulls\":0,"
            ),
            "{page}"
        );
        assert!(
            page.contains("\"errors\":0,\"last_error\":null},\"offset\":0"),
            "{page}"
        );

        let metrics = prometheus(&zones);
        let names = families(&metrics);
        let crowdsec: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| n.starts_with("authban_crowdsec_"))
            .collect();
        assert_eq!(
            crowdsec,
            [
                "authban_crowdsec_connected",
                "authban_crowdsec_last_pull_timestamp_seconds",
                "authban_crowdsec_pulls_total",
                "authban_crowdsec_decisions_applied_total",
                "authban_crowdsec_decisions_deleted_total",
                "authban_crowdsec_decisions_ignored_total",
                "authban_crowdsec_decisions_refused_total",
                "authban_crowdsec_decisions_malformed_total",
                "authban_crowdsec_alerts_sent_total",
                "authban_crowdsec_alerts_failed_total",
                "authban_crowdsec_errors_total",
            ]
        );
        // The zone without CrowdSec has no sample in these families.
        assert!(metrics.ends_with(
            "# HELP authban_crowdsec_errors_total Failed exchanges with the LAPI.\n\
             # TYPE authban_crowdsec_errors_total counter\n\
             authban_crowdsec_errors_total{zone=\"cs\"} 1\n"
        ));
        for sample in [
            "authban_crowdsec_connected{zone=\"cs\"} 1\n",
            "authban_crowdsec_last_pull_timestamp_seconds{zone=\"cs\"} 1764072000\n",
            "authban_crowdsec_pulls_total{zone=\"cs\"} 8\n",
            "authban_crowdsec_decisions_malformed_total{zone=\"cs\"} 5\n",
            "authban_crowdsec_alerts_failed_total{zone=\"cs\"} 7\n",
        ] {
            assert!(metrics.contains(sample), "{sample}{metrics}");
        }
        assert_eq!(metrics.matches("authban_crowdsec_").count(), 11 * 3);
        // No zone named, no families: the exposition is as before.
        let plain = prometheus(&zones[..1]);
        assert!(!plain.contains("crowdsec"), "{plain}");
        assert_eq!(families(&plain).len(), 10);
    }

    #[test]
    fn address_rendering_names_a_wider_ban() {
        let key = k("192.0.2.0/24");
        let wide = Ban {
            key: k("192.0.0.0/16"),
            since: 100,
            until: 160,
            failures: 0,
            offence: 1,
        };
        let untracked = AddressState {
            failures: 0,
            ban: None,
        };
        let json = address_json("z", Naming::Addr, &key, &untracked, Some(&wide));
        assert_eq!(
            json,
            "{\"zone\":\"z\",\"addr\":\"192.0.2.0/24\",\"failures\":0,\"banned\":false,\
             \"banned_by\":{\"addr\":\"192.0.0.0/16\",\"since\":100,\
             \"since_iso\":\"1970-01-01T00:01:40Z\",\"until\":160,\
             \"until_iso\":\"1970-01-01T00:02:40Z\",\"failures\":0}}\n"
        );
        // Its own ban is not repeated.
        let own = Ban { key, ..wide };
        let banned = AddressState {
            failures: 3,
            ban: Some(own),
        };
        let json = address_json("z", Naming::Addr, &key, &banned, Some(&own));
        assert!(!json.contains("banned_by"), "{json}");
        assert!(json.contains("\"banned\":true,\"since\":100"), "{json}");
    }

    #[test]
    fn renderings() {
        let zone = view("c\"s");
        let json = zones_json(std::slice::from_ref(&zone));
        assert!(
            json.starts_with("{\"zones\":[{\"name\":\"c\\\"s\",\"size\":1048576"),
            "{json}"
        );
        let ban = Ban {
            key: k("192.0.2.1"),
            since: 1_764_072_000,
            until: 1_764_072_060,
            failures: 5,
            offence: 1,
        };
        let page = zone_json(&zone, &[ban], 0, 1);
        assert!(
            page.contains("\"until_iso\":\"2025-11-25T12:01:00Z\""),
            "{page}"
        );
        assert!(page.contains("\"next_offset\":1"), "{page}");
        let metrics = prometheus(&[zone]);
        assert!(metrics.contains("# TYPE authban_failures_total counter\n"));
        assert!(
            metrics.contains("authban_failures_total{zone=\"c\\\"s\"} 9\n"),
            "{metrics}"
        );
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }

    /// A key zone's answers: `"key":true` in the zone, each key as
    /// `key_hash` (32 hex digits), never `addr`; Prometheus as for any zone.
    #[test]
    fn key_zone_answers_name_hashes() {
        let hasher = crate::engine::account::KeyHasher::from_words([1, 2], "keys");
        let key = hasher.key_of(b"K-SECRET");
        let hex = hash_text(&key);
        let zone = ZoneView {
            keyed: true,
            bans: 1,
            ..view("keys")
        };
        let ban = Ban {
            key,
            since: 0,
            until: 60,
            failures: 10,
            offence: 1,
        };
        let ban_fields = format!(
            "\"key_hash\":\"{hex}\",\"since\":0,\"since_iso\":\"1970-01-01T00:00:00Z\",\
             \"until\":60,\"until_iso\":\"1970-01-01T00:01:00Z\",\"failures\":10"
        );
        let page = zone_json(&zone, &[ban], 0, 10);
        assert!(
            page.starts_with("{\"name\":\"keys\",\"key\":true,\"size\":1048576,"),
            "{page}"
        );
        assert!(
            page.ends_with(&format!(
                "\"offset\":0,\"limit\":10,\"ban_list\":[{{{ban_fields}}}]}}\n"
            )),
            "{page}"
        );
        let list = zones_json(&[view("addr"), zone.clone()]);
        assert_eq!(list.matches("\"key\":true").count(), 1, "{list}");
        assert!(list.contains("{\"name\":\"addr\",\"size\""), "{list}");
        let banned = AddressState {
            failures: 10,
            ban: Some(ban),
        };
        assert_eq!(
            address_json("keys", Naming::KeyHash, &key, &banned, None),
            format!(
                "{{\"zone\":\"keys\",\"key_hash\":\"{hex}\",\"failures\":10,\
                 \"banned\":true,\"since\":0,\"since_iso\":\"1970-01-01T00:00:00Z\",\
                 \"until\":60,\"until_iso\":\"1970-01-01T00:01:00Z\"}}\n"
            )
        );
        assert_eq!(
            ban_json("keys", Naming::KeyHash, &ban),
            format!("{{\"zone\":\"keys\",\"banned\":true,{ban_fields}}}\n")
        );
        assert_eq!(
            unban_json("keys", Naming::KeyHash, &key, &banned),
            format!(
                "{{\"zone\":\"keys\",\"key_hash\":\"{hex}\",\"was_banned\":true,\
                 \"failures_forgotten\":10}}\n"
            )
        );
        assert_eq!(Naming::of(true), zone.naming());
        assert_eq!(
            prometheus(&[zone]),
            prometheus(&[view("keys")]).replace(
                "authban_active_bans{zone=\"keys\"} 2",
                "authban_active_bans{zone=\"keys\"} 1"
            )
        );
    }

    /// The answers byte for byte as the hand-written renderer of earlier
    /// versions made them, control characters as `\u00XX` included.
    #[test]
    fn answers_byte_for_byte() {
        let name = "c\"s\\x\u{1}\n\t\u{8}\u{c}\r\u{7f}é/<";
        // DEL (U+007F) and the rest are sent as they are.
        let esc = "\"c\\\"s\\\\x\\u0001\\u000a\\u0009\\u0008\\u000c\\u000d\u{7f}é/<\"";
        let zone = ZoneView {
            bans: 5,
            stats: Stats {
                failures: 9,
                bans: 1,
                refused: 2,
                expired: 3,
                evicted: 4,
                bans_dropped: u64::MAX,
                widen_skipped: 6,
            },
            ..view(name)
        };
        let b1 = Ban {
            key: k("192.0.2.1"),
            since: 1_764_072_000,
            until: 1_764_072_060,
            failures: 5,
            offence: 1,
        };
        let b2 = Ban {
            key: k("2001:db8::/64"),
            since: 0,
            until: u32::MAX,
            failures: 0,
            offence: 1,
        };
        let zone_fields = format!(
            "\"name\":{esc},\"size\":1048576,\"capacity\":20000,\
             \"policy\":{{\"maxretry\":5,\"findtime\":600,\"bantime\":60}},\"tracked\":3,\
             \"bans\":5,\"counters\":{{\"failures\":9,\"bans\":1,\"refused\":2,\"expired\":3,\
             \"evicted\":4,\"bans_dropped\":18446744073709551615,\"widen_skipped\":6}}"
        );
        let b1_fields = "\"addr\":\"192.0.2.1\",\"since\":1764072000,\
             \"since_iso\":\"2025-11-25T12:00:00Z\",\"until\":1764072060,\
             \"until_iso\":\"2025-11-25T12:01:00Z\",\"failures\":5";
        let b2_fields = "\"addr\":\"2001:db8::/64\",\"since\":0,\
             \"since_iso\":\"1970-01-01T00:00:00Z\",\"until\":4294967295,\
             \"until_iso\":\"2106-02-07T06:28:15Z\",\"failures\":0";
        assert_eq!(
            zones_json(&[zone.clone(), zone.clone()]),
            format!("{{\"zones\":[{{{zone_fields}}},{{{zone_fields}}}]}}\n")
        );
        assert_eq!(zones_json(&[]), "{\"zones\":[]}\n");
        assert_eq!(
            zone_json(&zone, &[b1, b2], 0, 2),
            format!(
                "{{{zone_fields},\"offset\":0,\"limit\":2,\
                 \"ban_list\":[{{{b1_fields}}},{{{b2_fields}}}],\"next_offset\":2}}\n"
            )
        );
        assert_eq!(
            zone_json(&zone, &[b1, b2], 3, 2),
            format!(
                "{{{zone_fields},\"offset\":3,\"limit\":2,\
                 \"ban_list\":[{{{b1_fields}}},{{{b2_fields}}}]}}\n"
            )
        );
        let banned = AddressState {
            failures: 3,
            ban: Some(b1),
        };
        assert_eq!(
            address_json(name, Naming::Addr, &b1.key, &banned, Some(&b2)),
            format!(
                "{{\"zone\":{esc},\"addr\":\"192.0.2.1\",\"failures\":3,\"banned\":true,\
                 \"since\":1764072000,\"since_iso\":\"2025-11-25T12:00:00Z\",\
                 \"until\":1764072060,\"until_iso\":\"2025-11-25T12:01:00Z\",\
                 \"banned_by\":{{{b2_fields}}}}}\n"
            )
        );
        assert_eq!(
            ban_json(name, Naming::Addr, &b2),
            format!("{{\"zone\":{esc},\"banned\":true,{b2_fields}}}\n")
        );
        assert_eq!(
            unban_json(name, Naming::Addr, &b2.key, &banned),
            format!(
                "{{\"zone\":{esc},\"addr\":\"2001:db8::/64\",\"was_banned\":true,\
                 \"failures_forgotten\":3}}\n"
            )
        );
        assert_eq!(
            error_json(&ApiError::UnknownParameter("a\nb".into())),
            "{\"error\":\"unknown parameter \\\"a\\u000ab\\\"\",\"status\":400}\n"
        );
        assert_eq!(
            error_json(&ApiError::UnknownZone("z".into())),
            "{\"error\":\"unknown zone \\\"z\\\"\",\"status\":404}\n"
        );
    }
}
