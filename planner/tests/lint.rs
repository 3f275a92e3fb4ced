//! Behaviour of `tandem lint` across statements: state, versions, DO blocks, suppression,
//! parse errors and the live schema.

mod lint_common;

use planner::lint::{lint, lint_with, LintOptions, LintReport, LintSettings};
use planner::Severity;

fn pg(v: u32) -> LintOptions<'static> {
    LintOptions {
        pg_version: v,
        live: None,
        file: Some("m.sql".into()),
    }
}

fn run(sql: &str) -> LintReport {
    lint(sql, &pg(15))
}

fn ids(r: &LintReport) -> Vec<&str> {
    r.findings.iter().map(|f| f.id.as_str()).collect()
}

fn has(r: &LintReport, id: &str) -> bool {
    r.findings.iter().any(|f| f.id == id)
}

#[test]
fn safe_set_not_null_pattern_gets_no_finding() {
    let r = run(
        "ALTER TABLE accounts ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;\n\
                 ALTER TABLE accounts VALIDATE CONSTRAINT email_nn;\n\
                 ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;",
    );
    assert!(!has(&r, "T015"), "{:?}", ids(&r));
    assert!(r.statements[2].scans_under_lock.is_empty());
}

#[test]
fn dropping_the_helper_check_after_set_not_null_is_not_a_lost_guarantee() {
    let r = run(
        "ALTER TABLE accounts ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;\n\
                 ALTER TABLE accounts VALIDATE CONSTRAINT email_nn;\n\
                 ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;\n\
                 ALTER TABLE accounts DROP CONSTRAINT email_nn;",
    );
    assert!(!has(&r, "T034"), "{:?}", ids(&r));
    let without = run("ALTER TABLE accounts DROP CONSTRAINT email_nn;");
    assert!(has(&without, "T034"), "{:?}", ids(&without));
}

#[test]
fn plain_set_not_null_is_flagged_and_the_pattern_needs_pg12() {
    let r = run("ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;");
    assert!(has(&r, "T015"));
    assert_eq!(
        r.statements[0].scans_under_lock[0].to_string(),
        "\"public\".\"accounts\""
    );
    let old = lint(
        "ALTER TABLE accounts ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;\n\
         ALTER TABLE accounts VALIDATE CONSTRAINT email_nn;\n\
         ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;",
        &pg(11),
    );
    assert!(has(&old, "T015"));
}

#[test]
fn validate_in_a_separate_transaction_is_fine_in_the_same_one_is_flagged() {
    let separate = run("BEGIN;\nALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES accounts (id) NOT VALID;\nCOMMIT;\n\
                        BEGIN;\nALTER TABLE orders VALIDATE CONSTRAINT fk;\nCOMMIT;");
    assert!(!has(&separate, "T009"), "{:?}", ids(&separate));
    let same = run("BEGIN;\nALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES accounts (id) NOT VALID;\n\
                    ALTER TABLE orders VALIDATE CONSTRAINT fk;\nCOMMIT;");
    assert!(has(&same, "T009"));
    assert!(!has(&same, "T008"));
}

#[test]
fn tables_created_earlier_in_the_file_are_not_locked_for_anyone() {
    let r = run("CREATE TABLE fresh (id bigint PRIMARY KEY, email text);\n\
                 CREATE INDEX fresh_email ON fresh (email);\n\
                 ALTER TABLE fresh ALTER COLUMN email SET NOT NULL;\n\
                 ALTER TABLE fresh ADD CONSTRAINT c CHECK (id > 0);");
    let blocking: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.class == planner::Class::Blocking)
        .collect();
    assert!(blocking.is_empty(), "{blocking:#?}");
    assert!(r
        .statements
        .iter()
        .all(|s| s.rewrites.is_empty() && s.scans_under_lock.is_empty()));
}

#[test]
fn stable_defaults_do_not_rewrite_volatile_ones_do() {
    for sql in [
        "ALTER TABLE a ADD COLUMN c timestamptz DEFAULT now();",
        "ALTER TABLE a ADD COLUMN c timestamptz DEFAULT CURRENT_TIMESTAMP;",
        "ALTER TABLE a ADD COLUMN c int DEFAULT 0;",
        "ALTER TABLE a ADD COLUMN c int[] DEFAULT '{}'::int[];",
        "ALTER TABLE a ADD COLUMN c text DEFAULT 'x'::text;",
    ] {
        let r = run(sql);
        assert!(
            !has(&r, "T016") && r.statements[0].rewrites.is_empty(),
            "{sql}: {:?}",
            ids(&r)
        );
    }
    for sql in [
        "ALTER TABLE a ADD COLUMN c float8 DEFAULT random();",
        "ALTER TABLE a ADD COLUMN c uuid DEFAULT gen_random_uuid();",
        "ALTER TABLE a ADD COLUMN c timestamptz DEFAULT clock_timestamp();",
        "ALTER TABLE a ADD COLUMN c bigint DEFAULT nextval('s');",
    ] {
        let r = run(sql);
        assert!(
            has(&r, "T016") && !r.statements[0].rewrites.is_empty(),
            "{sql}: {:?}",
            ids(&r)
        );
    }
    let serial = run("ALTER TABLE a ADD COLUMN c bigserial;");
    assert!(has(&serial, "T018") && !serial.statements[0].rewrites.is_empty());
    let unknown = run("ALTER TABLE a ADD COLUMN c text DEFAULT my_func();");
    let f = unknown
        .findings
        .iter()
        .find(|f| f.id == "T016")
        .expect("unknown function warned");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("my_func"));
}

