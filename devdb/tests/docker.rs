//! The Docker dev database against the machine's real Docker daemon: images built from
//! Debian's packages when missing (the first run takes a minute or two per version), real
//! containers, real connections.

use std::process::Command;
use std::time::Instant;

use devdb::docker::{self, DevContainer, PgMajor};
use tokio_postgres::NoTls;

fn fail(e: &(dyn std::error::Error + 'static)) -> ! {
    panic!("{}", devdb::chain(e))
}

async fn start(major: PgMajor) -> DevContainer {
    let t = Instant::now();
    let dev = docker::start(major).await.unwrap_or_else(|e| fail(&e));
    eprintln!("docker::start({major}) took {:?}", t.elapsed());
    dev
}

async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config.connect(NoTls).await.unwrap_or_else(|e| fail(&e));
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection ended: {e}");
        }
    });
    client
}

/// `docker ps -a` lines for the container `id` (empty once it is removed).
fn docker_ps(id: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-a", "--no-trunc", "--quiet", "--filter"])
        .arg(format!("id={id}"))
        .output()
        .unwrap_or_else(|e| fail(&e));
    assert!(
        out.status.success(),
        "docker ps failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Start `major`, check it is that version, runs without fsync and keeps what is written; then
/// drop it and check the container is gone.
async fn check(major: PgMajor) {
    let dev = start(major).await;
    assert_eq!(dev.major(), major);
    let id = dev.id().to_owned();
    assert_eq!(docker_ps(&id), id, "the running container is listed");

    let client = connect(dev.config()).await;
    let num: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap_or_else(|e| fail(&e))
        .get(0);
    let num: u32 = num.parse().unwrap_or_else(|e| fail(&e));
    assert_eq!(num / 10000, major.number(), "server_version_num {num}");
    let fsync: String = client
        .query_one("SHOW fsync", &[])
        .await
        .unwrap_or_else(|e| fail(&e))
        .get(0);
    assert_eq!(fsync, "off");

    client
        .batch_execute(
            "CREATE TABLE account (id bigint PRIMARY KEY, owner text NOT NULL);
             INSERT INTO account VALUES (1, 'ada'), (2, 'grace');",
        )
        .await
        .unwrap_or_else(|e| fail(&e));
    let owners: Vec<String> = client
        .query("SELECT owner FROM account ORDER BY id", &[])
        .await
        .unwrap_or_else(|e| fail(&e))
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(owners, ["ada", "grace"]);
    drop(client);

    drop(dev);
    assert_eq!(
        docker_ps(&id),
        "",
        "container {id} is still there after drop"
    );
}

#[tokio::test]
async fn postgres_15_serves_a_fresh_cluster_and_is_removed_on_drop() {
    check(PgMajor::V15).await;
}

#[tokio::test]
async fn postgres_17_serves_a_fresh_cluster_and_is_removed_on_drop() {
    check(PgMajor::V17).await;
}

/// Authentication is really on: a connection with another password is refused.
#[tokio::test]
async fn a_wrong_password_is_refused() {
    let dev = start(PgMajor::V15).await;
    let mut wrong = dev.config().clone();
    wrong.password("not-the-password");
    match wrong.connect(NoTls).await {
        Ok(_) => panic!("connected with a wrong password"),
        Err(e) => assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
            "{}",
            devdb::chain(&e)
        ),
    }
    connect(dev.config()).await;
}

/// The password reaches the container as a file, never in its environment or command line,
/// which `docker inspect` shows to anyone with access to the daemon.
#[tokio::test]
async fn the_password_is_not_in_docker_inspect() {
    let dev = start(PgMajor::V15).await;
    let password = match dev.config().get_password() {
        Some(p) => String::from_utf8_lossy(p).into_owned(),
        None => panic!("the config has no password"),
    };
    let out = Command::new("docker")
        .args(["inspect", dev.id()])
        .output()
        .unwrap_or_else(|e| fail(&e));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect = String::from_utf8_lossy(&out.stdout);
    assert!(
        inspect.contains(dev.id()),
        "docker inspect shows the container"
    );
    assert!(
        !inspect.contains(&password),
        "the password is in docker inspect"
    );
}

/// Regression: testcontainers removes a container from its `Drop`, which panics outside a
/// tokio runtime; a `DevContainer` outliving its runtime must still be removed.
#[test]
fn a_container_dropped_outside_a_runtime_is_removed() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&e));
    let dev = runtime.block_on(start(PgMajor::V15));
    drop(runtime);
    let id = dev.id().to_owned();
    drop(dev);
    assert_eq!(
        docker_ps(&id),
        "",
        "container {id} is still there after drop"
    );
}
