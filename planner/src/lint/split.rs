//! Cutting a migration file into statements and parsing each, so that one statement the
//! parser rejects still lets the others be analysed; plus byte offset → line/column.

use pg_query::NodeEnum;

/// One statement of the file: its text span and its parse tree (or the parser's error).
pub(crate) struct Piece {
    /// Byte offset of the first token (leading comments and blanks skipped).
    pub(crate) start: usize,
    /// Byte offset just past the last token (the `;` excluded).
    pub(crate) end: usize,
    /// The `location` fields inside are byte offsets into the part of the file that was parsed
    /// (see [`split_in`]), not into the file: use `start`, never them.
    pub(crate) parsed: Option<NodeEnum>,
    pub(crate) error: Option<String>,
}

/// Files smaller than this are parsed on one thread: a thread costs more than it saves.
const PARALLEL_MIN_BYTES: usize = 64 * 1024;
/// More threads than this gain little: the rules that follow run on one.
const MAX_THREADS: usize = 4;

/// Splits and parses `sql`. The whole file is parsed at once (a large file in a few chunks cut
/// at statement boundaries, one thread each); only when that fails is it cut with a lexical
/// splitter and each piece parsed on its own.
pub(crate) fn split(sql: &str) -> Vec<Piece> {
    let chunks = if sql.len() >= PARALLEL_MIN_BYTES {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
    } else {
        1
    };
    split_in(sql, chunks)
}

