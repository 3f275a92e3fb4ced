//! The proxy as a pass-through, against a real PostgreSQL 15: what a client sees through it
//! must be what it would see without it (queries, pipelines, COPY, notices and notifications,
//! errors and rollbacks, cancels, protocol negotiation, TLS), plus what only a proxy adds:
//! its own cancel keys, an error instead of a hang when the server is away, the prepared
//! statement recovered across a type change, and a graceful shutdown.
//!
//! Each test runs the proxy in-process (`proxy::serve` on a 127.0.0.1:0 listener) in front of
//! a database of its own, and connects with tokio-postgres (SCRAM end to end) or with the raw
//! client of `common` where a driver cannot produce the bytes.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use fixtures::pg::{Cluster, TestDb};
use futures_util::{SinkExt, TryStreamExt};
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;
use tokio_postgres::config::{ChannelBinding, SslMode};
use tokio_postgres::{AsyncMessage, NoTls, SimpleQueryMessage};
use tokio_rustls::rustls;

async fn setup(name: &str) -> (TestDb, Target, Running) {
    let db = TestDb::new(name).await;
    let target = Target::from_config(&db.tcp_config());
    let proxy = Running::start(target.upstream(), file_config()).await;
    (db, target, proxy)
}

fn simple_rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_and_extended_queries_errors_and_rollback_pass_through() {
    within(async {
        let (_db, target, proxy) = setup("proxy_simple_extended").await;
        let mut c = connect(&target.via(proxy.addr)).await;

        let msgs = c
            .client
            .simple_query("SELECT 1 AS one, NULL::text AS nothing; SELECT generate_series(1, 3)")
            .await
            .unwrap();
        let rows = simple_rows(&msgs);
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), None],
                vec![Some("1".into())],
                vec![Some("2".into())],
                vec![Some("3".into())]
            ]
        );

        let row = c
            .client
            .query_one(
                "SELECT $1::int8 * 2, $2::text || '!', $3::bytea",
                &[&21i64, &"hé", &vec![0u8, 255, 7]],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 42);
        assert_eq!(row.get::<_, String>(1), "hé!");
        assert_eq!(row.get::<_, Vec<u8>>(2), vec![0u8, 255, 7]);

        // A named statement, reused: Bind/Execute/Sync only.
        let st = c.client.prepare("SELECT $1::int4 + 1").await.unwrap();
        for i in 0..50i32 {
            assert_eq!(
                c.client
                    .query_one(&st, &[&i])
                    .await
                    .unwrap()
                    .get::<_, i32>(0),
                i + 1
            );
        }

        // An error ends the request, not the session.
        let e = c.client.query("SELECT 1 / 0", &[]).await.unwrap_err();
        assert_eq!(code(&e), Some("22012"), "{e}");
        let e = c.client.simple_query("SELEC 1").await.unwrap_err();
        assert_eq!(code(&e), Some("42601"), "{e}");
        assert_eq!(
            c.client
                .query_one("SELECT 7", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            7
        );

        // Rollback undoes, commit keeps, an error inside a transaction aborts it.
        c.client
            .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
            .await
            .unwrap();
        let tx = c.client.transaction().await.unwrap();
        tx.execute("INSERT INTO t VALUES (1, 'rolled back')", &[])
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        let tx = c.client.transaction().await.unwrap();
        tx.execute("INSERT INTO t VALUES (2, 'kept')", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        c.client
            .batch_execute("BEGIN; INSERT INTO t VALUES (3, 'x')")
            .await
            .unwrap();
        let e = c
            .client
            .batch_execute("INSERT INTO t VALUES (2, 'dup')")
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some("23505"), "{e}");
        let e = c.client.batch_execute("SELECT 1").await.unwrap_err();
        assert_eq!(code(&e), Some("25P02"), "the transaction is aborted: {e}");
        c.client.batch_execute("ROLLBACK").await.unwrap();
        let rows = c
            .client
            .query("SELECT id, v FROM t ORDER BY id", &[])
            .await
            .unwrap();
        let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(got, vec![(2, "kept".to_string())]);

        let m = &proxy.metrics;
        assert!(
            m.queries.load(Relaxed) >= 60,
            "queries counted: {}",
            m.queries.load(Relaxed)
        );
        assert!(m.server_errors.load(Relaxed) >= 4);
        assert!(m.client_bytes.load(Relaxed) > 0 && m.server_bytes.load(Relaxed) > 0);
        assert_eq!(m.protocol_errors.load(Relaxed), 0);
        assert_eq!(m.connections_active.load(Relaxed), 1);
    })
    .await;
}

/// tokio-postgres sends every request of concurrently polled futures without waiting for
/// answers: the proxy must keep them apart and in order. 500 inserts and 500 reads in one
/// pipeline; a lost or doubled insert breaks the sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_of_extended_queries_keeps_every_answer_in_order() {
    within(async {
        let (_db, target, proxy) = setup("proxy_pipeline").await;
        let c = connect(&target.via(proxy.addr)).await;
        c.client
            .batch_execute("CREATE TABLE p (id int PRIMARY KEY)")
            .await
            .unwrap();
        let insert = c.client.prepare("INSERT INTO p VALUES ($1)").await.unwrap();
        let echo = c
            .client
            .prepare("SELECT $1::int4 * 2, repeat('y', $1::int4)")
            .await
            .unwrap();
        let before = proxy.metrics.queries.load(Relaxed);

        let client = &c.client;
        let (insert, echo) = (&insert, &echo);
        let writes = futures_util::future::join_all(
            (1..=500i32).map(|i| async move { client.execute(insert, &[&i]).await }),
        );
        let reads = futures_util::future::join_all(
            (1..=500i32).map(|i| async move { (i, client.query_one(echo, &[&i]).await) }),
        );
        let (writes, reads) = tokio::join!(writes, reads);
        for w in writes {
            assert_eq!(w.unwrap(), 1);
        }
        for (i, r) in reads {
            let r = r.unwrap();
            assert_eq!(r.get::<_, i32>(0), 2 * i);
            assert_eq!(r.get::<_, String>(1).len(), i as usize);
        }
        let row = c
            .client
            .query_one("SELECT count(*), sum(id) FROM p", &[])
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, i64>(1)),
            (500, 500 * 501 / 2)
        );
        let counted = proxy.metrics.queries.load(Relaxed) - before;
        assert!(
            counted >= 1000,
            "every request of the pipeline is a request: {counted}"
        );
    })
    .await;
}

