//! Everything attached to a table that must follow it when the shadow takes its place:
//! views, foreign keys both ways, triggers, grants, owner, comment, row-level security,
//! replica identity, publications and owned sequences. Read from the catalog, by oid.
//!
//! [`Dependents::refusals`] lists what tandem cannot carry over yet, so prepare refuses the
//! migration before it changes anything; [`Dependents::carry`] writes the statements that
//! carry the rest to the other table at a swap.

use planner::ident::{Literal, QualName};
use tokio_postgres::GenericClient;

use crate::catalog::table;
use crate::error::EngineError;

#[derive(Debug, Clone, Default)]
pub struct Dependents {
    pub owner: String,
    /// tandem's role owns the table: it writes the rows as itself (`writer.rs`).
    pub tandem_owns: bool,
    pub comment: Option<String>,
    pub reloptions: Vec<String>,
    pub rls: bool,
    pub force_rls: bool,
    pub replica_identity: char,
    pub replica_index: Option<String>,
    /// False while the table has its default privileges (`relacl` is NULL): then nothing is
    /// granted explicitly, and the other table's defaults are left alone.
    pub explicit_acl: bool,
    pub grants: Vec<Grant>,
    pub views: Vec<View>,
    pub inbound_fks: Vec<ForeignKey>,
    pub outbound_fks: Vec<ForeignKey>,
    pub triggers: Vec<Trigger>,
    /// Each policy's definition after `CREATE POLICY name ON table ` (`AS ... FOR ... TO
    /// ... USING (...)`), beside its name: the table is put in front when the policy is made
    /// on the other table, never substituted into the text.
    pub policies: Vec<String>,
    pub policy_names: Vec<String>,
    pub publications: Vec<String>,
    pub sequences: Vec<(QualName, String)>,
    /// What cannot be carried over: each entry says what and why.
    pub refusals: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Grant {
    /// `None` for PUBLIC.
    pub grantee: Option<String>,
    pub privilege: String,
    pub grantable: bool,
    pub column: Option<String>,
}

#[derive(Debug, Clone)]
pub struct View {
    pub name: QualName,
    pub definition: String,
    pub options: Vec<String>,
    pub owner: String,
    pub comment: Option<String>,
    pub grants: Vec<Grant>,
    /// 1 for a view that reads the table itself, n + 1 for one built on a view of depth n.
    /// [`Dependents::views`] is ordered by depth: each view after the views it reads.
    pub depth: i32,
}

#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub table: QualName,
    pub name: String,
    pub definition: String,
    pub validated: bool,
    /// The leaf partitions of a partitioned referencing table. PostgreSQL 15 cannot add a
    /// foreign key NOT VALID to a partitioned table: the swap adds it NOT VALID to each leaf,
    /// and once those are validated, adds it to the table, which takes them over without a
    /// scan ([`partitioned_fk_statements`]).
    pub leaves: Vec<QualName>,
}

#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    pub definition: String,
    pub enabled: char,
}

/// A catalog name as a [`QualName`], or a refusal saying to rename the object.
pub(crate) fn q(schema: &str, name: &str) -> Result<QualName, EngineError> {
    QualName::new(schema, name).map_err(|e| {
        EngineError::refused(
            format!("an object attached to the table has a name tandem cannot use ({e})"),
            "rename it",
        )
    })
}

