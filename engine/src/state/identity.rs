//! Which database this is, as approvals name it: the server's system identifier, the
//! database's name, and a random id tandem made for it (`tandem.instance`). A copy of the
//! database (restored elsewhere, or under another name or oid) is another database: the id
//! is made again on the copy, so what was approved for the original does not count there.

use gates::envelope::DatabaseId;
use rand::RngCore;
use serde_json::json;
use tokio_postgres::GenericClient;

use super::audit::{self, Record};
use crate::error::EngineError;

/// This database's identity; the instance id is made (and audited) when there is none yet
/// or when the row was made on another database (a restored copy). In the caller's
/// transaction.
pub async fn ensure(client: &impl GenericClient) -> Result<DatabaseId, EngineError> {
    let row = client
        .query_one(
            "SELECT s.system_identifier::text, d.oid, d.datname::text,
                    i.id, i.system_identifier, i.database_oid, i.database
               FROM pg_control_system() s
               CROSS JOIN pg_database d
               LEFT JOIN tandem.instance i ON true
              WHERE d.datname = current_database()",
            &[],
        )
        .await
        .map_err(EngineError::sql("read the database's identity"))?;
    let (system, oid, name): (String, u32, String) = (row.get(0), row.get(1), row.get(2));
    let stored: Option<String> = row.get(3);
    let same_place = row.get::<_, Option<String>>(4).as_deref() == Some(system.as_str())
        && row.get::<_, Option<u32>>(5) == Some(oid)
        && row.get::<_, Option<String>>(6).as_deref() == Some(name.as_str());
    if let (Some(id), true) = (&stored, same_place) {
        return Ok(DatabaseId {
            system_identifier: system,
            database: name,
            instance: id.clone(),
        });
    }
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let id = hex(&bytes);
    client
        .execute(
            "INSERT INTO tandem.instance (id, system_identifier, database_oid, database)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (singleton) DO UPDATE
                SET id = EXCLUDED.id, system_identifier = EXCLUDED.system_identifier,
                    database_oid = EXCLUDED.database_oid, database = EXCLUDED.database,
                    created_at = now()",
            &[&id, &system, &oid, &name],
        )
        .await
        .map_err(EngineError::sql("record the database's identity"))?;
    let event = if stored.is_some() {
        "copy detected: new instance id (approvals made for the original do not count here)"
    } else {
        "instance id created"
    };
    audit::append(
        client,
        Record {
            migration: None,
            kind: "instance",
            phase: None,
            event,
            detail: json!({
                "instance": id, "previous": stored,
                "system_identifier": system, "database": name, "database_oid": oid,
            }),
            key: None,
        },
    )
    .await?;
    Ok(DatabaseId {
        system_identifier: system,
        database: name,
        instance: id,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
