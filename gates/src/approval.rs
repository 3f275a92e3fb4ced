//! The approval decision: do the stored signed statements let this action start?
//!
//! Pure: the engine gathers the policy, the plan's hash (recomputed from the stored plan), the
//! live database's identity, the time, and every statement stored for the migration.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use crate::envelope::{DatabaseId, Kind, Signed};
use crate::policy::{Action, Approver, Policy};
use crate::utc;

/// What [`decide`] decides over.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub policy: &'a Policy,
    pub action: Action,
    pub migration: i64,
    /// Recomputed by the engine from the stored plan.
    pub plan_sha256: &'a str,
    /// The live database's identity.
    pub database: &'a DatabaseId,
    /// Unix seconds.
    pub now: i64,
    /// The author's signed submission.
    pub submission: Option<&'a Signed>,
    /// Every Approve and Revoke statement stored for the migration.
    pub approvals: &'a [Signed],
}

/// The action may start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    /// The people whose signatures counted, sorted.
    pub by: Vec<String>,
    pub required: u32,
}

/// The action may not start yet: who counted, what did not and why, who could still approve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub action: Action,
    /// The migration, for the remedy; `None` for a policy change.
    pub migration: Option<i64>,
    pub required: u32,
    /// People whose approvals count, sorted.
    pub counted: Vec<String>,
    /// Each statement that did not count: (`key id (person)`, or `submission`, and the reason).
    pub rejected: Vec<(String, String)>,
    /// People in the policy who have not approved and are not the author, sorted.
    pub could_approve: Vec<String>,
}

impl Missing {
    /// The whole story in a few lines, ending with what to do.
    pub fn message(&self) -> String {
        let mut m = format!(
            "{} needs {} {} by distinct people; counted {}",
            self.action,
            self.required,
            if self.required == 1 {
                "approval"
            } else {
                "approvals"
            },
            self.counted.len()
        );
        if !self.counted.is_empty() {
            let _ = write!(m, " ({})", self.counted.join(", "));
        }
        if !self.rejected.is_empty() {
            m.push_str("\nnot counted:");
            for (who, why) in &self.rejected {
                let _ = write!(m, "\n  {who}: {why}");
            }
        }
        if self.could_approve.is_empty() {
            m.push_str("\nnobody else in the policy can approve");
        } else {
            let _ = write!(m, "\ncould approve: {}", self.could_approve.join(", "));
        }
        m.push_str("\nto go on: ");
        if self.rejected.iter().any(|(who, _)| who == "submission") {
            m.push_str("have the author submit the plan again with `tandem submit`, then ");
        }
        let who = if self.could_approve.is_empty() {
            "a person added to the policy (`tandem policy set`)"
        } else {
            "one of them"
        };
        match (self.action, self.migration) {
            (_, Some(id)) if self.action != Action::Policy => {
                let _ = write!(m, "run `tandem approve {id} --key KEY` as {who}");
            }
            _ => {
                let _ = write!(
                    m,
                    "run `tandem policy set FILE --key KEY` with the keys of {who}"
                );
            }
        }
        m
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Missing {}

/// `ed25519:… (alice)`, or the key id alone when nobody in the policy holds it.
fn label(policy: &Policy, s: &Signed) -> String {
    let id = &s.statement.key_id;
    match holder(policy, s) {
        Some(a) => format!("{id} ({})", a.name),
        None => id.clone(),
    }
}

/// The approver holding exactly the statement's public key.
fn holder<'p>(policy: &'p Policy, s: &Signed) -> Option<&'p Approver> {
    let id = s.public_key.id();
    policy
        .person_of(&id)
        .filter(|_| policy.key(&id) == Some(&s.public_key))
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn check_submission<'p>(req: &Request<'_>, policy: &'p Policy) -> Result<&'p Approver, String> {
    let Some(s) = req.submission else {
        return Err("there is no signed submission of this plan".into());
    };
    if let Err(e) = s.verify() {
        return Err(format!("its signature does not hold ({e})"));
    }
    let st = &s.statement;
    if st.kind != Kind::Submit {
        return Err(format!("it is a {} statement, not a submission", st.kind));
    }
    let Some(author) = holder(policy, s) else {
        return Err(format!(
            "it is signed by key {}, which is not in the policy",
            st.key_id
        ));
    };
    if st.subject != req.plan_sha256 {
        return Err(format!(
            "{} signed another plan (sha {}…, this one is {}…): the plan changed after it was submitted",
            author.name,
            short(&st.subject),
            short(req.plan_sha256)
        ));
    }
    if let Some(diff) = st.database.difference(req.database) {
        return Err(format!("{} signed it for {diff}", author.name));
    }
    if st.migration != Some(req.migration) {
        return Err(format!(
            "{} signed it for migration {}, not {}",
            author.name,
            st.migration.map_or("none".into(), |m| m.to_string()),
            req.migration
        ));
    }
    if let Some(t) = st.expires_at.filter(|&t| t <= req.now) {
        return Err(format!(
            "{}'s submission expired at {}",
            author.name,
            utc(t)
        ));
    }
    Ok(author)
}

/// Decides whether `req.action` may start. See the crate's rules: every statement must verify,
/// come from a key in the policy, be an approval of this exact plan on this exact database for
/// this migration, be unexpired, cover the action, not be revoked or replayed, and not be the
/// author's; then distinct people are counted.
pub fn decide(req: &Request<'_>) -> Result<Granted, Missing> {
    let policy = req.policy;
    let required = policy.required(req.action);
    let mut rejected: Vec<(String, String)> = Vec::new();

    let submission = check_submission(req, policy);
    let author: Option<&str> = submission.as_ref().ok().map(|a| a.name.as_str());
    if let Err(why) = &submission {
        if policy.require.submit >= 1 {
            rejected.push(("submission".into(), why.clone()));
        }
    }

    if req.action == Action::Submit {
        return match (policy.require.submit, author) {
            (0, _) => Ok(Granted {
                by: author.into_iter().map(String::from).collect(),
                required: 0,
            }),
            (_, Some(a)) => Ok(Granted {
                by: vec![a.to_string()],
                required: policy.require.submit,
            }),
            (_, None) => Err(Missing {
                action: req.action,
                migration: Some(req.migration),
                required: policy.require.submit,
                counted: Vec::new(),
                rejected,
                could_approve: Vec::new(),
            }),
        };
    }

    // Nonces seen more than once across everything stored: every copy is a replay suspect.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for s in req.approvals.iter().chain(req.submission) {
        *seen.entry(s.statement.nonce.as_str()).or_default() += 1;
    }

