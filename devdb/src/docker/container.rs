//! A throwaway PostgreSQL server in a Docker container (`--dev docker`): started from the dev
//! image, reachable only from this machine, and removed when dropped.

use std::time::{Duration, Instant};

use rand::distributions::Alphanumeric;
use rand::Rng;
use testcontainers::core::IntoContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, CopyTargetOptions, GenericImage, ImageExt};
use tokio::io::AsyncBufReadExt;
use tokio_postgres::NoTls;

use super::error::{tail, DockerError};
use super::image::{ensure_with, tag, PgMajor, REPOSITORY};

/// Where the entrypoint (`entrypoint.sh`) reads the superuser password, once, before deleting
/// it.
const SECRET_PATH: &str = "/run/secrets/tandem-superuser-password";
/// The server's port inside the container.
const PG_PORT: u16 = 5432;
/// The line the server logs once it accepts connections.
const READY_MESSAGE: &str = "database system is ready to accept connections";
/// How long the server gets, from the container's start, to log [`READY_MESSAGE`] and then to
/// accept a connection.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many lines of the container's log an error shows.
const LOG_TAIL_LINES: usize = 30;
/// Every container this module starts carries this label (value: the major version), so that
/// `docker ps --filter label=tandem.dev-database` finds leftovers.
const CONTAINER_LABEL: &str = "tandem.dev-database";
/// And this one, naming the process that started it ([`crate::owner::this_process`]): the
/// next start removes the containers of processes that are gone.
const OWNER_LABEL: &str = "tandem.owner";

/// A running dev database: a fresh cluster in a container of `tandem-dev-postgres:<major>`.
///
/// The server listens on a random port of 127.0.0.1 only, with password authentication
/// (scram-sha-256) for the superuser `postgres`, whose random password only [`config`]
/// knows. Durability is off (fsync, synchronous_commit and full_page_writes): nothing in it
/// outlives the container.
///
/// Dropping it removes the container. testcontainers does that (there is no reaper container
/// in testcontainers-rs, so nothing needs pulling); setting `TESTCONTAINERS_COMMAND=keep`
/// keeps it for debugging. A process that is killed leaves its container running; the next
/// [`start`] on the machine removes it ([`sweep`]).
///
/// [`config`]: DevContainer::config
pub struct DevContainer {
    /// `None` only while being dropped.
    container: Option<ContainerAsync<GenericImage>>,
    config: tokio_postgres::Config,
    major: PgMajor,
    id: String,
}

impl DevContainer {
    /// How to connect: 127.0.0.1, the mapped port, user and database `postgres`, the password.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The PostgreSQL major version the container runs.
    pub fn major(&self) -> PgMajor {
        self.major
    }

    /// The container's id, as `docker ps` shows it (in full).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for DevContainer {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevContainer")
            .field("id", &self.id)
            .field("major", &self.major)
            .field("port", &self.config.get_ports())
            .finish_non_exhaustive()
    }
}

impl Drop for DevContainer {
    fn drop(&mut self) {
        let Some(container) = self.container.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(container);
            return;
        }
        // testcontainers removes the container from its own Drop, which needs a tokio runtime
        // to be current (it panics otherwise); outside one, lend it a throwaway runtime.
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                let _entered = runtime.enter();
                drop(container);
            }
            Err(e) => {
                tracing::warn!(
                    "cannot remove dev container {} (no tokio runtime: {e}): remove it with \
                     `docker rm -f {}`",
                    self.id,
                    self.id
                );
                std::mem::forget(container);
            }
        }
    }
}

/// Start a dev database of `major`, building its image first if it is missing (a minute or so,
/// once; see [`super::image::build`]), and wait until it accepts connections.
///
/// The superuser password is generated here and handed to the container as a file copied in
/// before it starts, so it appears in no environment variable, command line or `docker
/// inspect` output.
pub async fn start(major: PgMajor) -> Result<DevContainer, DockerError> {
    ensure_with(major, &|line: &str| tracing::info!("{line}")).await?;
    sweep().await;

    let tag = tag(major);
    let password: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let started = Instant::now();
    let request = GenericImage::new(REPOSITORY.to_owned(), major.to_string())
        .with_exposed_port(PG_PORT.tcp())
        .with_copy_to(
            CopyTargetOptions::new(SECRET_PATH).with_mode(0o600),
            format!("{password}\n").into_bytes(),
        )
        .with_label(CONTAINER_LABEL, major.to_string())
        .with_label(OWNER_LABEL, crate::owner::this_process())
        .with_host_config_modifier(publish_on_loopback_only)
        .with_startup_timeout(Duration::from_secs(60));
    let container = request
        .start()
        .await
        .map_err(|e| DockerError::StartFailed {
            tag: tag.clone(),
            reason: "Docker could not create or start it".into(),
            log_tail: "(none: it never ran)".into(),
            source: Some(Box::new(e)),
        })?;
    let id = container.id().to_owned();

    // The log first: a server that exits at once takes its port mapping with it, and "it
    // exited" is the useful thing to say then.
    let deadline = started + READY_TIMEOUT;
    if let Err(reason) = wait_for_ready_message(&container, deadline).await {
        return Err(failed(&container, &tag, reason, None).await);
    }
    let port = match container.get_host_port_ipv4(PG_PORT.tcp()).await {
        Ok(port) => port,
        Err(e) => {
            let reason = "its port 5432 is not published on 127.0.0.1".to_owned();
            return Err(failed(&container, &tag, reason, Some(Box::new(e))).await);
        }
    };
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .password(password)
        .connect_timeout(Duration::from_secs(10));

    if let Err(e) = connect_with_retries(&config, deadline).await {
        let reason = format!(
            "it logged that it is ready, but no connection succeeded within {} s",
            READY_TIMEOUT.as_secs()
        );
        return Err(failed(&container, &tag, reason, Some(Box::new(e))).await);
    }
    tracing::debug!(
        "dev container {id} ({tag}) accepts connections on 127.0.0.1:{port} after {:?}",
        started.elapsed()
    );

    Ok(DevContainer {
        container: Some(container),
        config,
        major,
        id,
    })
}

