//! The gates, through the real binary and a real PostgreSQL: keys, the approval policy,
//! signed submissions and approvals, the audit log. Each attack is refused with a message
//! that names why, the refusal is audited, and the schema is unchanged.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use fixtures::pg::TestDb;
use tests::migrate::{on, on_once, plan_sql, scratch_dir, status_json, strategies};
use tests::{fingerprint, tandem, Run};

const ITEMS: &str = "
    CREATE TABLE items (id integer PRIMARY KEY, n integer);
    INSERT INTO items SELECT g, g FROM generate_series(1, 2000) g;
    ANALYZE;
";

/// One approver: a key pair made by `tandem keygen` and the passphrase file that opens it.
struct Person {
    name: &'static str,
    key: PathBuf,
    pass: PathBuf,
    line: String,
}

impl Person {
    fn new(dir: &Path, name: &'static str) -> Person {
        Person::with_key(dir, name, name)
    }

    /// `file` names the key's files (a person may hold several keys).
    fn with_key(dir: &Path, name: &'static str, file: &str) -> Person {
        let pass = dir.join(format!("{file}.pass"));
        std::fs::write(&pass, format!("correct horse {file}\n")).unwrap();
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
        let key = dir.join(format!("{file}.key"));
        tandem(&[
            "keygen",
            "--out",
            key.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
            "--comment",
            file,
            "--kdf-work-factor",
            "10",
        ])
        .expect(0);
        let line = std::fs::read_to_string(dir.join(format!("{file}.key.pub")))
            .unwrap()
            .trim()
            .to_string();
        Person {
            name,
            key,
            pass,
            line,
        }
    }

    fn key_args(&self) -> Vec<String> {
        vec![
            "--key".into(),
            self.key.to_str().unwrap().into(),
            "--passphrase-file".into(),
            self.pass.to_str().unwrap().into(),
        ]
    }
}

fn run(url: &str, args: &[&str]) -> Run {
    let mut all = vec!["--database-url", url];
    all.extend_from_slice(args);
    tandem(&all)
}

fn run_as(url: &str, who: &Person, args: &[&str]) -> Run {
    let key = who.key_args();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(key.iter().map(String::as_str));
    run(url, &all)
}