/// Read the dependents of table `oid`. Must run with `search_path = pg_catalog` so the
/// definitions come out schema-qualified.
pub async fn inspect(client: &impl GenericClient, oid: u32) -> Result<Dependents, EngineError> {
    let e = |what: &'static str| EngineError::sql(format!("read the table's {what}"));
    let mut d = Dependents::default();
    let row = client
        .query_one(table::DEFINITION.sql, &[&oid])
        .await
        .map_err(e("definition"))?;
    d.owner = row.get(0);
    d.comment = row.get(1);
    d.reloptions = row.get(2);
    d.rls = row.get(3);
    d.force_rls = row.get(4);
    let ri: String = row.get(5);
    d.replica_identity = ri.chars().next().unwrap_or('d');
    d.replica_index = row.get(6);
    let relkind: String = row.get(7);
    if row.get::<_, bool>(8) {
        d.refusals.push("the table is a partition: change the partitioned table it belongs to (tandem migrates the whole tree at once)".into());
    } else if relkind != "r" && relkind != "p" {
        d.refusals
            .push(format!("the relation is not a table (relkind {relkind})"));
    }
    if row.get::<_, bool>(9) {
        d.refusals.push("the table takes part in inheritance, which the shadow swap would break: detach the children first".into());
    }
    if row.get::<_, i32>(10) > 0 {
        d.refusals
            .push("the table has rules, which tandem does not carry over: drop them first".into());
    }
    if row.get::<_, bool>(11) {
        d.refusals.push("a FOR ALL TABLES publication exists: during the rollback window it would publish both tables; use a publication that lists its tables".into());
    }

    d.explicit_acl = row.get(12);
    if row.get::<_, bool>(14) {
        d.refusals.push(format!("row-level security applies to tandem's role or to the table's owner ({}), as whom tandem writes the new table's rows (FORCE ROW LEVEL SECURITY, and the role has neither BYPASSRLS nor superuser), so the copy and the verification would see only the rows the policies show it and the others would never reach the new table: give the role BYPASSRLS (ALTER ROLE ... BYPASSRLS), or set NO FORCE ROW LEVEL SECURITY for the migration", planner::ident::plain(&d.owner)));
    }
    d.tandem_owns = row.get(15);
    if !d.tandem_owns && !row.get::<_, bool>(16) {
        d.refusals.push(format!("tandem's role cannot act as the table's owner {0}: tandem writes the table's rows as its owner, so that what the owner defined (defaults, CHECKs, domains, index expressions) never runs with tandem's rights; GRANT {0} TO tandem's role (a member that inherits its rights), or run tandem as the owner", planner::ident::plain(&d.owner)));
    }
    if !d.tandem_owns && row.get::<_, Option<bool>>(17) == Some(true) {
        d.refusals.push(format!("the table's owner {0} may create objects in schema tandem, where tandem's functions run with tandem's rights: REVOKE CREATE ON SCHEMA tandem FROM {0} (and from the roles it inherits)", planner::ident::plain(&d.owner)));
    }
    if row.get::<_, bool>(13) {
        d.refusals.push("the table or a column has a security label, which tandem does not carry over yet: remove it for the migration (SECURITY LABEL ... IS NULL) and set it again after".into());
    }
    d.grants = grants(client, oid, true).await?;

    for row in client
        .query(table::VIEWS.sql, &[&oid])
        .await
        .map_err(e("views"))?
    {
        let voids: u32 = row.get(0);
        let name = q(row.get(1), row.get(2))?;
        let kind: String = row.get(3);
        let depth: i32 = row.get(8);
        if kind == "m" {
            // Built again over the new table right after the swap (`shadow::matviews`),
            // which needs it to read the table itself, and nothing to read it.
            let readers: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1 AND r.ev_class <> $1",
                    &[&voids],
                )
                .await
                .map_err(e("views"))?
                .get(0);
            if depth > 1 {
                d.refusals.push(format!("materialized view {} reads the table through a view; drop it first and re-create it after the migration", name.display_plain()));
            } else if readers > 0 {
                d.refusals.push(format!("materialized view {} reads the table and other views read it; drop them first and re-create them after the migration", name.display_plain()));
            }
            continue;
        }
        let grants = grants(client, voids, false).await?;
        d.views.push(View {
            name,
            definition: row.get(4),
            options: row.get(5),
            owner: row.get(6),
            comment: row.get(7),
            grants,
            depth,
        });
    }

    for row in client
        .query(table::FOREIGN_KEYS.sql, &[&oid])
        .await
        .map_err(e("foreign keys"))?
    {
        let outbound: bool = row.get(0);
        let (schemas, names): (Vec<String>, Vec<String>) = (row.get(6), row.get(7));
        let leaves = schemas
            .iter()
            .zip(&names)
            .map(|(s, n)| q(s, n))
            .collect::<Result<Vec<_>, _>>()?;
        let fk = ForeignKey {
            table: q(row.get(1), row.get(2))?,
            name: row.get(3),
            definition: row.get(4),
            validated: row.get(5),
            leaves,
        };
        if outbound {
            d.outbound_fks.push(fk);
        } else {
            d.inbound_fks.push(fk);
        }
    }

    for row in client
        .query(table::TRIGGERS.sql, &[&oid])
        .await
        .map_err(e("triggers"))?
    {
        let enabled: String = row.get(2);
        d.triggers.push(Trigger {
            name: row.get(0),
            definition: row.get(1),
            enabled: enabled.chars().next().unwrap_or('O'),
        });
    }

    for row in client
        .query(table::POLICIES.sql, &[&oid])
        .await
        .map_err(e("row-level security policies"))?
    {
        let name: String = row.get(0);
        super::ident(&name)?;
        let cmd = match row.get::<_, String>(2).as_str() {
            "r" => "SELECT",
            "a" => "INSERT",
            "w" => "UPDATE",
            "d" => "DELETE",
            _ => "ALL",
        };
        let roles: Vec<Option<String>> = row.get(3);
        let roles: Result<Vec<String>, EngineError> = roles
            .into_iter()
            .map(|r| match r {
                None => Ok("PUBLIC".to_string()),
                Some(r) => role(&r),
            })
            .collect();
        let mut sql = format!(
            "AS {} FOR {cmd} TO {}",
            if row.get::<_, bool>(1) {
                "PERMISSIVE"
            } else {
                "RESTRICTIVE"
            },
            roles?.join(", ")
        );
        if let Some(qual) = row.get::<_, Option<String>>(4) {
            sql.push_str(&format!(" USING ({qual})"));
        }
        if let Some(check) = row.get::<_, Option<String>>(5) {
            sql.push_str(&format!(" WITH CHECK ({check})"));
        }
        d.policies.push(sql);
        d.policy_names.push(name);
    }

    for row in client
        .query(table::PUBLICATIONS.sql, &[&oid])
        .await
        .map_err(e("publications"))?
    {
        d.publications.push(row.get(0));
    }

    for row in client
        .query(table::OWNED_SEQUENCES.sql, &[&oid])
        .await
        .map_err(e("sequences"))?
    {
        d.sequences.push((q(row.get(0), row.get(1))?, row.get(2)));
    }

    let sql_bodies: i64 = client
        .query_one(table::SQL_BODIES.sql, &[&oid])
        .await
        .map_err(e("functions"))?
        .get(0);
    if sql_bodies > 0 {
        d.refusals.push("a function with a SQL-standard body (BEGIN ATOMIC) depends on the table; re-create it with a quoted body first".into());
    }
    Ok(d)
}

