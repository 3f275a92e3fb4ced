//! The proxy's one error type. Each says what to do in its text, and whose side the fix is
//! on: the settings (`tandem proxy` exits 64), the upstream and tandem's rights there (69),
//! or this machine (1).

/// Why the proxy cannot serve, or lost its link to tandem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The settings, or a file they name (exit 64).
    #[error("{0}")]
    Config(String),
    /// The upstream, or tandem's rights there (exit 69).
    #[error("{0}")]
    Upstream(String),
    /// This machine refused a resource (a thread, a file descriptor) (exit 1).
    #[error("{0}")]
    System(String),
}
