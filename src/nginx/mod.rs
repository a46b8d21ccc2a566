//! The nginx side: what nginx calls, and what calls nginx.
//!
//! A stack: each folder imports only from those below it, and the engine
//! (`crate::engine`) is below them all (`tests/layering.rs` checks it).
//!
//! - `module`: the module table nginx loads, its directives, the phase
//!   handlers it installs, and the process hooks. The top: nothing imports it.
//! - `http`: what nginx calls per request: the access and precontent
//!   handlers, the header filter and log phase (`access`), the request's
//!   record across redirects (`record`), `$authban_status` (`variables`),
//!   `authban_read_body` (`body`) and `$authban_param_NAME` (`param`),
//!   the management endpoint (`api`), realip's trusted networks (`realip`).
//! - `conf`: the configuration: per-location and http-level settings
//!   (`loc`, `main`), the directive handlers (`directives`), how the
//!   configuration reaches them (`access`), and nginx's callback that fills
//!   a zone's new memory (`zone_init`).
//! - `fleet`: fleet sync through Redis (`sync=`): its configuration
//!   (`conf`), each worker's links on nginx's event loop (`link`), what they apply to the zone (`node`), and the master's load of
//!   a new zone (`snapshot`).
//! - `crowdsec`: CrowdSec's LAPI (`authban_crowdsec`): worker 0 pulls its
//!   decisions into the zone (`pull`), every worker sends its bans as
//!   alerts (`push`), each an HTTP exchange on the event loop (`exchange`).
//! - `net`: connections to peers (`peer`), name resolution (`resolve`) and
//!   TLS through nginx's SSL (`tls`), for the fleet and CrowdSec alike.
//! - `state`: a zone's shared memory (`zone`) and its state file
//!   (`state_file`).
//! - `base`: the error log's lines (`log`), panics caught at every entry
//!   point (`guard`), nginx's clock (`clock`), which process this is
//!   (`process`).

mod base;
mod conf;
mod crowdsec;
mod fleet;
mod http;
mod module;
mod net;
mod state;
