//! `tandem secrets rotate`: a new random password for tandem's own role, as Vault's
//! database secrets engine rotates a root credential: the SCRAM-SHA-256 verifier is computed
//! here (the password never reaches the server, its logs or `pg_stat_activity`), the server
//! is checked to accept the new password on a fresh connection, and only then is it written
//! back where it came from. PostgreSQL keeps one password per role, so there is no overlap
//! in which both work: sessions already open stay open; new ones use the new password.

use anyhow::anyhow;
use base64::Engine as _;
use engine::state::audit::{self, Record};
use rand::RngCore;
use serde_json::json;
use zeroize::Zeroizing;

use age::secrecy::ExposeSecret;

use crate::args::{Global, RotateArgs, SealArgs, SecretsCommand};
use crate::commands::apply::{confirm, engine_failure};
use crate::commands::keys;
use crate::connect::{self, Source};
use crate::exit::{Failure, FAILURE, OK};
use crate::secrets;

pub async fn run(global: &Global, command: SecretsCommand) -> Result<u8, Failure> {
    match command {
        SecretsCommand::Rotate(args) => rotate(global, args).await,
        SecretsCommand::Seal(args) => seal(args),
    }
}

fn seal(args: SealArgs) -> Result<u8, Failure> {
    let password = match &args.password_file {
        Some(file) => keys::secret_from_file(file, "the password file")?,
        None => keys::secret_from_terminal("tandem's database password", true)?,
    };
    let made = !args.identity.exists();
    let pending = secrets::seal(&args.out, &args.identity, password.expose_secret())?;
    std::fs::rename(&pending, &args.out).map_err(|e| {
        Failure::new(
            FAILURE,
            anyhow!(
                "cannot move {} to {} ({e})",
                pending.display(),
                args.out.display()
            ),
        )
    })?;
    eprintln!(
        "sealed the password in {} for the age identity {}{}; in tandem's config:\n[connection]\npassword_file = {:?}\nidentity_file = {:?}",
        args.out.display(),
        args.identity.display(),
        if made { " (made now, mode 0600)" } else { "" },
        args.out.display().to_string(),
        args.identity.display().to_string()
    );
    Ok(OK)
}

async fn rotate(global: &Global, args: RotateArgs) -> Result<u8, Failure> {
    let config = connect::resolve(global)?;
    let source = connect::source(&config)?;
    let store = match &source {
        Source::PgPass { path, .. } => format!("the password file {}", path.display()),
        Source::Command(_) => match secrets::settings()?.connection.password_store_command {
            Some(argv) => format!("password_store_command `{}`", argv[0]),
            None => {
                return Err(Failure::usage(
                    "tandem's password comes from password_command, and the config has no password_store_command to write a new one back; add it (it reads the new password on its standard input), then rotate",
                ))
            }
        },
        Source::Sealed { file, .. } => format!("the sealed password file {}", file.display()),
        Source::None => {
            return Err(Failure::usage(
                "tandem's password comes from nowhere tandem can write back (no password file line matches the connection, no password_command): there is nothing to rotate",
            ))
        }
    };
    let client = connect::target(&config).await?;
    let row = client
        .query_one(
            // Without pg_read_all_stats, other roles' sessions show neither their state nor
            // their type: counted as busy (the safe side), and said so.
            "SELECT current_user::text,
                    count(*) FILTER (WHERE state = 'active' OR state IS NULL),
                    count(*) FILTER (WHERE state IS NULL)
               FROM pg_stat_activity
              WHERE (backend_type = 'client backend' OR backend_type IS NULL)
                AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| Failure::new(FAILURE, anyhow!("cannot read the role and the load ({e})")))?;
    let (role, active, unseen): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
    if active > i64::from(args.max_load) {
        let unseen = if unseen > 0 {
            format!(" ({unseen} of them belong to roles whose activity tandem's role cannot see, and count as busy: grant it pg_read_all_stats to count only those running)")
        } else {
            String::new()
        };
        return Err(Failure::new(
            FAILURE,
            anyhow!("the database is busy ({active} sessions running a statement{unseen}, above --max-load {}): nothing was changed; rotate when it is quieter, or raise --max-load", args.max_load),
        ));
    }
    confirm(
        args.yes,
        &format!("Give role {role} a new password and write it to {store}?"),
    )?;

    // 32 random bytes, URL-safe base64: no ':' or '\' to escape in a password file.
    let mut raw = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(raw.as_mut());
    let password = Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*raw));
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    // Written beside the store first: if anything fails after the server changed, the new
    // password is not lost.
    let pending = match &source {
        Source::PgPass { path, line, .. } => {
            Some(secrets::pgpass_replaced(path, *line, &password)?)
        }
        Source::Sealed { file, identity } => Some(secrets::seal(file, identity, &password)?),
        _ => None,
    };
    // The server quotes the role's name and the verifier (format %I, %L).
    let statement: String = client
        .query_one(
            "SELECT format('ALTER ROLE %I PASSWORD %L', current_user, $1::text)",
            &[&verifier],
        )
        .await
        .map_err(|e| Failure::new(FAILURE, anyhow!("cannot prepare the password change ({e})")))?
        .get(0);
    client.batch_execute(&statement).await.map_err(|e| {
        if let Some(p) = &pending {
            let _ = std::fs::remove_file(p);
        }
        Failure::new(
            FAILURE,
            anyhow!("the server refused the new password ({e}); nothing was changed"),
        )
    })?;

    // A fresh connection with the new password, before the old one is given up.
    let mut check = config.clone();
    check.password(password.as_bytes());
    if let Err(e) = connect::connect(&check).await {
        return Err(Failure::new(
            FAILURE,
            anyhow!(
                "the role's password was changed but a new connection with it failed ({}); {}",
                e.render(),
                match &pending {
                    Some(p) => format!("the new password is in {} (mode 0600): move it over the password file once the server accepts it", p.display()),
                    None => "the new password was not stored; run `tandem secrets rotate` again as a superuser, or reset the role's password".into(),
                }
            ),
        ));
    }
    match (&source, pending) {
        (Source::PgPass { path, .. } | Source::Sealed { file: path, .. }, Some(pending)) => {
            std::fs::rename(&pending, path).map_err(|e| {
                Failure::new(
                    FAILURE,
                    anyhow!(
                        "the server has the new password but {} could not replace {} ({e}); move it there yourself",
                        pending.display(),
                        path.display()
                    ),
                )
            })?;
        }
        _ => {
            let argv = secrets::settings()?
                .connection
                .password_store_command
                .expect("checked above");
            secrets::store_with_command(&argv, &password)?;
        }
    }
    // Recorded when tandem keeps its bookkeeping here (never the password nor its verifier).
    if engine::state::installed(&client).await.unwrap_or(false) {
        audit::append(
        &client,
        Record {
            migration: None,
            kind: "secret",
            phase: None,
            event: "password rotated",
            detail: json!({ "role": role, "store": store, "verifier": "SCRAM-SHA-256, computed by tandem" }),
            key: None,
        },
    )
    .await
    .map_err(engine_failure)?;
    }
    eprintln!("role {role} has a new password (SCRAM-SHA-256 verifier computed by tandem), stored in {store}; open sessions keep running");
    Ok(OK)
}
