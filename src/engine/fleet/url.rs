//! `sync=redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.

use core::fmt;

/// Where a zone's fleet state lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncUrl {
    /// A host name or an address literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub db: u32,
    /// Redis 6 ACL user; `None` authenticates with the password alone.
    pub user: Option<String>,
    pub password: Option<String>,
    /// `rediss://`: TLS, the server's certificate verified.
    pub tls: bool,
}

pub const DEFAULT_PORT: u16 = 6379;

/// What the value must look like, as `nginx -t` says it.
pub const SYNTAX: &str = "redis[s]://[:PASSWORD@]HOST[:PORT][/DB]";

impl SyncUrl {
    pub fn parse(text: &str) -> Option<SyncUrl> {
        let (tls, rest) = match text.strip_prefix("rediss://") {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix("redis://")?),
        };
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((auth, hostport)) => (Some(auth), hostport),
            None => (None, rest),
        };
        let (user, password) = match auth {
            None => (None, None),
            Some(auth) => {
                let (user, password) = auth.split_once(':')?;
                let password = percent_decode(password).filter(|p| !p.is_empty())?;
                let user = (!user.is_empty())
                    .then(|| percent_decode(user))
                    .map_or(Some(None), |u| u.map(Some))?;
                (user, Some(password))
            }
        };
        let (hostport, db) = match hostport.split_once('/') {
            Some((hostport, "")) => (hostport, 0),
            Some((hostport, db)) => (hostport, number(db)?),
            None => (hostport, 0),
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']')?;
            host.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => DEFAULT_PORT,
                _ => port(after.strip_prefix(':')?)?,
            };
            (host, port)
        } else {
            match hostport.split_once(':') {
                Some((host, p)) => (host, port(p)?),
                None => (hostport, DEFAULT_PORT),
            }
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
        host_ok.then(|| SyncUrl {
            host: host.to_string(),
            port,
            db,
            user,
            password,
            tls,
        })
    }
}

/// The URL without its password, for logs and the API.
impl fmt::Display for SyncUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://{}:{}/{}", host, self.port, self.db)
    }
}

/// Digits only, no sign or leading zero (as the API's numbers).
fn number(text: &str) -> Option<u32> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let no_leading_zero = text == "0" || !text.starts_with('0');
    (digits_only && no_leading_zero).then(|| text.parse().ok())?
}

fn port(text: &str) -> Option<u16> {
    number(text)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&p| p > 0)
}

/// `%XX` escapes, so a password may hold `@`, `:` or `/`.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> SyncUrl {
        SyncUrl::parse(text).unwrap_or_else(|| panic!("{text} refused"))
    }

    #[test]
    fn forms() {
        let u = url("redis://127.0.0.1:6380/2");
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6380, 2));
        assert_eq!((u.user, u.password), (None, None));
        let u = url("redis://redis");
        assert_eq!((u.host.as_str(), u.port, u.db), ("redis", 6379, 0));
        let u = url("redis://:s%40cret@[::1]:7000/");
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.to_string(), "redis://[::1]:7000/0");
        let u = url("rediss://:pw@redis.example:6380");
        assert!(u.tls);
        assert_eq!(u.to_string(), "rediss://redis.example:6380/0");
        assert!(!url("redis://h").tls);
        let u = url("redis://authban:pw@10.0.0.5");
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref()),
            (Some("authban"), Some("pw"))
        );
    }

    #[test]
    fn display_never_shows_the_password() {
        assert!(!url("redis://:hunter2@h:1/0")
            .to_string()
            .contains("hunter2"));
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "redis://",
            "http://h:1",
            "redis://h:0",
            "redis://h:65536",
            "redis://h:x",
            "redis://h:+1",
            "redis://h/01",
            "redis://h/x",
            "redis://pw@h",
            "redis://:@h",
            "redis://:%4@h",
            "redis://[::1",
            "redis://[nothost]:1",
            "redis://h h",
            "redis://h/0/1",
        ] {
            assert_eq!(SyncUrl::parse(bad), None, "{bad:?}");
        }
    }
}
