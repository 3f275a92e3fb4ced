//! In-file suppression: `-- tandem: ignore T012` (ids or names, comma separated) before a
//! statement or at the end of its line, `-- tandem: ignore-file T012` for the whole file,
//! and the list of ignores that suppressed nothing.

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

    /// True (and the ignore counts as used) when a directive covers this finding.
    pub(crate) fn suppresses(&mut self, statement: usize, id: &str, name: &str) -> bool {
        let mut hit = false;
        for d in &mut self.list {
            if !d.file_wide && d.statement != Some(statement) {
                continue;
            }
            for item in &mut d.items {
                if item.key.eq_ignore_ascii_case(id) || item.key.eq_ignore_ascii_case(name) {
                    item.used = true;
                    hit = true;
                }
            }
        }
        hit
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
