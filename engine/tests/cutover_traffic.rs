//! Cutover and rollback of a table that real schemas surround: read through a view, referenced
//! by foreign keys from tables that take inserts, upserted by a unique key, referencing
//! itself. Application statements lock those relations in their own order (a child's insert
//! locks the child, then the parent for its foreign key check; a view's read locks the view,
//! then its tables); a swap that locks in another order deadlocks with them until its
//! `lock_timeout` ends the attempt. Each case runs the shop workload (fixtures::load::shop)
//! through cutover and rollback and asserts: each swap within 3 attempts, no client
//! transaction over 100 ms that overlaps a swap attempt (when tandem holds or waits for the
//! locks clients queue behind), no client error, and the shop's invariant
//! (no lost, doubled or orphaned row) at rest. The table also has rows that violate a NOT
//! VALID constraint (which must stay NOT VALID, and not stop the copy) and extended
//! statistics (which must keep their name). The customers' key is an identity column
//! (ALWAYS or BY DEFAULT) or a serial; without upserts, its values must come out contiguous.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{column_type, within};
use engine::executor::{Event, Executor, Observer, Options};
use engine::state::Phase;
use fixtures::load::shop::Key;
use fixtures::load::{shop, Load, LoadOptions, Report, Shop, Workload};
use fixtures::pg::TestDb;

const CUSTOMERS: i64 = 20_000;
const CLIENTS: usize = 6;
const MAX_ATTEMPTS: i64 = 3;
const SLOW: Duration = Duration::from_millis(100);

async fn attempts(db: &TestDb, id: i64) -> i64 {
    i64::from(
        db.client()
            .query_one(
                "SELECT cutover_attempts FROM tandem.migrations WHERE id = $1",
                &[&id],
            )
            .await
            .expect("read the attempts")
            .get::<_, i32>(0),
    )
}

/// Client transactions that were running at some moment of one of `windows`, and the
/// slowest.
fn overlapping(report: &Report, windows: &[(Instant, Instant)]) -> (usize, Duration, usize) {
    let start = report.started_at();
    let windows: Vec<(Duration, Duration)> = windows
        .iter()
        .map(|(from, to)| {
            (
                from.saturating_duration_since(start),
                to.saturating_duration_since(start),
            )
        })
        .collect();
    let mut n = 0;
    let mut slowest = Duration::ZERO;
    let mut slow = 0;
    for s in &report.samples {
        if windows
            .iter()
            .any(|(from, to)| s.at <= *to && s.at + s.latency >= *from)
        {
            n += 1;
            slowest = slowest.max(s.latency);
            if s.latency > SLOW {
                slow += 1;
            }
        }
    }
    (n, slowest, slow)
}

/// The swap attempts the executor reports, as time windows: from the attempt's start (its
/// end less how long it took, less a margin for the bookkeeping between its end and the
/// event) to the event. Only then does a swap hold locks clients wait for; the rest of
/// `apply` and `rollback` (dropping the parked table, validating foreign keys) does not
/// block them, and a disk stall then is the machine's, not the swap's.
type Windows = Arc<Mutex<Vec<(Instant, Instant)>>>;

fn swap_observer(tag: &str) -> (Observer, Windows) {
    let windows: Windows = Arc::default();
    let keep = windows.clone();
    let tag = tag.to_string();
    let o: Observer = Arc::new(move |e: &Event| {
        if let Event::Cutover { took, .. } = e {
            let now = Instant::now();
            keep.lock()
                .unwrap()
                .push((now - *took - Duration::from_millis(20), now));
        }
        if matches!(e, Event::Cutover { .. } | Event::Warning(_)) {
            eprintln!("[{tag}] {e:?}");
        }
    });
    (o, windows)
}

fn take(w: &Windows) -> Vec<(Instant, Instant)> {
    std::mem::take(&mut *w.lock().unwrap())
}

/// `(attidentity of shop_customers.id, its sequence)` of the table under the user's name.
async fn key_state(db: &TestDb) -> (String, Option<String>) {
    let r = db
        .client()
        .query_one(
            "SELECT attidentity::text, pg_get_serial_sequence('shop_customers', 'id')
               FROM pg_attribute WHERE attrelid = 'shop_customers'::regclass AND attname = 'id'",
            &[],
        )
        .await
        .expect("read the key column");
    (r.get(0), r.get(1))
}

/// One case at a time (under `cargo test`, whose threads would run them side by side;
/// nextest runs this binary alone, see `.config/nextest.toml`): they measure latency.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The NOT VALID constraint (still not valid) and the extended statistics' name, on the
/// table under the user's name.
async fn extras(db: &TestDb) -> (bool, String) {
    let r = db
        .client()
        .query_one(
            "SELECT (SELECT convalidated FROM pg_constraint WHERE conrelid = 'shop_customers'::regclass
                        AND conname = 'shop_customers_no_legacy'),
                    (SELECT string_agg(stxname, ',') FROM pg_statistic_ext WHERE stxrelid = 'shop_customers'::regclass)",
            &[],
        )
        .await
        .expect("read the constraint and statistics");
    (r.get(0), r.get(1))
}

