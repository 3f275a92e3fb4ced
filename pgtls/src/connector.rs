//! The rustls client (ring provider) for the settings of [`Tls`]: the certificate checks of
//! each mode, the client certificate, the errors that say what to change; and the two ways
//! to use it: tokio-postgres connections ([`connect`]) and raw protocol streams
//! ([`start_tls`], for the proxy).

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::{Check, Endpoint, Error, RootCert, SslMode, Tls};

/// The stream of a tokio-postgres connection made by [`connect`] (TLS or not).
pub type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// A rustls client configuration for one server's [`Tls`] settings.
#[derive(Clone)]
pub struct Connector {
    tls: Tls,
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("tls", &self.tls).finish()
    }
}

impl Connector {
    /// Read the root and client certificates and build the client: every file problem is
    /// found here, before any connection.
    pub fn new(tls: &Tls) -> Result<Connector, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Setup(e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = match (tls.check(), &tls.root_cert) {
            (Check::Nothing, _) | (_, None) => Arc::new(Unchecked(provider.clone())),
            (check, Some(root)) => {
                let webpki = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots(root)?),
                    provider.clone(),
                )
                .build()
                .map_err(|e| Error::Setup(format!("sslrootcert {root}: {e}")))?;
                if check == Check::Full {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => {
                let chain = certs(cert, "sslcert")?;
                let key = private_key(key)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::Setup(format!(
                        "sslcert {} and sslkey do not make a usable pair ({e}); check that the key is the certificate's",
                        cert.display()
                    ))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        // PostgreSQL ignores SNI (before 18); sent anyway as libpq does (sslsni=1).
        config.enable_sni = true;
        Ok(Connector {
            tls: tls.clone(),
            config: Arc::new(config),
        })
    }

    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// The handshake on `stream` with `host` (a name or an address) as the server's name.
    async fn handshake<S>(
        &self,
        stream: S,
        host: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} cannot be a TLS server name ({e}); connect by host name or IP address"),
            )
        })?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
            .map_err(|e| explain(e, host, &self.tls))
    }
}

