//! A session's startup: SSL negotiation, the startup packet, the server's authentication
//! relayed message by message, the proxy's own BackendKeyData.

use super::*;

/// A connection in startup, counted in `connections_starting` until dropped.
pub(super) struct Starting<'a>(pub(super) &'a std::sync::atomic::AtomicI64);

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Negotiate SSL, read the startup packet, connect upstream, relay authentication. `None`
/// when the connection was a cancel request or was refused (the client was told).
pub(super) async fn startup(
    shared: &Shared,
    socket: TcpStream,
) -> io::Result<Option<(Client, Stream, Started)>> {
    let mut client = ClientStream::Plain(socket);
    let mut ssl_done = false;
    let packet = loop {
        let packet = match read_startup(&mut client).await {
            Ok(p) => p,
            // A connection closed before its first byte (a load balancer's health check) is
            // not a protocol error.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => return Err(e),
            Err(e) => {
                shared.metrics.protocol_errors.fetch_add(1, Relaxed);
                let msg = format!("invalid startup packet: {e}");
                if e.kind() == io::ErrorKind::InvalidData {
                    let _ = client
                        .write_all(&protocol::error_response("FATAL", "08P01", &msg, None))
                        .await;
                }
                return Err(e);
            }
        };
        match protocol::parse_startup(&packet) {
            Ok(Startup::Ssl) if !ssl_done => {
                ssl_done = true;
                match (shared.tls.load_full(), client) {
                    (Some(tls), ClientStream::Plain(mut s)) => {
                        s.write_all(b"S").await?;
                        let tls = tls.accept(s).await?;
                        client = ClientStream::Tls(Box::new(tls));
                    }
                    (_, mut c) => {
                        c.write_all(b"N").await?;
                        client = c;
                    }
                }
            }
            Ok(Startup::GssEnc) if !ssl_done => {
                client.write_all(b"N").await?;
            }
            Ok(Startup::Cancel { pid, key }) => {
                match shared.cancels.lookup(pid, &key) {
                    Some((server_pid, server_key)) => {
                        shared.metrics.cancels.fetch_add(1, Relaxed);
                        if let Err(e) = cancel::send(
                            &shared.config.load_full().upstream,
                            server_pid,
                            &server_key,
                            shared.config.load_full().file.connect_timeout(),
                        )
                        .await
                        {
                            tracing::warn!(error = %e, "could not send a cancel request to the server");
                        }
                    }
                    None => tracing::debug!("cancel request for an unknown session ignored"),
                }
                return Ok(None);
            }
            Ok(s @ Startup::Startup { .. }) => break s,
            Ok(_) => {
                shared.metrics.protocol_errors.fetch_add(1, Relaxed);
                return refuse(&mut client, "08P01", "unexpected negotiation request", None).await;
            }
            Err(e) => {
                shared.metrics.protocol_errors.fetch_add(1, Relaxed);
                let hint = matches!(e, ProtocolError::Version { .. })
                    .then_some("tandem proxy speaks protocol 3.x, as PostgreSQL does");
                return refuse(
                    &mut client,
                    "08P01",
                    &format!("invalid startup packet: {e}"),
                    hint,
                )
                .await;
            }
        }
    };
    let user = packet.param("user").unwrap_or_default().to_string();
    let database = packet.param("database").unwrap_or(&user).to_string();
    if shared.shutdown.draining() {
        shared.metrics.connections_refused.fetch_add(1, Relaxed);
        return refuse(
            &mut client,
            "57P01",
            "tandem proxy is shutting down",
            Some("connect again: another proxy or this one after its restart will answer"),
        )
        .await;
    }
    let config = shared.config.load_full();
    let upstream = &config.upstream;
    let mut server = match upstream.connect(config.file.connect_timeout()).await {
        Ok(s) => s,
        Err(e) => {
            shared.metrics.upstream_errors.fetch_add(1, Relaxed);
            tracing::warn!(upstream = upstream.describe(), error = %e, "cannot reach the upstream");
            let msg = format!(
                "tandem proxy cannot reach PostgreSQL at {}: {e}",
                upstream.describe()
            );
            return refuse(&mut client, "08006", &msg, Some("check that the server is running and accepting connections, then connect again")).await;
        }
    };
    let Startup::Startup { raw, .. } = &packet else {
        unreachable!("the loop breaks with a startup packet only")
    };
    server.write_all(raw).await?;
    // Relay authentication until ReadyForQuery.
    let mut buf = BytesMut::with_capacity(4096);
    let mut server_key = None;
    let mut proxy_pid = 0;
    let mut first = true;
    loop {
        // The server's first answer must come within connect_timeout: an upstream that
        // accepts and says nothing is as down as one that refuses.
        let wait = if first {
            shared.config.load_full().file.connect_timeout()
        } else {
            shared.config.load_full().file.startup_timeout()
        };
        first = false;
        let read = match tokio::time::timeout(wait, read_message(&mut server, &mut buf, SERVER_MAX))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {} ms", wait.as_millis()),
            )),
        };
        let (tag, body) = match read {
            Ok(m) => m,
            Err(e) => {
                shared.metrics.upstream_errors.fetch_add(1, Relaxed);
                tracing::warn!(upstream = shared.config.load_full().upstream.describe(), error = %e, "the upstream failed during startup");
                let msg = format!(
                    "PostgreSQL at {} failed during startup: {e}",
                    shared.config.load_full().upstream.describe()
                );
                return refuse(
                    &mut client,
                    "08006",
                    &msg,
                    Some("connect again; if it persists, look at the server's log"),
                )
                .await;
            }
        };
        let mut out = BytesMut::new();
        match tag {
            b'R' => {
                let code = protocol::auth_code(&body).unwrap_or(-1);
                if code == 10 {
                    let filtered =
                        protocol::sasl_without_plus(&body).unwrap_or_else(|_| body.to_vec());
                    protocol::put_message(&mut out, b'R', &filtered);
                } else {
                    protocol::put_message(&mut out, b'R', &body);
                }
                client.write_all(&out).await?;
                // Requests that need an answer: cleartext, md5, GSS, SSPI, SASL, SASL continue.
                if matches!(code, 3 | 5 | 7 | 8 | 9 | 10 | 11) {
                    let mut cbuf = BytesMut::with_capacity(1024);
                    let (ctag, cbody) = match read_message(&mut client, &mut cbuf, 64 * 1024).await
                    {
                        Ok(m) => m,
                        Err(e) => return Err(e),
                    };
                    if ctag != b'p' {
                        shared.metrics.protocol_errors.fetch_add(1, Relaxed);
                        return refuse(
                            &mut client,
                            "08P01",
                            "expected an authentication response",
                            None,
                        )
                        .await;
                    }
                    // TLS on both sides: the server offers SCRAM-SHA-256-PLUS, which the
                    // client was not shown (its binding would be to the proxy's TLS session);
                    // a client able to bind says `y` ("the server cannot"), which the server
                    // takes for a downgrade. Say why and what to do, instead of its error.
                    if code == 10
                        && matches!(client, ClientStream::Tls(_))
                        && matches!(server, Stream::Tls(_))
                        && protocol::sasl_claims_no_server_binding(&cbody)
                    {
                        return refuse(
                            &mut client,
                            "28000",
                            "SCRAM channel binding cannot pass through tandem proxy: the client's TLS session ends at the proxy and the server's TLS session starts there, so the server would take this login for a downgrade",
                            Some("set channel_binding=disable in the client's connection settings (SCRAM still keeps the password off the wire and TLS to the proxy still encrypts the session), or connect to the proxy without TLS over loopback"),
                        )
                        .await;
                    }
                    let mut m = BytesMut::new();
                    protocol::put_message(&mut m, b'p', &cbody);
                    server.write_all(&m).await?;
                }
            }
            b'K' => {
                let (pid, key) = match protocol::parse_backend_key(&body) {
                    Ok(k) => k,
                    Err(_) => {
                        return refuse(
                            &mut client,
                            "08P01",
                            "the server sent an invalid BackendKeyData",
                            None,
                        )
                        .await
                    }
                };
                let (ppid, pkey) = shared.cancels.register(pid, key.clone());
                proxy_pid = ppid;
                server_key = Some((pid, key));
                client
                    .write_all(&protocol::backend_key_data(ppid, &pkey))
                    .await?;
            }
            b'E' => {
                protocol::put_message(&mut out, b'E', &body);
                client.write_all(&out).await?;
                if proxy_pid != 0 {
                    shared.cancels.unregister(proxy_pid);
                }
                return Ok(None);
            }
            b'Z' => {
                protocol::put_message(&mut out, b'Z', &body);
                client.write_all(&out).await?;
                break;
            }
            // ParameterStatus, NegotiateProtocolVersion, NoticeResponse: as they are.
            _ => {
                protocol::put_message(&mut out, tag, &body);
                client.write_all(&out).await?;
            }
        }
    }
    let Some((server_pid, server_key)) = server_key else {
        return refuse(
            &mut client,
            "08P01",
            "the server sent no BackendKeyData",
            None,
        )
        .await;
    };
    Ok(Some((
        client,
        server,
        Started {
            user,
            database,
            proxy_pid,
            server_pid,
            server_key,
        },
    )))
}

