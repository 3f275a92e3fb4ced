//! Server → client: forwarding, ReadyForQuery and errors, the replay of a request whose
//! prepared statement changed shape.

use super::*;

impl Session<'_> {
    /// Server → client: forward, watch ReadyForQuery and errors, recover a prepared statement.
    pub(super) async fn server_to_client(
        &self,
        mut rd: Reader,
        client_w: &mut Writer,
        server_w: &tokio::sync::Mutex<Writer>,
    ) -> End {
        let metrics = &self.shared.metrics;
        let mut buf = buffer::quiet_buffer();
        let mut filled = false;
        let mut streaming = 0usize;
        // When the first bytes of the answer being forwarded were read, and the marks of a
        // timed request whose ReadyForQuery is on its way to the client.
        let mut answer_began: Option<u64> = None;
        let mut answered: Option<Timing> = None;
        loop {
            let mut pos = 0;
            let mut fwd = 0;
            let mut idle_now = false;
            let mut ready = false;
            loop {
                if streaming > 0 {
                    if buffer::stream_on(buf.len(), &mut pos, &mut streaming) {
                        break;
                    }
                    continue;
                }
                let h = match protocol::header(&buf[pos..], SERVER_MAX) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(e) => {
                        return End::ServerGone(format!("invalid message from the server: {e}"))
                    }
                };
                if buf.len() - pos < h.total() {
                    if h.total() <= STREAM_ABOVE {
                        buf.reserve(h.total() - (buf.len() - pos));
                        break;
                    }
                    // A large row or notice: stream it (never an error we need to read).
                    if h.tag == b'E' {
                        metrics.server_errors.fetch_add(1, Relaxed);
                    }
                    streaming = h.total() - (buf.len() - pos);
                    pos = buf.len();
                    break;
                }
                let body = &buf[pos + 5..pos + h.total()];
                ready |= h.tag == b'Z';
                let action = self.on_server_message(h.tag, body, &mut answered);
                match action {
                    Server::Forward => {}
                    Server::ForwardIdle => idle_now = true,
                    Server::Swallow | Server::Replay(_) => {
                        if fwd < pos {
                            if let Err(_e) = client_w.write_all(&buf[fwd..pos]).await {
                                return End::ClientGone;
                            }
                            metrics.server_bytes.fetch_add((pos - fwd) as u64, Relaxed);
                        }
                        fwd = pos + h.total();
                        if let Server::Replay(bytes) = action {
                            if let Err(e) = server_w.lock().await.write_all(&bytes).await {
                                return End::ServerGone(e.to_string());
                            }
                        }
                    }
                }
                pos += h.total();
            }
            if fwd < pos {
                if client_w.write_all(&buf[fwd..pos]).await.is_err() {
                    return End::ClientGone;
                }
                metrics.server_bytes.fetch_add((pos - fwd) as u64, Relaxed);
            }
            buf.advance(pos);
            if ready {
                if let (Some(t), Some(began)) = (answered.take(), answer_began) {
                    let slow = || self.shared.config.load().file.log_slow_requests();
                    t.finish(began, timing::now(), metrics, slow, self.started.server_pid);
                }
                // What is left belongs to the next answer, read with this one.
                answer_began = answer_began.filter(|_| !buf.is_empty());
            }
            if idle_now && self.shared.shutdown.draining() {
                return End::Shutdown;
            }
            // The session is idle (its ReadyForQuery went out): the buffer is quiet.
            if idle_now {
                buffer::quiet(&mut buf, filled);
            }
            buffer::make_room(&mut buf, filled, 32 * 1024);
            let room = buf.capacity() - buf.len();
            match rd.read_buf(&mut buf).await {
                Ok(0) => return End::ServerGone("the server closed the connection".into()),
                Err(e) => return End::ServerGone(e.to_string()),
                Ok(n) => {
                    filled = n >= room;
                    answer_began.get_or_insert_with(timing::now);
                }
            }
        }
    }

    /// Track one server message; a ReadyForQuery that ends a timed request puts its marks
    /// in `answered`.
    pub(super) fn on_server_message(
        &self,
        tag: u8,
        body: &[u8],
        answered: &mut Option<Timing>,
    ) -> Server {
        match tag {
            b'E' => {
                self.shared.metrics.server_errors.fetch_add(1, Relaxed);
                let mut st = self.lock();
                if st.recovery == Recovery::Proactive {
                    // A statement that no longer prepares: the client will hear it when it
                    // uses the statement.
                    tracing::debug!(error = ?protocol::error_fields(body), "preparing a statement again failed");
                    return Server::Swallow;
                }
                if st.recovery == Recovery::None
                    && !self.bound.load(Relaxed)
                    && protocol::sqlstate(body) == Some("0A000")
                    && !st.statements_unreliable
                    && st.open.is_none()
                    && st.inflight.len() == 1
                    && st.inflight[0].replayable()
                    && st.inflight[0]
                        .statement
                        .as_ref()
                        .is_some_and(|s| st.statements.contains_key(s))
                {
                    st.recovery = Recovery::SkipToReady;
                    st.inflight[0].replayed = true;
                    self.recovering.store(true, Relaxed);
                    st.replaying = true;
                    tracing::info!(
                        statement = st.inflight[0].statement.as_deref().unwrap_or_default(),
                        "prepared statement's result type changed: preparing it again and replaying the request"
                    );
                    return Server::Swallow;
                }
                if let Recovery::Swallow(_) = st.recovery {
                    // The re-Parse failed: the client sees that error, and nothing is hidden.
                    st.recovery = Recovery::None;
                    self.recovering.store(false, Relaxed);
                }
                Server::Forward
            }
            b'2' => {
                self.bound.store(true, Relaxed);
                if self.recovering.load(Relaxed) && self.lock().recovery == Recovery::SkipToReady {
                    return Server::Swallow;
                }
                Server::Forward
            }
            b'Z' => {
                let status = body.first().copied().unwrap_or(b'I');
                self.bound.store(false, Relaxed);
                let mut st = self.lock();
                if st.recovery == Recovery::Proactive {
                    // Our own Sync's answer: the client's request follows.
                    st.recovery = Recovery::None;
                    self.recovering.store(false, Relaxed);
                    return Server::Swallow;
                }
                if st.recovery == Recovery::SkipToReady {
                    let req = &st.inflight[0];
                    let name = req.statement.clone().unwrap_or_else(|| Arc::from(""));
                    let Some(stmt) = st.statements.get(&name).cloned() else {
                        // Checked when the error came and nothing changes the map until the
                        // replay ends; should it happen, the client gets this ReadyForQuery
                        // (the error is gone: better a missing error than a hung session).
                        st.recovery = Recovery::None;
                        self.recovering.store(false, Relaxed);
                        st.replaying = false;
                        st.inflight.pop_front();
                        st.txn = status;
                        drop(st);
                        self.replay_done.notify_waiters();
                        return Server::Forward;
                    };
                    let mut out = BytesMut::new();
                    // The counter's value before: unique in the process.
                    let n = self.shared.metrics.prepared_recovered.fetch_add(1, Relaxed);
                    protocol::reprepare(
                        &mut out,
                        &name,
                        &stmt.query,
                        &stmt.types,
                        protocol::Again::Error(n),
                    );
                    out.extend_from_slice(req.raw.as_deref().unwrap_or_default());
                    st.recovery = Recovery::Swallow(2);
                    return Server::Replay(out);
                }
                st.recovery = Recovery::None;
                self.recovering.store(false, Relaxed);
                if let Some(req) = st.inflight.pop_front() {
                    if req.timed {
                        *answered = st.timing.take();
                    }
                    if let Some(mut raw) = req.raw {
                        if raw.capacity() <= REPLAY_MAX {
                            raw.clear();
                            st.spare_raw = Some(raw);
                        }
                    }
                }
                st.txn = status;
                let was_replaying = std::mem::replace(&mut st.replaying, false);
                let idle = status == b'I' && st.inflight.is_empty() && st.open.is_none();
                let end = idle && std::mem::replace(&mut st.busy, false);
                drop(st);
                if end {
                    self.shared.traffic.end();
                }
                if was_replaying {
                    self.replay_done.notify_waiters();
                }
                if idle {
                    Server::ForwardIdle
                } else {
                    Server::Forward
                }
            }
            b'3' | b'1' => {
                let mut st = self.lock();
                if st.recovery == Recovery::Proactive {
                    return Server::Swallow;
                }
                if let Recovery::Swallow(n) = st.recovery {
                    st.recovery = if n > 1 {
                        Recovery::Swallow(n - 1)
                    } else {
                        Recovery::None
                    };
                    self.recovering.store(n > 1, Relaxed);
                    return Server::Swallow;
                }
                Server::Forward
            }
            // Rows and the like: a lock only while a replay is under way.
            _ if !self.recovering.load(Relaxed) => Server::Forward,
            _ => {
                let st = self.lock();
                match st.recovery {
                    Recovery::SkipToReady => Server::Swallow,
                    // Notifications, notices and parameter changes are the client's.
                    Recovery::Proactive if !matches!(tag, b'A' | b'N' | b'S') => Server::Swallow,
                    _ => Server::Forward,
                }
            }
        }
    }
}

pub(super) enum Server {
    Forward,
    /// Forwarded; the session is idle now.
    ForwardIdle,
    Swallow,
    /// Swallow this ReadyForQuery and send these bytes to the server.
    Replay(BytesMut),
}
