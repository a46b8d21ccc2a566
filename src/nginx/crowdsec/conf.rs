//! `authban_crowdsec` as the configuration read it: where LAPI is, the
//! bouncer key and machine credentials (read by the master, so workers
//! never open the files).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use crate::engine::crowdsec::credentials::{
    parse_bouncer_key, parse_machine_credentials, BouncerKey, MachineCredentials, MAX_FILE_LEN,
};
use crate::engine::crowdsec::directive::CrowdsecSpec;
use crate::nginx::net::tls::Tls;

/// Where LAPI is and who authban is to it.
pub struct CrowdsecConf {
    pub spec: CrowdsecSpec,
    pub key: BouncerKey,
    /// `machine_credentials_file=`: bans made here are sent as alerts.
    pub machine: Option<MachineCredentials>,
    /// Where LAPI was found when the configuration was read (`None`: its
    /// name did not resolve; every pull says so until a reload).
    pub addr: Option<SocketAddr>,
    /// `https://`: the TLS context, verifying against `ca=`.
    pub tls: Option<Tls>,
    /// `HOST:PORT`, the `Host` header and nginx's name for the peer.
    pub authority: String,
}

impl CrowdsecConf {
    /// Reads the files (relative ones from nginx's configuration
    /// directory, as its certificate files are) and resolves LAPI's host.
    pub fn new(spec: CrowdsecSpec, conf_prefix: &str, tls: Option<Tls>) -> Result<Self, String> {
        let read = |param: &str, file: &str| {
            let path = Path::new(conf_prefix).join(file);
            let bytes = read_bounded(&path)
                .map_err(|why| format!("cannot read {param} \"{}\": {why}", path.display()))?;
            Ok::<_, String>((path, bytes))
        };
        let (path, bytes) = read("bouncer_key_file", &spec.bouncer_key_file)?;
        let key = parse_bouncer_key(&bytes)
            .map_err(|why| format!("invalid bouncer_key_file \"{}\": {why}", path.display()))?;
        let machine = match &spec.machine_credentials_file {
            Some(file) => {
                let (path, bytes) = read("machine_credentials_file", file)?;
                Some(parse_machine_credentials(&bytes).map_err(|why| {
                    format!(
                        "invalid machine_credentials_file \"{}\": {why}",
                        path.display()
                    )
                })?)
            }
            None => None,
        };
        let url = &spec.url;
        let addr = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next());
        let authority = if url.host.contains(':') {
            format!("[{}]:{}", url.host, url.port)
        } else {
            format!("{}:{}", url.host, url.port)
        };
        Ok(CrowdsecConf {
            spec,
            key,
            machine,
            addr,
            tls,
            authority,
        })
    }
}

/// A file's first [`MAX_FILE_LEN`] bytes and one more (the parsers refuse
/// a longer file): a device or a log named by mistake is never read whole.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}
