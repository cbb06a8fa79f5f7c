//! The HTTP endpoint: `GET /metrics`, over plaintext HTTP/1.1 or over TLS; with
//! authentication on, only with the metrics token (401 otherwise).

use crate::shared::Shared;
use crate::tls::{Port, ServerTls};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Longest a scrape connection may take to finish once the server has stopped.
const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `GET /metrics` on `listener` until `stop` is cancelled, then finishes the scrapes in
/// progress (bounded by [`HTTP_DRAIN_TIMEOUT`]). With `tls`, only over TLS.
pub(crate) async fn serve_http(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<ServerTls>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, tls = tls.is_some(), "serving metrics at /metrics");
    }
    match tls {
        None => serve_on(listener, shared, stop).await,
        Some(tls) => serve_on(tls.incoming(listener, Port::Metrics), shared, stop).await,
    }
}

async fn serve_on<L>(listener: L, shared: Arc<Shared>, stop: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let router = axum::Router::new().route(
        "/metrics",
        get(move |headers: axum::http::HeaderMap| {
            let shared = Arc::clone(&shared);
            async move {
                // With authentication on, the endpoint takes its own token (docs/security.md).
                if let Some(auth) = &shared.auth
                    && !auth.metrics_allowed(&headers)
                {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        "the metrics endpoint needs `Authorization: Bearer <metrics token>`\n"
                            .to_owned(),
                    );
                }
                match shared.metrics.render(&shared) {
                    Ok(text) => (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                        )],
                        text,
                    ),
                    Err(error) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        format!("encoding the metrics failed: {error}\n"),
                    ),
                }
            }
        }),
    );
    let stopped = stop.clone();
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(async move { stopped.cancelled().await })
        .into_future();
    tokio::pin!(server);
    let result = tokio::select! {
        result = &mut server => result,
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(HTTP_DRAIN_TIMEOUT).await;
        } => Ok(()),
    };
    if let Err(error) = result {
        warn!(%error, "the metrics endpoint failed");
    }
}