/// One series of the proxy's metrics text, by its full name and labels.
fn metric(proxy: &Running, series: &str) -> f64 {
    let text = proxy.metrics.render();
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line[series.len() + 1..].parse().unwrap()
}

/// Each request sent with nothing else in flight is timed in three stages, and a slow one's
/// time is where it was spent: a `pg_sleep` in the server's stage, not the proxy's. Requests
/// of a pipeline overlap one another and are not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_timed_by_stage_and_a_slow_one_is_the_servers() {
    within(async {
        let (_db, target, proxy) = setup("proxy_stages").await;
        let c = connect(&target.via(proxy.addr)).await;
        let total = r#"tandem_proxy_request_stage_seconds_count{stage="total"}"#;
        let before = metric(&proxy, total);
        for _ in 0..20 {
            c.client.simple_query("SELECT 1").await.unwrap();
        }
        // The proxy counts a request once its ReadyForQuery is written, which the client may
        // read first.
        eventually("20 requests timed", || {
            metric(&proxy, total) - before >= 20.0
        })
        .await;
        assert_eq!(metric(&proxy, total) - before, 20.0);
        for stage in ["in", "server", "out"] {
            let count = format!(r#"tandem_proxy_request_stage_seconds_count{{stage="{stage}"}}"#);
            assert_eq!(metric(&proxy, &count), metric(&proxy, total), "{stage}");
        }

        c.client.simple_query("SELECT pg_sleep(0.2)").await.unwrap();
        eventually("the sleep timed", || metric(&proxy, total) - before >= 21.0).await;
        let max = |stage: &str| {
            metric(
                &proxy,
                &format!(r#"tandem_proxy_request_stage_max_seconds{{stage="{stage}"}}"#),
            )
        };
        assert!(max("server") >= 0.2, "server {}", max("server"));
        assert!(max("total") >= max("server"));
        assert!(
            max("in") < 0.1 && max("out") < 0.1,
            "{} {}",
            max("in"),
            max("out")
        );
        // The sleep is in the 0.25 s bucket of the server's stage, above the 0.1 s one.
        let bucket = |le: &str| {
            metric(
                &proxy,
                &format!(
                    r#"tandem_proxy_request_stage_seconds_bucket{{stage="server",le="{le}"}}"#
                ),
            )
        };
        assert_eq!(bucket("0.25") - bucket("0.1"), 1.0);

        // A pipeline of 100 (a Parse and a Bind request each): only a request that found
        // nothing in flight is timed.
        let before = metric(&proxy, total);
        let requests_before = proxy.metrics.queries.load(Relaxed);
        let client = &c.client;
        let answers = futures_util::future::join_all(
            (0..100i32).map(|i| async move { client.query_one("SELECT $1::int4", &[&i]).await }),
        )
        .await;
        assert!(answers.into_iter().all(|a| a.is_ok()));
        // Each query's statement is closed (Close, Sync) as it ends: the last answers may still
        // be on their way, and the proxy counts a request after its answer is written.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let timed = metric(&proxy, total) - before;
        let requests = (proxy.metrics.queries.load(Relaxed) - requests_before) as f64;
        assert!(requests >= 300.0, "prepare, execute, close: {requests}");
        assert!(
            timed < requests / 2.0,
            "{timed} of {requests} pipelined requests timed"
        );

        // The workers' lag probe woke every 10 ms or so meanwhile.
        assert!(metric(&proxy, "tandem_proxy_worker_lag_seconds_count") >= 10.0);
    })
    .await;
}

/// COPY in both directions, in small CopyData messages and in one larger than the size the
/// proxy streams through instead of buffering; the text comes back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_and_to_stdout_round_trip() {
    within(async {
        let (_db, target, proxy) = setup("proxy_copy").await;
        let c = connect(&target.via(proxy.addr)).await;
        c.client
            .batch_execute("CREATE TABLE c (id int PRIMARY KEY, s text)")
            .await
            .unwrap();
        let mut data = String::new();
        for i in 1..=20_000 {
            if i % 100 == 0 {
                data.push_str(&format!("{i}\t\\N\n"));
            } else {
                data.push_str(&format!("{i}\trow {i} café a\\tb \\\\ {}\n", "z".repeat(i % 37)));
            }
        }
        let half = data.len() / 2;
        let half = data[..half].rfind('\n').unwrap() + 1;
        assert!(data.len() - half > proxy::session::STREAM_ABOVE, "the second half streams through");

        let sink = c.client.copy_in("COPY c (id, s) FROM STDIN").await.unwrap();
        futures_util::pin_mut!(sink);
        for chunk in data.as_bytes()[..half].chunks(1000) {
            sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        sink.send(Bytes::copy_from_slice(&data.as_bytes()[half..])).await.unwrap();
        assert_eq!(sink.finish().await.unwrap(), 20_000);

        let row = c
            .client
            .query_one("SELECT count(*), count(s), sum(id) FROM c WHERE s IS NULL OR s LIKE 'row % café a' || chr(9) || 'b \\\\ %'", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 20_000);
        assert_eq!(row.get::<_, i64>(1), 19_800);
        assert_eq!(row.get::<_, i64>(2), 20_000 * 20_001 / 2);

        let out = c
            .client
            .copy_out("COPY (SELECT id, s FROM c ORDER BY id) TO STDOUT")
            .await
            .unwrap();
        let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
        let text: Vec<u8> = chunks.concat();
        assert_eq!(text.len(), data.len());
        assert!(text == data.as_bytes(), "COPY TO gives back what COPY FROM was given");

        // A failed COPY FROM (bad data) is an error; the session goes on.
        let sink = c.client.copy_in("COPY c (id, s) FROM STDIN").await.unwrap();
        futures_util::pin_mut!(sink);
        sink.send(Bytes::from_static(b"not a number\tx\n")).await.unwrap();
        let e = sink.finish().await.unwrap_err();
        assert_eq!(code(&e), Some("22P02"), "{e}");
        assert_eq!(c.client.query_one("SELECT count(*) FROM c", &[]).await.unwrap().get::<_, i64>(0), 20_000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_and_notifications_reach_proxied_clients() {
    within(async {
        let (_db, target, proxy) = setup("proxy_notify").await;
        let mut a = connect(&target.via(proxy.addr)).await;
        let b = connect(&target.via(proxy.addr)).await;

        a.client
            .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$")
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(5), a.messages.recv()).await {
            Ok(Some(AsyncMessage::Notice(n))) => {
                assert_eq!(n.message(), "hello 42");
                assert_eq!(n.code().code(), "00000");
            }
            other => panic!("expected the notice, got {other:?}"),
        }

        a.client.batch_execute("LISTEN proxy_chan").await.unwrap();
        let b_pid: i32 = b
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        for i in 0..3 {
            let payload = format!("payload-{i}");
            b.client
                .execute("SELECT pg_notify('proxy_chan', $1)", &[&payload])
                .await
                .unwrap();
            // `a` is idle: the notification arrives on its own, between requests.
            match tokio::time::timeout(Duration::from_secs(5), a.messages.recv()).await {
                Ok(Some(AsyncMessage::Notification(n))) => {
                    assert_eq!(n.channel(), "proxy_chan");
                    assert_eq!(n.payload(), payload);
                    assert_eq!(n.process_id(), b_pid);
                }
                other => panic!("expected notification {i}, got {other:?}"),
            }
        }
        // A notification sent inside a transaction arrives at its commit only.
        b.client
            .batch_execute("BEGIN; SELECT pg_notify('proxy_chan', 'late')")
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), a.messages.recv())
                .await
                .is_err(),
            "nothing before the commit"
        );
        b.client.batch_execute("COMMIT").await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), a.messages.recv()).await {
            Ok(Some(AsyncMessage::Notification(n))) => assert_eq!(n.payload(), "late"),
            other => panic!("expected the committed notification, got {other:?}"),
        }
    })
    .await;
}

