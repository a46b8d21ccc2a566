//! The secrets `authban_crowdsec` reads from files at configuration time:
//! the bouncer's API key (`bouncer_key_file=`, the one line `cscli
//! bouncers add NAME -o raw` prints) and a machine's credentials
//! (`machine_credentials_file=`, CrowdSec's `local_api_credentials.yaml`:
//! `url`, `login`, `password`). Read strictly and bounded; the secrets
//! never appear in an error or in `Debug`.

use core::fmt;

/// A secrets file longer than this is not one.
pub const MAX_FILE_LEN: usize = 4096;
/// A key, login or password longer than this is not one.
const MAX_SECRET_LEN: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("is longer than {MAX_FILE_LEN} bytes")]
    TooLong,
    #[error("is not UTF-8 text")]
    NotText,
    #[error("holds no key")]
    NoKey,
    #[error("holds more than one line")]
    MoreThanOneLine,
    #[error("has a character that cannot be in an HTTP header")]
    BadCharacter,
    #[error("has no \"{0}:\"")]
    Missing(&'static str),
    #[error("has \"{0}:\" twice")]
    Duplicate(&'static str),
    #[error("line {0} is not \"name: value\"")]
    Syntax(usize),
}

/// The bouncer's API key, sent as `X-Api-Key`.
#[derive(Clone, PartialEq, Eq)]
pub struct BouncerKey(String);

impl BouncerKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BouncerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BouncerKey(..)")
    }
}

/// A machine's credentials, for `POST /v1/watchers/login`.
#[derive(Clone, PartialEq, Eq)]
pub struct MachineCredentials {
    /// LAPI's address as the file gives it (informative: the directive's
    /// `url=` is where authban connects).
    pub url: String,
    pub login: String,
    password: String,
}

impl MachineCredentials {
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for MachineCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineCredentials")
            .field("url", &self.url)
            .field("login", &self.login)
            .field("password", &"..")
            .finish()
    }
}

fn text(bytes: &[u8]) -> Result<&str, CredentialsError> {
    if bytes.len() > MAX_FILE_LEN {
        return Err(CredentialsError::TooLong);
    }
    core::str::from_utf8(bytes).map_err(|_| CredentialsError::NotText)
}

/// Printable ASCII only: what goes into a header or a JSON string as is.
fn secret(value: &str) -> Result<String, CredentialsError> {
    if value.is_empty()
        || value.len() > MAX_SECRET_LEN
        || !value.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(CredentialsError::BadCharacter);
    }
    Ok(value.to_string())
}

/// A bouncer key file: one line (a final newline allowed).
pub fn parse_bouncer_key(bytes: &[u8]) -> Result<BouncerKey, CredentialsError> {
    let text = text(bytes)?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let key = lines.next().ok_or(CredentialsError::NoKey)?;
    if lines.next().is_some() {
        return Err(CredentialsError::MoreThanOneLine);
    }
    secret(key).map(BouncerKey)
}

/// A `local_api_credentials.yaml`: `url:`, `login:` and `password:` lines
/// (values bare or in quotes), `#` comments and blank lines; nothing else.
pub fn parse_machine_credentials(bytes: &[u8]) -> Result<MachineCredentials, CredentialsError> {
    let text = text(bytes)?;
    let (mut url, mut login, mut password) = (None, None, None);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(CredentialsError::Syntax(n + 1))?;
        let value = unquote(value.trim());
        let (slot, field) = match name.trim() {
            "url" => (&mut url, "url"),
            "login" => (&mut login, "login"),
            "password" => (&mut password, "password"),
            _ => return Err(CredentialsError::Syntax(n + 1)),
        };
        if slot.replace(secret(value)?).is_some() {
            return Err(CredentialsError::Duplicate(field));
        }
    }
    Ok(MachineCredentials {
        url: url.ok_or(CredentialsError::Missing("url"))?,
        login: login.ok_or(CredentialsError::Missing("login"))?,
        password: password.ok_or(CredentialsError::Missing("password"))?,
    })
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_cscli_writes() {
        let creds = parse_machine_credentials(
            b"url: http://127.0.0.1:8080\nlogin: authban-node1\npassword: 'S3cr3t+/x='\n",
        )
        .unwrap();
        assert_eq!(creds.url, "http://127.0.0.1:8080");
        assert_eq!(creds.login, "authban-node1");
        assert_eq!(creds.password(), "S3cr3t+/x=");
        assert!(!format!("{creds:?}").contains("S3cr3t"));
        let key = parse_bouncer_key(b"0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(key.expose(), "0123456789abcdef0123456789abcdef");
        assert!(!format!("{key:?}").contains("0123"));
    }

    #[test]
    fn refuses_what_is_not_a_secrets_file() {
        use CredentialsError::*;
        assert_eq!(parse_bouncer_key(b"\n \n"), Err(NoKey));
        assert_eq!(parse_bouncer_key(b"a\nb\n"), Err(MoreThanOneLine));
        assert_eq!(parse_bouncer_key(b"a b"), Err(BadCharacter));
        assert_eq!(parse_bouncer_key(b"k\r\x00"), Err(BadCharacter));
        assert_eq!(parse_bouncer_key(&[b'a'; MAX_FILE_LEN + 1]), Err(TooLong));
        assert_eq!(parse_bouncer_key(&[0xff, 0xfe]), Err(NotText));
        let m = parse_machine_credentials;
        assert_eq!(m(b"url: http://x:1\nlogin: a\n"), Err(Missing("password")));
        assert_eq!(
            m(b"url: http://x:1\nlogin: a\nlogin: b\npassword: p"),
            Err(Duplicate("login"))
        );
        assert_eq!(m(b"url: http://x:1\nuser: a\n"), Err(Syntax(2)));
        assert_eq!(m(b"just text"), Err(Syntax(1)));
        assert_eq!(
            m(b"url: http://x:1\nlogin: a\npassword: \"p w\""),
            Err(BadCharacter)
        );
        // The error names no secret.
        let why = m(b"url: http://x:1\nlogin: a\npassword: \"p w\"").unwrap_err();
        assert!(!why.to_string().contains("p w"));
    }
}
