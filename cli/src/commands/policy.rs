//! `tandem policy set POLICY.toml [--key K]...` and `tandem policy show`.
//!
//! A database's first policy is trusted on first use: stored, audited, and its fingerprint
//! printed to be pinned (`--policy-fingerprint`). Each later one must be signed by the
//! current policy's `policy` threshold of distinct approvers, so write access to schema
//! `tandem` is not enough to make oneself an approver.

use anyhow::anyhow;
use engine::state::{self, approvals, identity};
use gates::envelope::{Kind, Signed, Statement};
use gates::policy::Policy;

use crate::args::{Global, PolicyCommand, PolicySetArgs};
use crate::commands::apply::engine_failure;
use crate::commands::keys;
use crate::connect;
use crate::exit::{Failure, OK};

pub async fn run(global: &Global, command: PolicyCommand) -> Result<u8, Failure> {
    match command {
        PolicyCommand::Set(args) => set(global, args).await,
        PolicyCommand::Show => show(global).await,
    }
}

async fn set(global: &Global, args: PolicySetArgs) -> Result<u8, Failure> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| Failure::usage(format!("cannot read {} ({e})", args.file.display())))?;
    let new = Policy::from_toml(&text)
        .map_err(|e| Failure::usage(format!("{}: {e}", args.file.display())))?;
    if args.passphrase_file.len() > args.key.len() {
        return Err(Failure::usage(
            "more --passphrase-file than --key: give one passphrase file per key, in the same order",
        ));
    }
    let signers = args
        .key
        .iter()
        .enumerate()
        .map(|(i, k)| keys::load_key(k, args.passphrase_file.get(i).map(|p| p.as_path())))
        .collect::<Result<Vec<_>, _>>()?;
    let config = connect::resolve(global)?;
    let mut client = connect::target(&config).await?;
    state::install(&mut client).await.map_err(engine_failure)?;
    let database = identity::ensure(&client).await.map_err(engine_failure)?;
    let now = approvals::now(&client).await.map_err(engine_failure)?;
    let current = approvals::policy(&client, global.policy_fingerprint.as_deref())
        .await
        .map_err(engine_failure)?;
    let fingerprint = new.fingerprint();
    let signatures: Vec<Signed> = signers
        .iter()
        .map(|key| {
            Signed::sign(
                Statement {
                    kind: Kind::Policy,
                    database: database.clone(),
                    subject: fingerprint.clone(),
                    actions: vec![],
                    migration: None,
                    issued_at: now,
                    expires_at: None,
                    nonce: Statement::new_nonce(),
                    key_id: key.public().id(),
                    size: None,
                    revokes: None,
                    // The change is from this policy to the new one: the signature cannot
                    // be replayed onto another change.
                    previous: current.as_ref().map(|c| c.fingerprint.clone()),
                },
                key,
            )
        })
        .collect();
    let done = approvals::set_policy(
        &mut client,
        &new,
        &signatures,
        global.policy_fingerprint.as_deref(),
    )
    .await
    .map_err(engine_failure)?;
    if done.first {
        if !signatures.is_empty() {
            eprintln!("(the first policy of a database needs no signatures; the --key given were not needed)");
        }
        eprintln!(
            "policy version 1 set, trusted on first use: {} approver(s).\nfingerprint {}\nPin it: pass --policy-fingerprint {} to apply, rollback and finalize (or keep it in your runbook), so a policy replaced behind tandem's back is refused.",
            new.approvers.len(),
            done.fingerprint,
            done.fingerprint
        );
    } else {
        eprintln!(
            "policy version {} set, signed by the current approvers.\nfingerprint {}",
            done.version, done.fingerprint
        );
    }
    println!("{}", done.fingerprint);
    Ok(OK)
}

async fn show(global: &Global) -> Result<u8, Failure> {
    let config = connect::resolve(global)?;
    let client = connect::target(&config).await?;
    if !state::installed(&client).await.map_err(engine_failure)? {
        eprintln!("no approval policy: tandem was never used on this database");
        return Ok(OK);
    }
    match approvals::policy(&client, global.policy_fingerprint.as_deref())
        .await
        .map_err(engine_failure)?
    {
        None => Err(Failure::new(
            crate::exit::FAILURE,
            anyhow!("this database has no approval policy: migrations run without approvals; set one with `tandem policy set POLICY.toml`"),
        )),
        Some(p) => {
            println!("# version {}\n{}", p.version, p.policy.to_toml());
            Ok(OK)
        }
    }
}
