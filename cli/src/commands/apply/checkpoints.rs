//! `--checkpoint-dir DIR --checkpoint-key K`: after each phase (and after rollback and
//! finalize), the audit log's size and head hash, signed with the operator's key, written to
//! a file outside the database. A superuser who rewrites the log and recomputes its hashes
//! cannot rewrite these: `tandem audit verify --checkpoint FILE` catches the rewrite.

use std::path::PathBuf;

use gates::chain::Checkpoint;
use gates::envelope::DatabaseId;
use gates::keys::SecretKey;

use crate::args::CheckpointArgs;
use crate::commands::keys;
use crate::exit::Failure;

pub struct Checkpoints {
    dir: PathBuf,
    key: SecretKey,
    id: i64,
}

impl Checkpoints {
    /// The writer `args` asks for, if any: the key is opened (its passphrase asked) and the
    /// directory made now, before anything runs.
    pub fn open(args: &CheckpointArgs, id: i64) -> Result<Option<Checkpoints>, Failure> {
        let (Some(dir), Some(key)) = (&args.checkpoint_dir, &args.checkpoint_key) else {
            return Ok(None);
        };
        let key = keys::load_key(key, args.checkpoint_passphrase_file.as_deref())?;
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::usage(format!(
                "cannot create the checkpoint directory {} ({e})",
                dir.display()
            ))
        })?;
        Ok(Some(Checkpoints {
            dir: dir.clone(),
            key,
            id,
        }))
    }

    /// Sign and write one checkpoint; returns the line to show (the file, or why not).
    pub fn write(&self, after: &str, database: &DatabaseId, size: i64, head: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let checkpoint = Checkpoint::sign(database, size, head, now, &self.key);
        let path = self
            .dir
            .join(format!("tandem-m{}-{size:09}-{after}.json", self.id));
        match std::fs::write(&path, checkpoint.signed.to_json() + "\n") {
            Ok(()) => format!(
                "audit checkpoint after {after}: {size} entries, signed, in {}",
                path.display()
            ),
            Err(e) => format!(
                "warning: could not write the audit checkpoint {} ({e})",
                path.display()
            ),
        }
    }
}
