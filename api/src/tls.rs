//! TLS on the gRPC and metrics ports (see docs/security.md), with certificates that a reload
//! swaps without dropping a connection.
//!
//! # Why the handshake is driven here, not by tonic's `ServerTlsConfig`
//! tonic's own TLS takes one identity when the server is built; changing it would mean a new
//! server, and so dropped connections. Here every accepted TCP connection is handed to
//! tokio-rustls with the [`rustls::ServerConfig`] current at that moment, and the finished
//! [`TlsStream`]s are what tonic serves (`serve_with_incoming`). A reload builds a new config
//! from the files and swaps it in: handshakes from then on use it, while a connection already
//! established keeps the session it negotiated. tonic implements `Connected` for tokio-rustls'
//! `TlsStream<TcpStream>`, so each request still carries `TlsConnectInfo` and
//! `Request::peer_certs()` gives the client's certificate chain under mutual TLS: what an
//! authentication layer reads to know the caller.
//!
//! One config is swapped whole (certificate, key and client CA together) rather than a
//! certificate resolver: a reload can then also change the trusted client CA, and a config
//! that fails to build (a key that does not match its certificate, say) is never half-applied.
//!
//! # Handshakes are concurrent and bounded
//! The accept loop never waits on a handshake: each runs on its own task, at most
//! [`HANDSHAKES_IN_FLIGHT_MAX`] at once (past that the loop stops accepting and the kernel's
//! backlog holds the rest), each bounded by [`HANDSHAKE_TIMEOUT`]. So a client that opens a
//! connection and says nothing, or speaks plaintext to the TLS port, delays no one else; a
//! failed handshake closes its connection and is logged at debug level with the peer address.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
pub use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

/// Longest a TLS handshake may take before its connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most TLS handshakes in progress on one port at once.
pub const HANDSHAKES_IN_FLIGHT_MAX: usize = 256;

/// Finished handshakes waiting for the server to take their connection.
const ACCEPTED_QUEUE_MAX: usize = 64;

/// The files the server's TLS is read from, again at every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), its own certificate first.
    pub cert: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// With it, clients must present a certificate signed by one of these CAs (PEM): mutual
    /// TLS. Without it, clients are not asked for one.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files could not be made into a server config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("reading {what} {path}: {why}")]
    Read {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("{what} {path} holds no PEM {expected}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("client CA {path}: {why}")]
    ClientCa { path: PathBuf, why: String },
    #[error("certificate {cert} with key {key}: {why}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        why: rustls::Error,
    },
}

/// Which port a connection came in on: each negotiates its own protocol (ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// gRPC: HTTP/2 only.
    Grpc,
    /// `GET /metrics`: HTTP/1.1 only.
    Metrics,
}

/// The two configs one set of files gives.
struct Configs {
    grpc: Arc<rustls::ServerConfig>,
    metrics: Arc<rustls::ServerConfig>,
}

/// The server's TLS: the files, and the configs last read from them.
pub struct ServerTls {
    files: TlsFiles,
    /// Swapped whole by [`ServerTls::reload`]. A std lock: nothing awaits while holding it,
    /// and a handshake only clones an `Arc` out of it.
    current: RwLock<Configs>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish()
    }
}

impl ServerTls {
    /// Reads the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Arc<ServerTls>, TlsError> {
        let configs = read_configs(&files)?;
        Ok(Arc::new(ServerTls {
            files,
            current: RwLock::new(configs),
        }))
    }

    /// Reads the files again. On success, handshakes from now on use what they hold; on
    /// failure the previous certificates stay in use. Either way connections already
    /// established are untouched.
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = read_configs(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = configs;
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The config a handshake on `port` starts with now.
    pub fn config(&self, port: Port) -> Arc<rustls::ServerConfig> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        match port {
            Port::Grpc => Arc::clone(&current.grpc),
            Port::Metrics => Arc::clone(&current.metrics),
        }
    }

    /// The TLS connections of `listener`: each accepted connection after its handshake (see
    /// the module docs). gRPC connections get TCP_NODELAY, as the plaintext ones do.
    pub fn incoming(self: &Arc<Self>, listener: TcpListener, port: Port) -> TlsIncoming {
        let local_addr = listener.local_addr();
        let (sender, receiver) = mpsc::channel(ACCEPTED_QUEUE_MAX);
        tokio::spawn(accept_loop(Arc::clone(self), listener, port, sender));
        TlsIncoming {
            receiver,
            local_addr,
        }
    }
}

