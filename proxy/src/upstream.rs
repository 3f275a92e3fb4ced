//! The upstream PostgreSQL: parsed from `--upstream URL` (host, port, or a Unix socket
//! directory, tandem's own user and database, TLS settings; never a password), and raw
//! connections to it.
//!
//! TLS to the upstream has libpq's meanings (`pgtls`): `sslmode`, `sslrootcert`, `sslcert`,
//! `sslkey` in the URL, else `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`. A relayed
//! session negotiates it itself (SSLRequest, then the handshake: `pgtls::start_tls`) and
//! never presents the client certificate: a client authenticates as itself, never as tandem
//! (with `cert` authentication the proxy's certificate would log any client in as its
//! role). `sslcert`/`sslkey` serve tandem's own control and mirror connections only.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Tcp {
        host: String,
        port: u16,
    },
    /// The socket file, e.g. `/var/run/postgresql/.s.PGSQL.5432`.
    Unix {
        dir: PathBuf,
        port: u16,
    },
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: Addr,
    /// tandem's own user and database, for the control and mirror connections.
    pub user: String,
    pub database: String,
    /// TLS to the server, for every connection the proxy opens.
    pub tls: pgtls::Tls,
    /// The relayed sessions' TLS client (no client certificate), read once at start;
    /// `None` when sessions never negotiate TLS (`disable`, `allow`, or a Unix socket).
    sessions: Option<pgtls::Connector>,
}

impl Upstream {
    /// `postgres://user@host:port/db`; a Unix socket directory as `?host=/path` or as a
    /// percent-encoded host (`postgres://user@%2Fvar%2Frun%2Fpostgresql:5432/db`).
    pub fn parse(text: &str) -> Result<Upstream, Error> {
        let (text, keys) =
            pgtls::split(text).map_err(|e| Error::Config(format!("--upstream: {e}")))?;
        let text = text.as_str();
        let url = url::Url::parse(text).map_err(|e| {
            // Not the text itself: a malformed URL can still carry a password.
            Error::Config(format!(
                "--upstream is not a URL ({e}); write it as postgres://USER@HOST:PORT/DATABASE"
            ))
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::Config(format!(
                "--upstream must start with postgres:// (it starts with {}://)",
                url.scheme()
            )));
        }
        if url.password().is_some() {
            return Err(Error::Config("--upstream must not carry a password: put tandem's in a file named by `password_file` in --config (clients authenticate end to end with their own)".into()));
        }
        let mut host = url
            .host_str()
            .map(|h| {
                percent_decode(h)
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string()
            })
            .unwrap_or_default();
        for (k, v) in url.query_pairs() {
            match &*k {
                "host" => host = v.into_owned(),
                other => {
                    return Err(Error::Config(format!(
                        "--upstream option {other:?} is not supported: the upstream URL names host, port, user and database (and host= for a Unix socket directory), and sslmode, sslrootcert, sslcert, sslkey"
                    )))
                }
            }
        }
        if host.is_empty() {
            return Err(Error::Config("--upstream names no host: write postgres://USER@HOST:PORT/DATABASE, or ?host=/socket/dir for a Unix socket".into()));
        }
        let port = url.port().unwrap_or(5432);
        let user = percent_decode(url.username());
        if user.is_empty() {
            return Err(Error::Config("--upstream names no user: write postgres://USER@HOST:PORT/DATABASE (tandem's own user, for its control and mirror connections)".into()));
        }
        let database = match percent_decode(url.path().trim_start_matches('/')) {
            d if d.is_empty() => user.clone(),
            d => d,
        };
        let addr = if host.starts_with('/') {
            Addr::Unix {
                dir: PathBuf::from(host),
                port,
            }
        } else {
            Addr::Tcp { host, port }
        };
        let tls = keys
            .resolve_here()
            .map_err(|e| Error::Config(format!("--upstream: {e}")))?;
        Upstream::new(addr, user, database, tls)
            .map_err(|e| Error::Config(format!("--upstream: {e}")))
    }

    /// An upstream with these TLS settings; every certificate file is read now, so a wrong
    /// path fails the start, not a session.
    pub fn new(
        addr: Addr,
        user: String,
        database: String,
        tls: pgtls::Tls,
    ) -> Result<Upstream, pgtls::Error> {
        if tls.mode != pgtls::SslMode::Disable {
            pgtls::Connector::new(&tls)?;
        }
        let sessions = match &addr {
            Addr::Tcp { .. } if tls.mode > pgtls::SslMode::Allow => {
                Some(pgtls::Connector::new(&tls.without_client_cert())?)
            }
            _ => None,
        };
        Ok(Upstream {
            addr,
            user,
            database,
            tls,
            sessions,
        })
    }

    /// An upstream reached without TLS (tests, and servers on this host).
    pub fn plain(addr: Addr, user: String, database: String) -> Upstream {
        Upstream {
            addr,
            user,
            database,
            tls: pgtls::Tls::disabled(),
            sessions: None,
        }
    }

    /// Whether relayed sessions can reach the server in plain text over a network: a TCP
    /// upstream other than loopback whose sslmode is below `require`.
    pub fn plain_over_network(&self) -> bool {
        match &self.addr {
            Addr::Unix { .. } => false,
            Addr::Tcp { host, .. } => !is_loopback(host) && !self.tls.mode.encrypts(),
        }
    }

