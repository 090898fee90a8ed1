//! Model reloads: the activated model swapped in without dropping a request.

use std::sync::Arc;

use anyhow::Context;

use super::Kefu;
use super::background::intent_models;
use crate::analytics::metrics::Metrics;
use crate::embed::Embedder;
use crate::error::Error;
use crate::model;
use crate::model::registry::model_ref;

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
pub fn start_reload(state: &Arc<Kefu>) -> Result<ReloadStatus, Error> {
    state.embedder()?;
    let status = {
        let mut s = state.reload.lock().expect("reload status lock");
        if s.state == "running" {
            return Err(Error::Conflict(format!(
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
pub async fn reload_model(state: &Arc<Kefu>) -> Result<ModelReload, Error> {
    use Error;
    let started = std::time::Instant::now();
    let old = state.embedder()?;
    let failed = |what: &str, e: anyhow::Error| Error::ModelReload(format!("{what}: {e:#}"));
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
        (state.kb.index_inputs().await).map_err(Error::storage)?;
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
