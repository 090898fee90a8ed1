//! `kefu serve`: bind, start answering (liveness at once, readiness once the model is loaded),
//! load the model in the background, and shut down gracefully on SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::analytics::metrics::Metrics;
use crate::api::{self, AppState};
use crate::config::Config;
use crate::embed::Embedder;
use crate::model;

/// Makes sure the model directory exists, fetching the default model when allowed.
pub fn ensure_model(cfg: &Config) -> anyhow::Result<()> {
    if cfg.model.path.exists() {
        return Ok(());
    }
    if cfg.model_is_default() && cfg.model.auto_fetch {
        tracing::info!(
            "model {} not found: fetching the default model (first start only)",
            cfg.model.path.display()
        );
        model::fetch::fetch_default(&cfg.model.path, None, false)?;
        return Ok(());
    }
    anyhow::bail!(
        "model directory {} does not exist (model.path); run `kefu model fetch` or point model.path at a model",
        cfg.model.path.display()
    )
}

pub fn load_embedder(cfg: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Embedder> {
    ensure_model(cfg)?;
    let e = Embedder::load(&cfg.model.path, &cfg.embed, metrics)
        .with_context(|| format!("loading model {}", cfg.model.path.display()))?;
    Ok(e)
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.server.data_dir)
        .with_context(|| format!("creating server.data_dir {}", cfg.server.data_dir.display()))?;
    let addr = format!("{}:{}", cfg.server.host, cfg.server.port);
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!("listening on http://{local}");

    let kb = crate::kb::KbStore::open(&cfg.server.data_dir)
        .await
        .with_context(|| {
            format!(
                "opening the knowledge base in {}",
                cfg.server.data_dir.display()
            )
        })?;
    if kb.count().await? == 0 && cfg.kb.load_demo {
        let s = kb.upsert_all(&crate::kb::demo::entries()).await?;
        tracing::info!(
            "knowledge base was empty: loaded the demo KB ({} entries)",
            s.created
        );
    }
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(AppState::new(cfg.clone(), metrics.clone(), kb));
    tokio::spawn(index_builder(state.clone()));
    let app = api::router(state.clone());

    // Loading can take a while (and fetches the model on first start): serve meanwhile.
    let (load_err_tx, mut load_err_rx) = tokio::sync::mpsc::channel::<anyhow::Error>(1);
    {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            match load_embedder(&state.config, state.metrics.clone()) {
                Ok(e) => {
                    tracing::info!(model = e.version(), dim = e.dim(), "model loaded; ready");
                    state.set_embedder(e);
                    state.reindex.notify_one();
                }
                Err(e) => {
                    let _ = load_err_tx.blocking_send(e);
                }
            }
        });
    }

    let shutdown = Arc::new(tokio::sync::Notify::new());
    let graceful = {
        let shutdown = shutdown.clone();
        async move { shutdown.notified().await }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let grace = Duration::from_secs(cfg.server.shutdown_grace_secs);
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
    shutdown.notify_one();
    match tokio::time::timeout(grace, &mut server).await {
        Ok(r) => r.context("server failed")?,
        Err(_) => tracing::warn!("grace period over; closing remaining connections"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Rebuilds the KB index whenever woken (after start and after every change) and swaps it in.
/// Wake-ups during a build coalesce into one more build.
async fn index_builder(state: Arc<AppState>) {
    loop {
        state.reindex.notified().await;
        let Some(embedder) = state.embedder.load_full() else {
            continue;
        };
        let entries = match state.kb.all().await {
            Ok(all) => all.into_iter().map(|s| s.entry).collect::<Vec<_>>(),
            Err(e) => {
                tracing::error!(error = %e, "reading the knowledge base for indexing failed");
                continue;
            }
        };
        let started = std::time::Instant::now();
        let n = entries.len();
        let built = tokio::task::spawn_blocking(move || {
            crate::matcher::KbIndex::build(entries, &embedder, |_, _| {})
        })
        .await;
        match built {
            Ok(Ok(index)) => {
                tracing::info!(
                    entries = n,
                    texts = index.texts.len(),
                    secs = started.elapsed().as_secs_f64(),
                    "KB index swapped in"
                );
                state.index.store(Some(Arc::new(index)));
            }
            Ok(Err(e)) => tracing::error!(error = %e, "building the KB index failed"),
            Err(e) => tracing::error!(error = %e, "the KB index builder panicked"),
        }
    }
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