    // Withdrawn approvals: (person, nonce) from valid revocations for this migration.
    let revoked: HashSet<(&str, &str)> = req
        .approvals
        .iter()
        .filter(|s| {
            s.statement.kind == Kind::Revoke && s.statement.migration == Some(req.migration)
        })
        .filter(|s| s.verify().is_ok())
        .filter_map(|s| {
            let person = holder(policy, s)?;
            Some((person.name.as_str(), s.statement.revokes.as_deref()?))
        })
        .collect();

    let mut counted: BTreeSet<&str> = BTreeSet::new();
    for s in req.approvals {
        let st = &s.statement;
        if st.kind == Kind::Revoke {
            continue;
        }
        let reason = match approval_problem(req, s, author, &seen, &revoked) {
            Some(reason) => reason,
            None => {
                if let Some(person) = holder(policy, s) {
                    counted.insert(&person.name);
                }
                continue;
            }
        };
        rejected.push((label(policy, s), reason));
    }

    let could_approve: Vec<String> = {
        let mut v: Vec<String> = policy
            .approvers
            .iter()
            .map(|a| a.name.as_str())
            .filter(|n| !counted.contains(n) && Some(*n) != author)
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let counted: Vec<String> = counted.into_iter().map(String::from).collect();
    let submission_ok = submission.is_ok() || policy.require.submit == 0;
    if submission_ok && counted.len() as u64 >= u64::from(required) {
        Ok(Granted {
            by: counted,
            required,
        })
    } else {
        Err(Missing {
            action: req.action,
            migration: Some(req.migration),
            required,
            counted,
            rejected,
            could_approve,
        })
    }
}

/// Why an Approve statement does not count, or `None` when it does.
fn approval_problem(
    req: &Request<'_>,
    s: &Signed,
    author: Option<&str>,
    seen: &HashMap<&str, usize>,
    revoked: &HashSet<(&str, &str)>,
) -> Option<String> {
    let st = &s.statement;
    if st.kind != Kind::Approve {
        return Some(format!("it is a {} statement, not an approval", st.kind));
    }
    if let Err(e) = s.verify() {
        return Some(format!("the signature does not hold ({e})"));
    }
    let Some(person) = holder(req.policy, s) else {
        return Some(format!(
            "key {} is not in the policy: add it to its owner's keys with `tandem policy set`, or approve with a key that is",
            st.key_id
        ));
    };
    if st.subject != req.plan_sha256 {
        return Some(format!(
            "signed another plan (sha {}…, this one is {}…): the plan changed since, so approve it again",
            short(&st.subject),
            short(req.plan_sha256)
        ));
    }
    if let Some(diff) = st.database.difference(req.database) {
        return Some(format!("signed for {diff}"));
    }
    if st.migration != Some(req.migration) {
        return Some(format!(
            "signed for migration {}, not {}",
            st.migration.map_or("none".into(), |m| m.to_string()),
            req.migration
        ));
    }
    if let Some(t) = st.expires_at.filter(|&t| t <= req.now) {
        return Some(format!("expired at {} (approve it again)", utc(t)));
    }
    if seen.get(st.nonce.as_str()).copied().unwrap_or(0) > 1 {
        return Some(format!(
            "nonce reused: nonce {} appears more than once, so this approval may be a replayed copy (approve it again)",
            st.nonce
        ));
    }
    if revoked.contains(&(person.name.as_str(), st.nonce.as_str())) {
        return Some(format!("{} revoked this approval", person.name));
    }
    if Some(person.name.as_str()) == author {
        return Some(format!(
            "the author cannot approve their own plan ({} submitted it)",
            person.name
        ));
    }
    if !st.actions.is_empty() && !st.actions.iter().any(|a| req.action.covered_by(a)) {
        return Some(format!("it covers only {}", st.actions.join(", ")));
    }
    None
}

/// Whether a new policy (by fingerprint) may replace `current`: it needs Policy statements
/// about exactly that fingerprint, naming `current` as the policy replaced, on this database,
/// unexpired, by at least `current.require.policy` distinct people of the current policy.
///
/// `database` is `None` when checking a version stored earlier: its signatures were checked
/// against the database when it was set, and a database renamed, upgraded (a new system
/// identifier) or restored since keeps its policy; `previous` still binds each signature to
/// its one change.
pub fn policy_change(
    current: &Policy,
    new_fingerprint: &str,
    database: Option<&DatabaseId>,
    now: i64,
    signatures: &[Signed],
) -> Result<Granted, Missing> {
    let required = current.require.policy;
    let current_fp = current.fingerprint();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for s in signatures {
        *seen.entry(s.statement.nonce.as_str()).or_default() += 1;
    }
    let mut counted: BTreeSet<&str> = BTreeSet::new();
    let mut rejected = Vec::new();
    for s in signatures {
        let st = &s.statement;
        let problem = if st.kind != Kind::Policy {
            Some(format!(
                "it is a {} statement, not a policy signature",
                st.kind
            ))
        } else if let Err(e) = s.verify() {
            Some(format!("the signature does not hold ({e})"))
        } else if holder(current, s).is_none() {
            Some(format!(
                "key {} is not in the current policy: only its people can change it",
                st.key_id
            ))
        } else if st.subject != new_fingerprint {
            Some(format!(
                "signed another policy (fingerprint {}…, this one is {}…)",
                short(&st.subject),
                short(new_fingerprint)
            ))
        } else if st.previous.as_deref() != Some(current_fp.as_str()) {
            Some(format!(
                "signed a change from another policy ({}…, the current one is {}…)",
                st.previous.as_deref().map_or("none", short),
                short(&current_fp)
            ))
        } else if let Some(diff) = database.and_then(|d| st.database.difference(d)) {
            Some(format!("signed for {diff}"))
        } else if let Some(t) = st.expires_at.filter(|&t| t <= now) {
            Some(format!("expired at {} (sign it again)", utc(t)))
        } else if seen.get(st.nonce.as_str()).copied().unwrap_or(0) > 1 {
            Some(format!(
                "nonce reused: nonce {} appears more than once",
                st.nonce
            ))
        } else {
            None
        };
        match problem {
            Some(why) => rejected.push((label(current, s), why)),
            None => {
                if let Some(p) = holder(current, s) {
                    counted.insert(&p.name);
                }
            }
        }
    }
    let mut could_approve: Vec<String> = current
        .approvers
        .iter()
        .map(|a| a.name.clone())
        .filter(|n| !counted.contains(n.as_str()))
        .collect();
    could_approve.sort();
    let counted: Vec<String> = counted.into_iter().map(String::from).collect();
    if counted.len() as u64 >= u64::from(required) {
        Ok(Granted {
            by: counted,
            required,
        })
    } else {
        Err(Missing {
            action: Action::Policy,
            migration: None,
            required,
            counted,
            rejected,
            could_approve,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::tests::db;
    use crate::envelope::Statement;
    use crate::keys::SecretKey;
    use crate::policy::tests::policy_toml;
    use crate::policy::Phase;

    const NOW: i64 = 1_700_000_000;
    const MIGRATION: i64 = 42;
    const BACKFILL: Action = Action::Phase(Phase::Backfill);

    struct World {
        alice: SecretKey,
        bob: SecretKey,
        bob2: SecretKey,
        carol: SecretKey,
        dave: SecretKey,
        policy: Policy,
        plan: String,
        submission: Signed,
    }

    fn world() -> World {
        let (alice, bob, bob2, carol, dave) = (
            SecretKey::generate(),
            SecretKey::generate(),
            SecretKey::generate(),
            SecretKey::generate(),
            SecretKey::generate(),
        );
        let policy = Policy::from_toml(&policy_toml(
            &[
                ("alice", &[&alice]),
                ("bob", &[&bob, &bob2]),
                ("carol", &[&carol]),
                ("dave", &[&dave]),
            ],
            "apply = 2\npolicy = 2\n",
        ))
        .unwrap();
        let plan = crate::canonical::sha256_hex(b"the plan");
        let submission = submit(&plan, &alice);
        World {
            alice,
            bob,
            bob2,
            carol,
            dave,
            policy,
            plan,
            submission,
        }
    }

    fn submit(plan: &str, key: &SecretKey) -> Signed {
        let mut st = Statement::new(Kind::Submit, &db(), plan, NOW - 100);
        st.migration = Some(MIGRATION);
        Signed::sign(st, key)
    }

    fn approval(plan: &str, key: &SecretKey, edit: impl FnOnce(&mut Statement)) -> Signed {
        let mut st = Statement::new(Kind::Approve, &db(), plan, NOW - 50);
        st.migration = Some(MIGRATION);
        st.expires_at = Some(NOW + 3600);
        edit(&mut st);
        Signed::sign(st, key)
    }

    fn revoke(key: &SecretKey, nonce: &str) -> Signed {
        let mut st = Statement::new(Kind::Revoke, &db(), &"0".repeat(64), NOW - 10);
        st.migration = Some(MIGRATION);
        st.revokes = Some(nonce.to_string());
        Signed::sign(st, key)
    }

    fn run(w: &World, approvals: &[Signed]) -> Result<Granted, Missing> {
        decide(&Request {
            policy: &w.policy,
            action: BACKFILL,
            migration: MIGRATION,
            plan_sha256: &w.plan,
            database: &db(),
            now: NOW,
            submission: Some(&w.submission),
            approvals,
        })
    }

    fn reason(m: &Missing, needle: &str) -> bool {
        m.rejected.iter().any(|(_, why)| why.contains(needle))
    }

    #[test]
    fn two_distinct_approvers_grant() {
        let w = world();
        let a = [
            approval(&w.plan, &w.bob, |_| {}),
            approval(&w.plan, &w.carol, |s| s.actions = vec!["apply".into()]),
        ];
        let g = run(&w, &a).unwrap();
        assert_eq!(g.by, ["bob", "carol"]);
        assert_eq!(g.required, 2);

        let m = run(&w, &a[..1]).unwrap_err();
        assert_eq!(m.counted, ["bob"]);
        assert_eq!(m.could_approve, ["carol", "dave"]);
        let msg = m.message();
        assert!(
            msg.contains("apply:backfill needs 2 approvals by distinct people; counted 1 (bob)"),
            "{msg}"
        );
        assert!(msg.contains("tandem approve 42 --key KEY"), "{msg}");
    }

    #[test]
    fn a_forged_signature_does_not_count() {
        let w = world();
        let mut forged = approval(&w.plan, &w.carol, |_| {});
        let mut sig = forged.signature.to_base64().into_bytes();
        sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
        forged.signature =
            crate::keys::Signature::parse(std::str::from_utf8(&sig).unwrap()).unwrap();
        let m = run(&w, &[approval(&w.plan, &w.bob, |_| {}), forged]).unwrap_err();
        assert_eq!(m.counted, ["bob"]);
        assert!(reason(&m, "signature does not hold"), "{m}");
    }

    #[test]
    fn another_plan_database_or_instance_does_not_count() {
        let w = world();
        let bob = approval(&w.plan, &w.bob, |_| {});
        let other_plan = approval(&"9".repeat(64), &w.carol, |_| {});
        let m = run(&w, &[bob.clone(), other_plan]).unwrap_err();
        assert!(reason(&m, "signed another plan (sha 999999999999…"), "{m}");
        assert!(m.rejected[0].0.contains("(carol)"), "{m}");

        let other_db = approval(&w.plan, &w.carol, |s| {
            s.database.database = "staging".into()
        });
        let m = run(&w, &[bob.clone(), other_db]).unwrap_err();
        assert!(
            reason(&m, "signed for database `staging`, not `shop`"),
            "{m}"
        );

        let clone = approval(&w.plan, &w.carol, |s| s.database.instance = "beef".into());
        let m = run(&w, &[bob.clone(), clone]).unwrap_err();
        assert!(reason(&m, "restored backup or clone"), "{m}");

        let other_migration = approval(&w.plan, &w.carol, |s| s.migration = Some(41));
        let m = run(&w, &[bob, other_migration]).unwrap_err();
        assert!(reason(&m, "migration 41, not 42"), "{m}");
    }

    #[test]
    fn expired_and_uncovered_approvals_do_not_count() {
        let w = world();
        let bob = approval(&w.plan, &w.bob, |_| {});
        let expired = approval(&w.plan, &w.carol, |s| s.expires_at = Some(NOW));
        let m = run(&w, &[bob.clone(), expired]).unwrap_err();
        assert!(reason(&m, "expired at 2023-11-14 22:13:20 UTC"), "{m}");

        let cutover_only = approval(&w.plan, &w.carol, |s| {
            s.actions = vec!["apply:cutover".into()]
        });
        let m = run(&w, &[bob, cutover_only]).unwrap_err();
        assert!(reason(&m, "covers only apply:cutover"), "{m}");
    }

    #[test]
    fn a_replayed_nonce_rejects_both_copies() {
        let w = world();
        let bob = approval(&w.plan, &w.bob, |_| {});
        let carol = approval(&w.plan, &w.carol, |_| {});
        let m = run(&w, &[bob.clone(), carol.clone(), carol.clone()]).unwrap_err();
        assert_eq!(m.counted, ["bob"]);
        assert_eq!(
            m.rejected
                .iter()
                .filter(|(_, r)| r.contains("nonce reused"))
                .count(),
            2
        );
        // The same nonce under another signer is a replay as well.
        let dave = approval(&w.plan, &w.dave, |s| {
            s.nonce = carol.statement.nonce.clone()
        });
        let m = run(&w, &[bob, carol, dave]).unwrap_err();
        assert_eq!(m.counted, ["bob"]);
    }

    #[test]
    fn the_author_cannot_approve_their_own_plan() {
        let w = world();
        let m = run(
            &w,
            &[
                approval(&w.plan, &w.alice, |_| {}),
                approval(&w.plan, &w.bob, |_| {}),
            ],
        )
        .unwrap_err();
        assert!(
            reason(
                &m,
                "the author cannot approve their own plan (alice submitted it)"
            ),
            "{m}"
        );
        assert!(!m.could_approve.contains(&"alice".to_string()));
    }

    #[test]
    fn one_person_with_two_keys_counts_once() {
        let w = world();
        let m = run(
            &w,
            &[
                approval(&w.plan, &w.bob, |_| {}),
                approval(&w.plan, &w.bob2, |_| {}),
            ],
        )
        .unwrap_err();
        assert_eq!(m.counted, ["bob"]);
        assert!(m.rejected.is_empty(), "{m}");
    }

    #[test]
    fn only_the_same_person_can_revoke_an_approval() {
        let w = world();
        let bob = approval(&w.plan, &w.bob, |_| {});
        let carol = approval(&w.plan, &w.carol, |_| {});
        let nonce = carol.statement.nonce.clone();
        // Carol withdraws with her only key: no longer granted.
        let m = run(&w, &[bob.clone(), carol.clone(), revoke(&w.carol, &nonce)]).unwrap_err();
        assert!(reason(&m, "carol revoked this approval"), "{m}");
        // Dave cannot withdraw Carol's approval.
        assert!(run(&w, &[bob.clone(), carol.clone(), revoke(&w.dave, &nonce)]).is_ok());
        // Bob's other key withdraws Bob's approval.
        let bob_nonce = bob.statement.nonce.clone();
        let m = run(&w, &[bob, carol, revoke(&w.bob2, &bob_nonce)]).unwrap_err();
        assert!(reason(&m, "bob revoked"), "{m}");
    }

    #[test]
    fn a_key_outside_the_policy_does_not_count() {
        let w = world();
        let stranger = SecretKey::generate();
        let m = run(
            &w,
            &[
                approval(&w.plan, &w.bob, |_| {}),
                approval(&w.plan, &stranger, |_| {}),
            ],
        )
        .unwrap_err();
        assert!(
            reason(
                &m,
                &format!("key {} is not in the policy", stranger.public().id())
            ),
            "{m}"
        );
    }

    #[test]
    fn the_submission_must_be_valid() {
        let w = world();
        let approvals = [
            approval(&w.plan, &w.bob, |_| {}),
            approval(&w.plan, &w.carol, |_| {}),
        ];
        let mut req = Request {
            policy: &w.policy,
            action: BACKFILL,
            migration: MIGRATION,
            plan_sha256: &w.plan,
            database: &db(),
            now: NOW,
            submission: None,
            approvals: &approvals,
        };
        let m = decide(&req).unwrap_err();
        assert_eq!(m.counted, ["bob", "carol"]);
        assert!(m.message().contains("tandem submit"), "{}", m.message());

        let by_stranger = submit(&w.plan, &SecretKey::generate());
        req.submission = Some(&by_stranger);
        let m = decide(&req).unwrap_err();
        assert!(reason(&m, "not in the policy"), "{m}");

        let other_plan = submit(&"1".repeat(64), &w.alice);
        req.submission = Some(&other_plan);
        let m = decide(&req).unwrap_err();
        assert!(reason(&m, "alice signed another plan"), "{m}");

        req.submission = Some(&w.submission);
        assert!(decide(&req).is_ok());
        req.action = Action::Submit;
        assert_eq!(decide(&req).unwrap().by, ["alice"]);
    }

    fn policy_sig(key: &SecretKey, current: &Policy, new_fp: &str) -> Signed {
        let mut st = Statement::new(Kind::Policy, &db(), new_fp, NOW);
        st.previous = Some(current.fingerprint());
        st.expires_at = Some(NOW + 60);
        Signed::sign(st, key)
    }

    #[test]
    fn a_policy_change_needs_enough_people_of_the_current_policy() {
        let w = world();
        let newp = Policy::from_toml(&policy_toml(
            &[("alice", &[&w.alice]), ("bob", &[&w.bob])],
            "apply = 1\n",
        ))
        .unwrap();
        let fp = newp.fingerprint();
        let stranger = SecretKey::generate();
        let few = [
            policy_sig(&w.bob, &w.policy, &fp),
            policy_sig(&w.bob2, &w.policy, &fp),
            policy_sig(&stranger, &w.policy, &fp),
        ];
        let m = policy_change(&w.policy, &fp, Some(&db()), NOW, &few).unwrap_err();
        assert_eq!(m.counted, ["bob"]);
        assert!(reason(&m, "not in the current policy"), "{m}");
        assert!(m.message().contains("tandem policy set"), "{}", m.message());

        let mut stale = policy_sig(&w.dave, &w.policy, &fp);
        stale.statement.previous = Some(newp.fingerprint());
        let stale = Signed::sign(stale.statement, &w.dave);
        let m =
            policy_change(&w.policy, &fp, Some(&db()), NOW, &[few[0].clone(), stale]).unwrap_err();
        assert!(reason(&m, "change from another policy"), "{m}");

        let enough = [few[0].clone(), policy_sig(&w.carol, &w.policy, &fp)];
        let g = policy_change(&w.policy, &fp, Some(&db()), NOW, &enough).unwrap();
        assert_eq!(g.by, ["bob", "carol"]);
        // The same signatures do not carry another fingerprint, nor outlive their expiry.
        assert!(policy_change(&w.policy, &"f".repeat(64), Some(&db()), NOW, &enough).is_err());
        assert!(policy_change(&w.policy, &fp, Some(&db()), NOW + 60, &enough).is_err());
    }
}