fn read_configs(files: &TlsFiles) -> Result<Configs, TlsError> {
    let certs = read_certs("certificate", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "key",
            path: files.key.clone(),
            expected: "private key",
        },
        error => TlsError::Read {
            what: "key",
            path: files.key.clone(),
            why: error.to_string(),
        },
    })?;
    // ring, the provider tonic's `tls-ring` feature builds, named explicitly so a second
    // provider in the build could never make this ambiguous.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|why| TlsError::Identity {
            cert: files.cert.clone(),
            key: files.key.clone(),
            why,
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs("client CA", path)? {
                roots.add(cert).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|why| TlsError::Identity {
            cert: files.cert.clone(),
            key: files.key.clone(),
            why,
        })?;
    let mut grpc = config.clone();
    grpc.alpn_protocols = vec![b"h2".to_vec()];
    let mut metrics = config;
    metrics.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Configs {
        grpc: Arc::new(grpc),
        metrics: Arc::new(metrics),
    })
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |error: rustls::pki_types::pem::Error| TlsError::Read {
        what,
        path: path.to_owned(),
        why: error.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

async fn accept_loop(
    tls: Arc<ServerTls>,
    listener: TcpListener,
    port: Port,
    accepted: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT_MAX));
    loop {
        let permit = tokio::select! {
            // The server dropped its end (it stopped): close the listener.
            () = accepted.closed() => return,
            permit = Arc::clone(&handshakes).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = accepted.closed() => return,
            result = listener.accept() => match result {
                Ok(connection) => connection,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // wait a little rather than spin.
                    warn!(%error, ?port, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if port == Port::Grpc
            && let Err(error) = tcp.set_nodelay(true)
        {
            debug!(%error, %peer, "cannot set TCP_NODELAY");
        }
        let acceptor = TlsAcceptor::from(tls.config(port));
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = accepted.send((stream, peer)).await;
                }
                Ok(Err(error)) => debug!(%error, %peer, ?port, "TLS handshake failed"),
                Err(_) => debug!(%peer, ?port, "TLS handshake timed out"),
            }
        });
    }
}

/// The connections of a TLS port, handshake done: a stream for tonic's
/// `serve_with_incoming` and an `axum::serve` listener. Dropping it closes the port.
#[derive(Debug)]
pub struct TlsIncoming {
    receiver: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: io::Result<SocketAddr>,
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = Result<TlsStream<TcpStream>, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver
            .poll_recv(cx)
            .map(|next| next.map(|(stream, _)| Ok(stream)))
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.receiver.recv().await {
            Some(connection) => connection,
            // The accept loop ends only once this end is dropped, so this is not reached;
            // if it were, no connection will come any more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        match &self.local_addr {
            Ok(addr) => Ok(*addr),
            Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
        }
    }
}

/// The addresses of `listen` that are not loopback: serving plaintext on them exposes the
/// API (or the metrics) to the network, which `inventory serve` refuses without
/// `--insecure-plaintext`.
pub fn beyond_loopback(listen: &[SocketAddr]) -> Vec<SocketAddr> {
    listen
        .iter()
        .filter(|addr| !addr.ip().is_loopback())
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_private() {
        let addrs: Vec<SocketAddr> = [
            "127.0.0.1:1",
            "[::1]:2",
            "0.0.0.0:3",
            "10.0.0.7:4",
            "[::]:5",
        ]
        .iter()
        .map(|a| a.parse().expect("an address"))
        .collect();
        assert_eq!(beyond_loopback(&addrs), addrs[2..].to_vec());
        assert!(beyond_loopback(&addrs[..2]).is_empty());
    }

    #[test]
    fn unreadable_files_are_named() {
        let missing = TlsFiles {
            cert: PathBuf::from("/nonexistent/cert.pem"),
            key: PathBuf::from("/nonexistent/key.pem"),
            client_ca: None,
        };
        let error = ServerTls::load(missing)
            .expect_err("no such file")
            .to_string();
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
        let dir = std::env::temp_dir().join(format!("inv-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not PEM\n").expect("written");
        let files = TlsFiles {
            cert: empty.clone(),
            key: empty.clone(),
            client_ca: None,
        };
        let error = ServerTls::load(files)
            .expect_err("no certificate")
            .to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
