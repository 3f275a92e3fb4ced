//! Taking the TLS keys out of a connection string, so that the rest can go to
//! `tokio_postgres::Config::from_str` (which refuses `sslrootcert` and the `verify-*` modes).
//!
//! Both of libpq's forms: a URL (`postgresql://...?sslmode=verify-full&sslrootcert=/ca.pem`,
//! values percent-encoded) and `key=value` pairs (spaces around `=` allowed, values in single
//! quotes with `\'` and `\\`, or bare with `\` escaping the next character). What is not a
//! TLS key is passed on byte for byte.

use crate::Error;

/// The TLS keys as written (not yet checked: see [`Keys::resolve`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
}

/// TLS keys libpq has that tandem does not implement, with what to do instead.
const UNSUPPORTED: [(&str, &str); 7] = [
    (
        "sslpassword",
        ": encrypted keys are not read; decrypt the key into a file of mode 0600",
    ),
    ("sslcrl", ""),
    ("sslcrldir", ""),
    ("sslcertmode", ""),
    ("sslcompression", ""),
    ("ssl_min_protocol_version", " (TLS 1.2 is the minimum)"),
    ("ssl_max_protocol_version", ""),
];

impl Keys {
    /// Take `key=value` if it is a TLS key: `Ok(true)` when taken.
    fn take(&mut self, key: &str, value: String) -> Result<bool, Error> {
        let slot = match key {
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            other => {
                if let Some((k, advice)) = UNSUPPORTED.iter().find(|(k, _)| *k == other) {
                    return Err(Error::Unsupported((*k).to_string(), advice));
                }
                return Ok(false);
            }
        };
        // As in libpq, a later value of a key wins.
        *slot = Some(value);
        Ok(true)
    }

    /// Fill the keys the string did not set from `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`
    /// and `PGSSLKEY` (libpq's order: the string first, then the environment).
    pub fn or_env(mut self, env: impl Fn(&str) -> Option<String>) -> Keys {
        for (slot, var) in [
            (&mut self.sslmode, "PGSSLMODE"),
            (&mut self.sslrootcert, "PGSSLROOTCERT"),
            (&mut self.sslcert, "PGSSLCERT"),
            (&mut self.sslkey, "PGSSLKEY"),
        ] {
            if slot.is_none() {
                *slot = env(var).filter(|v| !v.is_empty());
            }
        }
        self
    }
}

/// Split `text` into the connection string without its TLS keys and the keys.
pub fn split(text: &str) -> Result<(String, Keys), Error> {
    if text.starts_with("postgresql://") || text.starts_with("postgres://") {
        split_url(text)
    } else {
        split_pairs(text)
    }
}

fn split_url(text: &str) -> Result<(String, Keys), Error> {
    let mut keys = Keys::default();
    let Some((base, query)) = text.split_once('?') else {
        return Ok((text.to_string(), keys));
    };
    let mut kept = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        if !keys.take(&percent_decode(k)?, percent_decode(v)?)? {
            kept.push(param);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, keys))
}

fn percent_decode(s: &str) -> Result<String, Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                // The text itself is not repeated: it may be a secret.
                .ok_or_else(|| {
                    Error::Syntax(
                        "a URL parameter has a % not followed by two hex digits; percent-encode it (%25 for %)".into(),
                    )
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::Syntax("a URL parameter does not decode to UTF-8".into()))
}