/// Where the image's entrypoint initialises the cluster (`PGDATA` in entrypoint.sh).
const DATA_DIR: &str = "/var/lib/postgresql/data";

/// Publish the server's port on 127.0.0.1 (a random port) instead of on every interface, as
/// testcontainers would: a dev database has no business being reachable from the network.
/// And keep the data directory in memory.
/// Remove the dev containers whose process is gone (killed before it could remove them).
/// Best effort: a failure is logged, never in the way of the start. Returns their ids.
pub async fn sweep() -> Vec<String> {
    use testcontainers::bollard::query_parameters::{
        ListContainersOptions, RemoveContainerOptions,
    };
    let Ok(docker) = super::image::docker_client("look for leftover dev containers").await else {
        return Vec::new();
    };
    let filters =
        std::collections::HashMap::from([("label".to_string(), vec![CONTAINER_LABEL.to_string()])]);
    let listed = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await;
    let containers = match listed {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot list leftover dev containers: {e}");
            return Vec::new();
        }
    };
    let mut removed = Vec::new();
    for c in containers {
        let (Some(id), Some(owner)) = (
            c.id,
            c.labels.as_ref().and_then(|l| l.get(OWNER_LABEL)).cloned(),
        ) else {
            continue;
        };
        if !crate::owner::is_gone(&owner) {
            continue;
        }
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match docker.remove_container(&id, Some(options)).await {
            Ok(()) => {
                tracing::info!(
                    "removed dev container {id}, left by a process that is gone ({owner})"
                );
                removed.push(id);
            }
            Err(e) => tracing::warn!("cannot remove the leftover dev container {id}: {e}"),
        }
    }
    removed
}

fn publish_on_loopback_only(host_config: &mut testcontainers::bollard::models::HostConfig) {
    use testcontainers::bollard::models::PortBinding;
    host_config.publish_all_ports = Some(false);
    // The data directory in memory: a dev database is thrown away, and creating a schema's
    // thousands of files on the storage driver (fuse-overlayfs here) cost 17 s for a
    // 1,000-table check where tmpfs takes a fraction of it (BENCHMARKS.md, figure 5).
    host_config.tmpfs = Some([(DATA_DIR.to_owned(), "rw,nosuid,nodev".to_owned())].into());
    host_config.port_bindings = Some(
        [(
            format!("{PG_PORT}/tcp"),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }]),
        )]
        .into(),
    );
}

/// Follow the container's stderr (where the server logs) until [`READY_MESSAGE`].
async fn wait_for_ready_message(
    container: &ContainerAsync<GenericImage>,
    deadline: Instant,
) -> Result<(), String> {
    let mut log = container.stderr(true);
    let mut line = String::new();
    let scan = async {
        loop {
            line.clear();
            match log.read_line(&mut line).await {
                Ok(0) => return Err("the server exited during startup".to_owned()),
                Ok(_) if line.contains(READY_MESSAGE) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(format!("its log could not be read ({e})")),
            }
        }
    };
    match tokio::time::timeout_at(deadline.into(), scan).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "the server did not log \"{READY_MESSAGE}\" within {} s",
            READY_TIMEOUT.as_secs()
        )),
    }
}

/// Connect (which includes authenticating) until it works or `deadline` passes: right after
/// the ready message, Docker's port forwarding may still refuse or reset connections.
async fn connect_with_retries(
    config: &tokio_postgres::Config,
    deadline: Instant,
) -> Result<(), tokio_postgres::Error> {
    loop {
        match config.connect(NoTls).await {
            Ok((_client, _connection)) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The error for a container that started but never became ready, with the end of its log
/// (initdb's output, then the server's). The container is removed when the caller drops it.
async fn failed(
    container: &ContainerAsync<GenericImage>,
    tag: &str,
    reason: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
) -> DockerError {
    let stdout = container.stdout_to_vec().await.unwrap_or_default();
    let stderr = container.stderr_to_vec().await.unwrap_or_default();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    DockerError::StartFailed {
        tag: tag.to_owned(),
        reason,
        log_tail: tail(&log, LOG_TAIL_LINES),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked by the compiler: callers may `tokio::spawn` a start (say, while they load the
    /// target's schema). A `&dyn Fn` progress callback held across an await would break it.
    #[test]
    fn start_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        assert_send(&start(PgMajor::V15));
    }

    #[test]
    fn the_port_is_published_on_loopback_only() {
        let mut host_config = testcontainers::bollard::models::HostConfig {
            publish_all_ports: Some(true),
            ..Default::default()
        };
        publish_on_loopback_only(&mut host_config);
        assert_eq!(host_config.publish_all_ports, Some(false));
        let bindings = host_config.port_bindings.unwrap_or_default();
        let binding = bindings
            .get("5432/tcp")
            .and_then(|b| b.as_ref())
            .and_then(|b| b.first())
            .cloned()
            .unwrap_or_default();
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
    }
}