/// Values larger than the proxy's stream-through size, in both directions, and many rows.
/// (The memory bound on a 100 MB value is in tests/memory.rs, alone in its process.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_and_many_rows_pass_through_intact() {
    within(async {
        let (_db, target, proxy) = setup("proxy_large").await;
        let c = connect(&target.via(proxy.addr)).await;

        const MB5: usize = 5 << 20;
        let rows = c
            .client
            .query(
                "SELECT i, repeat(chr(64 + i), $1) FROM generate_series(1, 4) i ORDER BY i",
                &[&(MB5 as i32)],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 4);
        for row in &rows {
            let i: i32 = row.get(0);
            let v: &str = row.get(1);
            assert_eq!(v.len(), MB5);
            let want = (64 + i as u8) as char;
            assert!(
                v.chars().all(|ch| ch == want),
                "row {i} holds only {want:?}"
            );
        }

        // Client → server: a 12 MB bytea parameter, checked by its hash on the server.
        let value: Vec<u8> = (0..12u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let want = {
            use sha2::Digest;
            sha2::Sha256::digest(&value).to_vec()
        };
        c.client
            .batch_execute("CREATE TABLE blob (b bytea)")
            .await
            .unwrap();
        c.client
            .execute("INSERT INTO blob VALUES ($1)", &[&value])
            .await
            .unwrap();
        let got: Vec<u8> = c
            .client
            .query_one("SELECT sha256(b) FROM blob", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(got, want);
        let back: Vec<u8> = c
            .client
            .query_one("SELECT b FROM blob", &[])
            .await
            .unwrap()
            .get(0);
        assert!(back == value, "the value comes back unchanged");

        let row_count = 200_000i32;
        let rows = c
            .client
            .query(
                "SELECT i, md5(i::text) FROM generate_series(1, $1) i",
                &[&row_count],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), row_count as usize);
        let sum: i64 = rows.iter().map(|r| i64::from(r.get::<_, i32>(0))).sum();
        assert_eq!(sum, i64::from(row_count) * i64::from(row_count + 1) / 2);
        assert!(rows.iter().all(|r| r.get::<_, &str>(1).len() == 32));
        assert_eq!(proxy.metrics.protocol_errors.load(Relaxed), 0);
    })
    .await;
}