/// The roots of `root`.
fn roots(root: &RootCert) -> Result<rustls::RootCertStore, Error> {
    let mut store = rustls::RootCertStore::empty();
    match root {
        RootCert::File(path) => {
            for cert in certs(path, "sslrootcert")? {
                store.add(cert).map_err(|e| {
                    Error::Setup(format!(
                        "sslrootcert {} holds a certificate that cannot be a root ({e})",
                        path.display()
                    ))
                })?;
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(Error::NoSystemRoots(if why.is_empty() {
                    "none".into()
                } else {
                    why
                }));
            }
        }
    }
    Ok(store)
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = std::fs::read(path).map_err(|source| Error::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Read {
            what,
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(Error::Empty {
            what,
            path: path.to_path_buf(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

/// The key file, refused as libpq refuses it: a file of the current user with any group or
/// other access, or a file of root with more than group read.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    use std::os::unix::fs::MetadataExt;
    let read = |source| Error::Read {
        what: "sslkey",
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    let mode = meta.mode() & 0o777;
    let euid = nix::unistd::geteuid().as_raw();
    if (meta.uid() == euid && mode & 0o077 != 0) || (meta.uid() == 0 && mode & 0o037 != 0) {
        return Err(Error::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let pem = std::fs::read(path).map_err(read)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(read)?
        .ok_or_else(|| Error::Empty {
            what: "sslkey",
            path: path.to_path_buf(),
            expected: "private key",
        })
}

/// `require` without a root: any certificate, but the handshake's signatures still checked
/// (the session is encrypted to whoever holds the certificate's key).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: webpki's full check, with a wrong name forgiven. webpki checks the chain
/// first and the name last, so a name error means the chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A failed handshake, said so that the reader knows what to change.
fn explain(e: io::Error, host: &str, tls: &Tls) -> io::Error {
    let root = tls
        .root_cert
        .as_ref()
        .map_or_else(|| "(none)".to_string(), |r| r.to_string());
    let text = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                "the server's certificate is not valid for the host name {host:?} ({e}); connect by a name the certificate holds, or use sslmode=verify-ca to check the chain alone"
            ),
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => format!(
                "the server's certificate is outside its validity period ({e}); renew it on the server (or check this host's clock)"
            ),
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "the server's certificate is not signed by sslrootcert {root} ({e}); check sslrootcert or use sslmode=require"
            ),
            _ => format!(
                "the server's certificate was refused ({e}); check sslrootcert {root}, or use sslmode=require"
            ),
        },
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "the server at {host} refused the TLS handshake ({alert:?}); if it asks for a client certificate, set sslcert and sslkey to one its ssl_ca_file accepts"
        ),
        _ => format!("the TLS handshake with {host} failed: {e}"),
    };
    io::Error::new(e.kind(), text)
}

/// Connect as tokio-postgres would, with TLS as `endpoint.tls` says (module docs in
/// `lib.rs`). Errors are tokio-postgres's; a TLS failure's source says what to change.
pub async fn connect(
    endpoint: &Endpoint,
) -> Result<(Client, Connection<Socket, Stream>), tokio_postgres::Error> {
    use tokio_postgres::config::SslMode as PgMode;
    let tls = &endpoint.tls;
    let mut pg = endpoint.pg.clone();
    // libpq never uses TLS on a Unix socket; tokio-postgres would try and fail for want of a
    // host name.
    let tcp =
        !pg.get_hostaddrs().is_empty() || pg.get_hosts().iter().any(|h| matches!(h, Host::Tcp(_)));
    let mode = if tcp { tls.mode } else { SslMode::Disable };
    let make = |used: &Arc<AtomicBool>| Make {
        connector: (mode != SslMode::Disable).then(|| Connector::new(tls).map_err(Arc::new)),
        used: used.clone(),
    };
    let used = Arc::new(AtomicBool::new(false));
    match mode {
        SslMode::Disable => {
            pg.ssl_mode(PgMode::Disable);
            pg.connect(make(&used)).await
        }
        SslMode::Allow => {
            pg.ssl_mode(PgMode::Disable);
            match pg.connect(make(&used)).await {
                // The server refused the plain session (pg_hba.conf has hostssl only): again
                // with TLS, as libpq does.
                Err(e) if e.as_db_error().is_some() => {
                    pg.ssl_mode(PgMode::Require);
                    pg.connect(make(&used)).await
                }
                other => other,
            }
        }
        SslMode::Prefer => {
            pg.ssl_mode(PgMode::Prefer);
            let connected = pg.connect(make(&used)).await?;
            if !used.load(Relaxed) {
                tracing::warn!(
                    server = describe(&pg),
                    "connected without TLS: the server does not offer it (sslmode=prefer falls back to plain text); set sslmode=require or verify-full to refuse plain text"
                );
            }
            Ok(connected)
        }
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            pg.ssl_mode(PgMode::Require);
            pg.connect(make(&used)).await
        }
    }
}

fn describe(pg: &tokio_postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    format!("{host}:{}", pg.get_ports().first().copied().unwrap_or(5432))
}

/// tokio-postgres's side: one [`Connect`] per host tried.
struct Make {
    /// `None` when TLS is off (tokio-postgres asks anyway and never uses it); a setup error
    /// is reported when the handshake would start.
    connector: Option<Result<Connector, Arc<Error>>>,
    used: Arc<AtomicBool>,
}

impl MakeTlsConnect<Socket> for Make {
    type Stream = Stream;
    type TlsConnect = Connect;
    type Error = Box<dyn StdError + Send + Sync>;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Connect, Self::Error> {
        let inner = match &self.connector {
            None => None,
            Some(Err(e)) => return Err(e.to_string().into()),
            Some(Ok(c)) => {
                let mut rustls = MakeRustlsConnect::new((*c.config).clone());
                let inner = <MakeRustlsConnect as MakeTlsConnect<Socket>>::make_tls_connect(
                    &mut rustls,
                    hostname,
                )
                .map_err(|e| -> Self::Error { e.to_string().into() })?;
                Some((inner, c.tls.clone()))
            }
        };
        Ok(Connect {
            inner,
            host: hostname.to_string(),
            used: self.used.clone(),
        })
    }
}

type RustlsConnect = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;

struct Connect {
    inner: Option<(RustlsConnect, Tls)>,
    host: String,
    used: Arc<AtomicBool>,
}

impl TlsConnect<Socket> for Connect {
    type Stream = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        self.used.store(true, Relaxed);
        let host = self.host;
        match self.inner {
            None => {
                Box::pin(async { Err(io::Error::other("TLS was not set up for this connection")) })
            }
            Some((inner, tls)) => {
                let handshake = inner.connect(socket);
                Box::pin(async move { handshake.await.map_err(|e| explain(e, &host, &tls)) })
            }
        }
    }
}

/// What [`start_tls`] gives back.
pub enum Negotiated<S> {
    Plain(S),
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
}

/// Whether the plain-text fallback of `prefer` was logged already (once per process: a
/// proxy opens one upstream connection per client session).
static PREFER_FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// The protocol's TLS negotiation on a fresh TCP `stream` to `host` (the proxy's upstream):
/// SSLRequest, the server's `S` or `N`, then the handshake, as `connector`'s mode says.
/// `allow` is plain text here (the session's startup is relayed, so it cannot be retried).
pub async fn start_tls<S>(
    mut stream: S,
    host: &str,
    connector: &Connector,
) -> io::Result<Negotiated<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mode = connector.tls.mode;
    if mode <= SslMode::Allow {
        return Ok(Negotiated::Plain(stream));
    }
    // SSLRequest: length 8, code 80877103.
    let mut request = [0u8; 8];
    request[..4].copy_from_slice(&8u32.to_be_bytes());
    request[4..].copy_from_slice(&80_877_103u32.to_be_bytes());
    stream.write_all(&request).await?;
    stream.flush().await?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => Ok(Negotiated::Tls(Box::new(
            connector.handshake(stream, host).await?,
        ))),
        b'N' if mode.encrypts() => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "the server at {host} does not accept TLS (it answered N to SSLRequest) and sslmode={mode} requires it; turn ssl on in the server's configuration, or lower sslmode"
            ),
        )),
        b'N' => {
            if !PREFER_FALLBACK_LOGGED.swap(true, Relaxed) {
                tracing::warn!(
                    server = host,
                    "the upstream does not offer TLS: sessions go to it in plain text (sslmode=prefer falls back; logged once); set sslmode=require or verify-full to refuse plain text"
                );
            }
            Ok(Negotiated::Plain(stream))
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the server at {host} answered SSLRequest with byte {other:#04x} instead of S or N; is it PostgreSQL?"
            ),
        )),
    }
}
