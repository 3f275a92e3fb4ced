//! Every lint rule is documented, named, triggered by its `bad` example and not by its `good`
//! one; the findings of every `bad` example are snapshotted.

mod lint_common;

use std::collections::HashSet;

use planner::lint::{lint, rules, LintOptions};

/// Rules whose examples need a live schema (they compare with what the database holds).
const NEEDS_LIVE: &[&str] = &["T019", "T020", "T050", "T062", "T064", "T065"];

fn options<'a>(id: &str, live: &'a planner::model::Schema, good: bool) -> LintOptions<'a> {
    let pg_version = if id == "T006" && !good { 14 } else { 15 };
    LintOptions {
        pg_version,
        live: NEEDS_LIVE.contains(&id).then_some(live),
        file: None,
    }
}

fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[test]
fn every_rule_is_documented_named_and_unique() {
    let mut ids = HashSet::new();
    let mut names = HashSet::new();
    let all = rules();
    assert!(
        all.len() >= 41,
        "at least 40 rules besides parse-error, got {}",
        all.len()
    );
    let mut previous = "";
    for r in all {
        let m = r.meta();
        assert!(m.id.len() == 4 && m.id.starts_with('T'), "{}: id", m.id);
        assert!(m.id > previous, "{} is out of order", m.id);
        previous = m.id;
        assert!(
            is_kebab(m.name),
            "{}: name {:?} is not kebab-case",
            m.id,
            m.name
        );
        assert!(ids.insert(m.id), "duplicate id {}", m.id);
        assert!(names.insert(m.name), "duplicate name {}", m.name);
        assert!(m.docs.len() > 80, "{}: docs too short", m.id);
        assert!(
            !m.summary.is_empty() && !m.bad.is_empty() && !m.good.is_empty(),
            "{}: examples",
            m.id
        );
    }
}

#[test]
fn every_bad_example_triggers_its_rule_and_every_good_example_does_not() {
    let live = lint_common::live_schema();
    for r in rules() {
        let m = r.meta();
        let bad = lint(m.bad, &options(m.id, &live, false));
        assert!(
            bad.findings.iter().any(|f| f.id == m.id),
            "{} {}: bad example did not trigger it; findings: {:#?}",
            m.id,
            m.name,
            bad.findings
        );
        for f in bad.findings.iter().filter(|f| f.id == m.id) {
            assert_eq!(f.name, m.name);
            assert!(
                !f.message.is_empty() && !f.help.is_empty(),
                "{}: empty message/help",
                m.id
            );
        }
        let good = lint(m.good, &options(m.id, &live, true));
        let again: Vec<_> = good.findings.iter().filter(|f| f.id == m.id).collect();
        assert!(
            again.is_empty(),
            "{} {}: good example triggered it: {again:#?}",
            m.id,
            m.name
        );
        insta::assert_json_snapshot!(format!("{}-{}", m.id, m.name), bad.findings);
    }
}