fn split_pairs(text: &str) -> Result<(String, Keys), Error> {
    let mut keys = Keys::default();
    let mut kept: Vec<&str> = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    let ws = |c: u8| c.is_ascii_whitespace();
    loop {
        while i < b.len() && ws(b[i]) {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !ws(b[i]) {
            i += 1;
        }
        let key = &text[start..i];
        while i < b.len() && ws(b[i]) {
            i += 1;
        }
        if i == b.len() || b[i] != b'=' {
            return Err(Error::Syntax(format!(
                "missing \"=\" after {key:?}; write key=value pairs separated by spaces"
            )));
        }
        i += 1;
        while i < b.len() && ws(b[i]) {
            i += 1;
        }
        let mut value = Vec::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => {
                        return Err(Error::Syntax(format!(
                            "the quoted value of {key:?} has no closing quote"
                        )))
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !ws(b[i]) {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                value.push(b[i]);
                i += 1;
            }
        }
        let value = String::from_utf8(value)
            .map_err(|_| Error::Syntax(format!("the value of {key:?} is not UTF-8")))?;
        if !keys.take(key, value)? {
            kept.push(&text[start..i]);
        }
    }
    Ok((kept.join(" "), keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RootCert, SslMode};
    use std::path::{Path, PathBuf};

    fn keys(mode: &str, root: &str) -> Keys {
        Keys {
            sslmode: Some(mode.into()),
            sslrootcert: Some(root.into()),
            ..Keys::default()
        }
    }

    #[test]
    fn url_keys_are_taken_out_and_decoded() {
        let (rest, k) = split(
            "postgresql://app@db.example:5433/shop?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20certs%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgresql://app@db.example:5433/shop?application_name=x&connect_timeout=5"
        );
        assert_eq!(k, keys("verify-full", "/etc/ca certs/ca.pem"));
        let (rest, k) = split("postgres://h/db?sslmode=require").unwrap();
        assert_eq!(
            (rest.as_str(), k.sslmode.as_deref()),
            ("postgres://h/db", Some("require"))
        );
        let (rest, k) = split("postgres://h/db").unwrap();
        assert_eq!((rest.as_str(), k), ("postgres://h/db", Keys::default()));
        assert!(matches!(
            split("postgres://h/db?sslrootcert=%zz"),
            Err(Error::Syntax(_))
        ));
    }

    #[test]
    fn pairs_keep_the_rest_verbatim_and_unquote_tls_values() {
        let (rest, k) = split(
            r"host=db.example  sslmode = verify-ca dbname='my db' sslrootcert='/ca dir/it\'s.pem' user=app sslcert=/c\ d/client.crt sslkey=''",
        )
        .unwrap();
        assert_eq!(rest, "host=db.example dbname='my db' user=app");
        assert_eq!(k.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(k.sslrootcert.as_deref(), Some("/ca dir/it's.pem"));
        assert_eq!(k.sslcert.as_deref(), Some("/c d/client.crt"));
        assert_eq!(k.sslkey.as_deref(), Some(""));
        // The rest is what tokio-postgres reads.
        let pg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(pg.get_dbname(), Some("my db"));
        assert!(matches!(
            split("host=h sslrootcert='/x"),
            Err(Error::Syntax(_))
        ));
        assert!(matches!(split("host=h sslmode"), Err(Error::Syntax(_))));
    }

    #[test]
    fn unsupported_keys_are_refused_by_name() {
        let e = split("host=h sslpassword=hunter2").unwrap_err().to_string();
        assert!(e.contains("sslpassword") && !e.contains("hunter2"), "{e}");
        assert!(split("postgres://h/db?sslcrl=/x").is_err());
    }

    #[test]
    fn environment_fills_what_the_string_lacks() {
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("require".to_string()),
            "PGSSLROOTCERT" => Some("/env/ca.pem".to_string()),
            _ => None,
        };
        let (_, k) = split("host=h sslmode=verify-full").unwrap();
        let k = k.or_env(env);
        assert_eq!(k, keys("verify-full", "/env/ca.pem"));
        let tls = k.resolve(None).unwrap();
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(RootCert::File("/env/ca.pem".into())));
        let tls = Keys::default().or_env(env).resolve(None).unwrap();
        assert_eq!(tls.mode, SslMode::Require);
    }

    #[test]
    fn libpq_rules() {
        let resolve = |s: &str| split(s).unwrap().1.resolve(None);
        assert_eq!(resolve("host=h").unwrap().mode, SslMode::Prefer);
        assert_eq!(
            resolve("host=h sslmode=disable sslrootcert=/ca").unwrap(),
            crate::Tls::disabled()
        );
        // sslrootcert=system: verify-full by default, nothing weaker.
        let t = resolve("host=h sslrootcert=system").unwrap();
        assert_eq!(
            (t.mode, t.root_cert),
            (SslMode::VerifyFull, Some(RootCert::System))
        );
        assert!(matches!(
            resolve("host=h sslrootcert=system sslmode=require"),
            Err(Error::WeakSystem(SslMode::Require))
        ));
        // verify-* needs a root; require with one checks the chain.
        let e = resolve("host=h sslmode=verify-full")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslrootcert="), "{e}");
        let t = resolve("host=h sslmode=require sslrootcert=/ca.pem").unwrap();
        assert_eq!(t.check(), crate::Check::Chain);
        assert_eq!(
            resolve("host=h sslmode=require").unwrap().check(),
            crate::Check::Nothing
        );
        assert!(matches!(
            resolve("host=h sslmode=verify"),
            Err(Error::BadMode(_))
        ));
        assert!(matches!(
            resolve("host=h sslkey=/k"),
            Err(Error::KeyWithoutCert)
        ));
        assert!(matches!(
            resolve("host=h sslcert=/c"),
            Err(Error::CertWithoutKey)
        ));
    }

    #[test]
    fn defaults_from_the_home_directory() {
        let home = tempfile_dir();
        let dir = home.join(".postgresql");
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["root.crt", "postgresql.crt", "postgresql.key"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let t = Keys::default().resolve(Some(&home)).unwrap();
        assert_eq!(t.root_cert, Some(RootCert::File(dir.join("root.crt"))));
        assert_eq!(
            t.cert.as_deref(),
            Some(dir.join("postgresql.crt").as_path())
        );
        assert_eq!(t.key.as_deref(), Some(dir.join("postgresql.key").as_path()));
        // libpq: require with a root.crt present checks the chain.
        let t = split("sslmode=require")
            .unwrap()
            .1
            .resolve(Some(&home))
            .unwrap();
        assert_eq!(t.check(), crate::Check::Chain);
        std::fs::remove_dir_all(&home).unwrap();
        assert!(Keys::default()
            .resolve(Some(Path::new("/nonexistent")))
            .unwrap()
            .root_cert
            .is_none());
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pgtls-home-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}