/// Tell the client why it is refused, and end.
pub(super) async fn refuse(
    client: &mut Client,
    code: &str,
    message: &str,
    hint: Option<&str>,
) -> io::Result<Option<(Client, Stream, Started)>> {
    let _ = client
        .write_all(&protocol::error_response("FATAL", code, message, hint))
        .await;
    let _ = client.flush().await;
    Ok(None)
}

/// Read a whole startup packet (length first, at most [`protocol::MAX_STARTUP`] bytes).
pub(super) async fn read_startup(client: &mut Client) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    if client.read(&mut len[..1]).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "closed before sending anything",
        ));
    }
    client.read_exact(&mut len[1..]).await?;
    let n = protocol::startup_length(&len)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        .unwrap_or(0);
    let mut packet = vec![0u8; n];
    packet[..4].copy_from_slice(&len);
    client.read_exact(&mut packet[4..]).await?;
    Ok(packet)
}

/// Read one whole tagged message (used during startup only).
pub(super) async fn read_message<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> io::Result<(u8, Bytes)> {
    loop {
        if let Some(h) =
            protocol::header(buf, max).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        {
            if buf.len() >= h.total() {
                let mut m = buf.split_to(h.total());
                m.advance(5);
                return Ok((h.tag, m.freeze()));
            }
            buf.reserve(h.total() - buf.len());
        }
        if s.read_buf(buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
    }
}
