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

    let kb = crate::kb::KbStore::open(&cfg.server.data_dir)
        .await
        .with_context(|| {
            format!(
                "opening the knowledge base in {}",
                cfg.server.data_dir.display()
            )
        })?;
    if kb.count().await? == 0 && kb.documents().await?.is_empty() && cfg.kb.load_demo {
        let s = kb.upsert_all(&crate::kb::demo::entries()).await?;
        let docs = crate::kb::demo::documents();
        kb.upsert_documents(&docs).await?;
        let mut examples = kb.out_of_scope().await?;
        if examples.is_empty() {
            examples = crate::kb::demo::out_of_scope();
            kb.set_out_of_scope(&examples).await?;
        }
        tracing::info!(
            "knowledge base was empty: loaded the demo KB ({} entries, {} documents, {} out-of-scope examples)",
            s.created,
            docs.len(),
            examples.len()
        );
    }
    let metrics = Arc::new(Metrics::new());
    let stored = kb
        .calibration()
        .await
        .context("reading the KB's calibration")?;
    if let Some(c) = &stored {
        tracing::info!(?c, "using the calibration stored with the KB");
    }
    let sessions = crate::dialog::chat::open_store(&cfg.dialog).await?;
    tracing::info!(store = sessions.kind(), "sessions");
    let feedback = crate::analytics::feedback::FeedbackStore::open(kb.pool().clone())
        .await
        .context("opening the feedback table")?;
    let recommender = Arc::new(
        crate::recommend::serving::Recommender::open(
            crate::recommend::store::RecStore::open(kb.pool().clone())
                .await
                .context("opening the recommendation tables")?,
            cfg.recommend.clone(),
        )
        .await?,
    );
    recommender.load_configured()?;
    let state = Arc::new(AppState::new(
        cfg.clone(),
        metrics.clone(),
        kb,
        stored,
        sessions,
        feedback,
        recommender,
    ));
    tokio::spawn(index_builder(state.clone()));
    let app = api::router(state.clone());

    // Loading can take a while (and fetches the model on first start): serve meanwhile.
    let (load_err_tx, mut load_err_rx) = tokio::sync::mpsc::channel::<anyhow::Error>(1);
    {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            let loaded = if serving == state.config.model.path {
                load_embedder(&state.config, state.metrics.clone())
            } else {
                Embedder::load(&serving, &state.config.embed, state.metrics.clone())
                    .with_context(|| format!("loading the activated model {}", serving.display()))
            };
            match loaded {
                Ok(e) => {
                    tracing::info!(model = e.version(), dim = e.dim(), "model loaded; ready");
                    state.set_embedder(e);
                    state.reindex.notify_one();
                    tokio::runtime::Handle::current()
                        .spawn(recommender_loop(state.clone(), load_err_tx.clone()));
                    if let Err(e) = load_intents(&state) {
                        let _ = load_err_tx.blocking_send(e);
                    }
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

/// After the encoder has loaded: the demo shop when the catalogue is empty, embeddings for
/// what lacks them, a model trained on the event log (unless `recommend.model` gave one, loaded
/// at start); then retraining every `recommend.retrain_interval_secs` when events arrived.
async fn recommender_loop(state: Arc<AppState>, fail: tokio::sync::mpsc::Sender<anyhow::Error>) {
    let r = state.recommender.clone();
    let Some(e) = state.embedder.load_full() else {
        return;
    };
    let start = async {
        if state.config.recommend.load_demo {
            r.load_demo().await?;
        }
        r.embed_missing(&e).await?;
        r.retrain().await?;
        anyhow::Ok(())
    };
    if let Err(e) = start.await {
        let _ = fail.send(e.context("starting recommendations")).await;
        return;
    }
    let every = state.config.recommend.retrain_interval_secs;
    if every == 0 || state.config.recommend.model.is_some() {
        return;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(every)).await;
        if let Err(e) = r.retrain().await {
            tracing::warn!("recommendations: retraining failed: {e:#}");
        }
    }
}

/// Loads the configured intent models (refusing any trained on another encoder) and the demo
/// models for the names left unset, training those at first start.
fn load_intents(state: &AppState) -> anyhow::Result<()> {
    let e = state
        .embedder
        .load_full()
        .context("the encoder is not loaded")?;
    let models = intent_models(&state.config, &e)?;
    state.intents.store(Some(Arc::new(models)));
    tracing::info!("intent models ready");
    Ok(())
}

/// The intent models for encoder `e`: the configured ones (each must have been trained on `e`)
/// and the demo models for the names left unset (trained for `e` when their saved copy is for
/// another encoder).
fn intent_models(cfg: &Config, e: &Embedder) -> anyhow::Result<api::IntentModels> {
    let mut models = api::IntentModels::new();
    for (name, dir) in &cfg.intent.models {
        let mut m = crate::intent::IntentModel::load(dir)
            .with_context(|| format!("loading intent model {name} (intent.models.{name})"))?;
        m.check_encoder(e.manifest()).with_context(|| {
            format!(
                "intent model {name} ({}) cannot serve with this encoder",
                dir.display()
            )
        })?;
        m.attach_encoder(e.dir())
            .with_context(|| format!("attaching the fine-tuned layers of intent model {name}"))?;
        tracing::info!(name, dir = %dir.display(), labels = m.card.labels.len(), "intent model loaded");
        models.insert(name.clone(), Arc::new(m));
    }
    if cfg.intent.load_demo {
        for (name, _) in crate::intent::demo::sets() {
            if !models.contains_key(name) {
                let m = crate::intent::demo::load_or_train(e, &cfg.server.data_dir, name)?;
                models.insert(name.to_string(), Arc::new(m));
            }
        }
    }
    if !models.is_empty() && !models.contains_key(&cfg.intent.default_model) {
        tracing::warn!(
            "intent.default_model {:?} is not loaded; requests must name a model",
            cfg.intent.default_model
        );
    }
    Ok(models)
}

/// Rebuilds the KB index whenever woken (after start and after every change) and swaps it in.
/// Wake-ups during a build coalesce into one more build. The first build starts from the
/// snapshot on disk when it was made by the serving model; every build after it reuses the
/// previous generation's vectors and graph, and is saved as the new snapshot.
async fn index_builder(state: Arc<AppState>) {
    let opts = state.config.index.options();
    let snap_dir = crate::index::snapshot::dir(&state.config.server.data_dir);
    let mut first = true;
    loop {
        state.reindex.notified().await;
        let Some(embedder) = state.embedder.load_full() else {
            continue;
        };
        let (entries, documents, out_of_scope) = match state.kb.index_inputs().await {
            Ok(inputs) => inputs,
            Err(e) => {
                tracing::error!(error = %e, "reading the knowledge base for indexing failed");
                continue;
            }
        };
        let previous = state.index.load_full();
        let snapshot = state.config.index.snapshot;
        let (dir, load_snapshot) = (snap_dir.clone(), first && snapshot);
        let built = tokio::task::spawn_blocking(move || {
            let prior = match previous {
                Some(p) => Some(p.prior()),
                None if load_snapshot => load_snapshot_for(&dir, embedder.version()),
                None => None,
            };
            let index = crate::matcher::KbIndex::build(
                entries,
                &documents,
                &out_of_scope,
                &embedder,
                prior,
                &opts,
                |_, _| {},
            )?;
            Ok::<_, crate::embed::EmbedError>(index)
        })
        .await;
        let built = match built {
            Ok(Ok(index)) => {
                let _swapping = state.swap_lock.lock().expect("swap lock");
                if state
                    .embedder
                    .load()
                    .as_ref()
                    .is_none_or(|e| e.version() != index.model_version)
                {
                    // The model was swapped during the build: build again with the new one.
                    state.reindex.notify_one();
                    continue;
                }
                let index = Arc::new(index);
                state.index.store(Some(index.clone()));
                Ok(Ok(index))
            }
            other => other.map(|r| r.map(Arc::new)),
        };
        match built {
            Ok(Ok(index)) => {
                first = false;
                let st = &index.stats;
                tracing::info!(
                    entries = st.entries,
                    texts = st.texts,
                    embedded = st.embedded,
                    reused = st.reused,
                    hnsw = st.hnsw,
                    secs = st.seconds,
                    "KB index swapped in"
                );
                if snapshot {
                    let dir = snap_dir.clone();
                    let saved = tokio::task::spawn_blocking(move || {
                        crate::index::snapshot::save(&dir, &index.prior())
                    })
                    .await;
                    match saved {
                        Ok(Ok(())) => tracing::debug!("index snapshot saved"),
                        Ok(Err(e)) => {
                            tracing::warn!(error = %format!("{e:#}"), "saving the index snapshot failed")
                        }
                        Err(e) => tracing::warn!(error = %e, "saving the index snapshot panicked"),
                    }
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "building the KB index failed"),
            Err(e) => tracing::error!(error = %e, "the KB index builder panicked"),
        }
    }
}

/// The snapshot in `dir` if it was made by `model`; says why not otherwise.
fn load_snapshot_for(dir: &std::path::Path, model: &str) -> Option<crate::index::snapshot::Prior> {
    use crate::index::snapshot::{Unusable, load};
    match load(dir, model) {
        Ok(p) => {
            tracing::info!(
                texts = p.texts.len(),
                graph = p.graph.is_some(),
                "index snapshot loaded"
            );
            Some(p)
        }
        Err(Unusable::Missing) => None,
        Err(Unusable::OtherModel(m)) => {
            tracing::info!(
                snapshot_model = m,
                model,
                "index snapshot is from another model: rebuilding"
            );
            None
        }
        Err(Unusable::Broken(why)) => {
            tracing::warn!(why, "index snapshot unreadable: rebuilding");
            None
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

/// What a model reload did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ModelReload {
    /// False when the activated model was already serving (nothing was done).
    pub changed: bool,
    pub previous: model::registry::ModelRef,
    pub model: model::registry::ModelRef,
    pub dim: usize,
    /// KB questions and passages embedded with the new model before it took over.
    pub index_texts: usize,
    /// Intent models serving with the new model.
    pub intent_models: Vec<String>,
    pub seconds: f64,
    /// What an operator should do next (e.g. refit a calibration made with the old model).
    pub warnings: Vec<String>,
}

/// The encoder's directory (absolute, so that other processes can find it) and version.
pub fn model_ref(e: &Embedder) -> model::registry::ModelRef {
    let dir = e.dir();
    model::registry::ModelRef {
        path: dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
            .to_string(),
        version: e.version().to_string(),
    }
}

/// Where the last model reload stands (`GET /v1/model`).
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ReloadStatus {
    /// `idle` (none since start), `running`, `succeeded` or `failed`.
    pub state: &'static str,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ModelReload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Starts a reload in the background (409 while one runs) and returns its status.
pub fn start_reload(state: &Arc<AppState>) -> Result<ReloadStatus, crate::error::ApiError> {
    state.embedder()?;
    let status = {
        let mut s = state.reload.lock().expect("reload status lock");
        if s.state == "running" {
            return Err(crate::error::ApiError::Conflict(format!(
                "a model reload is already running (since {})",
                s.started_at.as_deref().unwrap_or("?")
            )));
        }
        *s = ReloadStatus {
            state: "running",
            started_at: Some(model::registry::now_rfc3339()),
            ..Default::default()
        };
        s.clone()
    };
    let state = state.clone();
    tokio::spawn(async move {
        let r = reload_model(&state).await;
        if let Err(e) = &r {
            tracing::error!("model reload failed: {e}");
        }
        let mut s = state.reload.lock().expect("reload status lock");
        s.finished_at = Some(model::registry::now_rfc3339());
        match r {
            Ok(done) => {
                s.state = "succeeded";
                s.result = Some(done);
            }
            Err(e) => {
                s.state = "failed";
                s.error = Some(e.to_string());
            }
        }
    });
    Ok(status)
}

/// Swaps in the model activated in the data directory (else model.path) without dropping a
/// request: the new encoder is loaded, the intent models, the KB index and the catalogue's
/// embeddings are made for it while the old one keeps serving, then all are swapped in. Any
/// failure leaves the old model serving.
pub async fn reload_model(state: &Arc<AppState>) -> Result<ModelReload, crate::error::ApiError> {
    use crate::error::ApiError;
    let started = std::time::Instant::now();
    let old = state.embedder()?;
    let failed = |what: &str, e: anyhow::Error| ApiError::ModelReload(format!("{what}: {e:#}"));
    let dir =
        model::registry::serving_path(&state.config.server.data_dir, &state.config.model.path)
            .map_err(|e| failed("the activated model", e))?;
    let cfg = state.config.clone();
    let load_dir = dir.clone();
    let new = tokio::task::spawn_blocking(move || {
        let e = Embedder::load(&load_dir, &cfg.embed, Arc::new(Metrics::new()))
            .with_context(|| format!("loading {}", load_dir.display()))?;
        model::gate::check_intent_models(&cfg, &e)?;
        anyhow::Ok(e)
    })
    .await
    .map_err(|e| failed("loading the model", e.into()))?
    .map_err(|e| failed("loading the model", e))?;
    if new.version() == old.version() {
        return Ok(ModelReload {
            changed: false,
            previous: model_ref(&old),
            model: model_ref(&old),
            dim: old.dim(),
            index_texts: 0,
            intent_models: Vec::new(),
            seconds: started.elapsed().as_secs_f64(),
            warnings: Vec::new(),
        });
    }
    tracing::info!(
        from = old.version(),
        to = new.version(),
        "model reload: preparing"
    );
    let new = Arc::new(new);

    // Intent models for the new encoder (demo models are trained for it).
    let intents = {
        let (cfg, e) = (state.config.clone(), new.clone());
        tokio::task::spawn_blocking(move || intent_models(&cfg, &e))
            .await
            .map_err(|e| failed("intent models", e.into()))?
            .map_err(|e| failed("intent models", e))?
    };
    // The whole KB, embedded with the new model.
    let (entries, documents, out_of_scope) =
        (state.kb.index_inputs().await).map_err(|e| ApiError::Storage(e.to_string()))?;
    let index = {
        let (e, opts) = (new.clone(), state.config.index.options());
        tokio::task::spawn_blocking(move || {
            crate::matcher::KbIndex::build(
                entries,
                &documents,
                &out_of_scope,
                &e,
                None,
                &opts,
                |_, _| {},
            )
        })
        .await
        .map_err(|e| failed("indexing the KB", e.into()))?
        .map_err(|e| failed("indexing the KB", e.into()))?
    };
    let index_texts = index.stats.texts;
    // Catalogue items and consultations: stored beside the old embeddings, swapped in with the
    // catalogue.
    state
        .recommender
        .embed_missing(&new)
        .await
        .map_err(|e| failed("embedding the catalogue", e))?;

    let intent_models: Vec<String> = intents.keys().cloned().collect();
    {
        let _swapping = state.swap_lock.lock().expect("swap lock");
        state.intents.store(Some(Arc::new(intents)));
        state.index.store(Some(Arc::new(index)));
        state.embedder.store(Some(new.clone()));
    }
    // Changes made during the reload, and the snapshot for the new model.
    state.reindex.notify_one();
    if let Err(e) = state.recommender.embed_missing(&new).await {
        tracing::warn!("recommendations: embedding what arrived during the reload failed: {e:#}");
    }
    let mut warnings = Vec::new();
    if state.calibration.load().0 {
        warnings.push(format!(
            "the KB's stored calibration was fitted with another model; fit it again for {} (`kefu eval faq --calibrate --encoder DIR`, then `kefu kb calibrate FILE` or PUT /v1/calibration)",
            new.version()
        ));
    }
    let r = ModelReload {
        changed: true,
        previous: model_ref(&old),
        model: model_ref(&new),
        dim: new.dim(),
        index_texts,
        intent_models,
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    };
    tracing::info!(
        from = old.version(),
        to = new.version(),
        secs = r.seconds,
        "model reload: the new model serves"
    );
    Ok(r)
}