/// The table-level privileges of table `oid` (not its columns').
pub(crate) async fn table_grants(
    client: &impl GenericClient,
    oid: u32,
) -> Result<Vec<Grant>, EngineError> {
    grants(client, oid, false).await
}

/// The privileges granted on relation `oid`, and on its columns with `columns`.
pub(crate) async fn grants(
    client: &impl GenericClient,
    oid: u32,
    columns: bool,
) -> Result<Vec<Grant>, EngineError> {
    let rows = client
        .query(table::GRANTS.sql, &[&oid, &columns])
        .await
        .map_err(EngineError::sql("read the grants"))?;
    Ok(rows
        .iter()
        .map(|r| Grant {
            grantee: r.get(0),
            privilege: r.get(1),
            grantable: r.get(2),
            column: r.get(3),
        })
        .collect())
}

/// A role (or publication) name, quoted.
pub(crate) fn role(name: &str) -> Result<String, EngineError> {
    super::ident(name).map(|i| i.to_string())
}

const PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
];

/// `GRANT` statements giving `target` the privileges in `grants` (after its own were revoked).
pub fn grant_statements(target: &QualName, grants: &[Grant]) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    for g in grants {
        // Privilege names come from aclexplode: check them against the known list anyway.
        let Some(privilege) = PRIVILEGES.iter().find(|p| **p == g.privilege) else {
            continue;
        };
        let grantee = match &g.grantee {
            None => "PUBLIC".to_string(),
            Some(r) => role(r)?,
        };
        let column = match &g.column {
            Some(c) => format!(" ({})", super::ident(c)?),
            None => String::new(),
        };
        out.push(format!(
            "GRANT {privilege}{column} ON {target} TO {grantee}{}",
            if g.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        ));
    }
    Ok(out)
}

