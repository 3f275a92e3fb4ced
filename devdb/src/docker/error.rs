//! Why the Docker dev database could not be built or started, and what to do about it.

/// A failure to build the dev image or to run a dev container.
///
/// Each message ends with what to do next; the underlying error, where there is one, is the
/// [`source`](std::error::Error::source), so print the whole chain (see [`crate::chain`]).
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "unsupported PostgreSQL major version `{given}` for the Docker dev database: \
         use one of {supported}"
    )]
    UnsupportedMajor { given: String, supported: String },

    #[error(
        "cannot talk to the Docker daemon at {host} (while trying to {action}): is the Docker \
         daemon running? check with `docker info`, and set DOCKER_HOST if it listens elsewhere"
    )]
    DaemonUnreachable {
        host: String,
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error(
        "the Docker daemon refused to {action}: check `docker info` and its log, then run again"
    )]
    Daemon {
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error(
        "debootstrap is not installed, and building the dev image needs it: install it with \
         `apt-get install -y debootstrap` and run again"
    )]
    DebootstrapMissing,

    #[error(
        "building the dev image needs root (debootstrap installs packages in a chroot): run the \
         build once as root, e.g. `sudo tandem dev-image build --pg {major}`; later runs reuse \
         the image"
    )]
    NeedsRoot { major: String },

    #[error(
        "cannot download PostgreSQL's packages from the Debian mirror {mirror}: check the \
         network and any proxy (`curl -I {mirror}/dists/{suite}/Release`), or point \
         TANDEM_DEBIAN_MIRROR at a reachable mirror; debootstrap's output ends with:\n{tail}"
    )]
    MirrorUnreachable {
        mirror: String,
        suite: String,
        tail: String,
    },

    #[error(
        "building the dev image {tag} failed at {step} ({status}); fix the cause shown below and \
         run again (the build starts over from scratch). Its output ends with:\n{tail}"
    )]
    BuildFailed {
        tag: String,
        step: String,
        status: String,
        tail: String,
    },

    #[error("could not {action} {path}: check permissions and free space, then run again")]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the dev database container ({tag}) did not become ready: {reason}. If the image is \
         damaged, remove it with `docker rmi {tag}` so that the next run rebuilds it. The \
         container's log ends with:\n{log_tail}"
    )]
    StartFailed {
        tag: String,
        reason: String,
        log_tail: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl DockerError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<std::path::PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> DockerError {
        let path = path.into();
        move |source| DockerError::Io {
            action,
            path,
            source,
        }
    }
}

/// Where the Docker client looks for the daemon, for messages: as testcontainers (and the
/// `docker` command) decide it.
pub(crate) fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned())
}

/// Sort a failed Docker API call: the daemon answered with an error status (it is running, the
/// request was wrong or refused), or it did not answer at all (not running, no permission on
/// the socket, wrong DOCKER_HOST).
pub(crate) fn from_bollard(action: &str, e: testcontainers::bollard::errors::Error) -> DockerError {
    use testcontainers::bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError { .. } | B::JsonDataError { .. } => DockerError::Daemon {
            action: action.to_owned(),
            source: Box::new(e),
        },
        _ => DockerError::DaemonUnreachable {
            host: docker_host(),
            action: action.to_owned(),
            source: Box::new(e),
        },
    }
}

/// The last `n` lines of `text`, for error messages that show where a program's output ended.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_daemon_says_how_to_check() {
        let e = DockerError::DaemonUnreachable {
            host: "unix:///var/run/docker.sock".into(),
            action: "look up image tandem-dev-postgres:15".into(),
            source: "connection refused".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("is the Docker daemon running?"), "{msg}");
        assert!(msg.contains("`docker info`"), "{msg}");
    }

    #[test]
    fn missing_debootstrap_says_what_to_install() {
        let msg = DockerError::DebootstrapMissing.to_string();
        assert!(msg.contains("apt-get install -y debootstrap"), "{msg}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
