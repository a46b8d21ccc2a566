//! LAPI's decisions as its stream mode sends them
//! (`GET /v1/decisions/stream`: `{"new": [...], "deleted": [...]}`, either
//! list `null` when empty), read into what a zone can hold. Everything in
//! it comes from outside the process: a field missing, of another type or
//! out of range makes that decision unusable (counted by the caller), never
//! the whole answer, and text kept for logs is bounded.

use serde::Deserialize;

use crate::engine::crowdsec::duration::parse_go_duration;
use crate::engine::key::Key;

/// Bytes of a decision's scenario and origin kept, for the log line, the
/// API and Prometheus.
pub const MAX_LABEL_LEN: usize = 64;

/// One decision as LAPI writes it; every field optional, so that one odd
/// decision does not spoil the answer.
#[derive(Deserialize, Default)]
pub struct RawDecision {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub scenario: Option<String>,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub simulated: Option<bool>,
}

/// One element of a list: a decision, or something else (a field of
/// another type, not an object), which is that element's loss alone.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Entry {
    Decision(RawDecision),
    Malformed(serde::de::IgnoredAny),
}

impl Entry {
    /// What a zone would apply, or why not.
    pub fn usable(&self) -> Result<Decision, Unusable> {
        match self {
            Entry::Decision(d) => d.usable(),
            Entry::Malformed(_) => Err(Unusable::Malformed),
        }
    }

    /// The key a deleted decision names.
    pub fn key(&self) -> Result<Key, Unusable> {
        match self {
            Entry::Decision(d) => d.key(),
            Entry::Malformed(_) => Err(Unusable::Malformed),
        }
    }
}

/// A decision a zone can apply: a ban of `key` for `millis_left` more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub id: i64,
    pub key: Key,
    /// Time left when LAPI answered, ms; <= 0: already over.
    pub millis_left: i64,
    pub scenario: String,
    pub origin: String,
}

/// Why a decision is not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// Another type than `ban` (`captcha`, `throttle`...): counted, ignored.
    NotABan,
    /// A simulated decision (CrowdSec's own dry run).
    Simulated,
    /// A scope other than `Ip` or `Range` (`Username`, `Country`...).
    Scope,
    /// A value that is not an address (`Ip`) or a network (`Range`).
    Value,
    /// A duration Go would not have written.
    Duration,
    /// Not a decision object at all.
    Malformed,
}

/// One entry of a stream answer, from its text (a range
/// [`crate::engine::crowdsec::stream_index`] found).
pub fn parse_entry(text: &[u8]) -> Entry {
    serde_json::from_slice(text).unwrap_or(Entry::Malformed(serde::de::IgnoredAny))
}

impl RawDecision {
    /// What a zone would apply, or why not.
    pub fn usable(&self) -> Result<Decision, Unusable> {
        let kind = self.kind.as_deref().unwrap_or("");
        if !kind.eq_ignore_ascii_case("ban") {
            return Err(Unusable::NotABan);
        }
        if self.simulated == Some(true) {
            return Err(Unusable::Simulated);
        }
        let key = self.key()?;
        let millis_left = self
            .duration
            .as_deref()
            .and_then(parse_go_duration)
            .ok_or(Unusable::Duration)?;
        Ok(Decision {
            id: self.id.unwrap_or(0),
            key,
            millis_left,
            scenario: label(self.scenario.as_deref()),
            origin: label(self.origin.as_deref()),
        })
    }

    /// The key a deleted decision names, to lift exactly what it made.
    pub fn key(&self) -> Result<Key, Unusable> {
        let value = self.value.as_deref().ok_or(Unusable::Value)?.trim();
        let scope = self.scope.as_deref().unwrap_or("");
        if scope.eq_ignore_ascii_case("ip") {
            // An address, never a network, though LAPI accepts a CIDR here.
            if value.contains('/') {
                return Err(Unusable::Value);
            }
            Key::parse(value).ok_or(Unusable::Value)
        } else if scope.eq_ignore_ascii_case("range") {
            if !value.contains('/') {
                return Err(Unusable::Value);
            }
            Key::parse(value).ok_or(Unusable::Value)
        } else {
            Err(Unusable::Scope)
        }
    }
}