/// `WITH (...)` for reloptions (`key=value` strings from the catalog).
pub fn with_options(options: &[String]) -> String {
    if options.is_empty() {
        return String::new();
    }
    format!(" WITH ({})", option_list(options))
}

/// `key = 'value', ...` for reloptions; keys that are not plain option names are skipped.
pub fn option_list(options: &[String]) -> String {
    let parts: Vec<String> = options
        .iter()
        .filter_map(|o| {
            let (k, v) = o.split_once('=')?;
            k.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                .then(|| format!("{k} = {}", Literal(v)))
        })
        .collect();
    parts.join(", ")
}

/// The statements that make `target` (already renamed to the user's name) carry what `d`
/// (read from the table that was live) describes. `source` is that table under its new
/// (parked) name. Run inside the swap transaction.
pub fn carry(
    d: &Dependents,
    source: &QualName,
    target: &QualName,
    target_triggers: &[String],
    target_policies: &[String],
    target_fks: &[String],
) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    out.push(format!("ALTER TABLE {target} OWNER TO {}", role(&d.owner)?));
    if d.explicit_acl {
        out.push(format!("REVOKE ALL ON {target} FROM PUBLIC"));
        out.push(format!("REVOKE ALL ON {target} FROM {}", role(&d.owner)?));
        out.extend(grant_statements(target, &d.grants)?);
    }
    out.push(match &d.comment {
        Some(c) => format!("COMMENT ON TABLE {target} IS {}", Literal(c)),
        None => format!("COMMENT ON TABLE {target} IS NULL"),
    });
    // tandem keeps autovacuum off on the shadow until it goes live (backfill.rs): back to
    // what the original says.
    out.push(format!(
        "ALTER TABLE {target} RESET (autovacuum_enabled, toast.autovacuum_enabled)"
    ));
    if !d.reloptions.is_empty() {
        out.push(format!(
            "ALTER TABLE {target} SET ({})",
            option_list(&d.reloptions)
        ));
    }
    out.push(format!(
        "ALTER TABLE {target} {} ROW LEVEL SECURITY",
        if d.rls { "ENABLE" } else { "DISABLE" }
    ));
    out.push(format!(
        "ALTER TABLE {target} {} ROW LEVEL SECURITY",
        if d.force_rls { "FORCE" } else { "NO FORCE" }
    ));
    for (name, policy) in d.policy_names.iter().zip(&d.policies) {
        if !target_policies.contains(name) {
            out.push(create_policy(name, policy, target)?);
        }
    }
    // Sequences follow the column, so dropping the old table later cannot drop them.
    for (seq, column) in &d.sequences {
        let col = super::ident(column)?;
        out.push(format!("ALTER SEQUENCE {seq} OWNED BY {target}.{col}"));
    }
    // The user's triggers fire on the live table only: created on the new one, disabled on the
    // one that becomes the copy (so the reverse dual-write does not fire them twice).
    for t in &d.triggers {
        let name = super::ident(&t.name)?;
        if !target_triggers.contains(&t.name) {
            out.push(t.definition.clone());
        }
        let mode = planner::model::trigger_state_clause(t.enabled);
        out.push(format!("ALTER TABLE {target} {mode} TRIGGER {name}"));
        out.push(format!("ALTER TABLE {source} DISABLE TRIGGER {name}"));
    }
    // Outbound foreign keys: added NOT VALID (no scan under the lock), validated afterwards
    // (a partitioned table's on each of its leaves, which have the original leaves' names).
    for fk in &d.outbound_fks {
        if !target_fks.contains(&fk.name) {
            let name = super::ident(&fk.name)?;
            let def = fk.definition.trim_end_matches(" NOT VALID");
            if fk.leaves.is_empty() {
                out.push(format!(
                    "ALTER TABLE {target} ADD CONSTRAINT {name} {def} NOT VALID"
                ));
            } else {
                for leaf in &fk.leaves {
                    out.push(format!(
                        "ALTER TABLE {leaf} ADD CONSTRAINT {name} {def} NOT VALID"
                    ));
                }
            }
        }
    }
    // Inbound foreign keys now point at the live table.
    for fk in &d.inbound_fks {
        if &fk.table == source || &fk.table == target {
            continue;
        }
        let name = super::ident(&fk.name)?;
        let def = fk.definition.trim_end_matches(" NOT VALID");
        out.push(format!("ALTER TABLE {} DROP CONSTRAINT {name}", fk.table));
        if fk.leaves.is_empty() {
            out.push(format!(
                "ALTER TABLE {} ADD CONSTRAINT {name} {def} NOT VALID",
                fk.table
            ));
        } else {
            for leaf in &fk.leaves {
                out.push(format!(
                    "ALTER TABLE {leaf} ADD CONSTRAINT {name} {def} NOT VALID"
                ));
            }
        }
    }
    for p in &d.publications {
        let p = role(p)?;
        out.push(format!("ALTER PUBLICATION {p} ADD TABLE {target}"));
        out.push(format!("ALTER PUBLICATION {p} DROP TABLE {source}"));
    }
    Ok(out)
}

