//! The approval policy: who may approve, and how many distinct people each action needs.
//!
//! People write it in TOML; the database stores its canonical JSON, whose SHA-256 is the
//! policy's fingerprint.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical::{sha256_hex, to_canonical};
use crate::keys::{KeyError, PublicKey};

/// The format marker inside the canonical JSON.
const FORMAT: &str = "tandem-policy-v1";

/// A phase of `tandem apply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Prepare,
    DualWrite,
    Backfill,
    Verify,
    Cutover,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Prepare,
        Phase::DualWrite,
        Phase::Backfill,
        Phase::Verify,
        Phase::Cutover,
    ];

    /// `prepare`, `dual_write`, `backfill`, `verify` or `cutover`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::DualWrite => "dual_write",
            Phase::Backfill => "backfill",
            Phase::Verify => "verify",
            Phase::Cutover => "cutover",
        }
    }

    /// A phase by name; `dual-write` is accepted for `dual_write`.
    pub fn parse(name: &str) -> Option<Phase> {
        let name = name.trim();
        Phase::ALL
            .into_iter()
            .find(|p| p.name() == name || (name == "dual-write" && *p == Phase::DualWrite))
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something that needs approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Submit,
    Phase(Phase),
    Rollback,
    Finalize,
    Extend,
    Policy,
}

impl Action {
    /// Every action, in the order the policy lists them.
    pub const ALL: [Action; 10] = [
        Action::Submit,
        Action::Phase(Phase::Prepare),
        Action::Phase(Phase::DualWrite),
        Action::Phase(Phase::Backfill),
        Action::Phase(Phase::Verify),
        Action::Phase(Phase::Cutover),
        Action::Rollback,
        Action::Finalize,
        Action::Extend,
        Action::Policy,
    ];

    /// `submit`, `apply:backfill`, `rollback`, `finalize`, `extend` or `policy`.
    pub fn name(self) -> String {
        match self {
            Action::Phase(p) => format!("apply:{}", p.name()),
            Action::Submit => "submit".into(),
            Action::Rollback => "rollback".into(),
            Action::Finalize => "finalize".into(),
            Action::Extend => "extend".into(),
            Action::Policy => "policy".into(),
        }
    }

    /// An action by name: the names [`Action::name`] gives, and a phase's name alone
    /// (`backfill`, `dual-write`) for its `apply:` action.
    pub fn parse(name: &str) -> Result<Action, PolicyError> {
        let trimmed = name.trim();
        let action = match trimmed {
            "submit" => Some(Action::Submit),
            "rollback" => Some(Action::Rollback),
            "finalize" => Some(Action::Finalize),
            "extend" => Some(Action::Extend),
            "policy" => Some(Action::Policy),
            other => Phase::parse(other.strip_prefix("apply:").unwrap_or(other)).map(Action::Phase),
        };
        action.ok_or_else(|| PolicyError::UnknownAction(trimmed.to_string()))
    }

    /// True when an approval listing `entry` covers this action: the entry names it, or is
    /// `apply` and this is a phase of apply.
    pub fn covered_by(self, entry: &str) -> bool {
        (entry.trim() == "apply" && matches!(self, Action::Phase(_)))
            || Action::parse(entry).is_ok_and(|a| a == self)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Action {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Action, PolicyError> {
        Action::parse(s)
    }
}

/// Why a policy was refused, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy file does not parse: {0}; fix it (its keys are `[[approver]]` with `name` and `keys`, and `[require]`)")]
    Toml(String),
    #[error("the stored policy is damaged: {0}; set the policy again from its TOML file")]
    Json(String),
    #[error(
        "the policy names no approver; add at least one `[[approver]]` with a `name` and `keys`"
    )]
    NoApprovers,
    #[error("approver number {0} has an empty name; give every approver a name")]
    EmptyName(usize),
    #[error(
        "the approver name `{0}` appears twice; list each person once, with all of their keys"
    )]
    DuplicateName(String),
    #[error("approver `{0}` has no key; add the line `tandem keygen` printed for them")]
    NoKeys(String),
    #[error("a key of approver `{name}` is not valid: {error}")]
    Key { name: String, error: KeyError },
    #[error("key {key_id} is listed under both `{first}` and `{second}`; a key belongs to one person: remove it from one of them")]
    SharedKey {
        key_id: String,
        first: String,
        second: String,
    },
    #[error("key {key_id} is listed twice under `{name}`; remove the copy")]
    DuplicateKey { name: String, key_id: String },
    #[error("`{action}` requires {required} people but {why}, so it could never be met; lower it to at most {possible} or add approvers")]
    Unreachable {
        action: String,
        required: u32,
        possible: u32,
        why: String,
    },
    #[error(
        "`policy` requires 0 people, so anyone could replace the policy; set it to at least 1"
    )]
    PolicyZero,
    #[error("`submit` is {0}; it is 1 (the author signs the submission with a key in the policy) or 0 (unsigned submissions)")]
    Submit(u32),
    #[error("unknown action `{0}`; actions are submit, apply, apply:prepare, apply:dual_write, apply:backfill, apply:verify, apply:cutover, rollback, finalize, extend and policy")]
    UnknownAction(String),
}

