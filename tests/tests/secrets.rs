//! tandem's own secrets, through the real binary and a real PostgreSQL: where its password
//! may come from (never an argument or the environment), `tandem secrets rotate`, and other
//! sessions' statements recorded without their literals. After each, every output, audit
//! entry and `tandem.*` row is searched for every secret used.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use fixtures::pg::TestDb;
use tests::migrate::{on, on_once, plan_sql, scratch_dir};
use tests::proxy::tcp_endpoint;
use tests::{tandem, Run};

const ITEMS: &str = "
    CREATE TABLE items (id integer PRIMARY KEY, n integer);
    INSERT INTO items SELECT g, g FROM generate_series(1, 2000) g;
    ANALYZE;
";

fn run(url: &str, args: &[&str]) -> Run {
    let mut all = vec!["--database-url", url];
    all.extend_from_slice(args);
    tandem(&all)
}

/// `tandem` with extra environment variables (the PG* ones from outside removed first).
fn tandem_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = std::process::Command::new(tests::binary());
    cmd.args(args).current_dir(tests::root());
    for var in [
        "DATABASE_URL",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("tandem runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn a_password_in_the_environment_or_a_url_is_refused_and_never_echoed() {
    let db = TestDb::new("gates_secrets").await;
    let url = db.url();
    let secret = "s3cret-Hunter2";
    let dir = scratch_dir("gates-secrets");

    let env = tandem_env(
        &["--database-url", &url, "status"],
        &[("PGPASSWORD", secret)],
    )
    .expect(64);
    assert!(
        env.stderr.contains("PGPASSWORD") && env.stderr.contains(".pgpass"),
        "{}",
        env.stderr
    );

    // A URL with a password, given as an argument or in DATABASE_URL.
    let with_password = format!("postgresql://postgres:{secret}@127.0.0.1:1/postgres");
    let arg = tandem_env(&["--database-url", &with_password, "status"], &[]).expect(64);
    let var = tandem_env(&["status"], &[("DATABASE_URL", &with_password)]).expect(64);
    for run in [&env, &arg, &var] {
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "{}",
            run.stderr
        );
    }
    assert!(
        arg.stderr.contains("--database-url carries a password"),
        "{}",
        arg.stderr
    );
    assert!(
        var.stderr.contains("DATABASE_URL carries a password"),
        "{}",
        var.stderr
    );

    // A password file others can read is refused, as libpq would not use it either.
    let loose = dir.join("pgpass");
    std::fs::write(&loose, format!("*:*:*:*:{secret}\n")).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = tandem_env(
        &["--database-url", &url, "status"],
        &[("PGPASSFILE", loose.to_str().unwrap())],
    )
    .expect(64);
    assert!(file.stderr.contains("chmod 600"), "{}", file.stderr);
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o600)).unwrap();
    tandem_env(
        &["--database-url", &url, "status"],
        &[("PGPASSFILE", loose.to_str().unwrap())],
    )
    .expect(0);
}