#[test]
fn constant_default_rewrites_before_pg11_only() {
    let sql = "ALTER TABLE a ADD COLUMN c int DEFAULT 0;";
    assert!(has(&lint(sql, &pg(10)), "T016"));
    assert!(!has(&lint(sql, &pg(15)), "T016"));
}

#[test]
fn varchar_widening_is_safe_int_to_bigint_rewrites() {
    let live = lint_common::live_schema();
    let opts = LintOptions {
        pg_version: 15,
        live: Some(&live),
        file: None,
    };
    let widen = lint(
        "ALTER TABLE accounts ALTER COLUMN name TYPE varchar(50);",
        &opts,
    );
    assert!(
        !has(&widen, "T019") && widen.statements[0].rewrites.is_empty(),
        "{:?}",
        ids(&widen)
    );
    assert!(has(&widen, "T053"), "prepared statements still break");
    let to_text = lint("ALTER TABLE accounts ALTER COLUMN name TYPE text;", &opts);
    assert!(!has(&to_text, "T019"));
    let big = lint("ALTER TABLE accounts ALTER COLUMN id TYPE bigint;", &opts);
    let f = big
        .findings
        .iter()
        .find(|f| f.id == "T019")
        .expect("rewrite");
    assert!(
        f.message.contains("rewrites accounts") && f.message.contains("2,000,000 rows"),
        "{}",
        f.message
    );
    assert_eq!(f.remedy, planner::Remedy::Shadow);
    assert_eq!(big.statements[0].rewrites.len(), 1);
    // without a database: int -> bigint is still a rewrite, and the message says it is guessing
    let guess = run("ALTER TABLE accounts ALTER COLUMN id TYPE bigint;");
    let f = guess
        .findings
        .iter()
        .find(|f| f.id == "T019")
        .expect("rewrite");
    assert!(f.message.contains("not known"), "{}", f.message);
    // type known from earlier in the file (table not new: only the column type is tracked)
    let narrow = lint(
        "ALTER TABLE accounts ALTER COLUMN code TYPE varchar(5);",
        &opts,
    );
    assert!(has(&narrow, "T050") && has(&narrow, "T019"));
}

#[test]
fn do_block_statements_are_analysed() {
    let r = run("DO $$ BEGIN EXECUTE 'CREATE INDEX i ON t(a)'; END $$;");
    assert!(has(&r, "T001"), "{:?}", ids(&r));
    assert_eq!(r.findings[0].location.line, 1);
    let plain =
        run("SELECT 1;\nDO $$\nBEGIN\n  ALTER TABLE t ALTER COLUMN a SET NOT NULL;\nEND\n$$;");
    let f = plain
        .findings
        .iter()
        .find(|f| f.id == "T015")
        .expect("set not null inside DO");
    assert_eq!((f.location.line, f.location.column), (2, 1));
    let conc = run("DO $$ BEGIN EXECUTE 'CREATE INDEX CONCURRENTLY i ON t(a)'; END $$;");
    assert!(has(&conc, "T003"), "a DO block is a transaction");
    let dynamic = run("DO $$ BEGIN EXECUTE format('DROP TABLE %I', 'x'); END $$;");
    assert!(has(&dynamic, "T063"));
}

#[test]
fn ignore_comments_suppress_and_unused_ignores_are_reported() {
    let r = run("-- tandem: ignore T001\nCREATE INDEX i ON t (a);\n\
                 CREATE INDEX j ON t (b); -- tandem: ignore require-concurrent-index-creation, T029\n\
                 -- tandem: ignore T040\nCREATE INDEX k ON t (c);");
    let t001: Vec<_> = r.findings.iter().filter(|f| f.id == "T001").collect();
    assert_eq!(t001.len(), 1, "{t001:#?}");
    assert_eq!(t001[0].location.line, 5);
    assert_eq!(r.unused_ignores.len(), 1);
    assert_eq!(r.unused_ignores[0].line, 4);
    let file =
        run("-- tandem: ignore-file T001,T029\nCREATE INDEX i ON t (a);\nCREATE INDEX j ON t (b);");
    assert!(!has(&file, "T001") && !has(&file, "T029"));
    assert!(file.unused_ignores.is_empty());
}

