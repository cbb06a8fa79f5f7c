//! TLS on the gRPC and metrics ports end to end (docs/security.md): a real server serving
//! `inv_api::tls::ServerTls`'s connections on 127.0.0.1, with a CA, server and client
//! certificates (and an expired one) made in the test by rcgen. Covered: Check over TLS, an
//! untrusted CA, a plaintext client, mutual TLS, an expired certificate, a reload (open
//! connections go on, new ones see the new certificate, a broken file changes nothing),
//! `/metrics` over TLS, and the client certificate in each request for authentication.
//!
//! Every connection and call is bounded by [`WAIT`], so a handshake that hangs instead of
//! failing fails the test instead of stalling it.

use anyhow::{Context, Result, bail, ensure};
use inv_api::ServeOptions;
use inv_api::tls::{Port, ServerTls, TlsFiles};
use inv_engine::{Engine, LedgerConfig, ManualClock, MemLog};
use inv_tests::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

mod certs;

use certs::Ca;

/// Longest any one connection or call may take here.
const WAIT: Duration = Duration::from_secs(5);

const SKU: &str = "sneaker-42";
const DC: &str = "web-dc";

/// The server's certificate files in a folder of the test.
struct Files {
    _dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

impl Files {
    fn new() -> Result<Files> {
        let dir = TempDir::new()?;
        Ok(Files {
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            client_ca: dir.path().join("client-ca.pem"),
            _dir: dir,
        })
    }

    fn write(&self, (cert, key): &(String, String)) -> Result<()> {
        std::fs::write(&self.cert, cert)?;
        std::fs::write(&self.key, key)?;
        Ok(())
    }

    fn tls(&self, mutual: bool) -> TlsFiles {
        TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            client_ca: mutual.then(|| self.client_ca.clone()),
        }
    }
}

/// A server on 127.0.0.1 whose gRPC and metrics ports serve only TLS.
struct TlsServer {
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    tls: Arc<ServerTls>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), inv_api::ServeError>>,
}

impl TlsServer {
    async fn start(files: TlsFiles) -> Result<TlsServer> {
        let tls = ServerTls::load(files)?;
        let engine = Arc::new(Engine::recover(
            LedgerConfig::default(),
            Arc::new(MemLog::new()),
            Arc::new(ManualClock::new(T0_MS)),
        )?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let metrics_addr = metrics_listener.local_addr()?;
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(inv_api::serve_with(
            engine,
            test_config(),
            tls.incoming(listener, Port::Grpc),
            async move {
                let _ = signal.await;
            },
            ServeOptions {
                metrics_listener: Some(metrics_listener),
                metrics_tls: Some(Arc::clone(&tls)),
                ..ServeOptions::default()
            },
        ));
        Ok(TlsServer {
            addr,
            metrics_addr,
            tls,
            shutdown,
            task,
        })
    }

    async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .context("the server did not stop")???;
        Ok(())
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }
}

/// A TLS channel to `url` trusting `ca`, presenting `identity` (cert, key) if given.
async fn connect(url: &str, ca: &str, identity: Option<&(String, String)>) -> Result<Channel> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .tls_config(tls)?
        .connect_timeout(WAIT)
        .timeout(WAIT);
    Ok(tokio::time::timeout(WAIT * 2, endpoint.connect())
        .await
        .context("connecting hung")??)
}

/// One Check over `channel`.
async fn check(channel: Channel) -> Result<pb::PositionAvailability> {
    let mut client = pb::inventory_client::InventoryClient::new(channel);
    tokio::time::timeout(WAIT * 2, available(&mut client, SKU, DC))
        .await
        .context("the call hung")?
}

/// Connect and Check: what a client does, failing at whichever step refuses it.
async fn connect_and_check(
    url: &str,
    ca: &str,
    identity: Option<&(String, String)>,
) -> Result<pb::PositionAvailability> {
    check(connect(url, ca, identity).await?).await
}

/// An error and every cause under it, on one line.
fn chain(error: &anyhow::Error) -> String {
    format!("{error:#}")
}

/// The certificate a new TLS handshake with `addr` is shown (rustls directly, trusting `ca`).
async fn presented_certificate(addr: SocketAddr, ca: &str, alpn: &[u8]) -> Result<Vec<u8>> {
    let stream = tls_client(addr, ca, alpn).await?;
    let (_, session) = stream.get_ref();
    let certs = session
        .peer_certificates()
        .context("the server presented no certificate")?;
    Ok(certs[0].to_vec())
}

async fn tls_client(
    addr: SocketAddr,
    ca: &str,
    alpn: &[u8],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?.to_owned();
        anyhow::Ok(connector.connect(name, tcp).await?)
    };
    tokio::time::timeout(WAIT, handshake)
        .await
        .context("the handshake hung")?
}

