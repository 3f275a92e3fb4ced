//! Act 3: the gates. A policy of three approvers where every phase needs two people other
//! than the plan's author; the author submits a signed plan; `apply` is refused (exit 4)
//! after one approval and runs after the second. At the end, the audit log is verified
//! against a checkpoint signed when the migration was done.

use anyhow::anyhow;
use engine::approval;
use engine::state::{self, approvals, audit, identity, Migration};
use gates::envelope::{DatabaseId, Kind, Signed, Statement};
use gates::keys::SecretKey;
use gates::policy::{Action, Phase as PolicyPhase, Policy};
use planner::plan::Plan;
use tokio_postgres::Client;

use super::banner;
use crate::commands::apply::engine_failure;
use crate::exit::Failure;

/// The people of the demo: the author (a developer) and the approvers (DBAs).
pub struct People {
    alice: SecretKey,
    bob: SecretKey,
    carol: SecretKey,
    /// The policy's fingerprint, pinned by the executor.
    pub pin: String,
    database: DatabaseId,
}

/// Set the policy, submit the plan signed by its author, show the refusal after one approval
/// and the grant after two. Returns the migration id.
pub async fn show(client: &mut Client, plan: &Plan) -> Result<(i64, People), Failure> {
    banner("3. Approval: the plan runs once two people other than its author signed it");
    state::install(client).await.map_err(engine_failure)?;
    let (alice, bob, carol) = (
        SecretKey::generate(),
        SecretKey::generate(),
        SecretKey::generate(),
    );
    eprintln!("$ tandem keygen --out alice.key   (and bob.key, carol.key: Ed25519, encrypted with a passphrase)");
    let mut toml = String::new();
    for (name, key) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        toml.push_str(&format!(
            "[[approver]]\nname = \"{name}\"\nkeys = [\"{}\"]\n\n",
            key.public().to_line(None)
        ));
    }
    toml.push_str("[require]\napply = 2\nrollback = 1\nfinalize = 1\npolicy = 2\n");
    let policy = Policy::from_toml(&toml).map_err(|e| anyhow!("the demo's policy: {e}"))?;
    let set = approvals::set_policy(client, &policy, &[], None)
        .await
        .map_err(engine_failure)?;
    eprintln!(
        "$ tandem policy set policy.toml     alice, bob, carol; every phase needs 2 people, finalize 1"
    );
    eprintln!(
        "  first policy of this database, trusted on first use: fingerprint {}…",
        &set.fingerprint[..16]
    );
    let database = identity::ensure(&*client).await.map_err(engine_failure)?;
    let people = People {
        alice,
        bob,
        carol,
        pin: set.fingerprint,
        database,
    };

    let tx = client
        .transaction()
        .await
        .map_err(|e| anyhow!("cannot submit: {e}"))?;
    let id = state::submit(&tx, plan, None)
        .await
        .map_err(engine_failure)?;
    let submission = people
        .sign(Kind::Submit, id, plan, &people.alice, &tx)
        .await?;
    approvals::add(&tx, id, &submission)
        .await
        .map_err(engine_failure)?;
    tx.commit()
        .await
        .map_err(|e| anyhow!("cannot submit: {e}"))?;
    eprintln!("$ tandem submit plan.json --key alice.key            -> migration {id}");

    people.approve(client, id, plan, "bob").await?;
    let m = Migration::load(&*client, id)
        .await
        .map_err(engine_failure)?;
    let prepare = Action::Phase(PolicyPhase::Prepare);
    match approval::check(&*client, &m, prepare, Some(&people.pin)).await {
        Err(engine::EngineError::Approval(why)) => {
            eprintln!("$ tandem apply {id}     -> refused, exit 4, nothing changed:");
            eprintln!("  {}", why.replace('\n', "\n  "));
        }
        Ok(_) => {
            return Err(Failure::from(anyhow!(
                "apply was allowed after one approval where the policy asks for two; this is a bug in tandem"
            )))
        }
        Err(e) => return Err(engine_failure(e)),
    }
    people.approve(client, id, plan, "carol").await?;
    eprintln!("  two people other than the author approved this exact plan, on this database: apply may run");
    Ok((id, people))
}

impl People {
    async fn approve(
        &self,
        client: &Client,
        id: i64,
        plan: &Plan,
        who: &str,
    ) -> Result<(), Failure> {
        let key = if who == "bob" { &self.bob } else { &self.carol };
        let signed = self.sign(Kind::Approve, id, plan, key, client).await?;
        approvals::add(client, id, &signed)
            .await
            .map_err(engine_failure)?;
        eprintln!("$ tandem approve {id} --key {who}.key                  -> signed by {who}");
        Ok(())
    }

    async fn sign(
        &self,
        kind: Kind,
        id: i64,
        plan: &Plan,
        key: &SecretKey,
        client: &impl tokio_postgres::GenericClient,
    ) -> Result<Signed, Failure> {
        let now = approvals::now(client).await.map_err(engine_failure)?;
        Ok(Signed::sign(
            Statement {
                kind,
                database: self.database.clone(),
                subject: plan.digest(),
                actions: vec![],
                migration: Some(id),
                issued_at: now,
                expires_at: (kind == Kind::Approve).then_some(now + 3600),
                nonce: Statement::new_nonce(),
                key_id: key.public().id(),
                size: None,
                revokes: None,
                previous: None,
            },
            key,
        ))
    }

    /// `tandem audit checkpoint` by Carol, then `tandem audit verify` against it.
    pub async fn verify_audit(&self, client: &Client) -> Result<String, Failure> {
        let (size, head) = audit::head(client).await.map_err(engine_failure)?;
        let now = approvals::now(client).await.map_err(engine_failure)?;
        let checkpoint = Signed::sign(
            Statement {
                kind: Kind::Checkpoint,
                database: self.database.clone(),
                subject: head,
                actions: vec![],
                migration: None,
                issued_at: now,
                expires_at: None,
                nonce: Statement::new_nonce(),
                key_id: self.carol.public().id(),
                size: Some(size),
                revokes: None,
                previous: None,
            },
            &self.carol,
        );
        let entries = audit::entries(client, 1).await.map_err(engine_failure)?;
        let trusted = [self.carol.public()];
        gates::chain::verify(&entries, &[checkpoint], &trusted)
            .map(|s| {
                format!(
                    "{} entries, hash chain intact, head {}… matches the checkpoint carol signed",
                    s.entries,
                    &s.head[..16]
                )
            })
            .map_err(|e| Failure::from(anyhow!("the audit log does not verify: {e}")))
    }
}
