//! The relay's two loops run side by side, then the session's end: the client told why, the
//! server session terminated.

use super::*;

impl Session<'_> {
    pub(super) async fn relay(&self, client: Client, server: Stream) -> End {
        let (client_r, mut client_w) = client.into_halves();
        let (server_r, server_w) = server.into_halves();
        let server_w = tokio::sync::Mutex::new(server_w);
        // The client's writer is the server side's alone while the relay runs (then the
        // closing's); the server's is shared: the client side forwards, the server side
        // replays.
        let end = tokio::select! {
            end = self.client_to_server(client_r, &server_w) => end,
            end = self.server_to_client(server_r, &mut client_w, &server_w) => end,
        };
        // Boxed: the closing's state is not part of every session's relay for its whole life.
        Box::pin(self.close(end, &mut client_w, &server_w)).await
    }

    /// After the relay: cancel a query a client left behind, tell the client why the session
    /// ends, terminate the server session.
    pub(super) async fn close(
        &self,
        end: End,
        client_w: &mut Writer,
        server_w: &tokio::sync::Mutex<Writer>,
    ) -> End {
        let busy = {
            let st = self.lock();
            st.busy
        };
        match &end {
            End::ClientGone => {
                // A client that left mid-query: stop its query on the server.
                if busy {
                    let s = &self.started;
                    let _ = cancel::send(
                        &self.shared.config.load_full().upstream,
                        s.server_pid,
                        &s.server_key,
                        self.shared.config.load_full().file.connect_timeout(),
                    )
                    .await;
                }
            }
            End::Terminated => {}
            End::ServerGone(e) => {
                self.shared.metrics.upstream_errors.fetch_add(1, Relaxed);
                let msg = format!("the connection to PostgreSQL was lost: {e}");
                let w = &mut *client_w;
                let _ = w
                    .write_all(&protocol::error_response(
                        "FATAL",
                        "08006",
                        &msg,
                        Some("connect again; the server may be restarting"),
                    ))
                    .await;
                let _ = w.flush().await;
            }
            End::Protocol(msg) => {
                self.shared.metrics.protocol_errors.fetch_add(1, Relaxed);
                let w = &mut *client_w;
                let _ = w
                    .write_all(&protocol::error_response("FATAL", "08P01", msg, None))
                    .await;
                let _ = w.flush().await;
            }
            End::Shutdown => {
                let w = &mut *client_w;
                let _ = w
                    .write_all(&protocol::error_response(
                        "FATAL",
                        "57P01",
                        "tandem proxy is shutting down",
                        Some("connect again"),
                    ))
                    .await;
                let _ = w.flush().await;
            }
        }
        // Terminate the server session politely.
        let mut w = server_w.lock().await;
        let _ = w.write_all(&[b'X', 0, 0, 0, 4]).await;
        let _ = w.shutdown().await;
        if busy {
            self.shared.traffic.end();
        }
        end
    }
}