/// A policy file: each entry is (name, key lines); `require` is the TOML body of [require].
fn policy_file(dir: &Path, file: &str, people: &[(&str, Vec<&str>)], require: &str) -> PathBuf {
    let mut text = String::new();
    for (name, keys) in people {
        let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
        text.push_str(&format!(
            "[[approver]]\nname = {name:?}\nkeys = [{}]\n\n",
            keys.join(", ")
        ));
    }
    text.push_str(&format!("[require]\n{require}\n"));
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// Plan `sql` and submit it signed by `author`; the migration id.
fn submit_signed(url: &str, dir: &Path, name: &str, sql: &str, author: &Person) -> i64 {
    let plan = dir.join(format!("{name}.json"));
    plan_sql(url, sql, &plan);
    assert!(!strategies(&plan).is_empty());
    let run = run_as(url, author, &["submit", plan.to_str().unwrap()]).expect(0);
    run.stdout.trim().parse().expect("submit prints the id")
}

async fn phase(db: &TestDb, id: i64) -> String {
    db.client()
        .query_one("SELECT phase FROM tandem.migrations WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

/// The gate's audit entries for migration `id`, as "event: reason".
async fn gate_entries(db: &TestDb, id: i64) -> Vec<String> {
    db.client()
        .query(
            "SELECT (body::jsonb ->> 'event') || ': ' || coalesce(body::jsonb -> 'detail' ->> 'reason', '')
               FROM tandem.audit WHERE migration_id = $1 AND kind = 'gate' ORDER BY seq",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

struct Team {
    dir: PathBuf,
    alice: Person,
    bob: Person,
    carol: Person,
    /// Bob's second key: still Bob.
    bob2: Person,
}

fn team(test: &str) -> Team {
    let dir = scratch_dir(test);
    Team {
        alice: Person::new(&dir, "alice"),
        bob: Person::new(&dir, "bob"),
        carol: Person::new(&dir, "carol"),
        bob2: Person::with_key(&dir, "bob", "bob2"),
        dir,
    }
}

impl Team {
    fn policy(&self, file: &str, require: &str) -> PathBuf {
        policy_file(
            &self.dir,
            file,
            &[
                ("alice", vec![&self.alice.line]),
                ("bob", vec![&self.bob.line, &self.bob2.line]),
                ("carol", vec![&self.carol.line]),
            ],
            require,
        )
    }
}

#[test]
fn keygen_writes_an_encrypted_key_only_its_owner_can_read() {
    let dir = scratch_dir("gates-keygen");
    let alice = Person::new(&dir, "alice");
    let mode = std::fs::metadata(&alice.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is mode 0600");
    let sealed = std::fs::read_to_string(&alice.key).unwrap();
    assert!(
        sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{sealed}"
    );
    assert!(!sealed.contains("correct horse"));
    assert!(alice.line.starts_with("tandem-ed25519 "), "{}", alice.line);
    assert!(alice.line.ends_with(" alice"), "{}", alice.line);

    // Never overwritten.
    let again = tandem(&[
        "keygen",
        "--out",
        alice.key.to_str().unwrap(),
        "--passphrase-file",
        alice.pass.to_str().unwrap(),
    ])
    .expect(64);
    assert!(
        again.stderr.contains("never overwrites"),
        "{}",
        again.stderr
    );

    // A passphrase file others can read is refused, and so is a wrong passphrase.
    let loose = dir.join("loose.pass");
    std::fs::write(&loose, "x\n").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = tandem(&[
        "keygen",
        "--out",
        dir.join("other.key").to_str().unwrap(),
        "--passphrase-file",
        loose.to_str().unwrap(),
    ])
    .expect(64);
    assert!(refused.stderr.contains("chmod 600"), "{}", refused.stderr);
    assert!(!dir.join("other.key").exists());

    let wrong = dir.join("wrong.pass");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = tandem(&[
        "audit",
        "checkpoint",
        "--key",
        alice.key.to_str().unwrap(),
        "--passphrase-file",
        wrong.to_str().unwrap(),
    ])
    .expect(64);
    assert!(out.stderr.contains("passphrase"), "{}", out.stderr);
}

#[tokio::test]
async fn a_plan_runs_only_once_two_other_people_approved_it() {
    let db = TestDb::new("gates_two_people").await;
    db.client().batch_execute(ITEMS).await.unwrap();
    let url = db.url();
    let t = team("gates-two");
    let policy = t.policy(
        "policy.toml",
        "apply = 2\nrollback = 1\nfinalize = 1\npolicy = 2",
    );

    // The first policy is trusted on first use; its fingerprint is printed to be pinned.
    let set = run(&url, &["policy", "set", policy.to_str().unwrap()]).expect(0);
    let pin = set.stdout.trim().to_string();
    assert_eq!(pin.len(), 64, "{}", set.stdout);
    assert!(
        set.stderr.contains("trusted on first use"),
        "{}",
        set.stderr
    );

    // An unsigned submission is refused when the policy asks for a signed one.
    let plan = t.dir.join("plan.json");
    plan_sql(&url, "ALTER TABLE items ALTER id TYPE bigint", &plan);
    let unsigned = run(&url, &["submit", plan.to_str().unwrap()]).expect(4);
    assert!(unsigned.stderr.contains("--key"), "{}", unsigned.stderr);

    let id = submit_signed(
        &url,
        &t.dir,
        "plan2",
        "ALTER TABLE items ALTER id TYPE bigint",
        &t.alice,
    );
    let before = fingerprint(db.client()).await;
    let ids = id.to_string();

    // No approval yet: exit 4, naming what is missing, nothing changed.
    let refused = on_once(&url, "apply", id, &["--yes"]).expect(4);
    assert!(refused.stderr.contains("needs 2"), "{}", refused.stderr);
    assert_eq!(phase(&db, id).await, "submitted");
    assert_eq!(fingerprint(db.client()).await, before);

    // The author cannot approve their own plan.
    let own = run_as(&url, &t.alice, &["approve", &ids]).expect(4);
    assert!(own.stderr.contains("own plan"), "{}", own.stderr);

    // Bob approves twice, with his two keys: one person counts once.
    run_as(&url, &t.bob, &["approve", &ids]).expect(0);
    run_as(&url, &t.bob2, &["approve", &ids]).expect(0);
    let still = on_once(&url, "apply", id, &["--yes"]).expect(4);
    assert!(still.stderr.contains(t.bob.name), "{}", still.stderr);
    assert!(
        still.stderr.contains(t.carol.name),
        "names who could approve: {}",
        still.stderr
    );
    assert_eq!(fingerprint(db.client()).await, before);
    let status = status_json(&url, id);
    assert_eq!(status["approvals"]["required"], 2, "{status}");
    assert_eq!(
        status["approvals"]["approved_by"],
        serde_json::json!(["bob"]),
        "{status}"
    );

    // Carol's approval makes two people: the plan runs, with the pin.
    run_as(&url, &t.carol, &["approve", &ids]).expect(0);
    on(&url, "apply", id, &["--yes", "--policy-fingerprint", &pin]).expect(0);
    assert_eq!(phase(&db, id).await, "rollback_window");
    let gates = gate_entries(&db, id).await;
    assert!(
        gates.iter().filter(|g| g.starts_with("refused")).count() >= 2,
        "{gates:?}"
    );
    assert!(gates.iter().any(|g| g.starts_with("approved")), "{gates:?}");

    // Bob revokes: finalize needs one approval, Carol's still counts.
    run_as(&url, &t.bob, &["approve", &ids, "--revoke"]).expect(0);
    on(&url, "finalize", id, &["--yes"]).expect(0);
    assert_eq!(phase(&db, id).await, "finalized");

    // The whole history verifies, and against a checkpoint signed now.
    let cp = t.dir.join("checkpoint.json");
    run_as(
        &url,
        &t.carol,
        &["audit", "checkpoint", "-o", cp.to_str().unwrap()],
    )
    .expect(0);
    let ok = run(
        &url,
        &["audit", "verify", "--checkpoint", cp.to_str().unwrap()],
    )
    .expect(0);
    assert!(
        ok.stderr.contains("1 checkpoint(s) matched"),
        "{}",
        ok.stderr
    );
}

#[tokio::test]
async fn forged_misdirected_expired_and_edited_approvals_count_for_nothing() {
    let db = TestDb::new("gates_attacks").await;
    db.client().batch_execute(ITEMS).await.unwrap();
    let url = db.url();
    let t = team("gates-attacks");
    let policy = t.policy("policy.toml", "apply = 1\npolicy = 2");
    run(&url, &["policy", "set", policy.to_str().unwrap()]).expect(0);
    let c = db.client();

    // Migration A is approved by Bob; migration B is another plan, approved by nobody.
    let a = submit_signed(
        &url,
        &t.dir,
        "a",
        "CREATE INDEX CONCURRENTLY items_n ON items (n)",
        &t.alice,
    );
    let b = submit_signed(
        &url,
        &t.dir,
        "b",
        "ALTER TABLE items ADD COLUMN note text",
        &t.alice,
    );
    run_as(&url, &t.bob, &["approve", &a.to_string()]).expect(0);
    let before = fingerprint(c).await;

    // Someone with write access copies Bob's valid approval of A to B (the nonce column
    // changed to get past the unique index): a valid signature over another plan.
    c.batch_execute(&format!(
        "INSERT INTO tandem.signatures (migration_id, kind, key_id, nonce, signed)
         SELECT {b}, kind, key_id, nonce || '-copy', signed FROM tandem.signatures
          WHERE migration_id = {a} AND kind = 'approve'"
    ))
    .await
    .unwrap();
    let copied = on_once(&url, "apply", b, &["--yes"]).expect(4);
    assert!(
        copied.stderr.contains("another plan") || copied.stderr.contains("migration"),
        "{}",
        copied.stderr
    );

    // A forged one: Bob's approval of A with its expiry pushed out, signature unchanged.
    c.batch_execute(&format!(
        "INSERT INTO tandem.signatures (migration_id, kind, key_id, nonce, signed)
         SELECT {b}, kind, key_id, nonce || '-forged',
                jsonb_set(jsonb_set(signed, '{{statement,migration}}', '{b}'),
                          '{{statement,subject}}', to_jsonb((SELECT plan_sha256 FROM tandem.migrations WHERE id = {b})))
           FROM tandem.signatures WHERE migration_id = {a} AND kind = 'approve'"
    ))
    .await
    .unwrap();
    let forged = on_once(&url, "apply", b, &["--yes"]).expect(4);
    assert!(forged.stderr.contains("signature"), "{}", forged.stderr);
    assert_eq!(phase(&db, b).await, "submitted");
    let refusals = gate_entries(&db, b).await;
    assert_eq!(refusals.len(), 2, "each refusal is audited: {refusals:?}");
    assert!(
        refusals.iter().all(|r| r.starts_with("refused")),
        "{refusals:?}"
    );

    // An approval that expired.
    let short = submit_signed(
        &url,
        &t.dir,
        "short",
        "ALTER TABLE items ADD COLUMN other text",
        &t.alice,
    );
    run_as(
        &url,
        &t.carol,
        &["approve", &short.to_string(), "--expires", "1s"],
    )
    .expect(0);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let expired = on_once(&url, "apply", short, &["--yes"]).expect(4);
    assert!(expired.stderr.contains("expired"), "{}", expired.stderr);

    // The approved plan edited in the database: its steps' SQL, then the digest too.
    c.batch_execute(&format!(
        "UPDATE tandem.migrations SET plan = jsonb_set(plan, '{{steps,0,sql,0}}', '\"DROP TABLE items\"') WHERE id = {a}"
    ))
    .await
    .unwrap();
    let edited = on_once(&url, "apply", a, &["--yes"]).expect(4);
    assert!(
        edited.stderr.contains("changed after it was submitted"),
        "{}",
        edited.stderr
    );
    let sha = engine::state::Migration::load(c, a)
        .await
        .err()
        .map(|e| e.to_string());
    assert!(sha.is_some());
    let plan: String = c
        .query_one(
            "SELECT plan::text FROM tandem.migrations WHERE id = $1",
            &[&a],
        )
        .await
        .unwrap()
        .get(0);
    let digest = planner::plan::Plan::from_json(&plan).unwrap().digest();
    c.execute(
        "UPDATE tandem.migrations SET plan_sha256 = $2 WHERE id = $1",
        &[&a, &digest],
    )
    .await
    .unwrap();
    let resigned = on_once(&url, "apply", a, &["--yes"]).expect(4);
    assert!(
        resigned.stderr.contains("another plan"),
        "{}",
        resigned.stderr
    );

    // Nothing ran: the table is whole, the schema as it was.
    assert_eq!(fingerprint(c).await, before);
    let n: i64 = c
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2000);
}

#[tokio::test]
async fn the_policy_changes_only_with_its_approvers_signatures() {
    let db = TestDb::new("gates_policy").await;
    db.client().batch_execute(ITEMS).await.unwrap();
    let url = db.url();
    let t = team("gates-policy");
    let first = t.policy("v1.toml", "apply = 1\npolicy = 2");
    let pin = run(&url, &["policy", "set", first.to_str().unwrap()])
        .expect(0)
        .stdout
        .trim()
        .to_string();

    // Mallory adds herself: with one signature where the policy asks for two, refused.
    let dir = &t.dir;
    let mallory = Person::new(dir, "mallory");
    let grab = policy_file(
        dir,
        "v2.toml",
        &[
            ("alice", vec![&t.alice.line]),
            ("bob", vec![&t.bob.line]),
            ("carol", vec![&t.carol.line]),
            ("mallory", vec![&mallory.line]),
        ],
        "apply = 1\npolicy = 1",
    );
    let one = run_as(&url, &mallory, &["policy", "set", grab.to_str().unwrap()]).expect(4);
    assert!(one.stderr.contains("needs 2"), "{}", one.stderr);
    let alone = run_as(&url, &t.alice, &["policy", "set", grab.to_str().unwrap()]).expect(4);
    assert!(alone.stderr.contains("alice"), "{}", alone.stderr);
    // Bob's two keys are one person.
    let mut args = vec![
        "policy".to_string(),
        "set".into(),
        grab.to_str().unwrap().into(),
    ];
    args.extend(t.bob.key_args());
    args.extend(t.bob2.key_args());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&url, &refs).expect(4);
    let show = run(&url, &["policy", "show"]).expect(0);
    assert!(show.stdout.contains("version 1"), "{}", show.stdout);
    assert!(!show.stdout.contains("mallory"), "{}", show.stdout);

    // Signed by two approvers, it is version 2; the old pin still names the chain.
    let mut args = vec![
        "policy".to_string(),
        "set".into(),
        grab.to_str().unwrap().into(),
    ];
    args.extend(t.alice.key_args());
    args.extend(t.carol.key_args());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let v2 = run(&url, &refs).expect(0);
    assert!(v2.stderr.contains("version 2"), "{}", v2.stderr);

    run(&url, &["--policy-fingerprint", &pin, "policy", "show"]).expect(0);
    // The database renamed, upgraded or restored since (a new instance id): its policy
    // chain still holds (each change was checked against the database when it was set).
    db.client()
        .batch_execute("UPDATE tandem.instance SET database_oid = 1")
        .await
        .unwrap();
    let kept = run(&url, &["policy", "show"]).expect(0);
    assert!(kept.stdout.contains("version 2"), "{}", kept.stdout);
    // A pin that is not in the chain refuses everything.
    let other = run(
        &url,
        &["--policy-fingerprint", &"0".repeat(64), "policy", "show"],
    )
    .expect(4);
    assert!(
        other.stderr.contains("does not contain"),
        "{}",
        other.stderr
    );

    // A version inserted by hand (an approver row, no signatures) breaks the chain: nothing
    // runs until it is repaired, whoever approved.
    let hand = gates::policy::Policy::from_toml(
        &std::fs::read_to_string(policy_file(
            dir,
            "v3.toml",
            &[
                ("mallory", vec![&mallory.line]),
                ("alice", vec![&t.alice.line]),
            ],
            "apply = 1\npolicy = 1",
        ))
        .unwrap(),
    )
    .unwrap();
    db.client()
        .execute(
            "INSERT INTO tandem.policies (version, policy, fingerprint) VALUES (3, $1, $2)",
            &[&hand.to_canonical_json(), &hand.fingerprint()],
        )
        .await
        .unwrap();
    let id = submit_signed_refused_or_id(&url, &t, "ALTER TABLE items ADD COLUMN note text");
    assert!(
        id.stderr.contains("version 3") && id.stderr.contains("not signed"),
        "{}",
        id.stderr
    );
}

fn submit_signed_refused_or_id(url: &str, t: &Team, sql: &str) -> Run {
    let plan = t.dir.join("refused.json");
    plan_sql(url, sql, &plan);
    run_as(url, &t.alice, &["submit", plan.to_str().unwrap()]).expect(4)
}

#[tokio::test]
async fn the_audit_log_refuses_rewrites_and_catches_a_superuser_against_a_checkpoint() {
    let db = TestDb::new("gates_audit").await;
    db.client().batch_execute(ITEMS).await.unwrap();
    let url = db.url();
    let t = team("gates-audit");
    let policy = t.policy("policy.toml", "apply = 1\npolicy = 2");
    run(&url, &["policy", "set", policy.to_str().unwrap()]).expect(0);
    let id = submit_signed(
        &url,
        &t.dir,
        "p",
        "ALTER TABLE items ADD COLUMN note text",
        &t.alice,
    );
    run_as(&url, &t.bob, &["approve", &id.to_string()]).expect(0);
    // The executor writes a signed checkpoint after each phase, outside the database.
    let cps = t.dir.join("checkpoints");
    let applied = on(
        &url,
        "apply",
        id,
        &[
            "--yes",
            "--checkpoint-dir",
            cps.to_str().unwrap(),
            "--checkpoint-key",
            t.carol.key.to_str().unwrap(),
            "--checkpoint-passphrase-file",
            t.carol.pass.to_str().unwrap(),
        ],
    )
    .expect(0);
    assert!(
        applied.stderr.contains("audit checkpoint after prepare"),
        "{}",
        applied.stderr
    );
    let written: Vec<PathBuf> = std::fs::read_dir(&cps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let phase_cp = written[0].clone();
    let c = db.client();

    // The old events are the chain's: one record.
    let events: i64 = c
        .query_one(
            "SELECT count(*) FROM tandem.events WHERE migration_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(events >= 2, "{events}");

    // UPDATE, DELETE and TRUNCATE are refused, in every session_replication_role.
    for sql in [
        "UPDATE tandem.audit SET body = body WHERE seq = 1",
        "DELETE FROM tandem.audit WHERE seq = 1",
        "TRUNCATE tandem.audit",
        "SET session_replication_role = replica; DELETE FROM tandem.audit WHERE seq = 1",
        "DELETE FROM tandem.signatures",
        "UPDATE tandem.policies SET signatures = '[]'",
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert!(
            e.to_string().contains("append-only") || format!("{e:?}").contains("append-only"),
            "{sql}: {e:?}"
        );
        c.batch_execute("RESET session_replication_role")
            .await
            .unwrap();
    }

    let cp = t.dir.join("cp.json");
    run_as(
        &url,
        &t.carol,
        &["audit", "checkpoint", "-o", cp.to_str().unwrap()],
    )
    .expect(0);
    let export = run(&url, &["audit", "export"]).expect(0);
    let export_file = t.dir.join("audit.jsonl");
    std::fs::write(&export_file, &export.stdout).unwrap();
    run(
        &url,
        &["audit", "verify", "--file", export_file.to_str().unwrap()],
    )
    .expect(0);

    // A superuser drops the triggers and rewrites an entry: named by its number.
    c.batch_execute(
        "ALTER TABLE tandem.audit DISABLE TRIGGER ALL;
         UPDATE tandem.audit SET body = body || ' ' WHERE seq = (SELECT min(seq) FROM tandem.audit WHERE kind = 'approve')",
    )
    .await
    .unwrap();
    let seq: i64 = c
        .query_one(
            "SELECT min(seq) FROM tandem.audit WHERE kind = 'approve'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let bad = run(&url, &["audit", "verify"]).expect(1);
    assert!(
        bad.stderr.contains(&format!("entry {seq}")),
        "{}",
        bad.stderr
    );

    // ... and recomputes the whole chain from there: only a checkpoint catches it.
    c.batch_execute(
        "DO $$ DECLARE r record; prev text := NULL; BEGIN
           FOR r IN SELECT * FROM tandem.audit ORDER BY seq LOOP
             IF prev IS NOT NULL THEN
               UPDATE tandem.audit SET prev_hash = prev,
                 hash = encode(sha256(convert_to(prev || E'\\n' || r.seq::text || E'\\n' || r.body, 'UTF8')), 'hex')
                WHERE seq = r.seq;
             ELSE
               UPDATE tandem.audit SET hash = encode(sha256(convert_to(r.prev_hash || E'\\n' || r.seq::text || E'\\n' || r.body, 'UTF8')), 'hex') WHERE seq = r.seq;
             END IF;
             SELECT hash INTO prev FROM tandem.audit WHERE seq = r.seq;
           END LOOP; END $$;",
    )
    .await
    .unwrap();
    run(&url, &["audit", "verify"]).expect(0);
    let caught = run(
        &url,
        &["audit", "verify", "--checkpoint", cp.to_str().unwrap()],
    )
    .expect(1);
    assert!(caught.stderr.contains("checkpoint"), "{}", caught.stderr);
    // The executor's own checkpoint, from before the approval entry was rewritten, too.
    let by_apply = run(
        &url,
        &[
            "audit",
            "verify",
            "--checkpoint",
            phase_cp.to_str().unwrap(),
        ],
    )
    .expect(1);
    assert!(
        by_apply.stderr.contains("checkpoint"),
        "{}",
        by_apply.stderr
    );

    // The chain cut short (the last entries deleted) is caught against the checkpoint too.
    let db2 = TestDb::new("gates_audit_cut").await;
    let url2 = db2.url();
    run(&url2, &["policy", "set", policy.to_str().unwrap()]).expect(0);
    let cp2 = t.dir.join("cp2.json");
    run_as(
        &url2,
        &t.carol,
        &["audit", "checkpoint", "-o", cp2.to_str().unwrap()],
    )
    .expect(0);
    db2.client()
        .batch_execute(
            "ALTER TABLE tandem.audit DISABLE TRIGGER ALL;
             DELETE FROM tandem.audit WHERE seq = (SELECT max(seq) FROM tandem.audit)",
        )
        .await
        .unwrap();
    run(&url2, &["audit", "verify"]).expect(0);
    let cut = run(
        &url2,
        &["audit", "verify", "--checkpoint", cp2.to_str().unwrap()],
    )
    .expect(1);
    assert!(cut.stderr.contains("checkpoint"), "{}", cut.stderr);
}

#[tokio::test]
async fn a_restored_copy_is_another_database_for_approvals() {
    let db = TestDb::new("gates_original").await;
    db.client().batch_execute(ITEMS).await.unwrap();
    let url = db.url();
    let t = team("gates-copy");
    let policy = t.policy("policy.toml", "apply = 1\npolicy = 2");
    run(&url, &["policy", "set", policy.to_str().unwrap()]).expect(0);
    let id = submit_signed(
        &url,
        &t.dir,
        "p",
        "ALTER TABLE items ADD COLUMN note text",
        &t.alice,
    );
    run_as(&url, &t.bob, &["approve", &id.to_string()]).expect(0);

    // pg_dump of the original, restored into another database of the same server.
    let copy = TestDb::new("gates_copy").await;
    let dump = std::process::Command::new("pg_dump")
        .args(["--no-owner", "--inserts", "--dbname", &url])
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    // psql's meta-commands (`\restrict`) are not SQL.
    let sql: String = String::from_utf8(dump.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('\\'))
        .map(|l| format!("{l}\n"))
        .collect();
    copy.client()
        .batch_execute(&sql)
        .await
        .expect("the dump restores");

    let refused = on_once(&copy.url(), "apply", id, &["--yes"]).expect(4);
    assert!(refused.stderr.contains("database"), "{}", refused.stderr);
    let copied: i64 = copy
        .client()
        .query_one("SELECT count(*) FROM tandem.audit WHERE kind = 'instance' AND body LIKE '%copy detected%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(copied, 1);

    // A copy under the same name (restored after the original was dropped) has another
    // oid: its instance id is made again too, and the approval names the old one.
    let c = db.client();
    let instance: String = c
        .query_one("SELECT id FROM tandem.instance", &[])
        .await
        .unwrap()
        .get(0);
    c.batch_execute("UPDATE tandem.instance SET database_oid = 1")
        .await
        .unwrap();
    let same_name = on_once(&url, "apply", id, &["--yes"]).expect(4);
    assert!(
        same_name.stderr.contains("another copy of this database"),
        "{}",
        same_name.stderr
    );
    let now: String = c
        .query_one("SELECT id FROM tandem.instance", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(now, instance);
    // The submission names the old instance too: the author submits again, one approves.
    assert!(
        same_name.stderr.contains("submit the plan again"),
        "{}",
        same_name.stderr
    );
    let again = submit_signed(
        &url,
        &t.dir,
        "again",
        "ALTER TABLE items ADD COLUMN note text",
        &t.alice,
    );
    run_as(&url, &t.carol, &["approve", &again.to_string()]).expect(0);
    on(&url, "apply", again, &["--yes"]).expect(0);
}

#[tokio::test]
async fn a_schema_named_tandem_that_tandem_did_not_make_is_not_adopted() {
    let db = TestDb::new("gates_foreign_schema").await;
    db.client()
        .batch_execute(&format!(
            "{ITEMS} CREATE SCHEMA tandem; CREATE TABLE tandem.migrations (id int);"
        ))
        .await
        .unwrap();
    let url = db.url();
    let dir = scratch_dir("gates-foreign");
    let plan = dir.join("plan.json");
    plan_sql(&url, "ALTER TABLE items ADD COLUMN note text", &plan);
    let out = run(&url, &["submit", plan.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("did not create"), "{}", out.stderr);
}
