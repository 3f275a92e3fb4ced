//! The signed statement: what a person signs to submit, approve, revoke, change the policy, or
//! vouch for the audit log's head.

use std::fmt;

use rand::rngs::OsRng;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical;
use crate::keys::{PublicKey, SecretKey, Signature};

/// Which database a statement is for. A restored backup or a clone keeps the cluster's
/// system identifier and the database's name but gets a new `instance`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct DatabaseId {
    /// `pg_control_system()`'s system identifier, as decimal text.
    pub system_identifier: String,
    /// The database's name.
    pub database: String,
    /// A random id tandem stores in the database when it first sets it up.
    pub instance: String,
}

impl DatabaseId {
    /// Which field differs from `other`, in words, or `None` when they are the same database.
    pub fn difference(&self, other: &DatabaseId) -> Option<String> {
        if self.system_identifier != other.system_identifier {
            Some(format!(
                "another PostgreSQL cluster (system identifier {}, this one is {})",
                self.system_identifier, other.system_identifier
            ))
        } else if self.database != other.database {
            Some(format!(
                "database `{}`, not `{}`",
                self.database, other.database
            ))
        } else if self.instance != other.instance {
            Some(format!(
                "another copy of this database (instance {}, this one is {}): a restored backup \
                 or clone needs its own signatures",
                self.instance, other.instance
            ))
        } else {
            None
        }
    }
}

impl fmt::Display for DatabaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (system {}, instance {})",
            self.database, self.system_identifier, self.instance
        )
    }
}

/// What a statement says.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The author submits a plan.
    Submit,
    /// A person approves a plan for some or all of its actions.
    Approve,
    /// A person withdraws one of their approvals.
    Revoke,
    /// A person of the current policy accepts a new policy.
    Policy,
    /// A person vouches for the audit log's head.
    Checkpoint,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Submit => "submit",
            Kind::Approve => "approve",
            Kind::Revoke => "revoke",
            Kind::Policy => "policy",
            Kind::Checkpoint => "checkpoint",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The statement a signature covers. Only strings and integers: its canonical JSON is stable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    pub kind: Kind,
    pub database: DatabaseId,
    /// Submit, Approve, Revoke: the plan's SHA-256 (hex). Policy: the new policy's
    /// fingerprint. Checkpoint: the audit log's head hash.
    pub subject: String,
    /// Approve: the actions covered ([`crate::policy::Action`] names, or `apply` for every
    /// phase); empty means every action of the migration. Others: empty.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Submit, Approve, Revoke: the migration's id.
    #[serde(default)]
    pub migration: Option<i64>,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; the statement counts only before then. `None`: it does not expire.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// 32 hex digits from the operating system's generator: makes every statement unique.
    pub nonce: String,
    /// The signer's key id; [`Signed::sign`] fills it in.
    pub key_id: String,
    /// Checkpoint: how many audit entries the head covers.
    #[serde(default)]
    pub size: Option<i64>,
    /// Revoke: the nonce of the approval withdrawn.
    #[serde(default)]
    pub revokes: Option<String>,
    /// Policy: the fingerprint of the policy being replaced (`None` for the first policy), so
    /// that a signature for one change cannot be replayed onto another.
    #[serde(default)]
    pub previous: Option<String>,
}

impl Statement {
    /// A statement of `kind` about `subject`, issued at `now`, with a fresh nonce and every
    /// optional field empty.
    pub fn new(kind: Kind, database: &DatabaseId, subject: &str, now: i64) -> Statement {
        Statement {
            kind,
            database: database.clone(),
            subject: subject.to_string(),
            actions: Vec::new(),
            migration: None,
            issued_at: now,
            expires_at: None,
            nonce: Statement::new_nonce(),
            key_id: String::new(),
            size: None,
            revokes: None,
            previous: None,
        }
    }

    /// 32 random hex digits.
    pub fn new_nonce() -> String {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        hex::encode(bytes)
    }

    /// The statement as JSON, built by hand so that it cannot fail. Equal to its serde form.
    pub fn to_value(&self) -> Value {
        fn opt<T: Into<Value> + Clone>(v: &Option<T>) -> Value {
            v.clone().map_or(Value::Null, Into::into)
        }
        let mut db = Map::new();
        db.insert(
            "system_identifier".into(),
            self.database.system_identifier.clone().into(),
        );
        db.insert("database".into(), self.database.database.clone().into());
        db.insert("instance".into(), self.database.instance.clone().into());
        let mut m = Map::new();
        m.insert("kind".into(), self.kind.name().into());
        m.insert("database".into(), Value::Object(db));
        m.insert("subject".into(), self.subject.clone().into());
        m.insert("actions".into(), self.actions.clone().into());
        m.insert("migration".into(), opt(&self.migration));
        m.insert("issued_at".into(), self.issued_at.into());
        m.insert("expires_at".into(), opt(&self.expires_at));
        m.insert("nonce".into(), self.nonce.clone().into());
        m.insert("key_id".into(), self.key_id.clone().into());
        m.insert("size".into(), opt(&self.size));
        m.insert("revokes".into(), opt(&self.revokes));
        m.insert("previous".into(), opt(&self.previous));
        Value::Object(m)
    }

