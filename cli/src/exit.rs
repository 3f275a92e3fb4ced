//! Exit codes (the documented contract; see README) and the failure type that carries one.

pub const OK: u8 = 0;
/// Runtime failure.
pub const FAILURE: u8 = 1;
/// Differences found (`diff --exit-code`).
pub const DIFFERENCES: u8 = 2;
/// Findings at error level, or steps tandem refuses.
pub const FINDINGS: u8 = 3;
/// Approval missing or plan stale.
pub const STALE: u8 = 4;
/// Usage error: bad arguments, unreadable input file.
pub const USAGE: u8 = 64;
/// Cannot connect to the database.
pub const UNAVAILABLE: u8 = 69;

/// A command that could not do its work: the exit code and the whole error chain.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(code: u8, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code,
            error: error.into(),
        }
    }

    pub fn usage(message: impl std::fmt::Display) -> Failure {
        Failure::new(USAGE, anyhow::anyhow!("{message}"))
    }

    pub fn render(&self) -> String {
        let mut out = self.error.to_string();
        for cause in self.error.chain().skip(1) {
            let text = cause.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
        }
        out
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::new(FAILURE, error)
    }
}