async fn run(name: &str, shop: Shop) {
    let _alone = ALONE.lock().await;
    let db = TestDb::new(name).await;
    let c = db.client();
    shop::setup(c, &shop, CUSTOMERS).await.unwrap();
    let key_before = key_state(&db).await;
    let id = common::submit(
        &db,
        "ALTER TABLE shop_customers ALTER tier TYPE bigint",
        None,
    )
    .await;
    let load = Load::start(
        db.config(),
        Workload::Shop(shop.clone()),
        LoadOptions {
            clients: CLIENTS,
            pause: None,
        },
    )
    .await
    .unwrap();
    let mut ex = common::open(
        &db,
        id,
        Options {
            until: Phase::Verify,
            ..Options::default()
        },
        name,
    )
    .await;
    let p = within(120, "apply to verify", ex.apply())
        .await
        .unwrap_or_else(|e| panic!("{name}: apply to verify: {e}"));
    assert_eq!(p, Phase::Verify);
    drop(ex);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (observer, windows) = swap_observer(name);
    let mut ex = Executor::open(
        &db.config(),
        id,
        Options::default(),
        Box::new(gates::Open),
        observer,
    )
    .await
    .unwrap_or_else(|e| panic!("{name}: open the executor: {e}"));
    let before = attempts(&db, id).await;
    let p = within(120, "cutover", ex.apply())
        .await
        .unwrap_or_else(|e| panic!("{name}: cutover: {e}"));
    let cut = take(&windows);
    assert_eq!(p, Phase::RollbackWindow);
    let cutover_attempts = attempts(&db, id).await - before;
    assert_eq!(column_type(c, "shop_customers", "tier").await, "bigint");
    assert_eq!(
        key_state(&db).await,
        key_before,
        "{name}: the new table's key is generated as the old one's was, from a sequence of the same name"
    );
    assert_eq!(
        extras(&db).await,
        (false, "shop_customers_stats".into()),
        "{name}: after cutover"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = attempts(&db, id).await;
    within(120, "rollback", ex.rollback())
        .await
        .unwrap_or_else(|e| panic!("{name}: rollback: {e}"));
    let back = take(&windows);
    let rollback_attempts = attempts(&db, id).await - before;
    assert_eq!(column_type(c, "shop_customers", "tier").await, "integer");
    assert_eq!(
        key_state(&db).await,
        key_before,
        "{name}: after the rollback"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let report = load.stop().await;
    eprintln!("{name}: load {report}");
    let (n_cut, slowest_cut, slow_cut) = overlapping(&report, &cut);
    let (n_back, slowest_back, slow_back) = overlapping(&report, &back);
    eprintln!(
        "{name}: cutover {cutover_attempts} attempt(s), {n_cut} client transactions overlapping, slowest {slowest_cut:?}, {slow_cut} over {SLOW:?}; \
         rollback {rollback_attempts} attempt(s), {n_back} overlapping, slowest {slowest_back:?}, {slow_back} over {SLOW:?}"
    );
    assert_eq!(
        report.error_count, 0,
        "{name}: clients saw errors: {report}"
    );
    let check = shop::check(c, &shop).await.expect("check the shop");
    assert!(check.holds(), "{name}: {check}");
    eprintln!("{name}: {check}");
    assert!(
        cutover_attempts <= MAX_ATTEMPTS,
        "{name}: the cutover took {cutover_attempts} attempts"
    );
    assert!(
        rollback_attempts <= MAX_ATTEMPTS,
        "{name}: the rollback took {rollback_attempts} attempts"
    );
    assert!(
        n_cut > 0 && n_back > 0,
        "{name}: no client ran during the swaps"
    );
    assert_eq!(
        slow_cut, 0,
        "{name}: {slow_cut} client transactions over {SLOW:?} across the cutover's attempts (slowest {slowest_cut:?})"
    );
    assert_eq!(
        slow_back, 0,
        "{name}: {slow_back} client transactions over {SLOW:?} across the rollback's attempts (slowest {slowest_back:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_read_through_a_view_with_inserts() {
    run(
        "traffic_view",
        Shop {
            children: 0,
            self_ref: false,
            view: true,
            key: Key::IdentityAlways,
            ..Shop::new()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_with_child_inserts_upserts_and_view_reads() {
    run(
        "traffic_parent_child",
        Shop {
            children: 1,
            self_ref: false,
            view: true,
            key: Key::IdentityByDefault,
            ..Shop::new()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_referencing_table() {
    run(
        "traffic_self_ref",
        Shop {
            children: 1,
            self_ref: true,
            view: false,
            key: Key::Serial,
            ..Shop::new()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_with_two_children() {
    run(
        "traffic_two_children",
        Shop {
            children: 2,
            self_ref: true,
            view: true,
            ..Shop::new()
        },
    )
    .await;
}

/// Identity columns: every value the sequence gives is used once, across cutover and
/// rollback, while clients insert without naming the key (GENERATED ALWAYS refuses a value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_always_no_gap_no_duplicate() {
    run(
        "traffic_identity_always",
        Shop {
            children: 1,
            self_ref: false,
            view: false,
            key: Key::IdentityAlways,
            upserts: false,
            ..Shop::new()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_by_default_no_gap_no_duplicate() {
    run(
        "traffic_identity_default",
        Shop {
            children: 0,
            self_ref: true,
            view: false,
            key: Key::IdentityByDefault,
            upserts: false,
            ..Shop::new()
        },
    )
    .await;
}
