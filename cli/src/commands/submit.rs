//! `tandem submit plan.json`: register a plan in the target database, print its id.
//!
//! Refused (exit 4) when the plan was made for another database or the schema changed since;
//! refused (exit 3) when the plan has a step tandem will not run. Nothing is written then.

use anyhow::anyhow;
use gates::envelope::{Kind, Signed, Statement};
use gates::policy::Action;
use planner::plan::{Plan, Strategy};

use crate::args::{Global, SubmitArgs};
use crate::commands::apply::engine_failure;
use crate::commands::keys;
use crate::connect;
use crate::exit::{Failure, FINDINGS, OK, STALE, USAGE};

pub async fn run(global: &Global, args: SubmitArgs) -> Result<u8, Failure> {
    let text = std::fs::read_to_string(&args.plan).map_err(|e| {
        Failure::new(
            USAGE,
            anyhow!(
                "cannot read {} ({e}); give the file `tandem plan -o` wrote",
                args.plan.display()
            ),
        )
    })?;
    let plan = Plan::from_json(&text).map_err(|e| Failure::new(USAGE, e))?;
    let window = args
        .rollback_window
        .as_deref()
        .map(|w| parse_duration("--rollback-window", w))
        .transpose()
        .map_err(Failure::usage)?;
    if let Some(step) = plan.steps.iter().find(|s| s.strategy == Strategy::Refused) {
        return Err(Failure::new(
            FINDINGS,
            anyhow!(
                "the plan has a step tandem will not run: {}: {}; change it, make a new plan and submit that",
                step.description,
                step.refusal.as_deref().unwrap_or("refused")
            ),
        ));
    }
    if plan.steps.is_empty() {
        return Err(Failure::usage(
            "the plan has no steps: the database already matches; there is nothing to submit",
        ));
    }

    // The passphrase is asked before anything is written.
    let key = args
        .key
        .as_deref()
        .map(|k| keys::load_key(k, args.passphrase_file.as_deref()))
        .transpose()?;
    let config = connect::resolve(global)?;
    let mut client = connect::target(&config).await?;
    let identity = engine::database_identity(&client)
        .await
        .map_err(|e| Failure::new(crate::exit::FAILURE, e))?;
    if identity.system_identifier != plan.database.system_identifier
        || identity.database != plan.database.database
    {
        return Err(Failure::new(
            STALE,
            anyhow!(
                "the plan was made for database {:?} on server {}, not for this one ({:?} on server {}); make the plan against the database you submit it to",
                plan.database.database,
                plan.database.system_identifier,
                identity.database,
                identity.system_identifier
            ),
        ));
    }
    let live = engine::introspect(&client)
        .await
        .map_err(|e| Failure::new(crate::exit::FAILURE, e))?;
    if live.fingerprint() != plan.schema_fingerprint {
        return Err(Failure::new(
            STALE,
            anyhow!(
                "the schema changed since the plan was made (fingerprint {} then, {} now); make a new plan with `tandem plan` and submit that",
                short(&plan.schema_fingerprint),
                short(&live.fingerprint())
            ),
        ));
    }
    engine::state::install(&mut client)
        .await
        .map_err(engine_failure)?;
    let database = engine::state::identity::ensure(&client)
        .await
        .map_err(engine_failure)?;
    let policy = engine::state::approvals::policy(&client, global.policy_fingerprint.as_deref())
        .await
        .map_err(engine_failure)?;
    if let Some(p) = &policy {
        let needed = p.policy.require.required(Action::Submit);
        match &key {
            None if needed > 0 => {
                return Err(Failure::new(
                    STALE,
                    anyhow!("this database's approval policy (version {}) needs a signed submission: give --key with your private key; nothing was submitted", p.version),
                ))
            }
            Some(k) if p.policy.person_of(&k.public().id()).is_none() => {
                return Err(Failure::new(
                    STALE,
                    anyhow!("key {} is not in this database's approval policy (version {}); sign with a key listed there, or have the policy changed (`tandem policy set`); nothing was submitted", k.public().id(), p.version),
                ))
            }
            _ => {}
        }
    }
    let tx = client
        .transaction()
        .await
        .map_err(|e| engine_failure(sql("begin the submission", e)))?;
    let id = engine::state::submit(&tx, &plan, window)
        .await
        .map_err(engine_failure)?;
    if let Some(key) = &key {
        let now = engine::state::approvals::now(&tx)
            .await
            .map_err(engine_failure)?;
        let statement = Statement {
            kind: Kind::Submit,
            database: database.clone(),
            subject: plan.digest(),
            actions: vec![],
            migration: Some(id),
            issued_at: now,
            expires_at: None,
            nonce: Statement::new_nonce(),
            key_id: key.public().id(),
            size: None,
            revokes: None,
            previous: None,
        };
        let signed = Signed::sign(statement, key);
        engine::state::approvals::add(&tx, id, &signed)
            .await
            .map_err(engine_failure)?;
    }
    tx.commit()
        .await
        .map_err(|e| engine_failure(sql("commit the submission", e)))?;
    println!("{id}");
    if plan.dual_read_min > 0 {
        eprintln!(
            "before cutover, verification waits for {} dual-read comparisons by `tandem proxy`, with no mismatch",
            plan.dual_read_min
        );
    }
    eprintln!(
        "submitted migration {id} ({} step(s), plan sha256 {}); run it with `tandem apply {id}`",
        plan.steps.len(),
        short(&plan.digest())
    );
    Ok(OK)
}

/// A failed statement of the submission's own transaction.
pub(crate) fn sql(what: &str, e: tokio_postgres::Error) -> engine::EngineError {
    engine::EngineError::Refused {
        reason: format!("could not {what} ({e})"),
        remedy: "nothing was submitted; check the server, then submit again".into(),
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// `30d`, `12h`, `90m`, `45s` (or a bare number of seconds) as seconds; `what` names the
/// argument in the error (`--rollback-window`, `extend`'s DURATION).
pub fn parse_duration(what: &str, s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| {
        format!("{what} {s:?} is not a duration; write it like 30d, 12h, 90m or 45s")
    })?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{what} {s:?}: unknown unit {unit:?}; use s, m, h or d"
            ))
        }
    };
    n.checked_mul(mult)
        .filter(|secs| *secs <= MAX_DURATION)
        .ok_or_else(|| format!("{what} {s:?} is too long; write at most 36500d"))
}

/// The longest duration [`parse_duration`] accepts: a hundred years.
const MAX_DURATION: u64 = 36_500 * 86_400;
