//! The upstream PostgreSQL: parsed from `--upstream URL` (host, port, or a Unix socket
//! directory, tandem's own user and database; never a password), and raw connections to it.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

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
}

impl Upstream {
    /// `postgres://user@host:port/db`; a Unix socket directory as `?host=/path` or as a
    /// percent-encoded host (`postgres://user@%2Fvar%2Frun%2Fpostgresql:5432/db`).
    pub fn parse(text: &str) -> Result<Upstream, String> {
        let url = url::Url::parse(text).map_err(|e| {
            format!("--upstream {text:?} is not a URL ({e}); write it as postgres://USER@HOST:PORT/DATABASE")
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "--upstream must start with postgres:// (it starts with {}://)",
                url.scheme()
            ));
        }
        if url.password().is_some() {
            return Err("--upstream must not carry a password: put tandem's in a file named by `password_file` in --config (clients authenticate end to end with their own)".into());
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
                "sslmode" if v == "disable" || v == "prefer" || v == "allow" => {}
                other => {
                    return Err(format!(
                        "--upstream option {other:?} is not supported: the upstream URL names host, port, user and database (and host= for a Unix socket directory)"
                    ))
                }
            }
        }
        if host.is_empty() {
            return Err("--upstream names no host: write postgres://USER@HOST:PORT/DATABASE, or ?host=/socket/dir for a Unix socket".into());
        }
        let port = url.port().unwrap_or(5432);
        let user = percent_decode(url.username());
        if user.is_empty() {
            return Err("--upstream names no user: write postgres://USER@HOST:PORT/DATABASE (tandem's own user, for its control and mirror connections)".into());
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
        Ok(Upstream {
            addr,
            user,
            database,
        })
    }

    /// For messages: where the upstream is (never a password: there is none).
    pub fn describe(&self) -> String {
        match &self.addr {
            Addr::Tcp { host, port } => format!("{host}:{port}"),
            Addr::Unix { dir, port } => format!("{}/.s.PGSQL.{port}", dir.display()),
        }
    }

    /// A raw byte stream to the server, for relaying a client's session or a cancel request.
    pub async fn connect(&self, timeout: Duration) -> io::Result<Stream> {
        let connect = async {
            match &self.addr {
                Addr::Tcp { host, port } => {
                    let s = TcpStream::connect((host.as_str(), *port)).await?;
                    s.set_nodelay(true)?;
                    Ok(Stream::Tcp(s))
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

    /// Settings for tandem's own connections (control, mirror) as `user`.
    pub fn pg_config(&self, password: Option<&str>, application: &str) -> tokio_postgres::Config {
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
        c
    }
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

/// A connection to the server: TCP or a Unix socket.
pub enum Stream {
    Tcp(TcpStream),
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
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
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
    fn refuses_passwords_and_unknown_options() {
        let e = Upstream::parse("postgres://u:secret@h/db").unwrap_err();
        assert!(e.contains("password_file") && !e.contains("secret"), "{e}");
        assert!(Upstream::parse("postgres://u@h/db?sslmode=require").is_err());
        assert!(Upstream::parse("mysql://u@h/db").is_err());
        assert!(Upstream::parse("postgres://h/db")
            .unwrap_err()
            .contains("no user"));
    }
}