/// Issue 12: a change that breaks running applications is an error; an ignore silences it
/// only with a reason (after a second `--`). Other findings need none.
#[test]
fn breaking_errors_are_ignored_only_with_a_reason() {
    let bare = run("ALTER TABLE t RENAME COLUMN a TO b; -- tandem: ignore T038\n");
    let f = bare
        .findings
        .iter()
        .find(|f| f.id == "T038")
        .expect("kept without a reason");
    assert!(
        f.help.contains("-- tandem: ignore T038 -- why"),
        "{}",
        f.help
    );
    assert!(
        bare.unused_ignores.is_empty(),
        "the ignore matched: not unused"
    );
    let reasoned = run(
        "ALTER TABLE t RENAME COLUMN a TO b; -- tandem: ignore T038 -- no reader left since v42\n",
    );
    assert!(!has(&reasoned, "T038"));
    let other = run("-- tandem: ignore T001\nCREATE INDEX i ON t (a);");
    assert!(!has(&other, "T001"), "a blocking finding needs no reason");
}

#[test]
fn one_bad_statement_does_not_hide_the_others() {
    let r = run("CREATE INDEX i ON t (a);\nALTER TABLE t ADDD COLUMN x int;\n  DROP TABLE legacy;");
    assert_eq!(r.statements.len(), 3);
    assert!(!r.statements[1].parsed);
    let parse = r
        .findings
        .iter()
        .find(|f| f.id == "T000")
        .expect("parse error");
    assert_eq!((parse.location.line, parse.location.column), (2, 15));
    assert!(parse.message.contains("ADDD"));
    assert!(has(&r, "T001") && has(&r, "T040"));
    let drop = r.findings.iter().find(|f| f.id == "T040").unwrap();
    assert_eq!(
        (
            drop.location.line,
            drop.location.column,
            drop.location.statement
        ),
        (3, 3, 2)
    );
    let unterminated = run("ALTER TABLE t ADD COLUMN a int;\nSELECT 'abc");
    assert!(has(&unterminated, "T000"));
}

#[test]
fn unknown_table_and_small_table_with_a_live_schema() {
    let live = lint_common::live_schema();
    let opts = LintOptions {
        pg_version: 15,
        live: Some(&live),
        file: None,
    };
    let r = lint("ALTER TABLE acounts ADD COLUMN note text;", &opts);
    let f = r
        .findings
        .iter()
        .find(|f| f.id == "T062")
        .expect("unknown table");
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("acounts") && f.help.contains("search_path"));
    let small = lint("CREATE INDEX s_v ON settings (value);", &opts);
    let f = small.findings.iter().find(|f| f.id == "T001").unwrap();
    assert_eq!(f.severity, Severity::Info);
    assert!(f.message.contains("small table (12 rows"), "{}", f.message);
    let keyless = lint("ALTER TABLE logs ALTER COLUMN line TYPE bigint;", &opts);
    let f = keyless.findings.iter().find(|f| f.id == "T019").unwrap();
    assert!(
        f.help.contains("primary key or unique NOT NULL index"),
        "{}",
        f.help
    );
    let created = lint(
        "CREATE TABLE brand_new (id bigint);\nALTER TABLE brand_new ADD COLUMN x int;",
        &opts,
    );
    assert!(!has(&created, "T062"));
}

#[test]
fn transactions_timeouts_and_held_locks() {
    let r =
        run("BEGIN;\nALTER TABLE a ADD COLUMN x int;\nALTER TABLE a ADD COLUMN y int;\nCOMMIT;");
    assert!(has(&r, "T027") && has(&r, "T028") && has(&r, "T029"));
    let timed = run("SET lock_timeout = '2s';\nALTER TABLE a ADD COLUMN x int;");
    assert!(!has(&timed, "T029"));
    let local = run("BEGIN;\nSET LOCAL lock_timeout = '2s';\nALTER TABLE a ADD COLUMN x int;\nCOMMIT;\nALTER TABLE a ADD COLUMN y int;");
    let t029: Vec<_> = local.findings.iter().filter(|f| f.id == "T029").collect();
    assert_eq!(t029.len(), 1);
    assert_eq!(
        t029[0].location.statement, 4,
        "SET LOCAL ends with the transaction"
    );
    let open = run("BEGIN;\nALTER TABLE a ADD COLUMN x int;");
    assert!(has(&open, "T032"));
    let wrapped = lint_with(
        "BEGIN;\nCREATE INDEX CONCURRENTLY i ON a (x);",
        &pg(15),
        LintSettings {
            assume_in_transaction: true,
        },
    );
    assert!(has(&wrapped, "T031") && has(&wrapped, "T003"));
    let implicit = run("CREATE INDEX CONCURRENTLY i ON a (x);");
    assert!(!has(&implicit, "T003") && implicit.statements[0].concurrently);
    let backfill = run("BEGIN;\nALTER TABLE a ADD COLUMN s text;\nUPDATE a SET s = 'x';\nCOMMIT;");
    assert!(has(&backfill, "T022"));
}

#[test]
fn findings_are_sorted_and_indexed_by_statement() {
    let r = run("DROP TABLE b;\nCREATE INDEX i ON a (x);");
    let keys: Vec<_> = r
        .findings
        .iter()
        .map(|f| (f.location.line, f.location.column, f.id.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    for s in &r.statements {
        for &i in &s.findings {
            assert_eq!(r.findings[i].location.statement, s.index);
        }
    }
    assert_eq!(r.statements[1].locks[0].mode, planner::LockMode::Share);
}
