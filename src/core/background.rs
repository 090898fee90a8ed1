//! Background work of the service: loading the encoder, the intent models and the
//! recommender after start, and rebuilding the KB index whenever the KB changes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{IntentModels, Kefu};
use crate::analytics::metrics::Metrics;
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

/// After the encoder has loaded: the demo shop when the catalogue is empty, embeddings for
/// what lacks them, a model trained on the event log (unless `recommend.model` gave one, loaded
/// at start); then retraining every `recommend.retrain_interval_secs` when events arrived.
pub(super) async fn recommender_loop(
    state: Arc<Kefu>,
    fail: tokio::sync::mpsc::Sender<anyhow::Error>,
) {
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
pub(super) fn load_intents(state: &Kefu) -> anyhow::Result<()> {
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
pub(super) fn intent_models(cfg: &Config, e: &Embedder) -> anyhow::Result<IntentModels> {
    let mut models = IntentModels::new();
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
pub(super) async fn index_builder(state: Arc<Kefu>) {
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
pub fn load_snapshot_for(
    dir: &std::path::Path,
    model: &str,
) -> Option<crate::index::snapshot::Prior> {
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
