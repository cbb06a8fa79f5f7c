//! The `inventory` binary's client subcommands, end to end: the real binary (Cargo builds it
//! for this test) against a real server started in this process on 127.0.0.1:0.
//!
//! What a script relies on is checked: the exit code of each kind of answer (granted 0,
//! rejected 1, malformed 2, unknown 3, unreachable 4), and the shape of `--json` output. The
//! server runs over a `MemLog` with a `ManualClock`; every child process is killed if it runs
//! past [`support::CHILD_TIMEOUT`], and every test is bounded by [`TEST_TIMEOUT`].

use inv_engine::{Engine, LedgerConfig, ManualClock, MemLog};
use inv_proto::v1 as pb;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::Run;
use tokio::sync::oneshot;

mod support;

const T0_MS: u64 = 1_700_000_000_000;
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A server in this process; stops when dropped (its shutdown sender goes with it).
struct Server {
    addr: SocketAddr,
    url: String,
    _shutdown: oneshot::Sender<()>,
}

async fn start() -> Server {
    let engine = Arc::new(
        Engine::recover(
            LedgerConfig {
                shards: 4,
                ..LedgerConfig::default()
            },
            Arc::new(MemLog::new()),
            Arc::new(ManualClock::new(T0_MS)),
        )
        .expect("an empty log recovers"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("bound");
    let (shutdown, signal) = oneshot::channel::<()>();
    tokio::spawn(inv_api::serve(
        engine,
        inv_api::ServerConfig {
            drain_timeout_ms: 1_000,
            ..inv_api::ServerConfig::default()
        },
        tonic::transport::server::TcpIncoming::from(listener),
        async move {
            let _ = signal.await;
        },
    ));
    Server {
        addr,
        url: format!("http://{addr}"),
        _shutdown: shutdown,
    }
}

/// Stocks `qty` units through the gRPC API, so tests of other commands do not depend on
/// `adjust`.
async fn stock(server: &Server, sku: &str, location: &str, qty: i64) {
    let mut client =
        pb::inventory_client::InventoryClient::connect(format!("http://{}", server.addr))
            .await
            .expect("connects");
    client
        .adjust(pb::AdjustRequest {
            adjustment_id: format!("receipt-{sku}-{location}"),
            sku: sku.into(),
            location: location.into(),
            delta: qty,
            reason: "goods receipt".into(),
        })
        .await
        .expect("adjusts");
}

/// Runs `inventory ARGS...` with `INVENTORY_SERVER=server` (off the async workers), killing
/// it past [`support::CHILD_TIMEOUT`].
async fn inventory(server: &str, args: &[&str]) -> Run {
    let server = server.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || run_blocking(&server, &args))
        .await
        .expect("the runner did not panic")
}

fn run_blocking(server: &str, args: &[String]) -> Run {
    let mut command = support::inventory();
    command.args(args).env("INVENTORY_SERVER", server);
    support::run(command)
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {run:?}"))
}

async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_check_and_commit_exit_with_what_happened() {
    // Goal: each answer of the hold lifecycle maps to its exit code, and the output names it.
    bounded(async {
        let server = start().await;
        stock(&server, "sneaker", "dc", 5).await;
        let url = server.url.as_str();

        let granted = inventory(
            url,
            &["reserve", "--id", "o-1", "--ttl", "15m", "sneaker@dc=2"],
        )
        .await;
        assert_eq!(granted.code, 0, "{granted:?}");
        assert!(granted.stdout.starts_with("granted o-1"), "{granted:?}");

        let rejected = inventory(url, &["reserve", "--id", "o-2", "sneaker@dc=9"]).await;
        assert_eq!(rejected.code, 1, "{rejected:?}");
        assert!(rejected.stdout.starts_with("rejected o-2"), "{rejected:?}");
        assert!(rejected.stdout.contains("REQUESTED"), "{rejected:?}");

        let rejected_json =
            inventory(url, &["reserve", "--json", "--id", "o-2", "sneaker@dc=9"]).await;
        assert_eq!(rejected_json.code, 1, "{rejected_json:?}");
        let answer = json(&rejected_json);
        assert_eq!(answer["result"], "rejected");
        assert_eq!(
            answer["duplicate"], true,
            "a retry gets the recorded answer"
        );
        assert_eq!(answer["short_lines"][0]["requested"], 9);
        assert_eq!(answer["short_lines"][0]["available"], 3);

        let check = inventory(url, &["check", "--json", "sneaker", "dc", "nowhere"]).await;
        assert_eq!(check.code, 0, "{check:?}");
        let positions = json(&check)["positions"].clone();
        assert_eq!(positions[0]["on_hand"], 5);
        assert_eq!(positions[0]["reserved"], 2);
        assert_eq!(positions[0]["available"], 3);
        assert_eq!(positions[1]["exists"], false);

        // Many skus at one location: the sellable numbers in order, 0 for one never stocked.
        let sellable = inventory(url, &["sellable", "--json", "dc", "sneaker", "never"]).await;
        assert_eq!(sellable.code, 0, "{sellable:?}");
        let skus = json(&sellable)["skus"].clone();
        assert_eq!(
            (skus[0]["sku"].clone(), skus[0]["sellable"].clone()),
            ("sneaker".into(), 3.into())
        );
        assert_eq!(skus[1]["sellable"], 0, "{sellable:?}");
        let table = inventory(url, &["sellable", "dc", "sneaker"]).await;
        assert_eq!(table.code, 0, "{table:?}");
        assert!(table.stdout.contains("SELLABLE"), "{table:?}");
        let bad = inventory(url, &["sellable", "dc", "sneaker", ""]).await;
        assert_eq!(bad.code, 2, "{bad:?}");
        assert!(bad.stderr.contains("skus[1]"), "{bad:?}");

        let unknown = inventory(url, &["commit", "no-such-order"]).await;
        assert_eq!(unknown.code, 3, "{unknown:?}");
        assert!(unknown.stderr.contains("not found"), "{unknown:?}");
        let unknown_json = inventory(url, &["commit", "--json", "no-such-order"]).await;
        assert_eq!(unknown_json.code, 3, "{unknown_json:?}");
        let error = json(&unknown_json)["error"].clone();
        assert_eq!(error["code"], "NOT_FOUND");
        assert_eq!(error["reason"], "RESERVATION_NOT_FOUND");
        assert_eq!(error["exit_code"], 3);

        let committed = inventory(url, &["commit", "o-1", "sneaker@dc=1"]).await;
        assert_eq!(committed.code, 0, "{committed:?}");
        assert!(
            committed.stdout.starts_with("committed o-1"),
            "{committed:?}"
        );

        // The hold has ended: releasing it is refused by a business rule.
        let released = inventory(url, &["release", "o-1"]).await;
        assert_eq!(released.code, 1, "{released:?}");
        assert!(
            released.stderr.contains("HOLD_ALREADY_COMMITTED"),
            "{released:?}"
        );

        let hold = inventory(url, &["reservation", "--json", "o-1"]).await;
        assert_eq!(hold.code, 0, "{hold:?}");
        assert_eq!(json(&hold)["state"], "committed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_arguments_exit_2_before_any_call() {
    // Goal: usage errors (found by the CLI or by the server) exit 2 and say what is wrong.
    bounded(async {
        let server = start().await;
        let url = server.url.as_str();
        let bad_line = inventory(url, &["reserve", "--id", "o-1", "sneaker-dc-2"]).await;
        assert_eq!(bad_line.code, 2, "{bad_line:?}");
        assert!(bad_line.stderr.contains("SKU@LOCATION=QTY"), "{bad_line:?}");

        let bad_ttl = inventory(url, &["reserve", "--id", "o-1", "--ttl", "soon", "a@b=1"]).await;
        assert_eq!(bad_ttl.code, 2, "{bad_ttl:?}");

        // The server's validation: a TTL under its 1 s minimum.
        let short_ttl = inventory(url, &["reserve", "--id", "o-1", "--ttl", "10ms", "a@b=1"]).await;
        assert_eq!(short_ttl.code, 2, "{short_ttl:?}");
        assert!(short_ttl.stderr.contains("INVALID_FIELD"), "{short_ttl:?}");

        let help = inventory(url, &["--help"]).await;
        assert_eq!(help.code, 0, "{help:?}");
        assert!(help.stdout.contains("Exit codes"), "{help:?}");
        assert!(help.stdout.contains("4  server unavailable"), "{help:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_files_post_and_store_status_shows_the_gap() {
    // Goal: a JSON Lines file of sales posts per sale, the store's gap shows in store-status,
    // and a file with a bad sale exits with that sale's code while the others are recorded.
    bounded(async {
        let server = start().await;
        let url = server.url.as_str();
        let dir = std::env::temp_dir().join(format!(
            "inv-cli-sales-{}-{}",
            std::process::id(),
            server.addr.port()
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let file = dir.join("sales.jsonl");
        std::fs::write(
            &file,
            concat!(
                r#"{"txn_id":"t-1","store_seq":1,"occurred_at_ms":1699999999000,"lines":["sock@s7=1"]}"#,
                "\n",
                r#"{"txn_id":"t-3","store_seq":3,"occurred_at_ms":1699999999000,"lines":[{"sku":"sock","location":"s7","qty":2}]}"#,
                "\n",
            ),
        )
        .expect("written");
        let file = file.to_str().expect("a UTF-8 path");
        let posted = inventory(url, &["sales", "--store", "s7", "--file", file]).await;
        assert_eq!(posted.code, 0, "{posted:?}");
        assert!(posted.stdout.contains("2 of 2 sales recorded"), "{posted:?}");

        let status = inventory(url, &["store-status", "--json", "s7"]).await;
        assert_eq!(status.code, 0, "{status:?}");
        let store = json(&status)["stores"][0].clone();
        assert_eq!(store["contiguous_seq"], 1);
        assert_eq!(store["missing_count"], 1);
        assert_eq!(store["newest_lag_ms"], 1_000);

        let unknown = inventory(url, &["store-status", "s8"]).await;
        assert_eq!(unknown.code, 3, "{unknown:?}");

        let csv = dir.join("more.csv");
        std::fs::write(
            &csv,
            "txn_id,store_seq,occurred_at_ms,lines\nt-4,4,1699999999000,sock@s7=1\nt-5,5,1699999999000,sock@s7=1;sock@s7=1\n",
        )
        .expect("written");
        let csv = csv.to_str().expect("a UTF-8 path");
        let partly = inventory(url, &["sales", "--json", "--store", "s7", "--file", csv]).await;
        assert_eq!(partly.code, 2, "{partly:?}");
        let answer = json(&partly);
        assert_eq!(answer["recorded"], 1);
        assert_eq!(answer["failed"], 1);
        assert_eq!(answer["items"][1]["error"]["code"], "INVALID_ARGUMENT");

        // The change feed replays what happened, one JSON document per line.
        let watched =
            inventory(url, &["watch", "--json", "--after-lsn", "0", "--max-changes", "2"]).await;
        assert_eq!(watched.code, 0, "{watched:?}");
        let changes: Vec<Value> = watched
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(changes.len(), 2, "{watched:?}");
        assert_eq!(changes[0]["cause"], "sold");
        assert_eq!(changes[0]["lsn"], 1);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_exits_4() {
    // Goal: no server at the address is "unavailable" (4), not a generic failure. Port 1 on
    // loopback refuses at once.
    bounded(async {
        let run = inventory(
            "http://127.0.0.1:1",
            &["check", "--timeout", "5s", "a", "b"],
        )
        .await;
        assert_eq!(run.code, 4, "{run:?}");
        assert!(run.stderr.contains("cannot connect"), "{run:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_csv_imports_reconciles_and_its_held_drift_resolves() {
    // Goal: the ERP workflow from the command line against a live server: `snapshot import` of
    // a small CSV stages it (the same import again is a retry), `reconcile` applies the drift
    // within the tolerance and holds the one beyond it, `reconciliation show` / `list` print the
    // report, `drift resolve --apply` corrects the held one, and a file with a bad row exits 2
    // and stages nothing.
    bounded(async {
        let server = start().await;
        let url = server.url.as_str();
        stock(&server, "sku-a", "dc", 10).await;
        let dir = std::env::temp_dir().join(format!(
            "inv-cli-snapshot-{}-{}",
            std::process::id(),
            server.addr.port()
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let file = dir.join("counts.csv");
        std::fs::write(
            &file,
            "sku,location,on_hand,safety_stock\nsku-a,dc,9,\nsku-b,dc,3,1\n",
        )
        .expect("written");
        let file = file.to_str().expect("a UTF-8 path");
        let as_of = T0_MS.to_string();
        let import = [
            "snapshot", "import", file, "--as-of", &as_of, "--mode", "delta", "--json",
        ];
        let staged = inventory(url, &import).await;
        assert_eq!(staged.code, 0, "{staged:?}");
        let answer = json(&staged);
        let id = format!("erp-counts-{T0_MS}");
        assert_eq!(answer["snapshot"]["snapshot_id"], id.as_str());
        assert_eq!(answer["snapshot"]["status"], "staged");
        assert_eq!(answer["snapshot"]["row_count"], 2);
        assert_eq!(answer["duplicate"], false);
        let again = inventory(url, &import).await;
        assert_eq!(again.code, 0, "{again:?}");
        assert_eq!(json(&again)["duplicate"], true);

        let reconciled = inventory(url, &["reconcile", "--snapshot", &id, "--json"]).await;
        assert_eq!(reconciled.code, 0, "{reconciled:?}");
        let report = json(&reconciled)[0]["report"].clone();
        assert_eq!(report["counts"]["compared"], 2);
        assert_eq!(report["counts"]["applied"], 1);
        assert_eq!(report["counts"]["held"], 1);
        assert_eq!(report["counts"]["safety_stock_set"], 1);
        assert_eq!(report["largest_drifts"][0]["sku"], "sku-b");
        assert_eq!(report["largest_drifts"][0]["drift"], 3);

        let shown = inventory(url, &["reconciliation", "show", &id]).await;
        assert_eq!(shown.code, 0, "{shown:?}");
        assert!(shown.stdout.contains("reconciled"), "{shown:?}");
        assert!(shown.stdout.contains("ENGINE_AT_AS_OF"), "{shown:?}");
        assert!(shown.stdout.contains("held"), "{shown:?}");
        let listed = inventory(url, &["reconciliation", "list"]).await;
        assert_eq!(listed.code, 0, "{listed:?}");
        assert!(listed.stdout.contains(&id), "{listed:?}");

        let held = inventory(url, &["drift", "list", "--json"]).await;
        assert_eq!(held.code, 0, "{held:?}");
        assert_eq!(json(&held)["total"], 1);
        assert_eq!(json(&held)["drifts"][0]["sku"], "sku-b");
        let resolved = inventory(
            url,
            &[
                "drift",
                "resolve",
                "--sku",
                "sku-b",
                "--location",
                "dc",
                "--snapshot",
                &id,
                "--apply",
                "--json",
            ],
        )
        .await;
        assert_eq!(resolved.code, 0, "{resolved:?}");
        assert_eq!(json(&resolved)["applied"], true);
        let check = inventory(url, &["check", "--json", "sku-b", "dc"]).await;
        assert_eq!(json(&check)["positions"][0]["on_hand"], 3, "{check:?}");
        let again = inventory(
            url,
            &[
                "drift",
                "resolve",
                "--sku",
                "sku-a",
                "--location",
                "dc",
                "--snapshot",
                &id,
                "--dismiss",
            ],
        )
        .await;
        assert_eq!(again.code, 1, "nothing held there: {again:?}");

        let bad = dir.join("bad.csv");
        std::fs::write(&bad, "sku,location,on_hand\nsku-c,dc,4\nsku-d,dc,lots\n").expect("written");
        let bad = bad.to_str().expect("a UTF-8 path");
        let refused = inventory(
            url,
            &[
                "snapshot", "import", bad, "--as-of", &as_of, "--mode", "full",
            ],
        )
        .await;
        assert_eq!(refused.code, 2, "{refused:?}");
        assert!(refused.stderr.contains("bad.csv:3"), "{refused:?}");
        let listed = inventory(url, &["reconciliation", "list", "--json"]).await;
        assert_eq!(
            json(&listed).as_array().map(Vec::len),
            Some(1),
            "{listed:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

/// `on_hand`, `safety_stock`, `quarantined` and `available` of one position, read with
/// `check --json`.
async fn levels(url: &str, sku: &str, location: &str) -> [i64; 4] {
    let check = inventory(url, &["check", "--json", sku, location]).await;
    assert_eq!(check.code, 0, "{check:?}");
    let position = json(&check)["positions"][0].clone();
    ["on_hand", "safety_stock", "quarantined", "available"].map(|field| {
        position[field]
            .as_i64()
            .unwrap_or_else(|| panic!("{field} in {check:?}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adjust_stocks_once_per_id_and_safety_stock_lowers_available() {
    // Goal: a newcomer can stock a sku with the binary alone. `adjust` adds to on_hand, a retry
    // with the same --id is answered from the record (duplicate) and adds nothing, an id the
    // CLI made up is printed so it can be reused, a negative DELTA removes units, and
    // `safety-stock` takes units out of `available` without touching on_hand.
    bounded(async {
        let server = start().await;
        let url = server.url.as_str();
        let receipt = [
            "adjust",
            "sneaker",
            "dc",
            "100",
            "--reason",
            "goods receipt",
            "--id",
            "rcpt-1",
        ];
        let adjusted = inventory(url, &receipt).await;
        assert_eq!(adjusted.code, 0, "{adjusted:?}");
        assert!(
            adjusted.stdout.starts_with("adjusted rcpt-1"),
            "{adjusted:?}"
        );
        assert!(adjusted.stdout.contains("+100"), "{adjusted:?}");
        assert_eq!(levels(url, "sneaker", "dc").await, [100, 0, 0, 100]);

        let mut retry = receipt.to_vec();
        retry.push("--json");
        let retried = inventory(url, &retry).await;
        assert_eq!(retried.code, 0, "{retried:?}");
        let answer = json(&retried);
        assert_eq!(answer["adjustment_id"], "rcpt-1");
        assert_eq!(answer["result"], "adjusted");
        assert_eq!(
            answer["duplicate"], true,
            "a retry gets the recorded answer"
        );
        assert_eq!(answer["lsn"], 1);
        assert_eq!(levels(url, "sneaker", "dc").await, [100, 0, 0, 100]);

        // The same id with another payload is a reused key: refused (1), nothing applied.
        let reused = inventory(
            url,
            &[
                "adjust",
                "sneaker",
                "dc",
                "5",
                "--reason",
                "goods receipt",
                "--id",
                "rcpt-1",
            ],
        )
        .await;
        assert_eq!(reused.code, 1, "{reused:?}");
        assert!(reused.stderr.contains("KEY_REUSED"), "{reused:?}");

        let damaged = inventory(
            url,
            &["adjust", "sneaker", "dc", "-30", "--reason", "damage"],
        )
        .await;
        assert_eq!(damaged.code, 0, "{damaged:?}");
        assert!(damaged.stdout.contains("-30"), "{damaged:?}");
        assert_eq!(levels(url, "sneaker", "dc").await, [70, 0, 0, 70]);
        // No --id: the made-up one is on stderr and in the answer; reusing it is a retry.
        let id = damaged
            .stderr
            .split_whitespace()
            .find(|word| word.starts_with("adj-"))
            .map(|word| word.trim_end_matches(';').to_owned())
            .unwrap_or_else(|| panic!("no generated id on stderr: {damaged:?}"));
        assert!(damaged.stdout.contains(&id), "{damaged:?}");
        let again = inventory(
            url,
            &[
                "adjust", "sneaker", "dc", "-30", "--reason", "damage", "--id", &id, "--json",
            ],
        )
        .await;
        assert_eq!(again.code, 0, "{again:?}");
        assert_eq!(json(&again)["duplicate"], true, "{again:?}");
        assert_eq!(levels(url, "sneaker", "dc").await, [70, 0, 0, 70]);

        let set = inventory(
            url,
            &["safety-stock", "sneaker", "dc", "20", "--id", "ss-1"],
        )
        .await;
        assert_eq!(set.code, 0, "{set:?}");
        assert!(set.stdout.starts_with("set ss-1"), "{set:?}");
        assert_eq!(levels(url, "sneaker", "dc").await, [70, 20, 0, 50]);
        let set_json = inventory(
            url,
            &[
                "safety-stock",
                "--json",
                "sneaker",
                "dc",
                "20",
                "--id",
                "ss-1",
            ],
        )
        .await;
        assert_eq!(set_json.code, 0, "{set_json:?}");
        assert_eq!(json(&set_json)["duplicate"], true);
        assert_eq!(json(&set_json)["qty"], 20);
        // Safety stock is not for sale: a reserve of more than the rest is rejected.
        let rejected = inventory(url, &["reserve", "--id", "o-1", "sneaker@dc=51"]).await;
        assert_eq!(rejected.code, 1, "{rejected:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_moves_a_holds_expiry() {
    // Goal: `extend` moves an open hold's expiry to --ttl from the server's (manual) clock, as
    // `reservation` then shows; the same --id again is a retry; an ended hold is refused (1).
    bounded(async {
        let server = start().await;
        stock(&server, "sneaker", "dc", 5).await;
        let url = server.url.as_str();
        let granted = inventory(
            url,
            &["reserve", "--id", "o-1", "--ttl", "15m", "sneaker@dc=2"],
        )
        .await;
        assert_eq!(granted.code, 0, "{granted:?}");
        let hold = inventory(url, &["reservation", "--json", "o-1"]).await;
        assert_eq!(json(&hold)["expires_at_ms"], T0_MS + 15 * 60_000);

        let extended = inventory(url, &["extend", "o-1", "--ttl", "2h", "--id", "ext-1"]).await;
        assert_eq!(extended.code, 0, "{extended:?}");
        assert!(extended.stdout.starts_with("extended o-1"), "{extended:?}");
        assert!(
            extended.stdout.contains("2023-11-15T00:13:20.000Z"),
            "{extended:?}"
        );
        let hold = inventory(url, &["reservation", "--json", "o-1"]).await;
        assert_eq!(json(&hold)["expires_at_ms"], T0_MS + 2 * 3_600_000);
        assert_eq!(json(&hold)["state"], "open");

        let again = inventory(
            url,
            &["extend", "--json", "o-1", "--ttl", "2h", "--id", "ext-1"],
        )
        .await;
        assert_eq!(again.code, 0, "{again:?}");
        let answer = json(&again);
        assert_eq!(answer["duplicate"], true);
        assert_eq!(answer["expires_at_ms"], T0_MS + 2 * 3_600_000);
        assert_eq!(answer["request_id"], "ext-1");

        let unknown = inventory(url, &["extend", "no-such-order", "--ttl", "1h"]).await;
        assert_eq!(unknown.code, 3, "{unknown:?}");
        let committed = inventory(url, &["commit", "o-1"]).await;
        assert_eq!(committed.code, 0, "{committed:?}");
        let ended = inventory(url, &["extend", "o-1", "--ttl", "1h", "--id", "ext-2"]).await;
        assert_eq!(ended.code, 1, "{ended:?}");
        assert!(ended.stderr.contains("HOLD_ALREADY_COMMITTED"), "{ended:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispose_restocks_or_scraps_a_quarantined_return() {
    // Goal: units a return put in quarantine (`returns`, disposition inspect) are decided with
    // `dispose`: restocked units become available, scrapped ones leave; deciding more than is
    // left is refused (1) and an unknown return is not found (3).
    bounded(async {
        let server = start().await;
        let url = server.url.as_str();
        let dir = std::env::temp_dir().join(format!(
            "inv-cli-dispose-{}-{}",
            std::process::id(),
            server.addr.port()
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let file = dir.join("returns.jsonl");
        std::fs::write(
            &file,
            "{\"return_id\": \"r-1\", \"lines\": [\"sneaker@dc=3\"]}\n",
        )
        .expect("written");
        let file = file.to_str().expect("a UTF-8 path");
        let returned = inventory(
            url,
            &["returns", "--file", file, "--disposition", "inspect"],
        )
        .await;
        assert_eq!(returned.code, 0, "{returned:?}");
        assert_eq!(levels(url, "sneaker", "dc").await, [0, 0, 3, 0]);

        let restocked = inventory(
            url,
            &[
                "dispose", "r-1", "sneaker", "dc", "2", "--action", "restock", "--id", "d-1",
            ],
        )
        .await;
        assert_eq!(restocked.code, 0, "{restocked:?}");
        assert!(
            restocked.stdout.starts_with("restocked d-1"),
            "{restocked:?}"
        );
        assert_eq!(levels(url, "sneaker", "dc").await, [2, 0, 1, 2]);

        let scrapped = inventory(
            url,
            &[
                "dispose", "--json", "r-1", "sneaker", "dc", "1", "--action", "scrap", "--id",
                "d-2",
            ],
        )
        .await;
        assert_eq!(scrapped.code, 0, "{scrapped:?}");
        let answer = json(&scrapped);
        assert_eq!(answer["result"], "scrapped");
        assert_eq!(answer["disposition_id"], "d-2");
        assert_eq!(answer["duplicate"], false);
        assert_eq!(levels(url, "sneaker", "dc").await, [2, 0, 0, 2]);

        let nothing_left = inventory(
            url,
            &[
                "dispose", "r-1", "sneaker", "dc", "1", "--action", "scrap", "--id", "d-3",
            ],
        )
        .await;
        assert_eq!(nothing_left.code, 1, "{nothing_left:?}");
        assert!(
            nothing_left.stderr.contains("NOT_QUARANTINED"),
            "{nothing_left:?}"
        );
        let unknown = inventory(
            url,
            &["dispose", "r-9", "sneaker", "dc", "1", "--action", "scrap"],
        )
        .await;
        assert_eq!(unknown.code, 3, "{unknown:?}");
        assert!(unknown.stderr.contains("RETURN_NOT_FOUND"), "{unknown:?}");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stock_input_exits_2_naming_the_field() {
    // Goal: malformed input to the stock commands exits 2 with a message naming what is
    // wrong, whether the argument parser or the server finds it.
    bounded(async {
        let server = start().await;
        let url = server.url.as_str();
        let cases: [(&[&str], &str); 9] = [
            (
                &["adjust", "sneaker", "dc", "lots", "--reason", "receipt"],
                "<DELTA>",
            ),
            (&["adjust", "sneaker", "dc", "5"], "--reason"),
            // The server's validation: a zero delta.
            (
                &["adjust", "sneaker", "dc", "0", "--reason", "receipt"],
                "delta",
            ),
            (&["safety-stock", "sneaker", "dc", "-1"], "<QTY>"),
            (&["extend", "o-1"], "--ttl"),
            (&["extend", "o-1", "--ttl", "soon"], "--ttl"),
            // The server's validation: a TTL under its 1 s minimum.
            (&["extend", "o-1", "--ttl", "10ms"], "ttl"),
            (
                &["dispose", "r-1", "sneaker", "dc", "1", "--action", "burn"],
                "--action",
            ),
            (
                &[
                    "dispose", "r-1", "sneaker", "dc", "many", "--action", "scrap",
                ],
                "<QTY>",
            ),
        ];
        for (args, field) in cases {
            let run = inventory(url, args).await;
            assert_eq!(run.code, 2, "{args:?}: {run:?}");
            assert!(
                run.stderr.contains(field),
                "{args:?} should name {field}: {run:?}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_print_a_script_for_each_shell() {
    // Goal: `completions` prints, without a server, a script for bash, zsh and fish that knows
    // the whole command tree (subcommands of every family, nested ones included); an unknown
    // shell is a usage error.
    bounded(async {
        let nowhere = "http://127.0.0.1:1";
        for shell in ["bash", "zsh", "fish"] {
            let run = inventory(nowhere, &["completions", shell]).await;
            assert_eq!(run.code, 0, "{shell}: {run:?}");
            assert!(run.stderr.is_empty(), "{shell}: {run:?}");
            for subcommand in [
                "serve",
                "check",
                "adjust",
                "safety-stock",
                "reserve",
                "commit",
                "extend",
                "dispose",
                "snapshot",
                "reconciliation",
                "completions",
            ] {
                assert!(
                    run.stdout.contains(subcommand),
                    "the {shell} script does not mention {subcommand}"
                );
            }
        }
        let unknown = inventory(nowhere, &["completions", "cmd.exe"]).await;
        assert_eq!(unknown.code, 2, "{unknown:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_shows_what_happened_to_a_hold() {
    // Goal: `events --hold` prints the hold's reserve and commit, oldest first, as a table
    // (LSN, time, kind, ids, lines with their effects, outcome) and as JSON; `events` at a
    // position stops at --limit and says how to go on; a filter given by half exits 2.
    bounded(async {
        let server = start().await;
        stock(&server, "sneaker", "dc", 5).await;
        let url = server.url.as_str();
        let reserved = inventory(
            url,
            &["reserve", "--id", "o-1", "--ttl", "15m", "sneaker@dc=2"],
        )
        .await;
        assert_eq!(reserved.code, 0, "{reserved:?}");
        let committed = inventory(url, &["commit", "o-1", "sneaker@dc=1"]).await;
        assert_eq!(committed.code, 0, "{committed:?}");

        let table = inventory(url, &["events", "--hold", "o-1"]).await;
        assert_eq!(table.code, 0, "{table:?}");
        let rows: Vec<&str> = table.stdout.lines().collect();
        assert_eq!(rows.len(), 3, "a header and two events: {table:?}");
        for header in ["LSN", "TIME", "KIND", "IDS", "LINES", "OUTCOME"] {
            assert!(rows[0].contains(header), "{table:?}");
        }
        for cell in [
            "2",
            "2023-11-14T22:13:20.000Z",
            "HoldPlaced",
            "hold=o-1 channel=cli",
            "sneaker@dc 2 reserved +2",
            "granted until 2023-11-14T22:28:20.000Z",
        ] {
            assert!(
                rows[1].contains(cell),
                "{cell:?} missing from {:?}",
                rows[1]
            );
        }
        for cell in [
            "HoldCommitted",
            "sneaker@dc 1 on_hand -1 reserved -2",
            "committed 1 of 2 held; 1 released",
        ] {
            assert!(
                rows[2].contains(cell),
                "{cell:?} missing from {:?}",
                rows[2]
            );
        }
        // A hold the log never saw: said in words, not an empty table.
        let none = inventory(url, &["events", "--hold", "o-unknown"]).await;
        assert_eq!(none.code, 0, "{none:?}");
        assert_eq!(
            none.stdout.trim(),
            "no matching events (looked through lsn 3)",
            "{none:?}"
        );

        let listed = inventory(url, &["events", "--json", "--hold", "o-1"]).await;
        assert_eq!(listed.code, 0, "{listed:?}");
        let answer = json(&listed);
        assert_eq!(answer["at_end"], true);
        assert_eq!(answer["next_after_lsn"], 3);
        let events = answer["events"].as_array().expect("a list of events");
        assert_eq!(events.len(), 2, "{answer}");
        assert_eq!(events[0]["kind"], "HoldPlaced");
        assert_eq!(events[0]["lsn"], 2);
        assert_eq!(events[0]["reservation_id"], "o-1");
        assert_eq!(events[0]["channel"], "cli");
        assert_eq!(events[0]["time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(events[0]["expires_at_ms"], T0_MS + 15 * 60_000);
        assert_eq!(events[1]["kind"], "HoldCommitted");
        assert_eq!(events[1]["outcome"], "committed 1 of 2 held; 1 released");
        let line = &events[1]["lines"][0];
        assert_eq!(
            (&line["sku"], &line["location"], &line["qty"]),
            (&"sneaker".into(), &"dc".into(), &1.into())
        );
        assert_eq!(line["on_hand_delta"], -1);
        assert_eq!(line["reserved_delta"], -2);

        let first = inventory(
            url,
            &[
                "events",
                "--sku",
                "sneaker",
                "--location",
                "dc",
                "--limit",
                "1",
            ],
        )
        .await;
        assert_eq!(first.code, 0, "{first:?}");
        assert!(first.stdout.contains("StockAdjusted"), "{first:?}");
        assert!(
            first.stdout.contains("go on with --after-lsn 1"),
            "{first:?}"
        );

        for half in [
            &["events", "--sku", "sneaker"][..],
            &["events", "--location", "dc"],
            &["events"],
            &[
                "events",
                "--hold",
                "o-1",
                "--sku",
                "sneaker",
                "--location",
                "dc",
            ],
        ] {
            let run = inventory(url, half).await;
            assert_eq!(run.code, 2, "{half:?}: {run:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_ack_answers_a_sale_whose_number_jumped() {
    // Goal: a sale numbered 2^64-1 shows in store-status as an anomaly (not as missing
    // sales), store-ack dismisses it (a retry says so, the other verdict exits 1), accepts
    // another, and exits 3 for a sale without one and 2 without a verdict.
    bounded(async {
        let server = start().await;
        let url = server.url.as_str();
        let mut client =
            pb::inventory_client::InventoryClient::connect(format!("http://{}", server.addr))
                .await
                .expect("connects");
        let sale = |txn_id: &str, store_seq| pb::Sale {
            txn_id: txn_id.into(),
            store_seq,
            occurred_at_ms: T0_MS - 1_000,
            lines: vec![pb::Line {
                sku: "sock".into(),
                location: "s9".into(),
                qty: 1,
            }],
        };
        client
            .record_sales(pb::RecordSalesRequest {
                store_id: "s9".into(),
                sales: vec![
                    sale("t-1", 1),
                    sale("t-max", u64::MAX),
                    sale("t-jump", 500_000),
                ],
            })
            .await
            .expect("recorded");

        let status = inventory(url, &["store-status", "s9"]).await;
        assert_eq!(status.code, 0, "{status:?}");
        assert!(
            status
                .stdout
                .contains("anomaly: txn t-max jumped to seq 18446744073709551615")
                && status
                    .stdout
                    .contains("inventory store-ack s9 t-max --accept|--dismiss"),
            "{status:?}"
        );
        let status = inventory(url, &["store-status", "--json", "s9"]).await;
        let store = json(&status)["stores"][0].clone();
        assert_eq!(store["missing_count"], 0);
        assert_eq!(store["newest_seq"], 1);
        assert_eq!(store["anomalies"][0]["txn_id"], "t-max");
        assert_eq!(store["anomalies"][1]["store_seq"], 500_000);

        let args = ["store-ack", "--json", "s9", "t-max", "--dismiss"];
        let dismissed = inventory(url, &args).await;
        assert_eq!(dismissed.code, 0, "{dismissed:?}");
        let answer = json(&dismissed);
        assert_eq!(answer["result"], "dismissed");
        assert_eq!(answer["duplicate"], false);
        let again = inventory(url, &args).await;
        assert_eq!(json(&again)["duplicate"], true, "{again:?}");
        assert_eq!(json(&again)["lsn"], answer["lsn"]);
        let other = inventory(url, &["store-ack", "s9", "t-max", "--accept"]).await;
        assert_eq!(other.code, 1, "{other:?}");
        assert!(other.stderr.contains("KEY_REUSED"), "{other:?}");

        let accepted = inventory(url, &["store-ack", "s9", "t-jump", "--accept"]).await;
        assert_eq!(accepted.code, 0, "{accepted:?}");
        assert!(
            accepted
                .stdout
                .contains("accepted seq 500000 of store s9 (txn t-jump)")
                && accepted
                    .stdout
                    .contains("499998 missing numbers given up on"),
            "{accepted:?}"
        );
        let none = inventory(url, &["store-ack", "s9", "t-1", "--dismiss"]).await;
        assert_eq!(none.code, 3, "{none:?}");
        assert!(none.stderr.contains("STORE_ANOMALY_NOT_FOUND"), "{none:?}");
        let no_verdict = inventory(url, &["store-ack", "s9", "t-1"]).await;
        assert_eq!(no_verdict.code, 2, "{no_verdict:?}");
    })
    .await;
}
