//! `kefu serve`: bind, start answering (liveness at once, readiness once the models are
//! loaded), build the core and its background work, and shut down gracefully on SIGTERM or
//! Ctrl-C, within `server.shutdown_grace_secs`.

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::core::Kefu;
use crate::model;

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    // Before anything else: never serve everyone on a reachable address by accident.
    cfg.auth
        .check_exposure(&cfg.server.host)
        .map_err(anyhow::Error::msg)?;
    if cfg.auth.required() {
        tracing::info!(
            keys = cfg.auth.keys.len(),
            "API keys required (Authorization: Bearer)"
        );
    }
    std::fs::create_dir_all(&cfg.server.data_dir)
        .with_context(|| format!("creating server.data_dir {}", cfg.server.data_dir.display()))?;
    // A model activated in this data directory (`kefu model activate`) serves instead of
    // model.path (which serves again once the activation record is gone).
    let serving = model::registry::serving_path(&cfg.server.data_dir, &cfg.model.path)?;
    if serving != cfg.model.path {
        tracing::info!(
            activated = %serving.display(),
            configured = %cfg.model.path.display(),
            "serving the model activated in this data directory (kefu model activate)"
        );
    }
    let addr = format!("{}:{}", cfg.server.host, cfg.server.port);
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!("listening on http://{local}");

    let grace = Duration::from_secs(cfg.server.shutdown_grace_secs);
    let kefu = Kefu::open(cfg).await?;
    // Loading can take a while (and fetches the model on first start): serve meanwhile.
    let mut load_err_rx = kefu.start(serving);
    let app = crate::api::router(kefu.clone());

    let shutdown = std::sync::Arc::new(tokio::sync::Notify::new());
    let graceful = {
        let shutdown = shutdown.clone();
        async move { shutdown.notified().await }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let mut server = std::pin::pin!(server.into_future());

    tokio::select! {
        r = &mut server => return r.context("server failed"),
        _ = shutdown_signal() => {
            tracing::info!("shutting down: finishing in-flight requests (up to {} s)", grace.as_secs());
        }
        Some(e) = load_err_rx.recv() => {
            shutdown.notify_one();
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut server).await;
            return Err(e);
        }
    }
    // In-flight requests and background work (index builds, snapshot writes, model loading,
    // recommender training) share the grace period; what is still running after it ends with
    // the process, which every write survives (transactions, directories replaced whole).
    let deadline = tokio::time::Instant::now() + grace;
    shutdown.notify_one();
    kefu.shutdown.cancel();
    let served = match tokio::time::timeout_at(deadline, &mut server).await {
        Ok(r) => r.context("server failed"),
        Err(_) => {
            tracing::warn!("grace period over; closing remaining connections");
            Ok(())
        }
    };
    if !kefu.stop(deadline).await {
        tracing::warn!("grace period over; background work left unfinished");
    }
    tracing::info!("stopped");
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