    /// What is signed: [`canonical::DOMAIN`] then the statement's canonical JSON.
    pub fn signing_bytes(&self) -> Vec<u8> {
        canonical::signing_bytes(&self.to_value())
    }
}

/// Why a signed statement does not hold.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error(
        "the statement names key {claimed} but carries key {actual}; it was tampered with or \
         built by hand: sign it again with `tandem`"
    )]
    KeyId { claimed: String, actual: String },
    #[error(
        "the signature by {key_id} does not match the statement: it was forged, or changed \
         after signing; sign it again"
    )]
    BadSignature { key_id: String },
    #[error("not a signed tandem statement: {0}; pass the JSON `tandem` wrote, unchanged")]
    Json(String),
}

/// A statement with its signer's public key and signature. Its JSON is
/// `{"statement": {...}, "public_key": "tandem-ed25519 ...", "signature": "..."}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    pub statement: Statement,
    pub public_key: PublicKey,
    pub signature: Signature,
}

impl Signed {
    /// Signs `statement` with `key`, setting its `key_id` to the key's.
    pub fn sign(mut statement: Statement, key: &SecretKey) -> Signed {
        let public_key = key.public();
        statement.key_id = public_key.id();
        let signature = key.sign(&statement.signing_bytes());
        Signed {
            statement,
            public_key,
            signature,
        }
    }

    /// Checks that the key id is the carried key's and that the signature holds (strict).
    /// Whether the key is trusted is the caller's question.
    pub fn verify(&self) -> Result<(), EnvelopeError> {
        let actual = self.public_key.id();
        if self.statement.key_id != actual {
            return Err(EnvelopeError::KeyId {
                claimed: self.statement.key_id.clone(),
                actual,
            });
        }
        if !self
            .public_key
            .verify(&self.statement.signing_bytes(), &self.signature)
        {
            return Err(EnvelopeError::BadSignature { key_id: actual });
        }
        Ok(())
    }

    pub fn from_json(text: &str) -> Result<Signed, EnvelopeError> {
        serde_json::from_str(text).map_err(|e| EnvelopeError::Json(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        m.insert("statement".into(), self.statement.to_value());
        m.insert("public_key".into(), self.public_key.to_line(None).into());
        m.insert("signature".into(), self.signature.to_base64().into());
        Value::Object(m).to_string()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn db() -> DatabaseId {
        DatabaseId {
            system_identifier: "7291234567890123456".into(),
            database: "shop".into(),
            instance: "3f2a".into(),
        }
    }

    #[test]
    fn signed_round_trips_through_json_and_verifies() {
        let key = SecretKey::generate();
        let mut st = Statement::new(Kind::Approve, &db(), &"ab".repeat(32), 1_700_000_000);
        st.migration = Some(7);
        st.actions = vec!["apply:backfill".into()];
        st.expires_at = Some(1_700_086_400);
        let signed = Signed::sign(st, &key);
        assert_eq!(signed.statement.key_id, key.public().id());
        assert_eq!(signed.statement.nonce.len(), 32);
        signed.verify().unwrap();

        let json = signed.to_json();
        assert_eq!(json, serde_json::to_string(&signed).unwrap());
        let v: Value = serde_json::from_str(&json).unwrap();
        assert!(v["public_key"]
            .as_str()
            .unwrap()
            .starts_with("tandem-ed25519 "));
        assert_eq!(v["statement"]["kind"], "approve");
        let back = Signed::from_json(&json).unwrap();
        assert_eq!(back, signed);
        back.verify().unwrap();
        // The hand-built JSON is the serde JSON: anyone can recompute the signed bytes.
        assert_eq!(
            signed.statement.to_value(),
            serde_json::to_value(&signed.statement).unwrap()
        );
    }

    #[test]
    fn tampering_is_caught() {
        let key = SecretKey::generate();
        let signed = Signed::sign(
            Statement::new(Kind::Submit, &db(), &"cd".repeat(32), 1),
            &key,
        );
        let mut changed = signed.clone();
        changed.statement.migration = Some(2);
        assert!(matches!(
            changed.verify(),
            Err(EnvelopeError::BadSignature { .. })
        ));
        let mut swapped = signed.clone();
        swapped.public_key = SecretKey::generate().public();
        assert!(matches!(swapped.verify(), Err(EnvelopeError::KeyId { .. })));
        assert!(Signed::from_json("{\"statement\":1}").is_err());
    }

    #[test]
    fn database_difference_names_the_field() {
        let a = db();
        assert_eq!(a.difference(&a), None);
        let mut b = a.clone();
        b.instance = "9999".into();
        assert!(a.difference(&b).unwrap().contains("restored backup"));
        b.database = "other".into();
        assert!(a.difference(&b).unwrap().contains("database `shop`"));
    }
}
