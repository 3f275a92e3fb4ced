//! `tandem proxy --check-config`: what the proxy needs to serve, checked without serving:
//! the settings, the TLS certificate and key, and the upstream with tandem's credentials
//! (reachable, the bookkeeping's version, the rights the control connection and the dual
//! reads use). Returns what it found, line by line, or the first problem, which says what to
//! do.

use std::time::Duration;

use crate::error::Error;
use crate::Config;

/// The tables of tandem's the proxy writes or reads, and the rights it needs on each.
const RIGHTS: &[(&str, &str)] = &[
    ("tandem.proxies", "INSERT, UPDATE, DELETE"),
    ("tandem.proxy_acks", "INSERT"),
    ("tandem.proxy_signals", "SELECT"),
    ("tandem.mirror_targets", "SELECT"),
    ("tandem.dual_reads", "INSERT, UPDATE"),
    ("tandem.drift", "INSERT"),
    ("tandem.drift_salt", "SELECT"),
];

/// Check `config` (with the upstream password, if any): the lines to print, or the problem.
pub async fn check(config: &Config, password: Option<&str>) -> Result<Vec<String>, Error> {
    let mut lines = Vec::new();
    config.file.validate()?;
    config.check_tls()?;
    match (&config.file.tls_cert, &config.file.tls_key) {
        (Some(cert), Some(key)) => {
            crate::tls::acceptor(cert, key)?;
            lines.push(format!(
                "client TLS: terminated here with {}",
                cert.display()
            ));
        }
        _ => lines.push(
            "client TLS: off (a client asking for TLS is answered N; set tls_cert and tls_key to offer it)"
                .into(),
        ),
    }
    let timeout = config.file.connect_timeout().max(Duration::from_secs(1));
    let tandems = config.tandems();
    if config.file.control_upstream.is_some() {
        // Clients go through --upstream (a pooler); tandem's own connections elsewhere.
        let clients = config.upstream.describe();
        config.upstream.connect(timeout).await.map_err(|e| {
            Error::Upstream(format!(
                "cannot reach --upstream {clients}, where clients' sessions go: {e}"
            ))
        })?;
        lines.push(format!(
            "clients: relayed to {clients} (reachable); tandem's control and dual reads: {}",
            tandems.describe()
        ));
    }
    let upstream = tandems.describe();
    let endpoint = tandems.pg_config(password, "tandem proxy --check-config");
    let unreachable = |why: String| {
        Error::Upstream(format!(
            "cannot reach the upstream {upstream} as tandem's user: {why} (is the server up, the address right, pg_hba.conf open to this host, and password_file the user's?)"
        ))
    };
    let (client, connection) = tokio::time::timeout(timeout, pgtls::connect(&endpoint))
        .await
        .map_err(|_| unreachable(format!("no answer within {} ms", timeout.as_millis())))?
        .map_err(|e| unreachable(e.to_string()))?;
    let driver = tokio::spawn(connection);
    let result = bookkeeping(&client, &upstream, &mut lines).await;
    drop(client);
    let _ = driver.await;
    result.map(|()| lines)
}

async fn bookkeeping(
    client: &tokio_postgres::Client,
    upstream: &str,
    lines: &mut Vec<String>,
) -> Result<(), Error> {
    let failed = |e: tokio_postgres::Error| {
        let why = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string());
        Error::Upstream(format!(
            "the upstream {upstream} answered with an error: {why}"
        ))
    };
    // Whether schema tandem exists, and may be used: NULL when it does not exist.
    let row = client
        .query_one(
            "SELECT current_user::text, current_setting('server_version'),
                    (SELECT has_schema_privilege(oid, 'USAGE')
                            AND has_table_privilege('tandem.schema_version', 'SELECT')
                       FROM pg_catalog.pg_namespace WHERE nspname = 'tandem')",
            &[],
        )
        .await
        .map_err(failed)?;
    let (user, version, usable): (String, String, Option<bool>) =
        (row.get(0), row.get(1), row.get(2));
    lines.push(format!(
        "upstream: {upstream} answers (PostgreSQL {version}), as {user}"
    ));
    match usable {
        None => {
            lines.push("tandem's bookkeeping: not installed in this database; the proxy would pass traffic through, without cutover holds or dual reads, until `tandem submit` installs it".into());
            return Ok(());
        }
        Some(false) => {
            return Err(Error::Upstream(format!(
                "{user} has not the rights of tandem's role on schema tandem: the proxy's control connection and dual reads would fail; give --upstream tandem's own user"
            )))
        }
        Some(true) => {}
    }
    let bookkeeping: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM tandem.schema_version",
            &[],
        )
        .await
        .map_err(failed)?
        .get(0);
    for (table, rights) in RIGHTS {
        // has_table_privilege is true when any one of a list is held: each on its own.
        let row = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL
                        AND bool_and(has_table_privilege($1, r))
                   FROM unnest(string_to_array($2, ', ')) AS r",
                &[table, rights],
            )
            .await
            .map_err(failed)?;
        if !row.get::<_, Option<bool>>(0).unwrap_or(false) {
            return Err(Error::Upstream(format!(
                "{user} has not {rights} on {table} (bookkeeping version {bookkeeping}): the proxy's control connection and dual reads would fail; give --upstream tandem's own user, or run `tandem submit` once with this tandem to upgrade the bookkeeping"
            )));
        }
    }
    lines.push(format!(
        "tandem's bookkeeping: version {bookkeeping}; {user} may register, take holds and record dual reads"
    ));
    Ok(())
}
