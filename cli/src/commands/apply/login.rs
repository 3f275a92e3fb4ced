//! `--per-migration-login`: the command's work runs under a login made for it, as Vault's
//! database secrets engine issues credentials: a random password whose SCRAM verifier tandem
//! computes (the password never reaches the server or its logs), `VALID UNTIL` the end of
//! `--login-ttl`, `NOINHERIT` with one membership (tandem's own role, which it becomes with
//! `SET ROLE` at login, so everything it creates is owned as before), and dropped when the
//! command ends. A login left by a killed command expires by itself, and the next command on
//! the migration with this option drops it once expired.

use anyhow::anyhow;
use base64::Engine as _;
use engine::state::audit::{self, Record};
use pgtls::Endpoint as Config;
use rand::RngCore;
use serde_json::json;
use tokio_postgres::Client;
use zeroize::Zeroizing;

use crate::connect;
use crate::exit::{Failure, FAILURE};

/// A login made for one command on one migration.
pub struct Login {
    admin: Client,
    name: String,
    id: i64,
}

fn failed(what: &str, e: tokio_postgres::Error) -> Failure {
    Failure::new(
        FAILURE,
        anyhow!("cannot {what} ({e}); --per-migration-login needs tandem's role to have CREATEROLE (or to run without the option)"),
    )
}

impl Login {
    /// Make the login; returns it and the connection settings that use it.
    pub async fn create(
        config: &Config,
        id: i64,
        ttl_secs: u64,
    ) -> Result<(Login, Config), Failure> {
        let admin = connect::connect(config).await?;
        // Roles belong to the whole server: the name says which database and migration.
        let prefix = format!("{}_m{id}_", database_prefix(&admin).await?);
        sweep(&admin, &prefix, id).await;
        let mut suffix = [0u8; 4];
        rand::rngs::OsRng.fill_bytes(&mut suffix);
        let name = format!(
            "{prefix}{}",
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(raw.as_mut());
        let password =
            Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*raw));
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let row = admin
            .query_one(
                "SELECT format('CREATE ROLE %I LOGIN NOINHERIT PASSWORD %L VALID UNTIL %L IN ROLE %I',
                               $1::text, $2::text, now() + make_interval(secs => $3::float8), current_user),
                        format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), $1::text),
                        current_user::text,
                        date_trunc('second', now() + make_interval(secs => $3::float8))::text",
                &[&name, &verifier, &(ttl_secs as f64)],
            )
            .await
            .map_err(|e| failed("prepare the migration's login", e))?;
        let (create, grant, owner, until): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        admin
            .batch_execute(&format!("{create}; {grant}"))
            .await
            .map_err(|e| failed("create the migration's login", e))?;
        record(
            &admin,
            id,
            "login created",
            json!({ "login": name, "member_of": owner, "valid_until": until }),
        )
        .await;
        let mut login = config.clone();
        login.user(&name).password(password.as_bytes());
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} -c role={owner}"),
            _ => format!("-c role={owner}"),
        };
        login.options(&options);
        eprintln!("running as login {name}, made for this command (valid until {until}, member of {owner} only), dropped at the end");
        Ok((Login { admin, name, id }, login))
    }

    /// Drop the login (its sessions ended first). Best effort: a failure is said, and the
    /// login expires by itself.
    pub async fn drop(self) {
        let _ = self
            .admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                &[&self.name],
            )
            .await;
        match drop_role(&self.admin, &self.name).await {
            Ok(()) => record(&self.admin, self.id, "login dropped", json!({ "login": self.name })).await,
            Err(e) => eprintln!(
                "warning: could not drop login {} ({e}); it expires by itself, and the next command on migration {} drops it",
                self.name, self.id
            ),
        }
    }
}

async fn drop_role(admin: &Client, name: &str) -> Result<(), tokio_postgres::Error> {
    let mut last = None;
    // A session just terminated may hold on for a moment.
    for _ in 0..20 {
        let row = admin
            .query_one(
                "SELECT format('REVOKE CONNECT ON DATABASE %I FROM %I', current_database(), $1::text),
                        format('DROP ROLE IF EXISTS %I', $1::text)",
                &[&name],
            )
            .await?;
        let (revoke, drop): (String, String) = (row.get(0), row.get(1));
        match admin.batch_execute(&format!("{revoke}; {drop}")).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(last.expect("tried"))
}

/// `tandem_d<database oid>`: the start of the logins' names for this database.
async fn database_prefix(admin: &Client) -> Result<String, Failure> {
    let oid: u32 = admin
        .query_one(
            "SELECT oid FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(|e| failed("read the database's oid", e))?
        .get(0);
    Ok(format!("tandem_d{oid}"))
}

/// Drop this migration's expired logins left by commands that did not end (a login still
/// valid may belong to a command starting right now).
async fn sweep(admin: &Client, prefix: &str, id: i64) {
    let Ok(rows) = admin
        .query(
            "SELECT r.rolname::text FROM pg_roles r
              WHERE starts_with(r.rolname, $1) AND r.rolvaliduntil < now()
                AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.usename = r.rolname)",
            &[&prefix],
        )
        .await
    else {
        return;
    };
    for r in rows {
        let name: String = r.get(0);
        if drop_role(admin, &name).await.is_ok() {
            record(
                admin,
                id,
                "login dropped",
                json!({ "login": name, "left_by": "an earlier command" }),
            )
            .await;
        }
    }
}

async fn record(admin: &Client, id: i64, event: &str, detail: serde_json::Value) {
    let _ = audit::append(
        admin,
        Record {
            migration: Some(id),
            kind: "credential",
            phase: None,
            event,
            detail,
            key: None,
        },
    )
    .await;
}
