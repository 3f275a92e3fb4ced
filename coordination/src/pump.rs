//! The LISTEN pump: a tokio-postgres connection only delivers notifications to whoever polls
//! it, so a task drives it and forwards each payload; the session waits on [`Pump::notes`].

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Connection, Socket};

/// A connection's notifications, as they come. Closed when the connection ends; the task
/// stops when the pump is dropped.
pub struct Pump {
    /// Each notification's payload, in order.
    pub notes: mpsc::UnboundedReceiver<String>,
    task: JoinHandle<()>,
}

impl Pump {
    /// Drive `connection` (from [`pgtls::connect`]) on a task of its own.
    pub fn start(mut connection: Connection<Socket, pgtls::Stream>) -> Pump {
        let (tx, notes) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_string()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            // Dropping `tx` tells the session the connection is gone.
        });
        Pump { notes, task }
    }

    /// `pgtls::connect(endpoint)` with a pump on the connection.
    pub async fn connect(
        endpoint: &pgtls::Endpoint,
    ) -> Result<(tokio_postgres::Client, Pump), tokio_postgres::Error> {
        let (client, connection) = pgtls::connect(endpoint).await?;
        Ok((client, Pump::start(connection)))
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.task.abort();
    }
}
