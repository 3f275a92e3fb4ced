//! Client → server: framing, where requests start and end, the hold at a transaction's
//! start, the statements a session prepares (kept for a replay), sampled reads.

use super::*;

impl Session<'_> {
    /// Client → server: frame, track requests, hold at transaction boundaries, sample reads.
    pub(super) async fn client_to_server(
        &self,
        mut rd: Reader,
        server_w: &tokio::sync::Mutex<Writer>,
    ) -> End {
        let metrics = &self.shared.metrics;
        let max = self.shared.config.load().file.max_message_bytes;
        let mut buf = buffer::quiet_buffer();
        // The last read filled its room: more is waiting.
        let mut filled = false;
        // Bytes of a large message still to stream through.
        let mut streaming = 0usize;
        // Where this side hears of the proxy's shutdown while it waits for the client.
        let mut shutdown = self.shared.shutdown.register();
        // When the last read returned, and what the request it opens waited in a hold.
        let mut read_at = timing::now();
        let mut held = std::time::Duration::ZERO;
        loop {
            // Forward what is complete.
            let mut pos = 0;
            let mut fwd = 0;
            loop {
                if streaming > 0 {
                    if buffer::stream_on(buf.len(), &mut pos, &mut streaming) {
                        break;
                    }
                    continue;
                }
                let h = match protocol::header(&buf[pos..], max) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(e) => {
                        return End::Protocol(format!("invalid message from the client: {e}"));
                    }
                };
                let complete = buf.len() - pos >= h.total();
                if !complete && h.total() <= STREAM_ABOVE {
                    buf.reserve(h.total() - (buf.len() - pos));
                    break;
                }
                // The message starts a request: wait here if a hold is on (after sending
                // what came before it).
                if self.needs_begin(h.tag) {
                    if fwd < pos {
                        if let Err(e) = server_w.lock().await.write_all(&buf[fwd..pos]).await {
                            return End::ServerGone(e.to_string());
                        }
                        self.sent();
                        fwd = pos;
                    }
                    match self.begin(server_w).await {
                        Ok(waited) => held = waited,
                        Err(e) => return e,
                    }
                }
                if h.tag == b'X' {
                    // Terminate: what came before it still runs, as it would on the server.
                    if let Err(e) = server_w.lock().await.write_all(&buf[fwd..pos]).await {
                        return End::ServerGone(e.to_string());
                    }
                    return End::Terminated;
                }
                let body = complete.then(|| &buf[pos + 5..pos + h.total()]);
                let whole = complete.then(|| &buf[pos..pos + h.total()]);
                match self.on_client_message(h.tag, body, whole, (read_at, held)) {
                    Ok(()) => held = std::time::Duration::ZERO,
                    Err(e) => return e,
                }
                if complete {
                    pos += h.total();
                } else {
                    streaming = h.total() - (buf.len() - pos);
                    pos = buf.len();
                    break;
                }
            }
            if fwd < pos {
                let n = (pos - fwd) as u64;
                if let Err(e) = server_w.lock().await.write_all(&buf[fwd..pos]).await {
                    return End::ServerGone(e.to_string());
                }
                self.sent();
                metrics.client_bytes.fetch_add(n, Relaxed);
            }
            buf.advance(pos);
            // Checked here as well as beside the read: that wait is biased to the read, so a
            // client that always has more to send would not see the deadline there.
            let stage = self.shared.shutdown.stage();
            if stage == shutdown::Stage::Closing {
                return End::Shutdown;
            }
            let draining = stage == shutdown::Stage::Draining;
            if draining && buf.is_empty() {
                let st = self.lock();
                if !st.busy && st.open.is_none() {
                    return End::Shutdown;
                }
            }
            // A client waits for the answer to what it sent: the buffer is quiet.
            buffer::quiet(&mut buf, filled);
            buffer::make_room(&mut buf, filled, 16 * 1024);
            let room = buf.capacity() - buf.len();
            // The next stage of shutdown this session has not seen yet.
            let next = if draining {
                shutdown::Stage::Closing
            } else {
                shutdown::Stage::Draining
            };
            let read = tokio::select! {
                biased;
                r = rd.read_buf(&mut buf) => r,
                stage = shutdown.reached(next) => match stage {
                    shutdown::Stage::Closing => return End::Shutdown,
                    _ => continue,
                },
            };
            match read {
                Ok(0) | Err(_) => {
                    if !buf.is_empty() || streaming > 0 {
                        // Closed in the middle of a message.
                        metrics.protocol_errors.fetch_add(1, Relaxed);
                    }
                    return End::ClientGone;
                }
                Ok(n) => {
                    filled = n >= room;
                    read_at = timing::now();
                }
            }
        }
    }

    /// What was read so far is written to the server: a timed request whose last byte went
    /// out is sent.
    fn sent(&self) {
        let mut st = self.lock();
        if st.inflight.back().is_some_and(|r| r.timed) {
            if let Some(t) = st.timing.as_mut() {
                t.sent(timing::now());
            }
        }
    }

    /// Does a message with `tag` start a request while the session is idle?
    pub(super) fn needs_begin(&self, tag: u8) -> bool {
        if matches!(tag, b'd' | b'c' | b'f' | b'X') {
            return false;
        }
        let st = self.lock();
        st.open.is_none() && (!st.busy || st.replaying)
    }

    /// Wait for a replay to finish and for any hold; then count the session busy. Returns
    /// how long it waited in a hold.
    pub(super) async fn begin(
        &self,
        server_w: &tokio::sync::Mutex<Writer>,
    ) -> Result<std::time::Duration, End> {
        loop {
            let (replaying, busy) = {
                let st = self.lock();
                (st.replaying, st.busy)
            };
            if replaying {
                // Both directions run in this one task: the server side cannot end the replay
                // between the check above and this wait, so its notification is not missed.
                let notified = self.replay_done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.lock().replaying {
                    notified.await;
                }
                continue;
            }
            let mut held = std::time::Duration::ZERO;
            if !busy {
                held = self.shared.traffic.begin().await;
                self.lock().busy = true;
                self.reprepare_after_swap(server_w).await?;
            }
            return Ok(held);
        }
    }

    /// After a swap (a newer [`Traffic`] epoch), prepare again the statements this client
    /// executes with its own Describe, before its next transaction starts: inside a
    /// transaction a `cached plan must not change result type` cannot be replayed, since the
    /// transaction is already aborted. Statements the client executes on a cached row
    /// description are left alone: it must see the error and prepare them itself.
    pub(super) async fn reprepare_after_swap(
        &self,
        server_w: &tokio::sync::Mutex<Writer>,
    ) -> Result<(), End> {
        let now = self.shared.traffic.epoch();
        if self.epoch.swap(now, Relaxed) == now {
            return Ok(());
        }
        let mut out = BytesMut::new();
        let mut n = 0u64;
        {
            let mut st = self.lock();
            if st.statements_unreliable || st.recovery != Recovery::None {
                return Ok(());
            }
            for (name, stmt) in &st.statements {
                if !name.is_empty() && stmt.own_describe && !stmt.cached {
                    protocol::reprepare(
                        &mut out,
                        name,
                        &stmt.query,
                        &stmt.types,
                        protocol::Again::Change(now),
                    );
                    n += 1;
                }
            }
            if n == 0 {
                return Ok(());
            }
            protocol::put_message(&mut out, b'S', &[]);
            st.recovery = Recovery::Proactive;
            self.recovering.store(true, Relaxed);
        }
        tracing::info!(
            statements = n,
            "a table may have changed shape: preparing this session's statements again"
        );
        self.shared.metrics.prepared_recovered.fetch_add(n, Relaxed);
        server_w
            .lock()
            .await
            .write_all(&out)
            .await
            .map_err(|e| End::ServerGone(e.to_string()))
    }

    /// Track one client message. `body` and `whole` are `None` for a message streamed
    /// through in pieces (too large to read whole). `(read, held)`: when the read that
    /// brought it returned, and what it waited in a hold (the marks of the request it opens).
    pub(super) fn on_client_message(
        &self,
        tag: u8,
        body: Option<&[u8]>,
        whole: Option<&[u8]>,
        (read, held): (u64, std::time::Duration),
    ) -> Result<(), End> {
        if matches!(tag, b'd' | b'c' | b'f') {
            return Ok(());
        }
        let mut st = self.lock();
        if tag == b'X' {
            return Err(End::ClientGone);
        }
        if st.open.is_none() {
            let idle = st.inflight.is_empty() && st.txn == b'I';
            let raw = if idle {
                Some(st.spare_raw.take().unwrap_or_default())
            } else {
                None
            };
            let timed = st.inflight.is_empty() && !st.replaying;
            if timed {
                st.timing = Some(Timing::new(read, held));
            }
            st.open = Some(Request {
                began_idle: idle,
                raw,
                timed,
                ..Request::default()
            });
        }
        let state = &mut *st;
        let req = state.open.as_mut().expect("opened above");
        if let (Some(raw), Some(whole)) = (req.raw.as_mut(), whole) {
            if raw.len() + whole.len() <= REPLAY_MAX {
                raw.extend_from_slice(whole);
            } else {
                req.raw = None;
            }
        } else {
            req.raw = None;
        }
        let bad = |e: ProtocolError| End::Protocol(format!("invalid message from the client: {e}"));
        match tag {
            b'P' => {
                req.parses = true;
                match body {
                    Some(body) => {
                        let p = protocol::parse_parse(body).map_err(bad)?;
                        // Named statements for a replay (up to a limit); the unnamed one only
                        // when its Binds may be sampled for the mirror.
                        let old = state.statements.get(p.name).map_or(0, |s| s.query.len());
                        let bytes = state.statement_bytes - old + p.query.len();
                        let keep = bytes <= STATEMENT_BYTES_MAX
                            && if p.name.is_empty() {
                                self.mirror
                            } else {
                                state.statements.len() < STATEMENTS_MAX
                                    || state.statements.contains_key(p.name)
                            };
                        if keep {
                            self.kept_statement_bytes(state, bytes);
                            state.statements.insert(
                                Arc::from(p.name),
                                Statement {
                                    query: Arc::from(p.query),
                                    types: p.types,
                                    own_describe: false,
                                    cached: false,
                                },
                            );
                        } else if let Some(gone) = state.statements.remove(p.name) {
                            // Never the text the name had before.
                            let bytes = state.statement_bytes - gone.query.len();
                            self.kept_statement_bytes(state, bytes);
                        }
                    }
                    None => state.statements_unreliable = true,
                }
            }
            b'B' => match body {
                Some(body) => {
                    // Decoded whole only when its parameters may be sampled; otherwise
                    // checked for its statement's name alone. Only a kept statement's name
                    // is kept (shared): a Bind of any other can be neither replayed nor sampled.
                    let name = if self.mirror && self.shared.mirror.wants() {
                        let b = protocol::parse_bind(body).map_err(bad)?;
                        if let Some(s) = state.statements.get(b.statement) {
                            self.shared.mirror.offer_with(&s.query, || Sample {
                                sql: s.query.clone(),
                                role: Arc::from(self.started.user.as_str()),
                                param_types: s.types.clone(),
                                params: b
                                    .params
                                    .iter()
                                    .map(|p| p.map(Bytes::copy_from_slice))
                                    .collect(),
                                param_formats: b.formats.clone(),
                            });
                        }
                        b.statement
                    } else {
                        protocol::bind_statement(body).map_err(bad)?
                    };
                    req.statement = state.statements.get_key_value(name).map(|(k, _)| k.clone());
                }
                None => req.raw = None,
            },
            b'D' => req.describes = true,
            b'E' => req.executes += 1,
            b'C' => {
                if let Some(body) = body {
                    if let Some(name) = protocol::statement_target(body).map_err(bad)? {
                        if let Some(gone) = state.statements.remove(name) {
                            let bytes = state.statement_bytes - gone.query.len();
                            self.kept_statement_bytes(state, bytes);
                        }
                    }
                }
            }
            b'Q' => {
                if let Some(body) = body {
                    if self.mirror && self.shared.mirror.wants() {
                        let mut r = protocol::Reader::new(body);
                        if let Ok(sql) = r.cstr() {
                            self.shared.mirror.offer_with(sql, || Sample {
                                sql: Arc::from(sql),
                                role: Arc::from(self.started.user.as_str()),
                                param_types: Vec::new(),
                                params: Vec::new(),
                                param_formats: Vec::new(),
                            });
                        }
                    }
                }
            }
            _ => {}
        }
        if matches!(tag, b'S' | b'Q' | b'F') {
            let req = state.open.take().expect("opened above");
            if req.executes > 0 {
                if let Some(stmt) = req
                    .statement
                    .as_deref()
                    .and_then(|n| state.statements.get_mut(n))
                {
                    if req.describes {
                        stmt.own_describe = true;
                    } else {
                        stmt.cached = true;
                    }
                }
            }
            state.inflight.push_back(req);
            self.shared.metrics.queries.fetch_add(1, Relaxed);
        }
        Ok(())
    }
}
