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
/// at start); then retraining every `recommend.retrain_interval_secs` when events arrived. Ends
/// at shutdown (a training under way is left to end with the process: its model is only kept
/// in memory).
pub(super) async fn recommender_loop(
    state: Arc<Kefu>,
    fail: tokio::sync::mpsc::Sender<anyhow::Error>,
) {
    // The demo shop loads whole (a few transactions, in moments), or not at all.
    if state.config.recommend.load_demo
        && let Err(e) = state.recommender.load_demo().await
    {
        let _ = fail.send(e.context("starting recommendations")).await;
        return;
    }
    let stop = state.shutdown.clone();
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = recommend(state, fail) => {}
    }
}

async fn recommend(state: Arc<Kefu>, fail: tokio::sync::mpsc::Sender<anyhow::Error>) {
    let r = state.recommender.clone();
    let Some(e) = state.embedder.load_full() else {
        return;
    };
    let start = async {
        // Embeddings are stored a batch per transaction: stopping between batches is safe.
        r.embed_missing(&e).await?;
        r.retrain().await?;
        anyhow::Ok(())
    };
    if let Err(e) = start.await {
        let _ = fail.send(e.context("starting recommendations")).await;
        return;
    }
    let _ = tokio::task::spawn_blocking(release_free_memory).await;
    let every = state.config.recommend.retrain_interval_secs;
    if every == 0 {
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
    release_free_memory();
    Ok(())
}

/// Hands memory freed by start-up work (training the demo heads, embedding the KB) back to the
/// system. glibc keeps freed pages inside its arenas otherwise: about 25 MB of resident memory
/// after the demo's start, measured. It walks the arenas under their locks: call it off the
/// async runtime's threads.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The intent models for encoder `e`: the configured ones (each must have been trained on `e`)
/// and the demo models for the names left unset (trained for `e` when their saved copy is for
/// another encoder).
pub(super) fn intent_models(cfg: &Config, e: &Embedder) -> anyhow::Result<IntentModels> {
    let mut models = IntentModels::new();
    for (name, dir) in
        crate::model::registry::intent_dirs(&cfg.server.data_dir, &cfg.intent.models)?
    {
        let dir = &dir;
        let mut m = crate::intent::IntentModel::load(dir)
            .with_context(|| format!("loading intent model {name} ({})", dir.display()))?;
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
        let cache = cfg
            .intent
            .cache_demo
            .then(crate::intent::demo::cache_root)
            .flatten();
        for (name, _) in crate::intent::demo::sets() {
            if !models.contains_key(name) {
                let m = crate::intent::demo::load_or_train(
                    e,
                    &cfg.server.data_dir,
                    name,
                    cache.as_deref(),
                )?;
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

/// Texts left to embed beyond which a rebuild first swaps in the part of the KB it has vectors
/// for, with the KB changes that need no more than this many texts embedded (when nothing is
/// served yet, or a change interrupted the previous build).
const SERVE_COVERED_ABOVE: usize = 64;

/// Rebuilds the KB index whenever woken (after start and after every change) and swaps it in.
/// The first build starts from the snapshot on disk when it was made by the serving model;
/// every build after it reuses the previous generation's vectors and graph, and is saved as the
/// new snapshot.
///
/// No change waits behind a long build: a wake-up during one stops its embedding (keeping what
/// it embedded) and the next build first swaps in the KB as far as its texts have vectors —
/// small changes embedded and included, so a new FAQ never waits for thousands of
/// out-of-scope examples — then embeds the rest. The same serves a stale snapshot at start
/// while the rest is embedded. Shutdown stops a build between batches.
pub(super) async fn index_builder(state: Arc<Kefu>) {
    let snap_dir = crate::index::snapshot::dir(&state.config.server.data_dir);
    let mut first = true;
    // The vectors of a build that was stopped.
    let mut carry: Option<crate::index::snapshot::Prior> = None;
    let mut again = false;
    loop {
        if !again {
            tokio::select! {
                _ = state.reindex.notified() => {}
                _ = state.shutdown.cancelled() => return,
            }
        }
        again = false;
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
        let changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let job = {
            let (state, changed) = (state.clone(), changed.clone());
            let carried = carry.take();
            let dir = snap_dir.clone();
            tokio::task::spawn_blocking(move || {
                let stop = || {
                    changed.load(std::sync::atomic::Ordering::SeqCst)
                        || state.shutdown.is_cancelled()
                };
                generation(
                    &state,
                    &embedder,
                    (entries, documents, out_of_scope),
                    carried,
                    first.then_some(dir.as_path()),
                    &stop,
                )
            })
        };
        tokio::pin!(job);
        let built = loop {
            tokio::select! {
                r = &mut job => break r,
                _ = state.reindex.notified(), if !again => {
                    again = true;
                    changed.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        };
        first = false;
        match built {
            Ok(Ok(Generation::Done(index))) => {
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
                if state.config.index.snapshot {
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
                let _ = tokio::task::spawn_blocking(release_free_memory).await;
            }
            Ok(Ok(Generation::Stopped(prior))) => {
                if state.shutdown.is_cancelled() {
                    return;
                }
                tracing::info!(
                    kept = prior.texts.len(),
                    "KB changed during the index build: building again with what it embedded"
                );
                carry = Some(prior);
                again = true;
            }
            Ok(Ok(Generation::OtherModel)) => {
                // The model was swapped during the build: build again with the new one.
                again = true;
            }
            Ok(Err(e)) => tracing::error!(error = %e, "building the KB index failed"),
            Err(e) => tracing::error!(error = %e, "the KB index builder panicked"),
        }
        if state.shutdown.is_cancelled() {
            return;
        }
    }
}

/// How one run of the index builder ended.
enum Generation {
    /// A complete index was swapped in.
    Done(Arc<crate::matcher::KbIndex>),
    /// Stopped (a change or shutdown) with these vectors.
    Stopped(crate::index::snapshot::Prior),
    /// The serving model changed meanwhile.
    OtherModel,
}

/// One index generation over `inputs`, from `carried` (a stopped build's vectors), else the
/// serving index, else (at start, `snapshot` given) the snapshot on disk; swapped in under
/// `swap_lock` unless the model changed.
fn generation(
    state: &Kefu,
    embedder: &Embedder,
    inputs: (
        Vec<crate::kb::FaqEntry>,
        Vec<crate::kb::Document>,
        Vec<String>,
    ),
    carried: Option<crate::index::snapshot::Prior>,
    snapshot: Option<&std::path::Path>,
    stop: &dyn Fn() -> bool,
) -> Result<Generation, crate::embed::EmbedError> {
    use crate::matcher::{Build, KbIndex};
    let opts = state.config.index.options();
    let (entries, documents, out_of_scope) = inputs;
    let stopped_before = carried.is_some();
    let serving = state.index.load_full();
    if let Some(dir) = snapshot
        && let Err(e) = crate::index::snapshot::recover(dir)
    {
        tracing::warn!(error = %format!("{e:#}"), "recovering the index snapshot failed");
    }
    let mut prior = match (carried, &serving) {
        (Some(p), _) => Some(p),
        (None, Some(index)) => Some(index.prior()),
        (None, None) => snapshot
            .filter(|_| state.config.index.snapshot)
            .and_then(|dir| load_snapshot_for(dir, embedder.version())),
    }
    .filter(|p| p.model_version == embedder.version());
    // Serve what needs no embedding first, when that is more than what is served.
    if let Some(p) = prior.take_if(|_| serving.is_none() || stopped_before) {
        let (e, d, o, missing) =
            crate::matcher::covered(&entries, &documents, &out_of_scope, &p, SERVE_COVERED_ABOVE);
        if missing > SERVE_COVERED_ABOVE {
            let mut quick = KbIndex::build(e, &d, &o, embedder, Some(p), &opts, |_, _| {})?;
            quick.stats.pending = missing;
            tracing::info!(
                entries = quick.stats.entries,
                pending = missing,
                "KB index swapped in without the texts still to embed"
            );
            let quick = match swap_in(state, quick) {
                Some(q) => q,
                None => return Ok(Generation::OtherModel),
            };
            prior = Some(quick.prior());
        } else {
            prior = Some(p);
        }
    }
    let log_progress = |done: usize, total: usize| {
        if total > 256 && (done.is_multiple_of(1024) || done == total) {
            tracing::info!("embedding the KB for its index: {done}/{total}");
        }
    };
    let built = KbIndex::build_until(
        entries,
        &documents,
        &out_of_scope,
        embedder,
        prior,
        &opts,
        log_progress,
        stop,
    )?;
    match built {
        Build::Stopped(p) => Ok(Generation::Stopped(p)),
        Build::Done(index) => Ok(match swap_in(state, *index) {
            Some(index) => Generation::Done(index),
            None => Generation::OtherModel,
        }),
    }
}

/// Stores `index` as the serving one unless the serving model is no longer the one it was
/// made with.
fn swap_in(state: &Kefu, index: crate::matcher::KbIndex) -> Option<Arc<crate::matcher::KbIndex>> {
    let _swapping = state.swap_lock.lock().expect("swap lock");
    if state
        .embedder
        .load()
        .as_ref()
        .is_none_or(|e| e.version() != index.model_version)
    {
        return None;
    }
    let index = Arc::new(index);
    state.index.store(Some(index.clone()));
    Some(index)
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
