//! The accounts tests' nginx: an address zone `addr` and a zone `keys`
//! keyed on `$arg_apikey`, both on `/client/api` in front of the mock
//! CloudStack (realip from X-Forwarded-For), and the API on `{port2}`.

use crate::common::Mock;

pub const ADDR_MAXRETRY: usize = 5;
pub const KEY_MAXRETRY: usize = 10;

/// The configuration, `keys_extra` added to the key zone's parameters.
pub fn keyed_conf(mock: &Mock, keys_extra: &str) -> String {
    format!(
        r#"
    authban_zone zone=addr:1m maxretry={ADDR_MAXRETRY} findtime=10m bantime=1h;
    authban_zone zone=keys:1m key=$arg_apikey maxretry={KEY_MAXRETRY} findtime=1h bantime=15m {keys_extra};

    server {{
        listen 127.0.0.1:{{port}};
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        location /client/api {{
            authban addr keys;
            add_header X-Authban-Zone $authban_zone always;
            add_header X-Authban-Key $authban_key always;
            proxy_pass http://{mock};
        }}
    }}

    server {{
        listen 127.0.0.1:{{port2}};
        location = /authban {{
            authban_api;
        }}
    }}
    "#,
        mock = mock.addr()
    )
}

/// A signed call with `key` and a signature that does not verify.
pub fn call(key: &str) -> String {
    format!("/client/api?command=listZones&apiKey={key}&signature=bad&response=json")
}
