//! In-file suppression: `-- tandem: ignore T012` (ids or names, comma separated) before a
//! statement or at the end of its line, `-- tandem: ignore-file T012` for the whole file,
//! and the list of ignores that suppressed nothing. A reason follows a second `--`:
//! `-- tandem: ignore T038 -- no reader uses the old name since v42`. Errors about changes
//! that break running applications (class breaking) are suppressed only with a reason.

use super::split::LineIndex;
use crate::finding::Location;

struct Item {
    key: String,
    used: bool,
}

struct Directive {
    offset: usize,
    line: u32,
    column: u32,
    file_wide: bool,
    statement: Option<usize>,
    items: Vec<Item>,
    /// The text after a second `--`, if any.
    reason: Option<String>,
}

/// What the directives say of one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suppressed {
    No,
    Yes,
    /// An ignore names it but gives no reason.
    WithoutReason,
}

pub(crate) struct Directives {
    list: Vec<Directive>,
}

const MARKER: &str = "tandem:";

impl Directives {
    pub(crate) fn parse(sql: &str, index: &LineIndex<'_>) -> Self {
        let mut list = Vec::new();
        for (at, _) in sql.match_indices(MARKER) {
            let line_start = sql[..at].rfind('\n').map(|p| p + 1).unwrap_or(0);
            let before = &sql[line_start..at];
            let Some(dash) = before.rfind("--") else {
                continue;
            };
            if !before[dash + 2..].trim().is_empty() {
                continue;
            }
            let line_end = sql[at..].find('\n').map(|p| at + p).unwrap_or(sql.len());
            let rest = sql[at + MARKER.len()..line_end].trim();
            let (rest, reason) = match rest.split_once("--") {
                Some((list, why)) => (
                    list.trim(),
                    Some(why.trim().to_string()).filter(|w| !w.is_empty()),
                ),
                None => (rest, None),
            };
            let (file_wide, list_text) = if let Some(r) = rest.strip_prefix("ignore-file") {
                (true, r)
            } else if let Some(r) = rest.strip_prefix("ignore") {
                (false, r)
            } else {
                continue;
            };
            let items: Vec<Item> = list_text
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(|s| Item {
                    key: s.to_ascii_lowercase(),
                    used: false,
                })
                .collect();
            if items.is_empty() {
                continue;
            }
            let (line, column) = index.line_col(line_start + dash);
            list.push(Directive {
                offset: at,
                line,
                column,
                file_wide,
                statement: None,
                items,
                reason,
            });
        }
        Directives { list }
    }

    /// Binds each statement-level directive to a statement: the one it sits inside, else the
    /// one whose last line it ends, else the next one.
    pub(crate) fn attach(&mut self, spans: &[(usize, usize)], index: &LineIndex<'_>) {
        for d in self.list.iter_mut().filter(|d| !d.file_wide) {
            let after = spans.partition_point(|&(s, _)| s <= d.offset);
            let inside_or_same_line = after > 0
                && (spans[after - 1].1 >= d.offset || index.line(spans[after - 1].1) == d.line);
            d.statement = if inside_or_same_line {
                Some(after - 1)
            } else if after < spans.len() {
                Some(after)
            } else {
                None
            };
        }
    }

    /// Whether a directive covers this finding (the ignore then counts as used), and with a
    /// reason or not.
    pub(crate) fn suppresses(&mut self, statement: usize, id: &str, name: &str) -> Suppressed {
        let mut out = Suppressed::No;
        for d in &mut self.list {
            if !d.file_wide && d.statement != Some(statement) {
                continue;
            }
            for item in &mut d.items {
                if item.key.eq_ignore_ascii_case(id) || item.key.eq_ignore_ascii_case(name) {
                    item.used = true;
                    if d.reason.is_some() {
                        out = Suppressed::Yes;
                    } else if out == Suppressed::No {
                        out = Suppressed::WithoutReason;
                    }
                }
            }
        }
        out
    }

    pub(crate) fn unused(&self, file: Option<&str>) -> Vec<Location> {
        let mut out = Vec::new();
        for d in &self.list {
            if d.items.iter().any(|i| !i.used) {
                out.push(Location {
                    file: file.map(str::to_string),
                    line: d.line,
                    column: d.column,
                    statement: d.statement.unwrap_or(0),
                });
            }
        }
        out
    }
}