fn der_of(pem: &str) -> Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    Ok(rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())?.to_vec())
}

#[tokio::test]
async fn check_over_tls_trusting_the_ca() -> Result<()> {
    bounded(async {
        let ca = Ca::new("test CA")?;
        let files = Files::new()?;
        files.write(&ca.issue("inventory server", false, false)?)?;
        let server = TlsServer::start(files.tls(false)).await?;
        let availability = connect_and_check(&server.url(), &ca.pem, None).await?;
        assert_eq!(availability.available, 0);
        // localhost is in the certificate as well as 127.0.0.1.
        let by_name = format!("https://localhost:{}", server.addr.port());
        connect_and_check(&by_name, &ca.pem, None).await?;

        // A client trusting another CA refuses the server's certificate.
        let other = Ca::new("another CA")?;
        let refused = connect_and_check(&server.url(), &other.pem, None)
            .await
            .expect_err("an untrusted certificate");
        assert!(
            chain(&refused).contains("UnknownIssuer"),
            "{}",
            chain(&refused)
        );
        server.stop().await
    })
    .await
}

#[tokio::test]
async fn a_plaintext_client_is_refused_promptly() -> Result<()> {
    bounded(async {
        let ca = Ca::new("test CA")?;
        let files = Files::new()?;
        files.write(&ca.issue("inventory server", false, false)?)?;
        let server = TlsServer::start(files.tls(false)).await?;
        let plaintext = async {
            let channel = Endpoint::from_shared(format!("http://{}", server.addr))?
                .connect_timeout(WAIT)
                .timeout(WAIT)
                .connect()
                .await?;
            check(channel).await
        };
        // Bounded by more than every timeout inside, so a hang shows as such.
        let outcome = tokio::time::timeout(WAIT * 3, plaintext)
            .await
            .context("a plaintext client hung on the TLS port")?;
        let error = outcome.expect_err("plaintext HTTP/2 on a TLS port");
        // Refused while connecting (a transport error), or on the call: UNAVAILABLE, or the
        // transport error tonic reports as the call's status (the server closed the
        // connection on the bytes that were not a TLS handshake).
        let status = error.downcast_ref::<tonic::Status>();
        let transport = error.downcast_ref::<tonic::transport::Error>();
        let call_transport = status.is_some_and(|s| {
            s.code() == tonic::Code::Unavailable
                || std::error::Error::source(s).is_some_and(|e| e.is::<tonic::transport::Error>())
        });
        assert!(
            call_transport || transport.is_some(),
            "expected UNAVAILABLE or a transport error, got {}",
            chain(&error)
        );
        // The server is unharmed: a TLS client still gets through.
        connect_and_check(&server.url(), &ca.pem, None).await?;
        server.stop().await
    })
    .await
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_the_ca_signed() -> Result<()> {
    bounded(async {
        let ca = Ca::new("test CA")?;
        let client_ca = Ca::new("client CA")?;
        let files = Files::new()?;
        files.write(&ca.issue("inventory server", false, false)?)?;
        std::fs::write(&files.client_ca, &client_ca.pem)?;
        let server = TlsServer::start(files.tls(true)).await?;

        let without = connect_and_check(&server.url(), &ca.pem, None).await;
        assert!(
            without.is_err(),
            "a client without a certificate got through"
        );

        // A certificate from a CA the server does not trust for clients.
        let stranger = ca.issue("stranger", true, false)?;
        let refused = connect_and_check(&server.url(), &ca.pem, Some(&stranger)).await;
        assert!(
            refused.is_err(),
            "a client certificate of another CA got through"
        );

        let client = client_ca.issue("store-17", true, false)?;
        connect_and_check(&server.url(), &ca.pem, Some(&client)).await?;
        server.stop().await
    })
    .await
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused_by_the_client() -> Result<()> {
    bounded(async {
        let ca = Ca::new("test CA")?;
        let files = Files::new()?;
        files.write(&ca.issue("inventory server", false, true)?)?;
        // The server loads it (it is the client's to judge)...
        let server = TlsServer::start(files.tls(false)).await?;
        // ...and the client refuses it.
        let refused = connect_and_check(&server.url(), &ca.pem, None)
            .await
            .expect_err("an expired certificate");
        assert!(
            chain(&refused).contains("certificate expired"),
            "{}",
            chain(&refused)
        );
        server.stop().await
    })
    .await
}

#[tokio::test]
async fn a_reload_keeps_open_connections_and_serves_the_new_certificate() -> Result<()> {
    bounded(async {
        let ca = Ca::new("test CA")?;
        let files = Files::new()?;
        let first = ca.issue("server one", false, false)?;
        files.write(&first)?;
        let server = TlsServer::start(files.tls(false)).await?;
        let open = connect(&server.url(), &ca.pem, None).await?;
        check(open.clone()).await?;
        assert_eq!(
            presented_certificate(server.addr, &ca.pem, b"h2").await?,
            der_of(&first.0)?
        );

        let second = ca.issue("server two", false, false)?;
        files.write(&second)?;
        server.tls.reload()?;
        // The open connection goes on; a new handshake gets the new certificate.
        check(open.clone()).await?;
        assert_eq!(
            presented_certificate(server.addr, &ca.pem, b"h2").await?,
            der_of(&second.0)?
        );
        connect_and_check(&server.url(), &ca.pem, None).await?;

        // A reload of a broken file fails, names it, and keeps the certificate in use.
        std::fs::write(&files.cert, "not a certificate\n")?;
        let error = server.tls.reload().expect_err("a broken certificate file");
        assert!(
            error
                .to_string()
                .contains(&files.cert.display().to_string()),
            "{error}"
        );
        assert_eq!(
            presented_certificate(server.addr, &ca.pem, b"h2").await?,
            der_of(&second.0)?
        );
        check(open).await?;
        server.stop().await
    })
    .await
}

#[tokio::test]
async fn metrics_are_served_over_tls_only() -> Result<()> {
    bounded(async {
        let ca = Ca::new("test CA")?;
        let files = Files::new()?;
        files.write(&ca.issue("inventory server", false, false)?)?;
        let server = TlsServer::start(files.tls(false)).await?;
        let mut stream = tls_client(server.metrics_addr, &ca.pem, b"http/1.1").await?;
        let exchange = async {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            anyhow::Ok(String::from_utf8(answer)?)
        };
        let answer = tokio::time::timeout(WAIT, exchange)
            .await
            .context("the scrape hung")??;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("inventory_"), "{answer}");
        // Plaintext HTTP to the TLS metrics port gets no answer.
        if scrape(server.metrics_addr).await.is_ok() {
            bail!("a plaintext scrape of the TLS metrics port was answered");
        }
        server.stop().await
    })
    .await
}

#[test]
fn unreadable_or_mismatched_files_are_refused_at_load() -> Result<()> {
    let ca = Ca::new("test CA")?;
    let files = Files::new()?;
    let (cert, _) = ca.issue("server one", false, false)?;
    let (_, other_key) = ca.issue("server two", false, false)?;
    files.write(&(cert, other_key))?;
    let error = ServerTls::load(files.tls(false)).expect_err("a key of another certificate");
    ensure!(
        error.to_string().contains(&files.key.display().to_string()),
        "{error}"
    );
    let missing = TlsFiles {
        client_ca: Some(Path::new("/nonexistent/ca.pem").to_owned()),
        ..files.tls(false)
    };
    let error = ServerTls::load(missing).expect_err("no such client CA");
    ensure!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    Ok(())
}

/// What an authentication layer will read: the client's certificate in each request's
/// extensions (`Request::peer_certs`), here through an interceptor on the health service
/// served over [`ServerTls::incoming`].
#[tokio::test]
async fn requests_carry_the_client_certificate_for_authentication() -> Result<()> {
    bounded(async {
        let ca = Ca::new("test CA")?;
        let client_ca = Ca::new("client CA")?;
        let files = Files::new()?;
        files.write(&ca.issue("inventory server", false, false)?)?;
        std::fs::write(&files.client_ca, &client_ca.pem)?;
        let tls = ServerTls::load(files.tls(true))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;

        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let (_reporter, health) = tonic_health::server::health_reporter();
        let health = tonic::service::interceptor::InterceptedService::new(
            health,
            move |request: tonic::Request<()>| {
                let leaf = request.peer_certs().map(|certs| certs[0].to_vec());
                record
                    .lock()
                    .map_err(|_| tonic::Status::internal("poisoned"))?
                    .push(leaf);
                Ok(request)
            },
        );
        let (shutdown, signal) = oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(tls.incoming(listener, Port::Grpc), async move {
                    let _ = signal.await;
                }),
        );

        let client = client_ca.issue("store-17", true, false)?;
        let channel = connect(
            &format!("https://localhost:{}", addr.port()),
            &ca.pem,
            Some(&client),
        )
        .await?;
        let mut health_client = tonic_health::pb::health_client::HealthClient::new(channel);
        tokio::time::timeout(
            WAIT,
            health_client.check(tonic_health::pb::HealthCheckRequest::default()),
        )
        .await
        .context("the call hung")??;
        let seen = seen
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        assert_eq!(seen, vec![Some(der_of(&client.0)?)]);

        let _ = shutdown.send(());
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .context("the server did not stop")???;
        Ok(())
    })
    .await
}
