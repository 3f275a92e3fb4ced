//! `tandem audit verify | export | checkpoint`: the audit log, checked with nothing but its
//! rows (or an export of them) and checkpoints kept outside the database.

use std::io::Write;

use anyhow::anyhow;
use engine::state::{self, approvals, audit, identity};
use gates::chain::{self, Entry};
use gates::envelope::{Kind, Signed, Statement};
use gates::keys::PublicKey;

use crate::args::{AuditCheckpointArgs, AuditCommand, AuditVerifyArgs, Global};
use crate::commands::apply::engine_failure;
use crate::commands::keys;
use crate::connect;
use crate::exit::{Failure, FAILURE, OK};

pub async fn run(global: &Global, command: AuditCommand) -> Result<u8, Failure> {
    match command {
        AuditCommand::Verify(args) => verify(global, args).await,
        AuditCommand::Export => export(global).await,
        AuditCommand::Checkpoint(args) => checkpoint(global, args).await,
    }
}

async fn open(global: &Global) -> Result<tokio_postgres::Client, Failure> {
    let config = connect::resolve(global)?;
    let client = connect::target(&config).await?;
    if !state::installed(&client).await.map_err(engine_failure)? {
        return Err(Failure::usage(
            "tandem was never used on this database: there is no audit log",
        ));
    }
    Ok(client)
}

async fn export(global: &Global) -> Result<u8, Failure> {
    let client = open(global).await?;
    let entries = audit::entries(&client, 1).await.map_err(engine_failure)?;
    let mut out = std::io::stdout().lock();
    for e in &entries {
        let line = serde_json::to_string(e).expect("an entry serialises");
        writeln!(out, "{line}").map_err(|e| Failure::new(FAILURE, anyhow!("stdout: {e}")))?;
    }
    Ok(OK)
}

async fn verify(global: &Global, args: AuditVerifyArgs) -> Result<u8, Failure> {
    let checkpoints = args
        .checkpoint
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::usage(format!("cannot read the checkpoint {} ({e})", path.display()))
            })?;
            serde_json::from_str::<Signed>(&text).map_err(|e| {
                Failure::usage(format!(
                    "{} is not a tandem checkpoint ({e}); give a file `tandem audit checkpoint` wrote",
                    path.display()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut trusted: Vec<PublicKey> = args
        .trust
        .iter()
        .map(|p| keys::load_public(p))
        .collect::<Result<_, _>>()?;
    let entries: Vec<Entry> = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("cannot read {} ({e})", path.display())))?;
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .enumerate()
                .map(|(i, l)| {
                    serde_json::from_str(l).map_err(|e| {
                        Failure::usage(format!(
                            "{} line {}: not an audit entry ({e}); give the output of `tandem audit export`",
                            path.display(),
                            i + 1
                        ))
                    })
                })
                .collect::<Result<_, _>>()?
        }
        None => {
            let client = open(global).await?;
            if trusted.is_empty() && !checkpoints.is_empty() {
                if let Some(p) = approvals::policy(&client, None)
                    .await
                    .map_err(engine_failure)?
                {
                    trusted = p
                        .policy
                        .approvers
                        .iter()
                        .flat_map(|a| a.keys.iter().cloned())
                        .collect();
                }
            }
            audit::entries(&client, 1).await.map_err(engine_failure)?
        }
    };
    match chain::verify(&entries, &checkpoints, &trusted) {
        Ok(summary) => {
            eprintln!(
                "audit log verified: {} entries, head {}, {} checkpoint(s) matched",
                summary.entries,
                &summary.head[..summary.head.len().min(16)],
                summary.checkpoints
            );
            Ok(OK)
        }
        Err(broken) => Err(Failure::new(
            FAILURE,
            anyhow!("the audit log does not verify: {broken}; keep this database's log as it is for inspection, and compare it with your exports and checkpoints"),
        )),
    }
}

async fn checkpoint(global: &Global, args: AuditCheckpointArgs) -> Result<u8, Failure> {
    let key = keys::load(&args.key)?;
    let client = open(global).await?;
    let database = identity::ensure(&client).await.map_err(engine_failure)?;
    let (size, head) = audit::head(&client).await.map_err(engine_failure)?;
    let now = approvals::now(&client).await.map_err(engine_failure)?;
    let signed = Signed::sign(
        Statement {
            kind: Kind::Checkpoint,
            database,
            subject: head.clone(),
            actions: vec![],
            migration: None,
            issued_at: now,
            expires_at: None,
            nonce: Statement::new_nonce(),
            key_id: key.public().id(),
            size: Some(size),
            revokes: None,
            previous: None,
        },
        &key,
    );
    let text = serde_json::to_string_pretty(&signed).expect("a checkpoint serialises") + "\n";
    match &args.out {
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| Failure::new(FAILURE, anyhow!("cannot write {} ({e})", path.display())))?,
        None => print!("{text}"),
    }
    eprintln!(
        "checkpoint: {size} entries, head {}; keep it outside the database, and pass it to `tandem audit verify --checkpoint`",
        &head[..16]
    );
    Ok(OK)
}