#[tokio::test]
async fn a_blockers_literals_never_reach_tandems_errors_audit_or_status() {
    let db = TestDb::new("gates_redact").await;
    db.client().batch_execute(ITEMS).await.unwrap();
    let url = db.url();
    let dir = scratch_dir("gates-redact");
    let plan = dir.join("plan.json");
    plan_sql(&url, "ALTER TABLE items ALTER id TYPE bigint", &plan);
    let id = tests::migrate::submit(&url, &plan, &[]);
    on(&url, "apply", id, &["--yes", "--until", "verify"]).expect(0);

    // Another session holds the table inside a transaction; its last statement carries a
    // secret.
    let (blocker, conn) = db.config().connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let secret = "sk_live_9f8e7d6c5b4a";
    blocker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE items IN ACCESS SHARE MODE; SELECT '{secret}' AS token, 31337 AS pin"
        ))
        .await
        .unwrap();
    let gave_up = on_once(
        &url,
        "apply",
        id,
        &["--yes", "--cutover-attempts", "2", "--lock-timeout", "20"],
    );
    assert_ne!(gave_up.code, 0, "{}", gave_up.stderr);
    assert!(
        gave_up.stderr.contains("SELECT $1 AS token"),
        "the blocker is named: {}",
        gave_up.stderr
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();

    let export = run(&url, &["audit", "export"]).expect(0);
    let status = on(&url, "status", id, &["--json"]).expect(0);
    let rows: String = db
        .client()
        .query_one(
            "SELECT m::text FROM tandem.migrations m WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    for (what, text) in [
        ("stderr", &gave_up.stderr),
        ("stdout", &gave_up.stdout),
        ("audit", &export.stdout),
        ("status", &status.stdout),
        ("tandem.migrations", &rows),
    ] {
        assert!(
            !text.contains(secret) && !text.contains("31337"),
            "{what}: {text}"
        );
    }
    assert!(
        export.stdout.contains("attempt failed"),
        "{}",
        export.stdout
    );
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Whether `user` can log in over TCP (SCRAM) with `password`.
async fn logs_in(db: &TestDb, user: &str, password: &str) -> bool {
    let mut config = db.tcp_config();
    config.user(user).password(password);
    config.connect(tokio_postgres::NoTls).await.is_ok()
}

#[tokio::test]
async fn rotate_gives_tandems_role_a_new_password_the_server_never_sees_in_clear() {
    let db = TestDb::new("secrets_rotate").await;
    db.client().batch_execute(ITEMS).await.unwrap();
    let (endpoint, _) = tcp_endpoint(&db);
    let dir = scratch_dir("secrets-rotate");
    let role = format!("rot_{}", std::process::id());
    let first = "first-Password-0f9e";
    let c = db.client();
    // tandem's bookkeeping, installed by the superuser; the role may append to the audit log.
    let plan = dir.join("plan.json");
    plan_sql(&db.url(), "ALTER TABLE items ADD COLUMN note text", &plan);
    let id = tests::migrate::submit(&db.url(), &plan, &[]);
    c.batch_execute(&format!(
        "DROP ROLE IF EXISTS {role};
         CREATE ROLE {role} LOGIN PASSWORD '{first}';
         GRANT CONNECT ON DATABASE {db} TO {role};
         GRANT USAGE ON SCHEMA tandem TO {role};
         GRANT SELECT ON ALL TABLES IN SCHEMA tandem TO {role};
         GRANT EXECUTE ON FUNCTION tandem.audit_append(bigint, text, text, text, jsonb, text, timestamptz) TO {role};",
        db = db.name()
    ))
    .await
    .unwrap();
    let url = format!(
        "postgresql://{role}@{}:{}/{}",
        endpoint.host,
        endpoint.port,
        db.name()
    );
    let pgpass = dir.join("pgpass");
    write_private(
        &pgpass,
        &format!(
            "# tandem's\n{}:{}:*:{role}:{first}\n",
            endpoint.host, endpoint.port
        ),
    );
    let with_pgpass = [("PGPASSFILE", pgpass.to_str().unwrap())];
    let mut outputs: Vec<String> = Vec::new();
    let status = tandem_env(
        &["--database-url", &url, "status", &id.to_string()],
        &with_pgpass,
    )
    .expect(0);
    outputs.push(status.stderr + &status.stdout);

    // Refused while the database is busy: nothing changes.
    let mut sleepers = Vec::new();
    for _ in 0..3 {
        let (s, conn) = db.config().connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        sleepers.push(tokio::spawn(async move {
            s.batch_execute("SELECT pg_sleep(3)").await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = tandem_env(
        &[
            "--database-url",
            &url,
            "secrets",
            "rotate",
            "--yes",
            "--max-load",
            "1",
        ],
        &with_pgpass,
    )
    .expect(1);
    assert!(busy.stderr.contains("busy"), "{}", busy.stderr);
    assert!(std::fs::read_to_string(&pgpass).unwrap().contains(first));
    assert!(logs_in(&db, &role, first).await);
    for s in sleepers {
        let _ = s.await;
    }

    // Rotated: the password file's line has a new password, the server takes it and not the
    // old one, and stores a SCRAM verifier tandem computed.
    let rotated = tandem_env(
        &["--database-url", &url, "secrets", "rotate", "--yes"],
        &with_pgpass,
    )
    .expect(0);
    outputs.push(rotated.stderr.clone() + &rotated.stdout);
    let text = std::fs::read_to_string(&pgpass).unwrap();
    assert!(
        text.starts_with("# tandem's\n"),
        "other lines are kept: {text}"
    );
    let second = text
        .lines()
        .nth(1)
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(second, first);
    assert_eq!(second.len(), 43, "32 random bytes, base64: {second}");
    assert_eq!(
        std::fs::metadata(&pgpass).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !logs_in(&db, &role, first).await,
        "the old password is gone"
    );
    assert!(logs_in(&db, &role, &second).await, "the new one works");
    let stored: String = c
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");

    // The same through a password_command and a password_store_command (no shell).
    let secret_file = dir.join("db-password");
    write_private(&secret_file, &format!("{second}\n"));
    let config = dir.join("config.toml");
    write_private(
        &config,
        &format!(
            "[connection]\npassword_command = [\"cat\", {:?}]\npassword_store_command = [\"dd\", \"of={}\", \"status=none\"]\n",
            secret_file.to_str().unwrap(),
            secret_file.to_str().unwrap()
        ),
    );
    let with_config = [("TANDEM_CONFIG", config.to_str().unwrap())];
    let by_command = tandem_env(
        &["--database-url", &url, "status", &id.to_string()],
        &with_config,
    )
    .expect(0);
    outputs.push(by_command.stderr + &by_command.stdout);
    let rotated = tandem_env(
        &["--database-url", &url, "secrets", "rotate", "--yes"],
        &with_config,
    )
    .expect(0);
    outputs.push(rotated.stderr + &rotated.stdout);
    let third = std::fs::read_to_string(&secret_file)
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(third, second);
    assert!(logs_in(&db, &role, &third).await);
    tandem_env(
        &["--database-url", &url, "status", &id.to_string()],
        &with_config,
    )
    .expect(0);

    // The same from a password sealed with age (`tandem secrets seal`).
    let plain = dir.join("plain");
    write_private(&plain, &format!("{third}\n"));
    let sealed = dir.join("db-password.age");
    let identity = dir.join("identity.txt");
    let seal = tandem_env(
        &[
            "secrets",
            "seal",
            "--out",
            sealed.to_str().unwrap(),
            "--identity",
            identity.to_str().unwrap(),
            "--password-file",
            plain.to_str().unwrap(),
        ],
        &[],
    )
    .expect(0);
    outputs.push(seal.stderr + &seal.stdout);
    std::fs::remove_file(&plain).unwrap();
    assert_eq!(
        std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!std::fs::read(&sealed)
        .unwrap()
        .windows(third.len())
        .any(|w| w == third.as_bytes()));
    let sealed_config = dir.join("sealed.toml");
    write_private(
        &sealed_config,
        &format!(
            "[connection]\npassword_file = {:?}\nidentity_file = {:?}\n",
            sealed.to_str().unwrap(),
            identity.to_str().unwrap()
        ),
    );
    let with_sealed = [("TANDEM_CONFIG", sealed_config.to_str().unwrap())];
    tandem_env(
        &["--database-url", &url, "status", &id.to_string()],
        &with_sealed,
    )
    .expect(0);
    let rotated = tandem_env(
        &["--database-url", &url, "secrets", "rotate", "--yes"],
        &with_sealed,
    )
    .expect(0);
    outputs.push(rotated.stderr + &rotated.stdout);
    assert!(
        !logs_in(&db, &role, &third).await,
        "rotated away from the sealed one"
    );
    tandem_env(
        &["--database-url", &url, "status", &id.to_string()],
        &with_sealed,
    )
    .expect(0);
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open_identity = tandem_env(&["--database-url", &url, "status"], &with_sealed).expect(64);
    assert!(
        open_identity.stderr.contains("chmod 600"),
        "{}",
        open_identity.stderr
    );

    // A config others can write, and a failing command, are refused without their output.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let loose = tandem_env(&["--database-url", &url, "status"], &with_config).expect(64);
    assert!(loose.stderr.contains("chmod go-w"), "{}", loose.stderr);
    write_private(
        &config,
        "[connection]\npassword_command = [\"sh\", \"-c\", \"echo leaked-output; exit 3\"]\n",
    );
    let failing = tandem_env(&["--database-url", &url, "status"], &with_config).expect(64);
    assert!(
        failing.stderr.contains("failed") && !failing.stderr.contains("leaked-output"),
        "{}",
        failing.stderr
    );

    // No password, old or new, anywhere tandem writes.
    let export = run(&db.url(), &["audit", "export"]).expect(0);
    assert_eq!(
        export.stdout.matches("password rotated").count(),
        3,
        "{}",
        export.stdout
    );
    let rows: String = c
        .query_one(
            "SELECT string_agg(t::text, E'\\n') FROM (
                SELECT m::text AS t FROM tandem.migrations m UNION ALL
                SELECT a::text FROM tandem.audit a UNION ALL
                SELECT s::text FROM tandem.signatures s UNION ALL
                SELECT i::text FROM tandem.instance i) x",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let plan_text = std::fs::read_to_string(&plan).unwrap();
    for secret in [first, second.as_str(), third.as_str()] {
        for (what, text) in [
            ("audit export", &export.stdout),
            ("tandem.* rows", &rows),
            ("plan file", &plan_text),
        ] {
            assert!(!text.contains(secret), "{what} holds a password");
        }
        for out in &outputs {
            assert!(!out.contains(secret), "tandem printed a password: {out}");
        }
    }
    c.batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn per_migration_login_runs_the_phases_as_a_login_made_for_them_and_drops_it() {
    let db = TestDb::new("secrets_login").await;
    db.client().batch_execute(ITEMS).await.unwrap();
    let (endpoint, password) = tcp_endpoint(&db);
    let dir = scratch_dir("secrets-login");
    let plan = dir.join("plan.json");
    plan_sql(&db.url(), "ALTER TABLE items ALTER id TYPE bigint", &plan);
    let id = tests::migrate::submit(&db.url(), &plan, &[]);
    let pgpass = dir.join("pgpass");
    write_private(
        &pgpass,
        &format!(
            "{}:{}:*:{}:{password}\n",
            endpoint.host, endpoint.port, endpoint.user
        ),
    );
    let url = endpoint.url();
    let env = [("PGPASSFILE", pgpass.to_str().unwrap())];
    let ids = id.to_string();
    let applied = tandem_env(
        &[
            "--database-url",
            &url,
            "apply",
            &ids,
            "--yes",
            "--per-migration-login",
            "--login-ttl",
            "1h",
        ],
        &env,
    )
    .expect(0);
    assert!(
        applied.stderr.contains("running as login tandem_d"),
        "{}",
        applied.stderr
    );
    let c = db.client();
    let logins: Vec<String> = c
        .query(
            "SELECT body::jsonb -> 'detail' ->> 'login' FROM tandem.audit
              WHERE migration_id = $1 AND kind = 'credential' ORDER BY seq",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(logins.len(), 2, "created and dropped: {logins:?}");
    assert_eq!(logins[0], logins[1]);
    let login = &logins[0];
    // Every phase ran under it (the audit log's actor is the login's session user).
    let actors: Vec<String> = c
        .query(
            "SELECT DISTINCT body::jsonb -> 'actor' ->> 'role' FROM tandem.audit
              WHERE migration_id = $1 AND kind = 'event' AND body::jsonb ->> 'event' = 'done'",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actors, vec![login.clone()]);
    let left: i64 = c
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[login])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the login is dropped when the command ends");
    // The new table is owned as the old one was, not by the login.
    let owner: String = c
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'items'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "postgres");
    tandem_env(
        &[
            "--database-url",
            &url,
            "finalize",
            &ids,
            "--yes",
            "--per-migration-login",
        ],
        &env,
    )
    .expect(0);
    let mine: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, split_part($1, '_m', 1) || '_m')",
            &[login],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(mine, 0, "no login of this database is left");
}
