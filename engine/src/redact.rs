//! Other sessions' statements, as tandem records them (the blockers of a cutover attempt in
//! its audit entry, `status` and the error that gives up): the literals are replaced, so a
//! password, a token or a customer's e-mail in someone's query never reaches tandem's logs,
//! its audit log or its errors; and the text is cut short.

/// `query` with every literal replaced by `$n` (PostgreSQL's own parser, through
/// pg_query's normalize) or, where it does not parse (a statement cut off by
/// `track_activity_query_size`), by `?` from a small scanner; whitespace collapsed; at most
/// `max` characters.
pub fn query(query: &str, max: usize) -> String {
    let text = match pg_query::normalize(query) {
        Ok(normalized) => normalized,
        Err(_) => scrub(query),
    };
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Replace quoted strings (`'…'`, `E'…'`, `$tag$…$tag$`) and numbers with `?`, without
/// parsing; an unterminated string swallows the rest.
fn scrub(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let word_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '\'' {
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            // `E'…'`: drop the prefix too.
            if out.ends_with(['E', 'e'])
                && !out[..out.len() - 1].ends_with(|c: char| c.is_alphanumeric())
            {
                out.pop();
            }
            out.push('?');
        } else if c == '$' && !word_before {
            // `$tag$ … $tag$` or `$$ … $$`; `$1` stays.
            let tag_end = chars[i + 1..]
                .iter()
                .position(|&d| !(d.is_alphanumeric() || d == '_'))
                .map(|p| i + 1 + p);
            match tag_end {
                Some(end) if chars[end] == '$' && !chars[i + 1].is_ascii_digit() => {
                    let tag: String = chars[i..=end].iter().collect();
                    let rest: String = chars[end + 1..].iter().collect();
                    let close = rest.find(&tag).map(|p| rest[..p].chars().count());
                    i = match close {
                        Some(n) => end + 1 + n + tag.chars().count(),
                        None => chars.len(),
                    };
                    out.push('?');
                }
                _ => {
                    out.push(c);
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() && !word_before {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push('?');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::query;

    #[test]
    fn literals_never_survive() {
        for (q, secret) in [
            (
                "UPDATE users SET password = 'hunter2' WHERE id = 42",
                "hunter2",
            ),
            (
                "SELECT * FROM t WHERE email = 'a@b.example' AND n > 1.5e3",
                "a@b.example",
            ),
            // Cut off mid-string, as pg_stat_activity cuts long statements: does not parse.
            (
                "INSERT INTO tokens VALUES (7, 'sk_live_0123456789",
                "sk_live_0123456789",
            ),
            ("SELECT $x$top secret$x$ FROM t WHERE", "top secret"),
            ("SELECT E'it''s \\' secret', 123456 FROM", "secret"),
        ] {
            let r = query(q, 200);
            assert!(!r.contains(secret), "{q} -> {r}");
            assert!(!r.contains("42") && !r.contains("123456"), "{q} -> {r}");
        }
        assert_eq!(
            query(
                "UPDATE users   SET password = 'hunter2'\n WHERE id = 42",
                200
            ),
            "UPDATE users SET password = $1 WHERE id = $2"
        );
    }

    #[test]
    fn long_statements_are_cut() {
        let q = format!("SELECT {} FROM t", "a, ".repeat(100));
        let r = query(&q, 40);
        assert_eq!(r.chars().count(), 40);
        assert!(r.ends_with('…'));
    }
}
