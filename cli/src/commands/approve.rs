//! `tandem approve ID --key K`: sign an approval of migration ID's exact plan on this exact
//! database (the plan's digest recomputed from what is stored, the database's identity, the
//! actions covered, an expiry and a nonce), or with `--revoke` withdraw the signer's own.

use anyhow::anyhow;
use engine::approval::{self, next_action, Verdict};
use engine::state::{self, approvals, identity, Migration};
use gates::envelope::{Kind, Signed, Statement};
use gates::policy::Action;

use crate::args::{ApproveArgs, Global};
use crate::commands::apply::engine_failure;
use crate::commands::keys;
use crate::commands::submit::{parse_duration, sql};
use crate::connect;
use crate::exit::{Failure, OK, STALE};

/// How long an approval lasts without `--expires`.
const DEFAULT_EXPIRY: &str = "72h";

pub async fn run(global: &Global, args: ApproveArgs) -> Result<u8, Failure> {
    let actions = match &args.phases {
        Some(list) => parse_actions(list).map_err(Failure::usage)?,
        None => vec![],
    };
    let expiry = args.expires.as_deref().unwrap_or(DEFAULT_EXPIRY);
    let expires_in = parse_duration("--expires", expiry).map_err(Failure::usage)?;
    if expires_in == 0 {
        return Err(Failure::usage(
            "--expires 0 would approve nothing; give how long the approval lasts, like 24h",
        ));
    }
    let key = keys::load(&args.key)?;
    let key_id = key.public().id();
    let config = connect::resolve(global)?;
    let mut client = connect::target(&config).await?;
    if !state::installed(&client).await.map_err(engine_failure)? {
        return Err(engine_failure(engine::EngineError::UnknownMigration(
            args.id,
        )));
    }
    state::install(&mut client).await.map_err(engine_failure)?;
    let m = Migration::load(&client, args.id)
        .await
        .map_err(engine_failure)?;
    let database = identity::ensure(&client).await.map_err(engine_failure)?;
    let pin = global.policy_fingerprint.as_deref();
    let Some(policy) = approvals::policy(&client, pin)
        .await
        .map_err(engine_failure)?
    else {
        return Err(Failure::usage(
            "this database has no approval policy, so an approval would count for nothing; set one first with `tandem policy set POLICY.toml`",
        ));
    };
    let Some(person) = policy.policy.person_of(&key_id).map(|a| a.name.clone()) else {
        return Err(Failure::new(
            STALE,
            anyhow!("key {key_id} is not in this database's approval policy (version {}); sign with a key listed there (`tandem policy show`)", policy.version),
        ));
    };
    let (statements, _) = approvals::statements(&client, m.id)
        .await
        .map_err(engine_failure)?;
    let now = approvals::now(&client).await.map_err(engine_failure)?;
    let signed: Vec<Signed> = if args.revoke {
        let mine = |s: &&Signed| {
            policy
                .policy
                .person_of(&s.statement.key_id)
                .map(|a| &a.name)
                == Some(&person)
        };
        let revoked: Vec<&str> = statements
            .iter()
            .filter(|s| s.statement.kind == Kind::Revoke)
            .filter(mine)
            .filter_map(|s| s.statement.revokes.as_deref())
            .collect();
        let open: Vec<&Signed> = statements
            .iter()
            .filter(|s| s.statement.kind == Kind::Approve)
            .filter(mine)
            .filter(|s| !revoked.contains(&s.statement.nonce.as_str()))
            .collect();
        if open.is_empty() {
            return Err(Failure::usage(format!(
                "{person} has no approval of migration {} to revoke; nothing was changed",
                m.id
            )));
        }
        open.iter()
            .map(|a| {
                let mut s = statement(Kind::Revoke, &database, &m, now, None, vec![], &key_id);
                s.revokes = Some(a.statement.nonce.clone());
                Signed::sign(s, &key)
            })
            .collect()
    } else {
        if let Some(author) = statements
            .iter()
            .filter(|s| s.statement.kind == Kind::Submit && s.verify().is_ok())
            .find_map(|s| policy.policy.person_of(&s.statement.key_id))
        {
            if author.name == person {
                return Err(Failure::new(
                    STALE,
                    anyhow!("{person} submitted migration {} and cannot approve their own plan; another approver signs (`tandem policy show` lists them)", m.id),
                ));
            }
        }
        let expires_at = now.saturating_add(i64::try_from(expires_in).unwrap_or(i64::MAX));
        vec![Signed::sign(
            statement(
                Kind::Approve,
                &database,
                &m,
                now,
                Some(expires_at),
                actions,
                &key_id,
            ),
            &key,
        )]
    };
    let tx = client
        .transaction()
        .await
        .map_err(|e| engine_failure(sql("begin the approval", e)))?;
    for s in &signed {
        approvals::add(&tx, m.id, s).await.map_err(engine_failure)?;
    }
    tx.commit()
        .await
        .map_err(|e| engine_failure(sql("commit the approval", e)))?;
    if args.revoke {
        eprintln!(
            "{person} revoked {} approval(s) of migration {}",
            signed.len(),
            m.id
        );
    } else {
        eprintln!(
            "{person} approved migration {} (plan sha256 {}, {}), valid for {expiry}",
            m.id,
            &m.plan_sha256[..12],
            match &args.phases {
                Some(list) => format!("covering {list}"),
                None => "covering every action".into(),
            }
        );
    }
    if let Some(action) = next_action(m.phase) {
        match approval::evaluate(&client, &m, action, pin)
            .await
            .map_err(engine_failure)?
        {
            Ok(Verdict::Granted { granted, .. }) => eprintln!(
                "{} may run now: approved by {}",
                action.name(),
                granted.by.join(", ")
            ),
            Ok(Verdict::Ungated) => {}
            Err(missing) => eprintln!("still needed: {}", missing.message().replace('\n', "\n  ")),
        }
    }
    Ok(OK)
}

fn statement(
    kind: Kind,
    database: &gates::envelope::DatabaseId,
    m: &Migration,
    now: i64,
    expires_at: Option<i64>,
    actions: Vec<String>,
    key_id: &str,
) -> Statement {
    Statement {
        kind,
        database: database.clone(),
        subject: m.plan.digest(),
        actions,
        migration: Some(m.id),
        issued_at: now,
        expires_at,
        nonce: Statement::new_nonce(),
        key_id: key_id.to_string(),
        size: None,
        revokes: None,
        previous: None,
    }
}

/// `apply,rollback` → the action names an approval covers (validated).
fn parse_actions(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let name = if word == "apply" {
            "apply".to_string()
        } else {
            Action::parse(word)
                .map(|a| a.name())
                .map_err(|_| format!("--phases: {word:?} is not an action; use apply, prepare, dual_write, backfill, verify, cutover, rollback, finalize or extend"))?
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if out.is_empty() {
        return Err("--phases is empty; name what the approval covers, e.g. apply,rollback".into());
    }
    Ok(out)
}
