//! The HTTP endpoints: `/metrics`, `/healthz` and `/readyz`, served from a small runtime on a
//! thread of their own.

use std::net::SocketAddr;
use std::sync::Arc;

use super::health::Health;
use super::metrics::Metrics;

/// Serves the endpoints on `addr`.
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("service.listen {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let handle = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                use axum::http::StatusCode;
                use axum::routing::get;
                let json = |(status, body): (u16, String)| {
                    (
                        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                        [("content-type", "application/json")],
                        body + "\n",
                    )
                };
                let h1 = health.clone();
                let h2 = health;
                let app = axum::Router::new()
                    .route(
                        "/metrics",
                        get(move || async move {
                            (
                                [("content-type", "text/plain; version=0.0.4")],
                                metrics.render(),
                            )
                        }),
                    )
                    .route("/healthz", get(move || async move { json(h1.healthz()) }))
                    .route("/readyz", get(move || async move { json(h2.readyz()) }));
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, app).await;
            });
        })?;
    Ok(handle)
}