/// A person who may approve, with every key they sign with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approver {
    pub name: String,
    pub keys: Vec<PublicKey>,
}

/// How many distinct people each action needs, defaults applied.
///
/// `submit` is 0 or 1: 1 means the submission must be signed by a key in the policy (its
/// signer is the plan's author, who never counts as an approver of their own plan).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Require {
    pub submit: u32,
    pub prepare: u32,
    pub dual_write: u32,
    pub backfill: u32,
    pub verify: u32,
    pub cutover: u32,
    pub rollback: u32,
    pub finalize: u32,
    pub extend: u32,
    pub policy: u32,
}

impl Default for Require {
    fn default() -> Require {
        Require {
            submit: 1,
            prepare: 1,
            dual_write: 1,
            backfill: 1,
            verify: 1,
            cutover: 1,
            rollback: 1,
            finalize: 1,
            extend: 1,
            policy: 1,
        }
    }
}

impl Require {
    pub fn required(&self, action: Action) -> u32 {
        match action {
            Action::Submit => self.submit,
            Action::Phase(Phase::Prepare) => self.prepare,
            Action::Phase(Phase::DualWrite) => self.dual_write,
            Action::Phase(Phase::Backfill) => self.backfill,
            Action::Phase(Phase::Verify) => self.verify,
            Action::Phase(Phase::Cutover) => self.cutover,
            Action::Rollback => self.rollback,
            Action::Finalize => self.finalize,
            Action::Extend => self.extend,
            Action::Policy => self.policy,
        }
    }

    fn slot(&mut self, action: Action) -> &mut u32 {
        match action {
            Action::Submit => &mut self.submit,
            Action::Phase(Phase::Prepare) => &mut self.prepare,
            Action::Phase(Phase::DualWrite) => &mut self.dual_write,
            Action::Phase(Phase::Backfill) => &mut self.backfill,
            Action::Phase(Phase::Verify) => &mut self.verify,
            Action::Phase(Phase::Cutover) => &mut self.cutover,
            Action::Rollback => &mut self.rollback,
            Action::Finalize => &mut self.finalize,
            Action::Extend => &mut self.extend,
            Action::Policy => &mut self.policy,
        }
    }
}

