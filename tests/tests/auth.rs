//! Authentication and roles end to end (docs/security.md): a real server on 127.0.0.1 with a
//! principals file. Covered: every role against every RPC (allowed calls are not refused by
//! auth, denied ones are PERMISSION_DENIED naming the permission), no or an unknown token,
//! health open without a token, a connector touching another channel's hold (answered as an
//! unknown hold), a store posting for another store, every request of a Session checked,
//! token rotation by reload on an open channel, a principal named by its client certificate
//! under mutual TLS, the metrics endpoint's own token, and the principal recorded on holds and
//! events (a key reused by another principal is a conflict).

use anyhow::{Context, Result, ensure};
use inv_api::ServeOptions;
use inv_api::auth::{Auth, token_sha256_hex};
use inv_api::tls::{Port, ServerTls, TlsFiles};
use inv_engine::{Engine, LedgerConfig, ManualClock, MemLog};
use inv_tests::*;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_types::StatusExt;

mod certs;

use certs::Ca;

/// Longest any one connection or call may take here.
const WAIT: Duration = Duration::from_secs(5);

const CHANNEL_A: &str = "web";
const CHANNEL_B: &str = "marketplace";
const STORE: &str = "s-1";
const OTHER_STORE: &str = "s-2";
const SKU: &str = "sneaker-42";

