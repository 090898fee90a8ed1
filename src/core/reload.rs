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
    /// An activation (`POST /v1/model/activate`): the candidate's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// An activation: the gate's report (each check on both models; `passed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub gate: Option<serde_json::Value>,
}

/// `POST /v1/model/activate`: a model directory on the server, through the gate, then swapped
/// in like a reload.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// The candidate's directory on the server (absolute, or relative to where kefu runs),
    /// e.g. one `kefu train embed` wrote.
    pub path: String,
    /// How far any gate measure may fall below the serving model's (default 0.01: one point).
    #[serde(default)]
    pub max_drop: Option<f64>,
    /// Activate although a quality check fails (recorded as forced); a broken model or one
    /// the intent models cannot serve with is refused regardless.
    #[serde(default)]
    pub force: bool,
    /// An intent model's or the recommender's golden set on the server instead of the
    /// configured one (`model.gate`): labelled JSONL for intents, an interactions CSV for the
    /// recommender. Not for the encoder.
    #[serde(default)]
    pub golden: Option<String>,
}

/// Claims the one reload slot (409 while a reload or an activation runs).
fn claim(state: &Arc<Kefu>, candidate: Option<String>) -> Result<ReloadStatus, Error> {
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
        candidate,
        ..Default::default()
    };
    Ok(s.clone())
}

/// Starts an activation in the background: the gate (the same as `kefu model activate`), the
/// activation record, and the swap; its progress and the gate's report are the reload status.
pub fn start_activation(state: &Arc<Kefu>, req: ActivateRequest) -> Result<ReloadStatus, Error> {
    let serving = state.embedder()?;
    let dir = std::path::PathBuf::from(req.path.trim());
    if req.path.trim().is_empty() || !dir.is_dir() {
        return Err(Error::Invalid(format!(
            "path {:?} is not a directory on the server",
            req.path
        )));
    }
    if req.golden.is_some() {
        return Err(Error::Invalid(
            "golden is for intent models and the recommender; the encoder's gate measures the demo FAQ".into(),
        ));
    }
    let max_drop = req.max_drop.unwrap_or(state.config.model.gate.max_drop);
    if !(0.0..1.0).contains(&max_drop) {
        return Err(Error::Invalid(format!(
            "max_drop must be at least 0 and below 1, got {max_drop}"
        )));
    }
    let status = claim(state, Some(dir.display().to_string()))?;
    let serving_dir = std::path::PathBuf::from(model_ref(&serving).path);
    let state = state.clone();
    tokio::spawn(async move {
        let (gate, r) = activate(&state, serving_dir, dir, max_drop, req.force).await;
        if let Err(e) = &r {
            tracing::error!("model activation failed: {e}");
        }
        finish(&state, r, gate);
    });
    Ok(status)
}

async fn activate(
    state: &Arc<Kefu>,
    serving_dir: std::path::PathBuf,
    dir: std::path::PathBuf,
    max_drop: f64,
    force: bool,
) -> (Option<serde_json::Value>, Result<ModelReload, Error>) {
    use model::{gate, registry};
    let failed = |e: anyhow::Error| Error::ModelReload(format!("{e:#}"));
    let data_dir = state.config.server.data_dir.clone();
    let cfg = state.config.clone();
    let opts = state
        .config
        .model
        .gate
        .encoder_options(None, None, max_drop);
    let report =
        match tokio::task::spawn_blocking(move || gate::run(&cfg, &serving_dir, &dir, &opts)).await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return (None, Err(failed(e))),
            Err(e) => return (None, Err(Error::ModelReload(e.to_string()))),
        };
    let gate = serde_json::to_value(&report).ok();
    if !report.passed && !force {
        let why = format!(
            "{} was refused by the gate: {}; nothing changed (force activates it anyway)",
            report.candidate.version,
            report.failures()
        );
        return (gate, Err(Error::ModelReload(why)));
    }
    let before = match registry::active(&data_dir) {
        Ok(b) => b,
        Err(e) => return (gate, Err(failed(e))),
    };
    let record = report.activation();
    if let Err(e) = registry::record(&data_dir, &record) {
        return (gate, Err(failed(e)));
    }
    tracing::info!(
        model = %report.candidate.version,
        forced = record.forced,
        "activated through the API; swapping it in"
    );
    let r = reload_model(state).await;
    if r.is_err()
        && let Err(e) = registry::restore(&data_dir, before.as_ref())
    {
        tracing::error!("restoring the previous activation failed: {e:#}");
    }
    (gate, r)
}

fn finish(state: &Arc<Kefu>, r: Result<ModelReload, Error>, gate: Option<serde_json::Value>) {
    let mut s = state.reload.lock().expect("reload status lock");
    s.finished_at = Some(model::registry::now_rfc3339());
    s.gate = gate;
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
}

/// Starts a rollback of the encoder in the background: the encoder that served before the last
/// activation is recorded (as a rollback) and swapped in like a reload; a failed swap puts the
/// record back. 404 when nothing was activated.
pub fn start_rollback(state: &Arc<Kefu>) -> Result<ReloadStatus, Error> {
    use model::registry;
    state.embedder()?;
    let data_dir = state.config.server.data_dir.clone();
    let storage = |e: anyhow::Error| Error::Storage(format!("{e:#}"));
    let current = registry::active(&data_dir)
        .map_err(storage)?
        .ok_or_else(|| {
            Error::NotFound(
                "the encoder has no activation to roll back: it serves model.path".into(),
            )
        })?;
    let previous = current.previous.clone().ok_or_else(|| {
        Error::NotFound("the encoder's activation does not say what served before".into())
    })?;
    if !std::path::Path::new(&previous.path).is_dir() {
        return Err(Error::Invalid(format!(
            "the previous encoder {} ({}) is no longer there",
            previous.path, previous.version
        )));
    }
    let status = claim(state, Some(previous.path.clone()))?;
    let record = registry::Activation::rollback(&current, &previous);
    if let Err(e) = registry::record(&data_dir, &record) {
        finish(state, Err(storage(e)), None);
        return Ok(status);
    }
    let state = state.clone();
    tokio::spawn(async move {
        let r = reload_model(&state).await;
        if let Err(e) = &r {
            tracing::error!("encoder rollback failed: {e}");
            if let Err(e) = registry::restore(&data_dir, Some(&current)) {
                tracing::error!("restoring the encoder's record failed: {e:#}");
            }
        }
        finish(&state, r, None);
    });
    Ok(status)
}

/// Starts a reload in the background (409 while one runs) and returns its status.
pub fn start_reload(state: &Arc<Kefu>) -> Result<ReloadStatus, Error> {
    state.embedder()?;
    let status = claim(state, None)?;
    let state = state.clone();
    tokio::spawn(async move {
        let r = reload_model(&state).await;
        if let Err(e) = &r {
            tracing::error!("model reload failed: {e}");
        }
        finish(&state, r, None);
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