/// Text from outside kept for a log line: printable ASCII, at most
/// [`MAX_LABEL_LEN`] bytes, anything else as `?`.
fn label(text: Option<&str>) -> String {
    text.unwrap_or("")
        .chars()
        .take(MAX_LABEL_LEN)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::crowdsec::stream_index::{index_stream, NotAStream};

    /// An answer's deleted and new entries, read as a pull reads them.
    fn read(body: &[u8]) -> Result<(Vec<Entry>, Vec<Entry>), NotAStream> {
        let (mut deleted, mut new) = (Vec::new(), Vec::new());
        for (is_new, range) in index_stream(body)? {
            let entry = parse_entry(&body[range]);
            if is_new {
                new.push(entry)
            } else {
                deleted.push(entry)
            }
        }
        Ok((deleted, new))
    }

    fn raw(kind: &str, scope: &str, value: &str, duration: &str) -> RawDecision {
        RawDecision {
            id: Some(7),
            kind: Some(kind.into()),
            scope: Some(scope.into()),
            value: Some(value.into()),
            duration: Some(duration.into()),
            scenario: Some("crowdsecurity/ssh-bf".into()),
            origin: Some("cscli".into()),
            simulated: Some(false),
        }
    }

    #[test]
    fn an_entry_that_is_not_a_decision_is_malformed() {
        assert!(matches!(parse_entry(b"7"), Entry::Malformed(_)));
        assert!(matches!(parse_entry(b"{"), Entry::Malformed(_)));
        assert!(matches!(parse_entry(br#"{"id": 2}"#), Entry::Decision(_)));
    }

    #[test]
    fn a_stream_answer_with_null_lists_and_odd_decisions() {
        let body = br#"{"new": [
            {"id": 1, "type": "ban", "scope": "Ip", "value": "192.0.2.7", "duration": "3h59m58.1s",
             "scenario": "manual 'ban' from 'x'", "origin": "cscli", "simulated": false},
            {"id": 2, "type": "ban", "scope": "Range", "value": "2001:db8::/48", "duration": "10m"},
            {"id": 3, "type": "captcha", "scope": "Ip", "value": "192.0.2.8", "duration": "1h"},
            {"id": 4, "type": "ban", "scope": "Username", "value": "admin", "duration": "1h"},
            {"id": 5, "type": "ban", "scope": "Ip", "value": "not an ip", "duration": "1h"},
            {"id": 6, "type": "ban", "scope": "Ip", "value": "192.0.2.9", "duration": "forever"},
            {"id": 7, "type": 42}
        ], "deleted": null}"#;
        let (deleted, new) = read(body).unwrap();
        assert!(deleted.is_empty());
        let verdicts: Vec<_> = new.iter().map(Entry::usable).collect();
        let first = verdicts[0].clone().unwrap();
        assert_eq!(first.key, Key::parse("192.0.2.7").unwrap());
        assert_eq!(first.millis_left, 14_398_100);
        assert_eq!(first.scenario, "manual?'ban'?from?'x'");
        assert_eq!(
            verdicts[1].clone().unwrap().key,
            Key::parse("2001:db8::/48").unwrap()
        );
        assert_eq!(verdicts[2], Err(Unusable::NotABan));
        assert_eq!(verdicts[3], Err(Unusable::Scope));
        assert_eq!(verdicts[4], Err(Unusable::Value));
        assert_eq!(verdicts[5], Err(Unusable::Duration));
        assert_eq!(verdicts[6], Err(Unusable::Malformed), "one odd element");
    }

    #[test]
    fn what_is_not_a_stream_answer_is_refused_whole() {
        assert!(read(br#"{"new": [1, "x", null]}"#).is_ok());
        assert!(read(b"not json").is_err());
        assert!(read(br#"{"new": [}"#).is_err());
        assert!(read(br#"{"new": {}}"#).is_err());
        let (deleted, new) = read(br#"{}"#).unwrap();
        assert!(new.is_empty() && deleted.is_empty());
    }

    #[test]
    fn scopes_and_values_must_agree() {
        assert_eq!(
            raw("ban", "Ip", "192.0.2.0/24", "1h").usable(),
            Err(Unusable::Value)
        );
        assert_eq!(
            raw("ban", "Range", "192.0.2.1", "1h").usable(),
            Err(Unusable::Value)
        );
        assert_eq!(
            raw("BAN", "ip", "::ffff:192.0.2.1", "1h")
                .usable()
                .unwrap()
                .key,
            Key::parse("192.0.2.1").unwrap()
        );
        assert_eq!(
            raw("ban", "range", "192.0.2.77/24", "1h")
                .usable()
                .unwrap()
                .key,
            Key::parse("192.0.2.0/24").unwrap()
        );
        let mut simulated = raw("ban", "Ip", "192.0.2.1", "1h");
        simulated.simulated = Some(true);
        assert_eq!(simulated.usable(), Err(Unusable::Simulated));
        assert_eq!(
            raw("ban", "Ip", "192.0.2.1", "-1s")
                .usable()
                .unwrap()
                .millis_left,
            -1_000
        );
    }

    #[test]
    fn labels_are_bounded_and_printable() {
        let mut d = raw("ban", "Ip", "192.0.2.1", "1h");
        d.scenario = Some("x".repeat(1000) + "\n");
        d.origin = Some("é\u{1b}[31m".into());
        let u = d.usable().unwrap();
        assert_eq!(u.scenario.len(), MAX_LABEL_LEN);
        assert_eq!(u.origin, "??[31m");
    }
}