/// Wait until backend `pid` runs a query matching `like` (or, with `active == false`, until it
/// no longer does); returns how long that took.
async fn wait_activity(
    admin: &tokio_postgres::Client,
    pid: i32,
    like: &str,
    active: bool,
    limit: Duration,
) -> Duration {
    let t0 = Instant::now();
    loop {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE $2",
                &[&pid, &like],
            )
            .await
            .unwrap()
            .get(0);
        if (n > 0) == active {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "backend {pid}: still {} running {like:?} after {limit:?}",
            if active { "not" } else { "" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_its_own_backend_and_no_other() {
    within(async {
        let (_db, target, proxy) = setup("proxy_cancel").await;
        let admin = connect(&target.direct()).await;
        let a = Arc::new(connect(&target.via(proxy.addr)).await);
        let b = Arc::new(connect(&target.via(proxy.addr)).await);
        let a_pid: i32 = a
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let b_pid: i32 = b
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let sleep = |c: Arc<Conn>| {
            tokio::spawn(async move {
                let t0 = Instant::now();
                let r = c
                    .client
                    .simple_query("SELECT pg_sleep(30) /* proxy cancel */")
                    .await;
                (r.map(|_| ()), t0.elapsed())
            })
        };
        let a_sleep = sleep(a.clone());
        let b_sleep = sleep(b.clone());
        let limit = Duration::from_secs(10);
        wait_activity(&admin.client, a_pid, "%proxy cancel%", true, limit).await;
        wait_activity(&admin.client, b_pid, "%proxy cancel%", true, limit).await;

        let t0 = Instant::now();
        a.client.cancel_token().cancel_query(NoTls).await.unwrap();
        let (r, _) = a_sleep.await.unwrap();
        let took = t0.elapsed();
        let e = r.unwrap_err();
        assert_eq!(code(&e), Some("57014"), "{e}");
        assert!(took < Duration::from_secs(2), "cancelled in {took:?}");
        // The other session sleeps on.
        tokio::time::sleep(Duration::from_millis(300)).await;
        wait_activity(&admin.client, b_pid, "%proxy cancel%", true, Duration::ZERO).await;
        assert!(!b_sleep.is_finished());
        assert_eq!(
            a.client
                .query_one("SELECT 1", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            1
        );

        // A cancel with a wrong key does nothing.
        {
            let mut raw = Raw::connect(proxy.addr).await;
            raw.send(&proxy::protocol::cancel_request(1, &[1, 2, 3, 4]))
                .await;
            assert!(raw.until_closed().await.is_empty());
            tokio::time::sleep(Duration::from_millis(200)).await;
            wait_activity(&admin.client, b_pid, "%proxy cancel%", true, Duration::ZERO).await;
        }

        b.client.cancel_token().cancel_query(NoTls).await.unwrap();
        let (r, _) = b_sleep.await.unwrap();
        assert_eq!(code(&r.unwrap_err()), Some("57014"));
        assert_eq!(proxy.metrics.cancels.load(Relaxed), 2);
    })
    .await;
}

/// A client that goes away mid-query must not leave its query running on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_query_has_its_query_cancelled() {
    within(async {
        let (_db, target, proxy) = setup("proxy_disconnect").await;
        let admin = connect(&target.direct()).await;
        let c = connect(&target.via(proxy.addr)).await;
        let pid: i32 = c
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let Conn { client, task, .. } = c;
        let client = Arc::new(client);
        let running = {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .simple_query("SELECT pg_sleep(30) /* proxy gone */")
                    .await
            })
        };
        wait_activity(
            &admin.client,
            pid,
            "%proxy gone%",
            true,
            Duration::from_secs(10),
        )
        .await;
        // Drop the socket: the connection task owns it.
        task.abort();
        let t0 = Instant::now();
        wait_activity(
            &admin.client,
            pid,
            "%proxy gone%",
            false,
            Duration::from_secs(2),
        )
        .await;
        let took = t0.elapsed();
        assert!(running.await.unwrap().is_err());
        eventually("the session ends", || {
            proxy.metrics.connections_active.load(Relaxed) == 0
        })
        .await;
        eprintln!("query stopped {took:?} after the client left");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_an_error_not_a_hang() {
    within(async {
        let target = Target {
            port: {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            },
            user: "postgres".into(),
            dbname: "postgres".into(),
            password: b"unused".to_vec(),
        };
        let proxy = Running::start(target.upstream(), file_config()).await;
        for _ in 0..2 {
            let t0 = Instant::now();
            let e = try_connect(&target.via(proxy.addr))
                .await
                .err()
                .expect("no server, no session");
            let took = t0.elapsed();
            assert_eq!(code(&e), Some("08006"), "{e}");
            assert!(took < Duration::from_secs(2), "answered in {took:?}");
            let msg = e.as_db_error().unwrap().message().to_string();
            assert!(msg.contains(&format!("127.0.0.1:{}", target.port)), "{msg}");
        }
        assert_eq!(proxy.metrics.upstream_errors.load(Relaxed), 2);
        assert_eq!(proxy.metrics.protocol_errors.load(Relaxed), 0);
    })
    .await;
}

/// An upstream that accepts the connection and then says nothing (a hung server, a
/// half-open load balancer): the client must get an error within the connect timeout, as
/// when nothing listens, and the metrics must blame the upstream, not the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_is_an_error_not_a_hang() {
    within(async {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target {
            port: silent.local_addr().unwrap().port(),
            user: "postgres".into(),
            dbname: "postgres".into(),
            password: b"unused".to_vec(),
        };
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let file = proxy::config::FileConfig {
            connect_timeout_ms: 500,
            startup_timeout_ms: 3_000,
            ..file_config()
        };
        let proxy = Running::start(target.upstream(), file).await;
        let t0 = Instant::now();
        let e = try_connect(&target.via(proxy.addr))
            .await
            .err()
            .expect("no answer, no session");
        let took = t0.elapsed();
        hold.abort();
        assert_eq!(
            code(&e),
            Some("08006"),
            "an ErrorResponse, not a closed socket: {e} after {took:?}"
        );
        assert!(took < Duration::from_secs(2), "answered in {took:?}");
        assert_eq!(
            proxy.metrics.protocol_errors.load(Relaxed),
            0,
            "the client did nothing wrong"
        );
        assert_eq!(proxy.metrics.upstream_errors.load(Relaxed), 1);
    })
    .await;
}

/// `pg_ctl restart -m fast` on a cluster of the test's own, as the user owning its files.
fn restart(cluster: &Cluster) {
    use std::os::unix::fs::MetadataExt;
    let bin =
        std::env::var("TANDEM_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let pg_ctl = std::path::Path::new(&bin).join("pg_ctl");
    let data = cluster.data_dir();
    let owner = std::fs::metadata(data).expect("data dir").uid();
    let me = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    let mut cmd = if owner == me {
        std::process::Command::new(&pg_ctl)
    } else {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
        c
    };
    cmd.arg("-D")
        .arg(data)
        .args(["-m", "fast", "-w", "-t", "60", "-s", "restart"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let status = cmd.status().expect("pg_ctl runs");
    assert!(status.success(), "pg_ctl restart: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_ends_sessions_with_an_error_and_new_ones_work_after() {
    within(async {
        let cluster = tokio::task::spawn_blocking(Cluster::start_throwaway)
            .await
            .unwrap()
            .expect("a throwaway cluster starts");
        let target = Target::from_config(&cluster.tcp_config("postgres"));
        let proxy = Running::start(target.upstream(), file_config()).await;
        let c = connect(&target.via(proxy.addr)).await;
        assert_eq!(
            c.client
                .query_one("SELECT 1", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            1
        );
        // A raw session too: it keeps its socket open, so the proxy sees the server leave
        // first (tokio-postgres closes on the server's FATAL, racing the proxy).
        let mut raw = Raw::connect(proxy.addr).await;
        raw.login(&target, 0, &[]).await;

        let cluster = Arc::new(cluster);
        {
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || restart(&cluster))
                .await
                .unwrap();
        }
        let e = c
            .client
            .simple_query("SELECT 1")
            .await
            .expect_err("the session is gone");
        eprintln!("after the restart: {e}");
        let ended = tokio::time::timeout(Duration::from_secs(2), c.task)
            .await
            .expect("the connection ends")
            .unwrap();
        let e = ended.expect_err("it ends with the server's error");
        assert!(
            matches!(code(&e), Some("57P01") | Some("08006")),
            "the client is told the server went away: {e}"
        );
        let told = raw.until_closed().await;
        assert_eq!(
            tags(&told),
            "EE",
            "the server's FATAL, then the proxy's: {told:?}"
        );
        assert_eq!(told[0].sqlstate(), Some("57P01"));
        assert_eq!(told[1].sqlstate(), Some("08006"));
        // New sessions work as soon as the server is back (pg_ctl -w waited for it).
        let c2 = connect(&target.via(proxy.addr)).await;
        assert_eq!(
            c2.client
                .query_one("SELECT 2", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            2
        );
        assert!(proxy.metrics.upstream_errors.load(Relaxed) >= 1);
        drop(c2);
        drop(proxy);
        tokio::task::spawn_blocking(move || drop(cluster))
            .await
            .unwrap();
    })
    .await;
}

/// A client asking for protocol 3.2 with a `_pq_.` option: the server (15) answers
/// NegotiateProtocolVersion and the proxy passes it on; the session works. The client's
/// BackendKeyData is the proxy's own, not the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_negotiation_passes_through_and_cancel_keys_are_the_proxys() {
    within(async {
        let (_db, target, proxy) = setup("proxy_negotiate").await;
        for (minor, extra) in [(2u16, vec![("_pq_.tandem_test", "on")]), (0, vec![])] {
            let mut raw = Raw::connect(proxy.addr).await;
            let seen = raw.login(&target, minor, &extra).await;
            let v: Vec<&Msg> = seen.iter().filter(|m| m.tag == b'v').collect();
            if minor == 2 {
                assert_eq!(v.len(), 1, "NegotiateProtocolVersion: {}", tags(&seen));
                let body = &v[0].body;
                // PostgreSQL sends its newest version whole (3 << 16 | minor): 3.0.
                assert_eq!(
                    i32::from_be_bytes(body[..4].try_into().unwrap()),
                    3 << 16,
                    "the server speaks 3.0"
                );
                assert_eq!(
                    i32::from_be_bytes(body[4..8].try_into().unwrap()),
                    1,
                    "one option unrecognised"
                );
                assert_eq!(&body[8..], b"_pq_.tandem_test\0");
            } else {
                assert!(v.is_empty(), "{}", tags(&seen));
            }
            let keys: Vec<&Msg> = seen.iter().filter(|m| m.tag == b'K').collect();
            assert_eq!(keys.len(), 1);
            let (pid, key) = proxy::protocol::parse_backend_key(&keys[0].body).unwrap();
            assert_eq!(key.len(), 4, "a 3.0 server's key length is kept");
            let rows = data_rows(&raw.query("SELECT pg_backend_pid(), 'works'").await);
            let backend: u32 = rows[0][0].as_deref().unwrap().parse().unwrap();
            assert_eq!(rows[0][1].as_deref(), Some("works"));
            assert_ne!(pid, backend, "the client must not see the server's pid");
            raw.send(&[b'X', 0, 0, 0, 4]).await;
            assert!(raw.until_closed().await.is_empty());
        }
    })
    .await;
}

struct Tls {
    _dir: tempfile::TempDir,
    cert: rustls::pki_types::CertificateDer<'static>,
    file: proxy::config::FileConfig,
}

fn tls_files() -> Tls {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("a self-signed certificate");
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("proxy.crt");
    let key = dir.path().join("proxy.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    Tls {
        cert: ck.cert.der().clone(),
        file: proxy::config::FileConfig {
            tls_cert: Some(cert),
            tls_key: Some(key),
            ..file_config()
        },
        _dir: dir,
    }
}

fn client_tls(cert: &rustls::pki_types::CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The SASL mechanisms of an AuthenticationSASL body.
fn mechanisms(body: &[u8]) -> Vec<String> {
    body[4..]
        .split(|b| *b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_terminated_at_the_proxy_and_scram_works_over_it() {
    within(async {
        let db = TestDb::new("proxy_tls").await;
        let target = Target::from_config(&db.tcp_config());
        let tls = tls_files();
        let proxy = Running::start(target.upstream(), tls.file.clone()).await;
        let plain = Running::start(target.upstream(), file_config()).await;

        // tokio-postgres over rustls, sslmode=require, SCRAM, channel_binding=prefer.
        let mut config = target.via(proxy.addr);
        config
            .ssl_mode(SslMode::Require)
            .channel_binding(ChannelBinding::Prefer);
        let make = tokio_postgres_rustls::MakeRustlsConnect::new(client_tls(&tls.cert));
        let c = try_connect_tls(&config, make.clone())
            .await
            .expect("TLS + SCRAM through the proxy");
        let row = c
            .client
            .query_one("SELECT $1::text || ' over TLS'", &[&"works"])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "works over TLS");
        drop(c);
        // Channel binding cannot work end to end through a terminating proxy: a client that
        // requires it is refused (no -PLUS mechanism is offered), it does not hang.
        config.channel_binding(ChannelBinding::Require);
        let e = try_connect_tls(&config, make.clone())
            .await
            .err()
            .expect("channel binding cannot be had");
        eprintln!("channel_binding=require: {e}");
        // sslmode=require against a proxy without a certificate fails.
        let mut config = target.via(plain.addr);
        config.ssl_mode(SslMode::Require);
        assert!(try_connect_tls(&config, make).await.is_err());

        // Raw: SSLRequest is answered 'S' with a certificate, 'N' without; GSSENCRequest 'N'.
        let mut ssl = BytesMut::new();
        frontend::ssl_request(&mut ssl);
        let gss = [0u8, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
        let mut raw = Raw::connect(plain.addr).await;
        raw.send(&ssl).await;
        assert_eq!(raw.byte().await, b'N');
        raw.login(&target, 0, &[]).await;
        assert_eq!(
            data_rows(&raw.query("SELECT 'plain'").await),
            vec![vec![Some("plain".to_string())]]
        );

        let mut raw = Raw::connect(proxy.addr).await;
        raw.send(&gss).await;
        assert_eq!(raw.byte().await, b'N');
        raw.send(&ssl).await;
        assert_eq!(raw.byte().await, b'S');
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(&tls.cert)));
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let stream = connector
            .connect(name, raw.stream)
            .await
            .expect("TLS handshake");
        let mut raw = Raw::new(stream);
        let seen = raw.login(&target, 0, &[]).await;
        let sasl = seen
            .iter()
            .find(|m| m.tag == b'R' && m.body[..4] == 10i32.to_be_bytes())
            .expect("AuthenticationSASL");
        let mechs = mechanisms(&sasl.body);
        assert!(mechs.iter().any(|m| m == "SCRAM-SHA-256"), "{mechs:?}");
        assert!(!mechs.iter().any(|m| m.ends_with("-PLUS")), "{mechs:?}");
        assert_eq!(
            data_rows(&raw.query("SELECT 'tls'").await),
            vec![vec![Some("tls".to_string())]]
        );
        raw.stream.shutdown().await.ok();
    })
    .await;
}

/// Bind + Describe(portal) + Execute + Sync for statement `name` with one text parameter.
fn bind_describe_execute(name: &str, param: &str) -> BytesMut {
    let mut out = BytesMut::new();
    frontend::bind(
        "",
        name,
        [0i16],
        [param],
        |p, buf| {
            buf.extend_from_slice(p.as_bytes());
            Ok(postgres_protocol::IsNull::No)
        },
        [0i16],
        &mut out,
    )
    .map_err(|_| "bind")
    .unwrap();
    frontend::describe(b'P', "", &mut out).unwrap();
    frontend::execute("", 0, &mut out).unwrap();
    frontend::sync(&mut out);
    out
}

/// The type OIDs of a RowDescription body.
fn row_types(body: &[u8]) -> Vec<u32> {
    let n = i16::from_be_bytes([body[0], body[1]]) as usize;
    let mut rest = &body[2..];
    let mut out = Vec::new();
    for _ in 0..n {
        let end = rest.iter().position(|b| *b == 0).unwrap();
        rest = &rest[end + 1..];
        out.push(u32::from_be_bytes(rest[6..10].try_into().unwrap()));
        rest = &rest[18..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_survives_a_column_type_change_only_when_it_is_safe() {
    within(async {
        let (_db, target, proxy) = setup("proxy_prepared").await;
        let admin = connect(&target.direct()).await;
        admin
            .client
            .batch_execute(
                "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 10), (2, 20);
                 CREATE TABLE u (id int PRIMARY KEY, v int); INSERT INTO u VALUES (1, 10), (2, 20);",
            )
            .await
            .unwrap();

        // tokio-postgres: Bind/Execute/Sync with no Describe. Its cached row description
        // would be wrong, so the proxy must let the 0A000 through.
        let c = connect(&target.via(proxy.addr)).await;
        let st = c.client.prepare("SELECT id, v FROM t WHERE id = $1").await.unwrap();
        let row = c.client.query_one(&st, &[&1i32]).await.unwrap();
        assert_eq!(row.get::<_, i32>(1), 10);
        admin.client.batch_execute("ALTER TABLE t ALTER COLUMN v TYPE bigint").await.unwrap();
        let e = c.client.query_one(&st, &[&1i32]).await.unwrap_err();
        assert_eq!(code(&e), Some("0A000"), "{e}");
        let row = c.client.query_one("SELECT id, v FROM t WHERE id = 2", &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(1), 20, "the session goes on");
        assert_eq!(proxy.metrics.prepared_recovered.load(Relaxed), 0);

        // A client that describes its portal (libpq, pgbench -M prepared): recovered.
        let mut raw = Raw::connect(proxy.addr).await;
        raw.login(&target, 0, &[]).await;
        let mut parse = BytesMut::new();
        frontend::parse("s1", "SELECT id, v FROM u WHERE id = $1", [23u32], &mut parse).unwrap();
        frontend::sync(&mut parse);
        raw.send(&parse).await;
        assert_eq!(tags(&raw.until_ready().await), "1Z");
        raw.send(&bind_describe_execute("s1", "1")).await;
        let first = raw.until_ready().await;
        assert_eq!(tags(&first), "2TDCZ");
        assert_eq!(row_types(&first[1].body), vec![23, 23]);

        admin.client.batch_execute("ALTER TABLE u ALTER COLUMN v TYPE bigint").await.unwrap();
        raw.send(&bind_describe_execute("s1", "1")).await;
        let again = raw.until_ready().await;
        assert_eq!(tags(&again), "2TDCZ", "no error, the new row shape: {again:?}");
        assert_eq!(row_types(&again[1].body), vec![23, 20]);
        assert_eq!(data_rows(&again), vec![vec![Some("1".to_string()), Some("10".to_string())]]);
        assert_eq!(again.last().unwrap().body[..], *b"I");
        assert_eq!(proxy.metrics.prepared_recovered.load(Relaxed), 1);
        // The re-prepared statement keeps working.
        raw.send(&bind_describe_execute("s1", "2")).await;
        let next = raw.until_ready().await;
        assert_eq!(tags(&next), "2TDCZ");
        assert_eq!(data_rows(&next), vec![vec![Some("2".to_string()), Some("20".to_string())]]);

        // Inside an explicit transaction nothing is hidden.
        assert_eq!(tags(&raw.query("BEGIN").await), "CZ");
        admin.client.batch_execute("ALTER TABLE u ALTER COLUMN v TYPE numeric").await.unwrap();
        raw.send(&bind_describe_execute("s1", "1")).await;
        let failed = raw.until_ready().await;
        assert_eq!(tags(&failed), "EZ", "{failed:?}");
        assert_eq!(failed[0].sqlstate(), Some("0A000"));
        assert_eq!(failed[1].body[..], *b"E", "the transaction is aborted");
        assert_eq!(tags(&raw.query("ROLLBACK").await), "CZ");
        assert_eq!(proxy.metrics.prepared_recovered.load(Relaxed), 1);

        // Outside a transaction again the same statement is recovered again.
        raw.send(&bind_describe_execute("s1", "2")).await;
        let recovered = raw.until_ready().await;
        assert_eq!(tags(&recovered), "2TDCZ", "{recovered:?}");
        assert_eq!(row_types(&recovered[1].body), vec![23, 1700]);
        assert_eq!(proxy.metrics.prepared_recovered.load(Relaxed), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_transactions_finish_and_closes_idle_sessions() {
    within(async {
        let db = TestDb::new("proxy_shutdown").await;
        let target = Target::from_config(&db.tcp_config());
        let file = proxy::config::FileConfig {
            shutdown_timeout_ms: 10_000,
            ..file_config()
        };
        let mut proxy = Running::start(target.upstream(), file).await;
        let busy = connect(&target.via(proxy.addr)).await;
        let idle = connect(&target.via(proxy.addr)).await;
        busy.client
            .batch_execute("CREATE TABLE s (id int)")
            .await
            .unwrap();
        busy.client
            .batch_execute("BEGIN; INSERT INTO s VALUES (1)")
            .await
            .unwrap();
        // A simple query: a prepared one would leave tokio-postgres sending a Close when its
        // statement drops, which could cross the proxy's closing message.
        assert_eq!(
            simple_rows(&idle.client.simple_query("SELECT 1").await.unwrap()),
            vec![vec![Some("1".to_string())]]
        );

        proxy.shutdown();
        // The idle session is closed, with 57P01.
        let Conn {
            client: idle_client,
            task: idle_task,
            ..
        } = idle;
        let ended = tokio::time::timeout(Duration::from_secs(2), idle_task)
            .await
            .expect("the idle session is closed promptly")
            .unwrap();
        let e = ended.expect_err("closed with an error");
        assert_eq!(code(&e), Some("57P01"), "{e}");
        drop(idle_client);
        // New connections are refused.
        let t0 = Instant::now();
        loop {
            match tokio::net::TcpStream::connect(proxy.addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                other => {
                    assert!(
                        t0.elapsed() < Duration::from_secs(1),
                        "still accepting: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        assert!(!proxy.is_finished(), "a transaction is still open");
        // The transaction finishes and commits.
        busy.client
            .batch_execute("INSERT INTO s VALUES (2)")
            .await
            .unwrap();
        busy.client.batch_execute("COMMIT").await.unwrap();
        let t0 = Instant::now();
        tokio::time::timeout(Duration::from_secs(3), proxy.join())
            .await
            .expect("serve returns once the sessions are done, long before the deadline")
            .unwrap();
        eprintln!("serve returned {:?} after the last commit", t0.elapsed());
        let admin = connect(&target.direct()).await;
        let n: i64 = admin
            .client
            .query_one("SELECT count(*) FROM s", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2, "both inserts committed");
        assert!(
            busy.client.simple_query("SELECT 1").await.is_err(),
            "the session closed after its commit"
        );
    })
    .await;
}

/// A 0A000 raised while the statement *executes* (here by a function) is not the type-change
/// error the proxy recovers from: the server already sent BindComplete and RowDescription and
/// ran the function. The client must see exactly what PostgreSQL sent, once, and the function
/// must run once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feature_not_supported_error_raised_at_execute_is_passed_on_not_replayed() {
    within(async {
        let (_db, target, proxy) = setup("proxy_0a000_execute").await;
        let admin = connect(&target.direct()).await;
        admin
            .client
            .batch_execute(
                "CREATE SEQUENCE calls;
                 CREATE FUNCTION unsupported(x int) RETURNS int LANGUAGE plpgsql AS $$
                 BEGIN PERFORM nextval('calls'); RAISE EXCEPTION 'not here' USING ERRCODE = 'feature_not_supported'; END $$;",
            )
            .await
            .unwrap();
        let mut raw = Raw::connect(proxy.addr).await;
        raw.login(&target, 0, &[]).await;
        let mut parse = BytesMut::new();
        frontend::parse("s2", "SELECT unsupported($1)", [23u32], &mut parse).unwrap();
        frontend::sync(&mut parse);
        raw.send(&parse).await;
        assert_eq!(tags(&raw.until_ready().await), "1Z");
        raw.send(&bind_describe_execute("s2", "1")).await;
        let answer = tokio::time::timeout(Duration::from_secs(3), raw.until_ready()).await;
        let calls: i64 = admin
            .client
            .query_one("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM calls", &[])
            .await
            .unwrap()
            .get(0);
        let recovered = proxy.metrics.prepared_recovered.load(Relaxed);
        let answer = answer.unwrap_or_else(|_| {
            panic!("no ReadyForQuery within 3 s; the function ran {calls} times, prepared_recovered = {recovered}")
        });
        assert_eq!(tags(&answer), "2TEZ", "{answer:?}");
        assert_eq!(answer[2].sqlstate(), Some("0A000"));
        assert_eq!(calls, 1, "the function ran once");
        assert_eq!(recovered, 0);
    })
    .await;
}

/// A client may send its last request and Terminate in one write and close (fire and
/// forget). PostgreSQL runs the request, then ends the session: through the proxy too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_together_with_terminate_still_runs() {
    within(async {
        let (_db, target, proxy) = setup("proxy_query_then_terminate").await;
        let admin = connect(&target.direct()).await;
        admin
            .client
            .batch_execute("CREATE TABLE fire (id int)")
            .await
            .unwrap();
        let mut raw = Raw::connect(proxy.addr).await;
        raw.login(&target, 0, &[]).await;
        let mut out = BytesMut::new();
        frontend::query("INSERT INTO fire VALUES (1)", &mut out).unwrap();
        frontend::terminate(&mut out);
        raw.send(&out).await;
        let answer = raw.until_closed().await;
        eprintln!("answer before close: {}", tags(&answer));
        let t0 = Instant::now();
        loop {
            let n: i64 = admin
                .client
                .query_one("SELECT count(*) FROM fire", &[])
                .await
                .unwrap()
                .get(0);
            if n == 1 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "the INSERT sent before Terminate never ran"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failures_reach_the_client_as_the_server_sent_them() {
    within(async {
        let (_db, target, proxy) = setup("proxy_auth_failure").await;
        let mut wrong = target.via(proxy.addr);
        wrong.password("not the password");
        let e = try_connect(&wrong)
            .await
            .err()
            .expect("a wrong password is refused");
        assert_eq!(code(&e), Some("28P01"), "{e}");
        let mut missing = target.via(proxy.addr);
        missing.dbname("no_such_database_here");
        let e = try_connect(&missing)
            .await
            .err()
            .expect("a missing database is refused");
        assert_eq!(code(&e), Some("3D000"), "{e}");
        // The proxy is fine afterwards.
        let c = connect(&target.via(proxy.addr)).await;
        assert_eq!(
            c.client
                .query_one("SELECT 3", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            3
        );
        assert_eq!(proxy.metrics.protocol_errors.load(Relaxed), 0);
        eventually("failed sessions end", || {
            proxy.metrics.connections_active.load(Relaxed) == 1
        })
        .await;
    })
    .await;
}

/// A proxy whose shutdown deadline is 300 ms, and a session through it.
async fn with_a_short_deadline(name: &str) -> (TestDb, Target, Running, Conn) {
    let (db, target, _) = setup(name).await;
    let file = proxy::config::FileConfig {
        shutdown_timeout_ms: 300,
        ..file_config()
    };
    let proxy = Running::start(target.upstream(), file).await;
    let c = connect(&target.via(proxy.addr)).await;
    (db, target, proxy, c)
}

/// `query`'s one bigint, on a direct connection.
async fn count(target: &Target, query: &str) -> i64 {
    let admin = connect(&target.direct()).await;
    admin.client.query_one(query, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_shutdown_deadline_open_transactions_are_closed() {
    within(async {
        let (_db, target, mut proxy, c) = with_a_short_deadline("proxy_shutdown_deadline").await;
        c.client
            .batch_execute("CREATE TABLE d (id int)")
            .await
            .unwrap();
        c.client
            .batch_execute("BEGIN; INSERT INTO d VALUES (1)")
            .await
            .unwrap();
        let t0 = Instant::now();
        proxy.shutdown();
        let Conn { client, task, .. } = c;
        let ended = tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("closed at the deadline")
            .unwrap();
        let e = ended.expect_err("with an error");
        assert_eq!(code(&e), Some("57P01"), "{e}");
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(2),
            "closed after {took:?}"
        );
        tokio::time::timeout(Duration::from_secs(3), proxy.join())
            .await
            .expect("serve returns after the deadline")
            .unwrap();
        drop(client);
        let n = count(&target, "SELECT count(*) FROM d").await;
        assert_eq!(n, 0, "the unfinished transaction rolled back");
    })
    .await;
}

/// A client that never stops sending (a COPY the server ingests slower than it comes, so
/// the client's socket always has more) is closed at the deadline too: the wait beside the
/// read prefers the read, so the deadline is also checked between reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_shutdown_deadline_a_client_that_never_stops_sending_is_closed() {
    within(async {
        let (_db, target, mut proxy, c) = with_a_short_deadline("proxy_shutdown_streaming").await;
        c.client
            .batch_execute("CREATE TABLE s (id int, pad text)")
            .await
            .unwrap();
        let sink = c.client.copy_in("COPY s FROM STDIN").await.unwrap();
        futures_util::pin_mut!(sink);
        let rows: String = (0..2_000)
            .map(|i| format!("{i}\t{}\n", "x".repeat(100)))
            .collect();
        let chunk = Bytes::from(rows);
        // Under way before the shutdown.
        for _ in 0..20 {
            sink.send(chunk.clone()).await.unwrap();
        }
        let t0 = Instant::now();
        proxy.shutdown();
        let sent = async {
            loop {
                if let Err(e) = sink.send(chunk.clone()).await {
                    return e;
                }
            }
        };
        let e = tokio::time::timeout(Duration::from_secs(5), sent)
            .await
            .expect("the streaming session was closed at the deadline");
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(4),
            "closed after {took:?}: {e}"
        );
        tokio::time::timeout(Duration::from_secs(5), proxy.join())
            .await
            .expect("serve returns after the deadline")
            .unwrap();
        drop(c);
        let n = count(&target, "SELECT count(*) FROM s").await;
        assert_eq!(n, 0, "the unfinished COPY rolled back");
    })
    .await;
}