/// [`split`] with the file parsed in up to `chunks` parts, in parallel.
///
/// The parts are cut after a `;` that the lexical splitter sees at the top level. Statements
/// never span such a cut, except inside a `BEGIN ATOMIC ... END` body or where the lexical
/// splitter misreads the file; then a part ends inside a statement or a literal and fails to
/// parse, and the file is parsed again in one piece. So the result is always the one-piece
/// result: parts that all parse give the statements of the whole file, at the same offsets.
fn split_in(sql: &str, chunks: usize) -> Vec<Piece> {
    if chunks > 1 {
        let cuts = cut_points(sql, chunks);
        if cuts.len() > 2 {
            if let Some(pieces) = parse_parts(sql, &cuts) {
                return pieces;
            }
        }
    }
    if let Ok(parsed) = pg_query::parse(sql, 0) {
        let mut out = Vec::with_capacity(parsed.protobuf.stmts.len());
        push_pieces(sql, 0..sql.len(), parsed.protobuf.stmts, &mut out);
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

/// The statements the parser found in `sql[part]`, as pieces with offsets into `sql`.
fn push_pieces(
    sql: &str,
    part: std::ops::Range<usize>,
    stmts: Vec<pg_query::protobuf::RawStmt>,
    out: &mut Vec<Piece>,
) {
    for raw in stmts {
        let loc = part.start + raw.stmt_location.max(0) as usize;
        let end = if raw.stmt_len <= 0 {
            part.end
        } else {
            loc + raw.stmt_len as usize
        };
        let (start, end) = trim_span(sql, loc, end.min(part.end));
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
}

/// `0`, then up to `chunks - 1` offsets just past a top-level `;`, about evenly spaced, then
/// `sql.len()`.
fn cut_points(sql: &str, chunks: usize) -> Vec<usize> {
    let mut cuts = vec![0];
    for (_, end) in lexical_split(sql) {
        if cuts.len() == chunks {
            break;
        }
        let target = cuts.len() * sql.len() / chunks;
        if end + 1 >= target && sql.as_bytes().get(end) == Some(&b';') {
            cuts.push(end + 1);
        }
    }
    if cuts.last() != Some(&sql.len()) {
        cuts.push(sql.len());
    }
    cuts
}

/// Parses `sql[cuts[i]..cuts[i + 1]]` for every `i`, each part on its own thread (the first
/// on this one); `None` if any part fails to parse.
fn parse_parts(sql: &str, cuts: &[usize]) -> Option<Vec<Piece>> {
    let parse = |part: std::ops::Range<usize>| {
        pg_query::parse(&sql[part.clone()], 0)
            .ok()
            .map(|p| (part, p.protobuf.stmts))
    };
    let parts = std::thread::scope(|scope| {
        let others: Vec<_> = cuts[1..]
            .windows(2)
            .map(|w| {
                let part = w[0]..w[1];
                scope.spawn(move || parse(part))
            })
            .collect();
        let mut parts = vec![parse(cuts[0]..cuts[1])];
        for handle in others {
            parts.push(
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        parts
    });
    let parts: Vec<_> = parts.into_iter().collect::<Option<_>>()?;
    let mut out = Vec::with_capacity(parts.iter().map(|(_, stmts)| stmts.len()).sum());
    for (part, stmts) in parts {
        push_pieces(sql, part, stmts, &mut out);
    }
    Some(out)
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
    use super::*;

    /// Start, end, tree and error of every piece, to compare two ways of splitting. The trees'
    /// `location` fields are left out: they are relative to the part parsed.
    fn pieces(sql: &str, chunks: usize) -> Vec<(usize, usize, Option<String>, Option<String>)> {
        let without_locations = |tree: String| {
            let mut out = String::with_capacity(tree.len());
            let mut rest = tree.as_str();
            while let Some(at) = rest.find("location: ") {
                out.push_str(&rest[..at + "location: ".len()]);
                rest = rest[at + "location: ".len()..]
                    .trim_start_matches(|c: char| c.is_ascii_digit());
            }
            out.push_str(rest);
            out
        };
        split_in(sql, chunks)
            .into_iter()
            .map(|p| {
                let tree = p.parsed.map(|n| without_locations(format!("{n:?}")));
                (p.start, p.end, tree, p.error)
            })
            .collect()
    }

    #[test]
    fn parsing_in_parts_gives_the_statements_of_the_whole_file() {
        let tricky = [
            "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN a text DEFAULT 'x;y';",
            "-- a comment; with semicolons\nSELECT 1; /* block ; /* nested ; */ still ; */ SELECT 2;",
            "SELECT E'it\\'s;', $$dollar;$$, $tag$ a;b $tag$, \"quo;ted\";",
            "DO $$ BEGIN ALTER TABLE t ADD COLUMN b int; END $$;\nSELECT 3",
            "CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2);",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;",
            "ALTER TABLE \"Ünï\" ADD COLUMN \"ç\" text NOT NULL;\r\nSELECT 'é';;;  ;",
            "SELECT 1; ALTER TABLE t ADD COLUMN ; SELECT 2;",
            "SELECT 1; SELECT 'unterminated;",
            "",
        ];
        // The first seven parse; the whole file with the last three does not.
        let (mut good, mut bad) = (String::new(), String::new());
        for round in 0..20 {
            for (n, t) in tricky.iter().enumerate() {
                let file = if n < 7 { &mut good } else { &mut bad };
                file.push_str(t);
                file.push_str(if round % 2 == 0 { "\n" } else { "\n\n-- gap\n" });
            }
            bad.push_str(&good);
        }
        for sql in tricky.iter().copied().chain([good.as_str(), bad.as_str()]) {
            let whole = pieces(sql, 1);
            for chunks in 2..=7 {
                assert_eq!(pieces(sql, chunks), whole, "{chunks} parts of {sql:?}");
            }
        }
    }

    #[test]
    fn a_file_that_parses_is_cut_into_the_parts_asked_for() {
        let sql = "SELECT 1;\n".repeat(100);
        let cuts = cut_points(&sql, 4);
        assert_eq!(cuts.len(), 5);
        assert_eq!(cuts.first(), Some(&0));
        assert_eq!(cuts.last(), Some(&sql.len()));
        assert!(cuts[1..4].iter().all(|&c| sql.as_bytes()[c - 1] == b';'));
        assert!(parse_parts(&sql, &cuts).is_some());
        assert_eq!(pieces(&sql, 4).len(), 100);
    }

    #[test]
    fn a_part_cut_inside_a_begin_atomic_body_sends_the_file_back_to_one_parse() {
        let sql =
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;";
        let cuts = cut_points(sql, 2);
        assert_eq!(&sql[..cuts[1]], &sql[..sql.find("1;").unwrap() + 2]);
        assert!(parse_parts(sql, &cuts).is_none());
        assert_eq!(pieces(sql, 2).len(), 1);
    }

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
