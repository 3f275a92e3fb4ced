//! Cutting a migration file into statements and parsing each, so that one statement the
//! parser rejects still lets the others be analysed; plus byte offset → line/column.

use pg_query::NodeEnum;

/// One statement of the file: its text span and its parse tree (or the parser's error).
pub(crate) struct Piece {
    /// Byte offset of the first token (leading comments and blanks skipped).
    pub(crate) start: usize,
    /// Byte offset just past the last token (the `;` excluded).
    pub(crate) end: usize,
    pub(crate) parsed: Option<NodeEnum>,
    pub(crate) error: Option<String>,
}

/// Splits and parses `sql`. The whole file is parsed once; only when that fails is it cut
/// with a lexical splitter and each piece parsed on its own.
pub(crate) fn split(sql: &str) -> Vec<Piece> {
    if let Ok(parsed) = pg_query::parse(sql, 0) {
        let mut out = Vec::with_capacity(parsed.protobuf.stmts.len());
        for raw in parsed.protobuf.stmts {
            let loc = raw.stmt_location.max(0) as usize;
            let end = if raw.stmt_len <= 0 {
                sql.len()
            } else {
                loc + raw.stmt_len as usize
            };
            let (start, end) = trim_span(sql, loc, end.min(sql.len()));
            let node = raw.stmt.and_then(|n| n.node);
            if start < end {
                out.push(Piece {
                    start,
                    end,
                    parsed: node,
                    error: None,
                });
            }
        }
        return out;
    }
    let mut out = Vec::new();
    for (s, e) in lexical_split(sql) {
        let (start, end) = trim_span(sql, s, e);
        if start >= end {
            continue;
        }
        match pg_query::parse(&sql[start..end], 0) {
            Ok(p) => {
                let node = p
                    .protobuf
                    .stmts
                    .into_iter()
                    .next()
                    .and_then(|r| r.stmt)
                    .and_then(|n| n.node);
                if node.is_some() {
                    out.push(Piece {
                        start,
                        end,
                        parsed: node,
                        error: None,
                    });
                }
            }
            Err(e) => {
                let msg = match e {
                    pg_query::Error::Parse(m) => m,
                    other => other.to_string(),
                };
                out.push(Piece {
                    start,
                    end,
                    parsed: None,
                    error: Some(msg),
                });
            }
        }
    }
    out
}

/// Where in the file the parser's error points: the token named by "at or near", else the
/// statement's end for "at end of input", else its start.
pub(crate) fn error_offset(sql: &str, piece: &Piece, err: &str) -> usize {
    let text = &sql[piece.start..piece.end];
    if let Some(rest) = err.split("at or near \"").nth(1) {
        if let Some(tok) = rest.rsplit_once('"').map(|(t, _)| t) {
            if !tok.is_empty() {
                if let Some(p) = find_token(text, tok) {
                    return piece.start + p;
                }
            }
        }
    }
    if err.contains("at end of input") {
        return piece.end;
    }
    piece.start
}

fn find_token(text: &str, tok: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut from = 0;
    while let Some(p) = text[from..].find(tok) {
        let at = from + p;
        let before_ok = at == 0 || !word(bytes[at - 1]) || !word(tok.as_bytes()[0]);
        let after = at + tok.len();
        let after_ok = after >= bytes.len()
            || !word(bytes[after])
            || !word(*tok.as_bytes().last().unwrap_or(&b' '));
        if before_ok && after_ok {
            return Some(at);
        }
        from = at + tok.len().max(1);
    }
    None
}

/// Skips blanks and comments at the start, blanks and `;` at the end.
/// The spans of the statements of `sql` when PostgreSQL's parser reads all of it, found
/// without building parse trees; `None` when some statement does not parse.
pub(crate) fn parsed_spans(sql: &str) -> Option<Vec<std::ops::Range<usize>>> {
    let base = sql.as_ptr() as usize;
    let statements = pg_query::split_with_parser(sql).ok()?;
    let mut out = Vec::with_capacity(statements.len());
    for statement in statements {
        // Each statement is a slice of `sql`: its place is its offset.
        let loc = statement.as_ptr() as usize - base;
        let (start, end) = trim_span(sql, loc, loc + statement.len());
        if start < end {
            out.push(start..end);
        }
    }
    Some(out)
}

fn trim_span(sql: &str, mut start: usize, mut end: usize) -> (usize, usize) {
    let b = sql.as_bytes();
    loop {
        while start < end && b[start].is_ascii_whitespace() {
            start += 1;
        }
        if start + 1 < end && b[start] == b'-' && b[start + 1] == b'-' {
            while start < end && b[start] != b'\n' {
                start += 1;
            }
        } else if start + 1 < end && b[start] == b'/' && b[start + 1] == b'*' {
            start = skip_block_comment(b, start).min(end);
        } else {
            break;
        }
    }
    while end > start && (b[end - 1].is_ascii_whitespace() || b[end - 1] == b';') {
        end -= 1;
    }
    (start, end)
}

fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        if i + 1 < b.len() && b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if i + 1 < b.len() && b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// Cuts at top-level semicolons, honouring quotes, dollar quotes, comments and parentheses.
/// Used only when the file as a whole does not parse.
fn lexical_split(sql: &str) -> Vec<(usize, usize)> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut start, mut depth) = (0usize, 0usize, 0i32);
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                let escapes = q == b'\'' && i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e');
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == q {
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if i + 1 < b.len() && b[i + 1] == b'-' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if i + 1 < b.len() && b[i + 1] == b'*' => i = skip_block_comment(b, i),
            b'$' => {
                let tag_end = sql[i + 1..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map(|p| i + 1 + p);
                match tag_end {
                    Some(te) if b[te] == b'$' && (te == i + 1 || !b[i + 1].is_ascii_digit()) => {
                        let tag = &sql[i..=te];
                        match sql[te + 1..].find(tag) {
                            Some(p) => i = te + 1 + p + tag.len(),
                            None => i = b.len(),
                        }
                    }
                    _ => i += 1,
                }
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth -= 1;
                i += 1;
            }
            b';' if depth <= 0 => {
                out.push((start, i));
                i += 1;
                start = i;
                depth = 0;
            }
            _ => i += 1,
        }
    }
    if start < b.len() {
        out.push((start, b.len()));
    }
    out
}

/// Byte offset → 1-based line and (character) column.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, c)| *c == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { text, starts }
    }

    pub(crate) fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let ls = self.starts[line];
        let col = self
            .text
            .get(ls..offset)
            .map(|s| s.chars().count())
            .unwrap_or(offset - ls);
        (line as u32 + 1, col as u32 + 1)
    }

    pub(crate) fn line(&self, offset: usize) -> u32 {
        self.line_col(offset).0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parsed_spans_are_the_split_statements() {
        let sql =
            "-- head\nCREATE TABLE t (id int);\n/* c */ CREATE INDEX i ON t (id);\n\nSELECT 'é;' ;";
        let split: Vec<_> = super::split(sql)
            .into_iter()
            .map(|p| p.start..p.end)
            .collect();
        assert_eq!(super::parsed_spans(sql), Some(split));
        assert_eq!(
            super::parsed_spans("CREATE TABLE t (id int);\nCREAT TABLE u ();"),
            None
        );
    }
}