/// Re-point the views that read the table (directly or through other views, `views` in
/// [`Dependents::views`]' order) at the table now under the user's name. The caller tries
/// `replace` first, in one savepoint: `CREATE OR REPLACE` of each, which keeps their oids,
/// grants and dependents. When a column a view returns changed type, PostgreSQL refuses
/// that, and the caller rolls back to the savepoint and runs `recreate`: every view dropped,
/// deepest first, then created again in order with its owner, grants and comment.
pub fn view_statements(views: &[View]) -> Result<(Vec<String>, Vec<String>), EngineError> {
    let mut replace = Vec::with_capacity(views.len());
    let mut recreate: Vec<String> = views
        .iter()
        .rev()
        .map(|v| format!("DROP VIEW {}", v.name))
        .collect();
    for v in views {
        let opts = with_options(&v.options);
        replace.push(format!(
            "CREATE OR REPLACE VIEW {}{opts} AS {}",
            v.name, v.definition
        ));
        recreate.push(format!("CREATE VIEW {}{opts} AS {}", v.name, v.definition));
        recreate.push(format!(
            "ALTER VIEW {} OWNER TO {}",
            v.name,
            role(&v.owner)?
        ));
        recreate.push(format!("REVOKE ALL ON {} FROM PUBLIC", v.name));
        recreate.extend(grant_statements(&v.name, &v.grants)?);
        if let Some(c) = &v.comment {
            recreate.push(format!("COMMENT ON VIEW {} IS {}", v.name, Literal(c)));
        }
    }
    Ok((replace, recreate))
}

/// `CREATE POLICY name ON target <definition>`. A definition recorded by an earlier tandem
/// (a migration prepared before it was upgraded) starts with `CREATE POLICY name ON {table} `,
/// which is taken off exactly, never replaced inside the text.
fn create_policy(name: &str, definition: &str, target: &QualName) -> Result<String, EngineError> {
    let ident = super::ident(name)?;
    let earlier = format!("CREATE POLICY {ident} ON {{table}} ");
    let definition = definition.strip_prefix(&earlier).unwrap_or(definition);
    Ok(format!("CREATE POLICY {ident} ON {target} {definition}"))
}