/// Each role's principal: name, roles, and the token it calls with.
const PRINCIPALS: [(&str, &str, &str); 6] = [
    ("web-shop", r#"["connector:web"]"#, "tok-connector"),
    ("market", r#"["connector:marketplace"]"#, "tok-connector-b"),
    ("pos-s-1", r#"["store:s-1"]"#, "tok-store"),
    ("erp", r#"["erp"]"#, "tok-erp"),
    ("dashboard", r#"["reader"]"#, "tok-reader"),
    ("ops", r#"["admin"]"#, "tok-admin"),
];

const METRICS_TOKEN: &str = "tok-metrics";

fn principals_file(extra: &str) -> String {
    let mut text = format!(
        "metrics_token_sha256 = [\"{}\"]\n",
        token_sha256_hex(METRICS_TOKEN)
    );
    for (name, roles, token) in PRINCIPALS {
        text.push_str(&format!(
            "[[principal]]\nname = \"{name}\"\nroles = {roles}\ntoken_sha256 = [\"{}\"]\n",
            token_sha256_hex(token)
        ));
    }
    text.push_str(extra);
    text
}

/// A client on `channel` sending `authorization: Bearer token` (none for `None`).
fn client(channel: &Channel, token: Option<&str>) -> Authed {
    authed_client(channel, token)
}

/// A server with authentication on, the principals above, and a metrics endpoint.
async fn start(dir: &Path) -> Result<(TestServer, Arc<Auth>)> {
    TestServer::start_authenticated(dir, &principals_file("")).await
}

/// Every RPC but Session (checked per request, below), with the permission it needs.
const RPCS: [(&str, &str); 23] = [
    ("Reserve", "holds.write"),
    ("Commit", "holds.write"),
    ("Release", "holds.write"),
    ("Extend", "holds.write"),
    ("GetReservation", "holds.read"),
    ("Check", "availability.read"),
    ("CheckSku", "availability.read"),
    ("CheckSellable", "availability.read"),
    ("WatchAvailability", "availability.read"),
    ("RecordSales", "sales.write"),
    ("RecordReturns", "returns.write"),
    ("StoreStatus", "stores.read"),
    ("AcknowledgeStoreAnomaly", "stores.write"),
    ("Adjust", "stock.write"),
    ("SetSafetyStock", "stock.write"),
    ("Disposition", "stock.write"),
    ("PushSnapshot", "reconcile.write"),
    ("Reconcile", "reconcile.write"),
    ("ResolveDrift", "reconcile.write"),
    ("GetReconciliationReport", "reconcile.read"),
    ("ListReconciliations", "reconcile.read"),
    ("ListHeldDrifts", "reconcile.read"),
    ("ListEvents", "events.read"),
];

/// The RPCs each role may call, by token (docs/security.md's table).
fn allowed(token: &str, rpc: &str) -> bool {
    const HOLDS: [&str; 9] = [
        "Reserve",
        "Commit",
        "Release",
        "Extend",
        "GetReservation",
        "Check",
        "CheckSku",
        "CheckSellable",
        "WatchAvailability",
    ];
    const READS: [&str; 10] = [
        "GetReservation",
        "Check",
        "CheckSku",
        "CheckSellable",
        "WatchAvailability",
        "StoreStatus",
        "GetReconciliationReport",
        "ListReconciliations",
        "ListHeldDrifts",
        "ListEvents",
    ];
    const ERP: [&str; 6] = [
        "Adjust",
        "SetSafetyStock",
        "Disposition",
        "PushSnapshot",
        "Reconcile",
        "ResolveDrift",
    ];
    match token {
        "tok-connector" => HOLDS.contains(&rpc),
        "tok-store" => ["RecordSales", "RecordReturns", "StoreStatus"].contains(&rpc),
        "tok-erp" => READS.contains(&rpc) || ERP.contains(&rpc),
        "tok-reader" => READS.contains(&rpc),
        "tok-admin" => true,
        _ => unreachable!("{token}"),
    }
}

/// Calls `rpc` with a request in the scope of the connector (channel `web`) and the store
/// (`s-1`); what it answers past authorization does not matter here.
async fn call(client: &mut Authed, rpc: &str) -> Result<(), Status> {
    let id = "r-unknown".to_owned();
    match rpc {
        "Reserve" => {
            let mut request = reserve("r-matrix", vec![line(SKU, "dc", 1)], 60_000);
            request.channel = CHANNEL_A.into();
            client.reserve(request).await.map(drop)
        }
        "Commit" => client
            .commit(pb::CommitRequest {
                reservation_id: id,
                ..Default::default()
            })
            .await
            .map(drop),
        "Release" => client
            .release(pb::ReleaseRequest { reservation_id: id })
            .await
            .map(drop),
        "Extend" => client
            .extend(pb::ExtendRequest {
                reservation_id: id,
                request_id: "x".into(),
                ttl_ms: 1_000,
            })
            .await
            .map(drop),
        "GetReservation" => client
            .get_reservation(pb::GetReservationRequest { reservation_id: id })
            .await
            .map(drop),
        "Check" => client.check(pb::CheckRequest::default()).await.map(drop),
        "CheckSku" => client
            .check_sku(pb::CheckSkuRequest {
                sku: SKU.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "CheckSellable" => client
            .check_sellable(pb::CheckSellableRequest::new(STORE, [SKU]))
            .await
            .map(drop),
        "WatchAvailability" => client
            .watch_availability(pb::WatchAvailabilityRequest::default())
            .await
            .map(drop),
        "RecordSales" => client
            .record_sales(pb::RecordSalesRequest {
                store_id: STORE.into(),
                sales: vec![sale("t-1", 1, vec![line(SKU, STORE, 1)])],
            })
            .await
            .map(drop),
        "RecordReturns" => client.record_returns(returns(STORE)).await.map(drop),
        "StoreStatus" => client
            .store_status(pb::StoreStatusRequest {
                store_id: STORE.into(),
            })
            .await
            .map(drop),
        "AcknowledgeStoreAnomaly" => client
            .acknowledge_store_anomaly(pb::AcknowledgeStoreAnomalyRequest {
                store_id: STORE.into(),
                txn_id: "t-1".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "Adjust" => client
            .adjust(adjust("a-matrix", SKU, "dc", 1))
            .await
            .map(drop),
        "SetSafetyStock" => client
            .set_safety_stock(pb::SetSafetyStockRequest::default())
            .await
            .map(drop),
        "Disposition" => client
            .disposition(pb::DispositionRequest::default())
            .await
            .map(drop),
        "PushSnapshot" => client
            .push_snapshot(tokio_stream::iter(Vec::<pb::PushSnapshotRequest>::new()))
            .await
            .map(drop),
        "Reconcile" => client
            .reconcile(pb::ReconcileRequest::default())
            .await
            .map(drop),
        "ResolveDrift" => client
            .resolve_drift(pb::ResolveDriftRequest::default())
            .await
            .map(drop),
        "GetReconciliationReport" => client
            .get_reconciliation_report(pb::GetReconciliationReportRequest::default())
            .await
            .map(drop),
        "ListReconciliations" => client
            .list_reconciliations(pb::ListReconciliationsRequest::default())
            .await
            .map(drop),
        "ListHeldDrifts" => client
            .list_held_drifts(pb::ListHeldDriftsRequest::default())
            .await
            .map(drop),
        "ListEvents" => client
            .list_events(pb::ListEventsRequest {
                sku: SKU.into(),
                location: "dc".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        _ => unreachable!("{rpc}"),
    }
}

/// A valid read every reader may make.
fn sku() -> pb::CheckSkuRequest {
    pb::CheckSkuRequest {
        sku: SKU.into(),
        ..Default::default()
    }
}

fn returns(location: &str) -> pb::RecordReturnsRequest {
    pb::RecordReturnsRequest {
        returns: vec![pb::Return {
            return_id: format!("ret-{location}"),
            lines: vec![pb::ReturnLine {
                sku: SKU.into(),
                location: location.into(),
                qty: 1,
                disposition: pb::ReturnDisposition::Restock as i32,
            }],
        }],
    }
}

/// The ErrorInfo reason and `permission` of a status.
fn reason(status: &Status) -> (String, Option<String>) {
    let Some(info) = status.get_details_error_info() else {
        return (String::new(), None);
    };
    let permission = info.metadata.get("permission").cloned();
    (info.reason, permission)
}

fn assert_denied(status: &Status, permission: &str) {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        reason(status),
        ("PERMISSION_DENIED".into(), Some(permission.into())),
        "{status:?}"
    );
    assert!(status.message().contains(permission), "{status:?}");
}

#[tokio::test]
async fn every_role_against_every_rpc() -> Result<()> {
    bounded(async {
        let dir = TempDir::new()?;
        let (server, _auth) = start(dir.path()).await?;
        for token in [
            "tok-connector",
            "tok-store",
            "tok-erp",
            "tok-reader",
            "tok-admin",
        ] {
            let mut client = client(&server.channel, Some(token));
            for (rpc, permission) in RPCS {
                let outcome = call(&mut client, rpc).await;
                if allowed(token, rpc) {
                    if let Err(status) = &outcome {
                        assert!(
                            ![Code::PermissionDenied, Code::Unauthenticated]
                                .contains(&status.code()),
                            "{token} {rpc}: {status:?}"
                        );
                    }
                } else {
                    let status = outcome.expect_err(&format!("{token} may not call {rpc}"));
                    assert_denied(&status, permission);
                }
            }
        }
        server.join().await
    })
    .await
}

#[tokio::test]
async fn no_token_or_an_unknown_one_is_unauthenticated_and_health_stays_open() -> Result<()> {
    bounded(async {
        let dir = TempDir::new()?;
        let (server, _auth) = start(dir.path()).await?;
        for token in [None, Some("tok-nobody")] {
            for (rpc, _) in RPCS {
                let status = call(&mut client(&server.channel, token), rpc)
                    .await
                    .expect_err("refused");
                assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
                assert_eq!(reason(&status).0, "UNAUTHENTICATED");
            }
        }
        // Health (and reflection) need no credential.
        let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await?;
        assert_eq!(
            answer.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        server.join().await
    })
    .await
}

#[tokio::test]
async fn another_channels_hold_is_answered_as_an_unknown_one() -> Result<()> {
    bounded(async {
        let dir = TempDir::new()?;
        let (server, _auth) = start(dir.path()).await?;
        let mut admin = client(&server.channel, Some("tok-admin"));
        admin.adjust(adjust("a-1", SKU, "dc", 10)).await?;
        let mut market = client(&server.channel, Some("tok-connector-b"));
        let mut held = reserve("r-market", vec![line(SKU, "dc", 1)], 60_000);
        held.channel = CHANNEL_B.into();
        market.reserve(held).await?;
        let mut web = client(&server.channel, Some("tok-connector"));

        // The same answer for the other channel's hold as for an id nobody used.
        let answers = |id: &str| {
            let mut web = web.clone();
            let id = id.to_owned();
            async move {
                let get = web
                    .get_reservation(pb::GetReservationRequest {
                        reservation_id: id.clone(),
                    })
                    .await
                    .map(drop);
                let commit = web
                    .commit(pb::CommitRequest {
                        reservation_id: id.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop);
                let release = web
                    .release(pb::ReleaseRequest {
                        reservation_id: id.clone(),
                    })
                    .await
                    .map(drop);
                let extend = web
                    .extend(pb::ExtendRequest {
                        reservation_id: id.clone(),
                        request_id: "x".into(),
                        ttl_ms: 1_000,
                    })
                    .await
                    .map(drop);
                [get, commit, release, extend].map(|outcome| {
                    let status = outcome.expect_err("not found");
                    (
                        status.code(),
                        reason(&status),
                        status.message().replace(&id, "ID"),
                    )
                })
            }
        };
        let other = answers("r-market").await;
        let unknown = answers("r-nobody").await;
        assert_eq!(other, unknown);
        assert_eq!(other[0].0, Code::NotFound);
        assert_eq!(other[0].1.0, "RESERVATION_NOT_FOUND");
        // Its own channel only for Reserve.
        let mut elsewhere = reserve("r-web", vec![line(SKU, "dc", 1)], 60_000);
        elsewhere.channel = CHANNEL_B.into();
        assert_denied(
            &web.reserve(elsewhere).await.expect_err("denied"),
            "holds.write",
        );

        // The hold is untouched and its own channel still sees it.
        let hold = market
            .get_reservation(pb::GetReservationRequest {
                reservation_id: "r-market".into(),
            })
            .await?
            .into_inner();
        ensure!(hold.reservation.is_some());

        // On a Session every request is checked alike.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut answers = web
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let ask = |correlation_id, request| pb::SessionRequest {
            correlation_id,
            request: Some(request),
        };
        use pb::session_request::Request as Ask;
        tx.send(ask(
            1,
            Ask::Commit(pb::CommitRequest {
                reservation_id: "r-market".into(),
                ..Default::default()
            }),
        ))
        .await?;
        let mut reserve_b = reserve("r-web-2", vec![line(SKU, "dc", 1)], 60_000);
        reserve_b.channel = CHANNEL_B.into();
        tx.send(ask(2, Ask::Reserve(reserve_b))).await?;
        drop(tx);
        let mut errors = Vec::new();
        while let Some(answer) = answers.message().await? {
            let Some(pb::session_response::Response::Error(error)) = answer.response else {
                anyhow::bail!("expected an error: {answer:?}");
            };
            errors.push((answer.correlation_id, error.code, error.reason));
        }
        errors.sort();
        assert_eq!(
            errors,
            [
                (
                    1,
                    Code::NotFound as u32,
                    pb::ErrorReason::ReservationNotFound as i32
                ),
                (
                    2,
                    Code::PermissionDenied as u32,
                    pb::ErrorReason::PermissionDenied as i32
                ),
            ]
        );
        server.join().await
    })
    .await
}

#[tokio::test]
async fn a_store_posts_for_its_own_stores_only() -> Result<()> {
    bounded(async {
        let dir = TempDir::new()?;
        let (server, _auth) = start(dir.path()).await?;
        let mut store = client(&server.channel, Some("tok-store"));
        let status = store
            .record_sales(pb::RecordSalesRequest {
                store_id: OTHER_STORE.into(),
                sales: vec![sale("t-9", 1, vec![line(SKU, OTHER_STORE, 1)])],
            })
            .await
            .expect_err("another store");
        assert_denied(&status, "sales.write");
        assert!(status.message().contains(OTHER_STORE), "{status:?}");
        let status = store
            .record_returns(returns(OTHER_STORE))
            .await
            .expect_err("a return elsewhere");
        assert_denied(&status, "returns.write");
        let status = store
            .store_status(pb::StoreStatusRequest {
                store_id: OTHER_STORE.into(),
            })
            .await
            .expect_err("another store's status");
        assert_denied(&status, "stores.read");
        // Nothing was applied for the other store.
        assert!(server.engine.store_status(OTHER_STORE).is_none());

        // Its own sales go through; listing every store shows its own only.
        let mut admin = client(&server.channel, Some("tok-admin"));
        for (store_id, txn) in [(STORE, "t-1"), (OTHER_STORE, "t-2")] {
            let client = if store_id == STORE {
                &mut store
            } else {
                &mut admin
            };
            client
                .record_sales(pb::RecordSalesRequest {
                    store_id: store_id.into(),
                    sales: vec![sale(txn, 1, vec![line(SKU, store_id, 1)])],
                })
                .await?;
        }
        let listed = |answer: pb::StoreStatusResponse| -> Vec<String> {
            answer.stores.into_iter().map(|s| s.store_id).collect()
        };
        let mine = store
            .store_status(pb::StoreStatusRequest::default())
            .await?
            .into_inner();
        assert_eq!(listed(mine), [STORE]);
        let all = admin
            .store_status(pb::StoreStatusRequest::default())
            .await?
            .into_inner();
        assert_eq!(listed(all), [STORE, OTHER_STORE]);
        server.join().await
    })
    .await
}

#[tokio::test]
async fn a_rotated_token_stops_working_on_the_next_call_after_a_reload() -> Result<()> {
    bounded(async {
        let dir = TempDir::new()?;
        let (server, auth) = start(dir.path()).await?;
        let path = dir.path().join("principals.toml");
        let rotating = |hashes: &[&str]| {
            let hashes: Vec<String> = hashes
                .iter()
                .map(|t| format!("\"{}\"", token_sha256_hex(t)))
                .collect();
            principals_file(&format!(
                "[[principal]]\nname = \"rotating\"\nroles = [\"reader\"]\ntoken_sha256 = [{}]\n",
                hashes.join(", ")
            ))
        };
        // Both valid at once.
        std::fs::write(&path, rotating(&["tok-old", "tok-new"]))?;
        auth.reload()?;
        let mut old = client(&server.channel, Some("tok-old"));
        let mut new = client(&server.channel, Some("tok-new"));
        old.check_sku(sku()).await?;
        new.check_sku(sku()).await?;
        // A broken file is refused and changes nothing.
        std::fs::write(&path, "[[principal]]\nname = 3\n")?;
        auth.reload().expect_err("a broken file");
        old.check_sku(sku()).await?;
        // The old one removed: refused on the next call, on the same open channel.
        std::fs::write(&path, rotating(&["tok-new"]))?;
        auth.reload()?;
        let status = old.check_sku(sku()).await.expect_err("the old token");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        new.check_sku(sku()).await?;
        server.join().await
    })
    .await
}

#[tokio::test]
async fn the_metrics_endpoint_takes_its_own_token() -> Result<()> {
    bounded(async {
        let dir = TempDir::new()?;
        let (server, _auth) = start(dir.path()).await?;
        let addr = server.metrics_addr.context("a metrics endpoint")?;
        assert!(get_metrics(addr, None).await?.starts_with("HTTP/1.1 401"));
        // A principal's token is not the metrics token.
        assert!(
            get_metrics(addr, Some("tok-admin"))
                .await?
                .starts_with("HTTP/1.1 401")
        );
        let answer = get_metrics(addr, Some(METRICS_TOKEN)).await?;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("inventory_"), "{answer}");
        server.join().await
    })
    .await
}

/// `GET /metrics` with `Authorization: Bearer token`; the whole answer, status line first.
async fn get_metrics(addr: SocketAddr, token: Option<&str>) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n{authorization}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut answer))
        .await
        .context("the scrape hung")??;
    Ok(answer)
}

#[tokio::test]
async fn under_mutual_tls_a_certificate_subject_names_a_principal() -> Result<()> {
    bounded(async {
        let dir = TempDir::new()?;
        let ca = Ca::new("test CA")?;
        let client_ca = Ca::new("client CA")?;
        let (cert, key) = ca.issue("inventory server", false, false)?;
        let files = TlsFiles {
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            client_ca: Some(dir.path().join("client-ca.pem")),
        };
        std::fs::write(&files.cert, cert)?;
        std::fs::write(&files.key, key)?;
        std::fs::write(
            files.client_ca.as_ref().context("a client CA")?,
            &client_ca.pem,
        )?;
        let path = dir.path().join("principals.toml");
        std::fs::write(
            &path,
            principals_file(
                "[[principal]]\nname = \"till\"\nroles = [\"store:s-1\"]\n\
                 cert_subject = \"CN=till-s-1\"\n",
            ),
        )?;
        let tls = ServerTls::load(files)?;
        let engine = Arc::new(Engine::recover(
            LedgerConfig::default(),
            Arc::new(MemLog::new()),
            Arc::new(ManualClock::new(T0_MS)),
        )?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(inv_api::serve_with(
            engine,
            test_config(),
            tls.incoming(listener, Port::Grpc),
            async move {
                let _ = signal.await;
            },
            ServeOptions {
                auth: Some(Auth::load(&path)?),
                ..ServeOptions::default()
            },
        ));
        let connect = |identity: (String, String)| {
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca.pem))
                .identity(Identity::from_pem(identity.0, identity.1));
            let endpoint =
                Endpoint::from_shared(url.clone()).map(|e| e.connect_timeout(WAIT).timeout(WAIT));
            async move { anyhow::Ok(endpoint?.tls_config(tls)?.connect().await?) }
        };
        // The till's certificate: a store principal, no token needed.
        let till_channel = connect(client_ca.issue("till-s-1", true, false)?).await?;
        let mut till = client(&till_channel, None);
        till.store_status(pb::StoreStatusRequest::default()).await?;
        assert_denied(
            &till
                .check_sku(sku())
                .await
                .expect_err("a store does not check"),
            "availability.read",
        );
        // A token wins over the certificate.
        let mut as_reader = client(&till_channel, Some("tok-reader"));
        as_reader.check_sku(sku()).await?;
        // A certificate the CA signed but no principal has: unauthenticated.
        let stranger = connect(client_ca.issue("stranger", true, false)?).await?;
        let status = client(&stranger, None)
            .store_status(pb::StoreStatusRequest::default())
            .await
            .expect_err("an unknown subject");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(status.message().contains("CN=stranger"), "{status:?}");
        let _ = shutdown.send(());
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .context("the server did not stop")???;
        Ok(())
    })
    .await
}

/// A second connector of channel `web`, for the tests of who did what.
const WEB_SHOP_2: (&str, &str) = ("web-shop-2", "tok-connector-2");

#[tokio::test]
async fn the_log_names_who_did_what_and_a_key_is_its_first_users() -> Result<()> {
    bounded(async {
        let dir = TempDir::new()?;
        let (name_2, token_2) = WEB_SHOP_2;
        let extra = format!(
            "[[principal]]\nname = \"{name_2}\"\nroles = [\"connector:web\"]\n\
             token_sha256 = [\"{}\"]\n",
            token_sha256_hex(token_2)
        );
        let (server, _auth) =
            TestServer::start_authenticated(dir.path(), &principals_file(&extra)).await?;
        let mut admin = client(&server.channel, Some("tok-admin"));
        admin.adjust(adjust("a-1", SKU, "dc", 10)).await?;
        let mut web = client(&server.channel, Some("tok-connector"));
        let mut web_2 = client(&server.channel, Some(token_2));
        let held = reserve("r-1", vec![line(SKU, "dc", 2)], 60_000);
        let placed = web.reserve(held.clone()).await?.into_inner();

        // The same request under the same key by another principal of the same channel is
        // refused as a key conflict, naming the principal but not who holds the key.
        let status = web_2.reserve(held.clone()).await.expect_err("not its key");
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        assert_eq!(reason(&status).0, "KEY_REUSED", "{status:?}");
        let fields: Vec<String> = status
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default();
        assert_eq!(fields, ["principal"], "{status:?}");
        assert!(!status.message().contains("web-shop"), "{status:?}");
        // Its own retry is the original answer.
        let retry = web.reserve(held).await?.into_inner();
        assert!(retry.duplicate && retry.lsn == placed.lsn, "{retry:?}");

        // The hold names who placed it and who released it.
        web_2
            .release(pb::ReleaseRequest {
                reservation_id: "r-1".into(),
            })
            .await?;
        let hold = web
            .get_reservation(pb::GetReservationRequest {
                reservation_id: "r-1".into(),
            })
            .await?
            .into_inner()
            .reservation
            .context("a reservation")?;
        assert_eq!(
            (hold.placed_by.as_str(), hold.ended_by.as_str()),
            ("web-shop", name_2)
        );

        // So does the log, for the hold and for the adjustment.
        let listed = |request: pb::ListEventsRequest| {
            let mut admin = admin.clone();
            async move {
                let events = admin.list_events(request).await?.into_inner().events;
                Ok::<_, Status>(
                    events
                        .into_iter()
                        .map(|e| (e.kind, e.by))
                        .collect::<Vec<_>>(),
                )
            }
        };
        let of_hold = listed(pb::ListEventsRequest {
            reservation_id: "r-1".into(),
            ..Default::default()
        })
        .await?;
        let expected = [("HoldPlaced", "web-shop"), ("HoldReleased", name_2)];
        ensure!(
            of_hold
                == expected
                    .map(|(kind, by)| (kind.to_owned(), by.to_owned()))
                    .to_vec(),
            "events of r-1: {of_hold:?}"
        );
        let of_position = listed(pb::ListEventsRequest {
            sku: SKU.into(),
            location: "dc".into(),
            ..Default::default()
        })
        .await?;
        ensure!(
            of_position.first() == Some(&("StockAdjusted".to_owned(), "ops".to_owned())),
            "events of the position: {of_position:?}"
        );
        Ok(())
    })
    .await
}
