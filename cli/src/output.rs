//! Rendering findings for people (text), machines (json) and CI (GitHub annotations).

use std::fmt::Write as _;

use planner::{Finding, Location, Severity};

/// One finding in the style of a compiler diagnostic, with the offending source line
/// (`source` is the file split into lines, once per file).
pub fn finding_text(f: &Finding, source: Option<&[&str]>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}[{} {}]: {}", f.severity, f.id, f.name, f.message);
    let _ = writeln!(out, "  --> {}", location(&f.location));
    if let Some(line) = source.and_then(|s| s.get(f.location.line.saturating_sub(1) as usize)) {
        let number = f.location.line.to_string();
        let pad = " ".repeat(number.len() + 1);
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, " {number} | {line}");
        let caret = " ".repeat(f.location.column.saturating_sub(1) as usize);
        let _ = writeln!(out, "{pad} | {caret}^");
    }
    if let Some(lock) = &f.lock {
        let _ = writeln!(
            out,
            "  = lock: {} on {} (blocks {})",
            lock.mode,
            lock.object,
            lock.mode.blocks()
        );
    }
    if !f.help.is_empty() {
        let _ = writeln!(out, "  = help: {}", f.help);
    }
    out
}

pub fn location(l: &Location) -> String {
    format!(
        "{}:{}:{}",
        l.file.as_deref().unwrap_or("<sql>"),
        l.line,
        l.column
    )
}

/// A GitHub Actions workflow command that annotates the file at the finding.
pub fn finding_github(f: &Finding) -> String {
    let level = match f.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "notice",
    };
    let file = f.location.file.as_deref().unwrap_or("");
    format!(
        "::{level} file={},line={},col={},title={}::{}",
        escape_property(file),
        f.location.line,
        f.location.column,
        escape_property(&format!("{} {}", f.id, f.name)),
        escape_data(&format!("{} Help: {}", f.message, f.help))
    )
}

pub(crate) fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

pub(crate) fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// "2 errors, 1 warning" style summary.
pub fn summary(findings: &[Finding]) -> String {
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}, {}",
        plural(count(Severity::Error), "error"),
        plural(count(Severity::Warning), "warning"),
        plural(count(Severity::Info), "note")
    )
}