    /// For messages: where the upstream is (never a password: there is none).
    pub fn describe(&self) -> String {
        match &self.addr {
            Addr::Tcp { host, port } => format!("{host}:{port}"),
            Addr::Unix { dir, port } => format!("{}/.s.PGSQL.{port}", dir.display()),
        }
    }

    /// A raw byte stream to the server, for relaying a client's session or a cancel request:
    /// TLS negotiated as the upstream's sslmode says (SSLRequest, then the handshake).
    pub async fn connect(&self, timeout: Duration) -> io::Result<Stream> {
        let connect = async {
            match &self.addr {
                Addr::Tcp { host, port } => {
                    let s = TcpStream::connect((host.as_str(), *port)).await?;
                    s.set_nodelay(true)?;
                    match &self.sessions {
                        None => Ok(Stream::Tcp(s)),
                        Some(tls) => match pgtls::start_tls(s, host, tls).await? {
                            pgtls::Negotiated::Plain(s) => Ok(Stream::Tcp(s)),
                            pgtls::Negotiated::Tls(s) => Ok(Stream::Tls(s)),
                        },
                    }
                }
                Addr::Unix { dir, port } => {
                    let path = dir.join(format!(".s.PGSQL.{port}"));
                    Ok(Stream::Unix(UnixStream::connect(path).await?))
                }
            }
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {} ms", timeout.as_millis()),
            )),
        }
    }

    /// Settings for tandem's own connections (control, mirror) as `user`, with the
    /// upstream's TLS settings (its client certificate included).
    pub fn pg_config(&self, password: Option<&str>, application: &str) -> pgtls::Endpoint {
        let mut c = tokio_postgres::Config::new();
        match &self.addr {
            Addr::Tcp { host, port } => {
                c.host(host).port(*port);
            }
            Addr::Unix { dir, port } => {
                c.host_path(dir).port(*port);
            }
        }
        c.user(&self.user)
            .dbname(&self.database)
            .application_name(application)
            .connect_timeout(Duration::from_secs(5));
        if let Some(p) = password {
            c.password(p);
        }
        pgtls::Endpoint::new(c, self.tls.clone())
    }
}

/// A host that is this machine: `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A connection to the server: TCP, TLS over TCP, or a Unix socket.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_socket_urls() {
        let u = Upstream::parse("postgres://tandem@db.internal:6432/shop").unwrap();
        assert_eq!(
            u.addr,
            Addr::Tcp {
                host: "db.internal".into(),
                port: 6432
            }
        );
        assert_eq!((u.user.as_str(), u.database.as_str()), ("tandem", "shop"));
        let u = Upstream::parse("postgres://postgres@localhost:5433/app?host=/tmp/pg").unwrap();
        assert_eq!(
            u.addr,
            Addr::Unix {
                dir: "/tmp/pg".into(),
                port: 5433
            }
        );
        let u = Upstream::parse("postgresql://postgres@%2Ftmp%2Fpg:5433/app").unwrap();
        assert_eq!(
            u.addr,
            Addr::Unix {
                dir: "/tmp/pg".into(),
                port: 5433
            }
        );
    }

    #[test]
    fn plain_text_over_a_network_is_known() {
        let u = Upstream::parse("postgres://u@db.internal/db?sslmode=require").unwrap();
        assert_eq!(u.tls.mode, pgtls::SslMode::Require);
        assert!(!u.plain_over_network());
        for url in [
            "postgres://u@db.internal/db?sslmode=prefer",
            "postgres://u@db.internal/db?sslmode=allow",
            "postgres://u@10.0.0.5/db?sslmode=disable",
        ] {
            assert!(Upstream::parse(url).unwrap().plain_over_network(), "{url}");
        }
        for url in [
            "postgres://u@127.0.0.1/db?sslmode=disable",
            "postgres://u@localhost/db?sslmode=prefer",
            "postgres://u@[::1]/db?sslmode=disable",
            "postgres://u@h/db?host=/tmp&sslmode=disable",
        ] {
            assert!(!Upstream::parse(url).unwrap().plain_over_network(), "{url}");
        }
    }

    #[test]
    fn refuses_passwords_and_unknown_options() {
        let e = Upstream::parse("postgres://u:secret@h/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("password_file") && !e.contains("secret"), "{e}");
        // Malformed (a port that is not a number): the password is not echoed either.
        let e = Upstream::parse("postgres://u:secret@h:54x/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a URL") && !e.contains("secret"), "{e}");
        assert!(Upstream::parse("postgres://u@h/db?application_name=x").is_err());
        // verify-* needs a root; a missing root file fails at parse, not at a session.
        let e = Upstream::parse("postgres://u@h/db?sslmode=verify-full")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslrootcert"), "{e}");
        let e =
            Upstream::parse("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
                .unwrap_err()
                .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(Upstream::parse("mysql://u@h/db").is_err());
        assert!(Upstream::parse("postgres://h/db")
            .unwrap_err()
            .to_string()
            .contains("no user"));
    }
}