/// A validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub approvers: Vec<Approver>,
    pub require: Require,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(rename = "approver", default)]
    approvers: Vec<RawApprover>,
    #[serde(default)]
    require: RawRequire,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawApprover {
    name: String,
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRequire {
    #[serde(skip_serializing_if = "Option::is_none")]
    submit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apply: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prepare: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dual_write: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backfill: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cutover: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finalize: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extend: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<u32>,
}

impl RawRequire {
    fn resolve(&self) -> Require {
        let d = Require::default();
        let apply = self.apply.unwrap_or(d.prepare);
        let finalize = self.finalize.unwrap_or(d.finalize);
        Require {
            submit: self.submit.unwrap_or(d.submit),
            prepare: self.prepare.unwrap_or(apply),
            dual_write: self.dual_write.unwrap_or(apply),
            backfill: self.backfill.unwrap_or(apply),
            verify: self.verify.unwrap_or(apply),
            cutover: self.cutover.unwrap_or(apply),
            rollback: self.rollback.unwrap_or(d.rollback),
            finalize,
            extend: self.extend.unwrap_or(finalize),
            policy: self.policy.unwrap_or(d.policy),
        }
    }
}

impl Policy {
    /// Parses and validates the policy file.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Toml(e.to_string()))?;
        let mut approvers = Vec::with_capacity(raw.approvers.len());
        for (i, a) in raw.approvers.into_iter().enumerate() {
            let name = a.name.trim().to_string();
            if name.is_empty() {
                return Err(PolicyError::EmptyName(i + 1));
            }
            let keys = a
                .keys
                .iter()
                .map(|line| PublicKey::parse(line))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| PolicyError::Key {
                    name: name.clone(),
                    error,
                })?;
            approvers.push(Approver { name, keys });
        }
        Policy::new(approvers, raw.require.resolve())
    }

    /// Validates a policy built in code: the same rules as [`Policy::from_toml`].
    pub fn new(approvers: Vec<Approver>, require: Require) -> Result<Policy, PolicyError> {
        let policy = Policy { approvers, require };
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), PolicyError> {
        if self.approvers.is_empty() {
            return Err(PolicyError::NoApprovers);
        }
        let mut names: HashMap<&str, ()> = HashMap::new();
        let mut owners: HashMap<String, &str> = HashMap::new();
        for (i, a) in self.approvers.iter().enumerate() {
            if a.name.trim().is_empty() {
                return Err(PolicyError::EmptyName(i + 1));
            }
            if names.insert(&a.name, ()).is_some() {
                return Err(PolicyError::DuplicateName(a.name.clone()));
            }
            if a.keys.is_empty() {
                return Err(PolicyError::NoKeys(a.name.clone()));
            }
            for key in &a.keys {
                if let Some(first) = owners.insert(key.id(), &a.name) {
                    return Err(if first == a.name {
                        PolicyError::DuplicateKey {
                            name: a.name.clone(),
                            key_id: key.id(),
                        }
                    } else {
                        PolicyError::SharedKey {
                            key_id: key.id(),
                            first: first.to_string(),
                            second: a.name.clone(),
                        }
                    });
                }
            }
        }
        let r = &self.require;
        if r.submit > 1 {
            return Err(PolicyError::Submit(r.submit));
        }
        if r.policy == 0 {
            return Err(PolicyError::PolicyZero);
        }
        let people = self.approvers.len() as u32;
        for action in Action::ALL {
            let required = r.required(action);
            // The author of a signed submission is one of the approvers and cannot approve
            // their own plan: a migration's actions have one person fewer to draw on.
            let (possible, why) = match action {
                Action::Submit => continue,
                Action::Policy => (people, format!("the policy names {people}")),
                _ if r.submit >= 1 => (
                    people - 1,
                    format!(
                        "the policy names {people} and the plan's author (who signs the \
                         submission) cannot approve their own plan"
                    ),
                ),
                _ => (people, format!("the policy names {people}")),
            };
            if required > possible {
                return Err(PolicyError::Unreachable {
                    action: action.name(),
                    required,
                    possible,
                    why,
                });
            }
        }
        Ok(())
    }

    /// How many distinct people `action` needs.
    pub fn required(&self, action: Action) -> u32 {
        self.require.required(action)
    }

    /// The person holding the key with this id.
    pub fn person_of(&self, key_id: &str) -> Option<&Approver> {
        self.approvers
            .iter()
            .find(|a| a.keys.iter().any(|k| k.id() == key_id))
    }

    /// The key with this id.
    pub fn key(&self, key_id: &str) -> Option<&PublicKey> {
        self.approvers
            .iter()
            .flat_map(|a| &a.keys)
            .find(|k| k.id() == key_id)
    }

    fn to_value(&self) -> Value {
        let mut approvers: Vec<&Approver> = self.approvers.iter().collect();
        approvers.sort_by(|a, b| a.name.cmp(&b.name));
        let approvers = approvers
            .into_iter()
            .map(|a| {
                let mut keys: Vec<String> = a.keys.iter().map(|k| k.to_line(None)).collect();
                keys.sort();
                let mut m = Map::new();
                m.insert("name".into(), Value::from(a.name.clone()));
                m.insert("keys".into(), Value::from(keys));
                Value::Object(m)
            })
            .collect::<Vec<_>>();
        let require = Action::ALL
            .into_iter()
            .map(|a| (a.name(), Value::from(self.required(a))))
            .collect::<Map<_, _>>();
        let mut m = Map::new();
        m.insert("format".into(), Value::from(FORMAT));
        m.insert("approvers".into(), Value::Array(approvers));
        m.insert("require".into(), Value::Object(require));
        Value::Object(m)
    }

    /// The canonical JSON the database stores: approvers sorted by name, their keys sorted and
    /// without comments, every action's threshold written out.
    pub fn to_canonical_json(&self) -> String {
        to_canonical(&self.to_value())
    }

    /// SHA-256 (hex) of [`Policy::to_canonical_json`].
    pub fn fingerprint(&self) -> String {
        sha256_hex(self.to_canonical_json().as_bytes())
    }

    /// Reads back the text of [`Policy::to_canonical_json`], validated.
    pub fn from_canonical_json(text: &str) -> Result<Policy, PolicyError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Stored {
            format: String,
            approvers: Vec<RawApprover>,
            require: BTreeMap<String, u32>,
        }
        let json = |e: &dyn fmt::Display| PolicyError::Json(e.to_string());
        let stored: Stored = serde_json::from_str(text).map_err(|e| json(&e))?;
        if stored.format != FORMAT {
            return Err(json(&format!(
                "its format is `{}`, not `{FORMAT}`",
                stored.format
            )));
        }
        let mut approvers = Vec::with_capacity(stored.approvers.len());
        for a in stored.approvers {
            let keys = a
                .keys
                .iter()
                .map(|line| PublicKey::parse(line))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| PolicyError::Key {
                    name: a.name.clone(),
                    error,
                })?;
            approvers.push(Approver { name: a.name, keys });
        }
        let mut require = Require::default();
        for action in Action::ALL {
            let name = action.name();
            let n = stored
                .require
                .get(&name)
                .ok_or_else(|| json(&format!("the threshold of `{name}` is missing")))?;
            *require.slot(action) = *n;
        }
        if let Some(extra) = stored
            .require
            .keys()
            .find(|k| Action::parse(k).map_or(true, |a| a.name() != **k))
        {
            return Err(json(&format!("unknown action `{extra}` in its thresholds")));
        }
        Policy::new(approvers, require)
    }

    /// The policy as a TOML file a person reads (`tandem policy show`); it parses back to the
    /// same policy.
    pub fn to_toml(&self) -> String {
        let r = &self.require;
        let raw = RawPolicy {
            approvers: self
                .approvers
                .iter()
                .map(|a| RawApprover {
                    name: a.name.clone(),
                    keys: a.keys.iter().map(|k| k.to_line(None)).collect(),
                })
                .collect(),
            require: RawRequire {
                submit: Some(r.submit),
                apply: None,
                prepare: Some(r.prepare),
                dual_write: Some(r.dual_write),
                backfill: Some(r.backfill),
                verify: Some(r.verify),
                cutover: Some(r.cutover),
                rollback: Some(r.rollback),
                finalize: Some(r.finalize),
                extend: Some(r.extend),
                policy: Some(r.policy),
            },
        };
        let body = toml::to_string_pretty(&raw).unwrap_or_else(|e| format!("# {e}\n"));
        format!(
            "# tandem policy, fingerprint {}\n# [require]: distinct people other than the plan's author\n\n{body}",
            self.fingerprint()
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keys::SecretKey;

    pub(crate) fn policy_toml(people: &[(&str, &[&SecretKey])], require: &str) -> String {
        let mut text = String::new();
        for (name, keys) in people {
            let lines: Vec<String> = keys
                .iter()
                .map(|k| format!("{:?}", k.public().to_line(Some(&format!("{name}@laptop")))))
                .collect();
            text.push_str(&format!(
                "[[approver]]\nname = {name:?}\nkeys = [{}]\n\n",
                lines.join(", ")
            ));
        }
        text.push_str("[require]\n");
        text.push_str(require);
        text
    }

    #[test]
    fn parses_the_documented_example_with_defaults() {
        let (a, b, c) = (
            SecretKey::generate(),
            SecretKey::generate(),
            SecretKey::generate(),
        );
        let text = policy_toml(
            &[("alice", &[&a]), ("bob", &[&b]), ("carol", &[&c])],
            "submit = 1\napply = 2\ncutover = 2\nrollback = 1\nfinalize = 1\npolicy = 2\n",
        );
        let p = Policy::from_toml(&text).unwrap();
        assert_eq!(p.required(Action::Phase(Phase::Backfill)), 2);
        assert_eq!(p.required(Action::Phase(Phase::Cutover)), 2);
        assert_eq!(p.required(Action::Rollback), 1);
        assert_eq!(p.required(Action::Extend), 1);
        assert_eq!(p.required(Action::Policy), 2);
        assert_eq!(p.person_of(&b.public().id()).unwrap().name, "bob");
        assert_eq!(p.key(&c.public().id()), Some(&c.public()));
        assert!(p.person_of("ed25519:0000000000000000").is_none());

        let defaults =
            Policy::from_toml(&policy_toml(&[("alice", &[&a]), ("bob", &[&b])], "")).unwrap();
        assert_eq!(defaults.require, Require::default());
    }

    #[test]
    fn actions_parse_and_name() {
        for a in Action::ALL {
            assert_eq!(Action::parse(&a.name()).unwrap(), a);
        }
        assert_eq!(
            Action::parse("dual-write").unwrap(),
            Action::Phase(Phase::DualWrite)
        );
        assert_eq!(Action::Phase(Phase::Backfill).name(), "apply:backfill");
        assert!(Action::Phase(Phase::Verify).covered_by("apply"));
        assert!(!Action::Rollback.covered_by("apply"));
        assert!(Action::Phase(Phase::Verify).covered_by("verify"));
        assert!(Action::parse("deploy").is_err());
    }

    #[test]
    fn validation_errors_name_the_problem() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let err = Policy::from_toml(&policy_toml(&[("alice", &[&a]), ("bob", &[&a, &b])], ""))
            .unwrap_err();
        assert!(matches!(err, PolicyError::SharedKey { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("alice") && msg.contains("bob"), "{msg}");

        let err = Policy::from_toml(&policy_toml(
            &[("alice", &[&a]), ("bob", &[&b])],
            "apply = 3\n",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("could never be met"), "{err}");
        // Two people, one of them the author: an approval by both can never happen.
        let err = Policy::from_toml(&policy_toml(
            &[("alice", &[&a]), ("bob", &[&b])],
            "apply = 2\n",
        ))
        .unwrap_err();
        assert!(
            matches!(err, PolicyError::Unreachable { possible: 1, .. }),
            "{err}"
        );
        // Without signed submissions, no author is known to exclude.
        Policy::from_toml(&policy_toml(
            &[("alice", &[&a]), ("bob", &[&b])],
            "submit = 0\napply = 2\n",
        ))
        .unwrap();
        let err = Policy::from_toml(&policy_toml(
            &[("alice", &[&a]), ("bob", &[&b])],
            "policy = 3\n",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("could never be met"), "{err}");

        let err = Policy::from_toml(&policy_toml(&[("alice", &[&a])], "aply = 1\n")).unwrap_err();
        assert!(matches!(err, PolicyError::Toml(_)), "{err}");
        assert!(err.to_string().contains("aply"), "{err}");
        let err = Policy::from_toml(&policy_toml(&[("alice", &[&a])], "policy = 0\n")).unwrap_err();
        assert!(matches!(err, PolicyError::PolicyZero), "{err}");
        assert!(matches!(
            Policy::from_toml("[require]\napply = 1\n").unwrap_err(),
            PolicyError::NoApprovers
        ));
        let err =
            Policy::from_toml(&policy_toml(&[("alice", &[&a]), ("alice", &[&b])], "")).unwrap_err();
        assert!(matches!(err, PolicyError::DuplicateName(_)), "{err}");
        let err = Policy::from_toml("[[approver]]\nname = \"x\"\nkeys = [\"ssh-rsa AAAA\"]\n")
            .unwrap_err();
        assert!(matches!(err, PolicyError::Key { .. }), "{err}");
        assert!(err.to_string().contains("`x`"), "{err}");
    }

    #[test]
    fn fingerprint_ignores_order_and_comments_but_not_thresholds() {
        let (a1, a2, b, c) = (
            SecretKey::generate(),
            SecretKey::generate(),
            SecretKey::generate(),
            SecretKey::generate(),
        );
        let one = policy_toml(
            &[("alice", &[&a1, &a2]), ("bob", &[&b]), ("carol", &[&c])],
            "apply = 2\n",
        );
        let two = policy_toml(
            &[("carol", &[&c]), ("bob", &[&b]), ("alice", &[&a2, &a1])],
            "apply = 2\n",
        );
        let p1 = Policy::from_toml(&one).unwrap();
        let p2 = Policy::from_toml(&two).unwrap();
        assert_eq!(p1.fingerprint(), p2.fingerprint());
        assert_eq!(p1.fingerprint().len(), 64);
        assert!(!p1.to_canonical_json().contains("laptop"));

        let three = policy_toml(
            &[("alice", &[&a1, &a2]), ("bob", &[&b]), ("carol", &[&c])],
            "apply = 2\ncutover = 1\n",
        );
        assert_ne!(
            Policy::from_toml(&three).unwrap().fingerprint(),
            p1.fingerprint()
        );

        let back = Policy::from_canonical_json(&p1.to_canonical_json()).unwrap();
        assert_eq!(back.fingerprint(), p1.fingerprint());
        let shown = Policy::from_toml(&p1.to_toml()).unwrap();
        assert_eq!(shown.fingerprint(), p1.fingerprint());
        assert!(p1.to_toml().contains(&p1.fingerprint()));
        assert!(Policy::from_canonical_json("{}").is_err());
    }
}
