//! The core: one service object, built once by `kefu serve`, that owns the encoder and index
//! slots, the store, the intent models, the recommender and the sessions, and exposes the
//! domain operations the entry points call: match a query, understand a text, take a chat
//! turn, assist an agent, recommend, record. The CLI and the evaluators, which have no running
//! service, call the same pipeline functions (`matching`). Nothing here knows about HTTP.

pub mod alerts;
pub mod analytics;
pub mod background;
pub mod channels;
pub mod conversation;
pub mod matching;
pub mod models;
pub mod privacy;
pub mod recommend;
pub mod reload;
pub mod report;
pub mod understand;

use std::sync::Arc;

use anyhow::Context;
use arc_swap::{ArcSwap, ArcSwapOption};

use crate::analytics::metrics::Metrics;
use crate::config::Config;
use crate::embed::Embedder;
use crate::error::Error;
use crate::kb::KbStore;
use crate::matcher::{Calibration, KbIndex};

pub use reload::{ModelReload, ReloadStatus};

/// The service: what every operation can reach.
pub struct Kefu {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// The serving model; empty until it has loaded. Swapped atomically, so a request keeps
    /// the model it started with.
    pub embedder: ArcSwapOption<Embedder>,
    /// The knowledge base on disk.
    pub kb: KbStore,
    /// The searchable index of the KB, rebuilt in the background after every change and
    /// swapped in whole; empty until the first build.
    pub index: ArcSwapOption<KbIndex>,
    /// Wakes the index builder.
    pub reindex: tokio::sync::Notify,
    /// Weights and thresholds for `/v1/match`; `true` when stored with the KB (else config).
    pub calibration: ArcSwap<(bool, Calibration)>,
    /// The intent models by name; empty until loaded (after the encoder).
    pub intents: ArcSwapOption<IntentModels>,
    /// Conversations (`/v1/chat`), in memory or in Redis.
    pub sessions: Arc<dyn crate::dialog::session::SessionStore>,
    pub session_locks: crate::dialog::session::SessionLocks,
    /// The business flows, checked at start.
    pub flows: Arc<crate::dialog::flows::Flows>,
    /// For flow calls and hand-off webhooks (`[outgoing]`).
    pub http: crate::outgoing::Outgoing,
    pub feedback: crate::analytics::feedback::FeedbackStore,
    /// Turn records (written through `recorder`'s queue) and hand-off tickets.
    pub turns: crate::analytics::turns::TurnStore,
    pub recorder: crate::analytics::turns::Recorder,
    pub desk: crate::analytics::sla::Desk,
    pub alerts: crate::analytics::alerts::AlertStore,
    /// Catalogue, events, profiles and the recommendation models.
    pub recommender: Arc<crate::recommend::serving::Recommender>,
    /// Channel identities (phone, WeChat openid, …) linked to customers, and each customer's
    /// open conversation across channels.
    pub identities: crate::dialog::identity::IdentityStore,
    /// Held while the index or the encoder is being swapped, so that the index builder never
    /// stores an index of a model that is being replaced.
    pub swap_lock: std::sync::Mutex<()>,
    /// The last model reload (`POST /v1/model/reload`, `GET /v1/model`).
    pub reload: std::sync::Mutex<ReloadStatus>,
    /// One activation, reload or rollback of an intent model or the recommender at a time.
    pub lifecycle: tokio::sync::Mutex<()>,
    /// Cancelled at shutdown: background work stops at its next safe point.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The background work that shutdown waits for (up to `server.shutdown_grace_secs`).
    pub tasks: tokio_util::task::TaskTracker,
}

pub type IntentModels = std::collections::BTreeMap<String, Arc<crate::intent::IntentModel>>;

impl Kefu {
    #[allow(clippy::too_many_arguments)] // the parts `open` made, each a distinct input
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        kb: KbStore,
        stored: Option<Calibration>,
        sessions: Arc<dyn crate::dialog::session::SessionStore>,
        feedback: crate::analytics::feedback::FeedbackStore,
        operations: analytics::Operations,
        recommender: Arc<crate::recommend::serving::Recommender>,
        http: crate::outgoing::Outgoing,
        identities: crate::dialog::identity::IdentityStore,
    ) -> Self {
        let calibration = match stored {
            Some(c) => (true, c),
            None => (false, config.matching.calibration()),
        };
        let recorder = crate::analytics::turns::Recorder::new(
            config.analytics.queue,
            config.analytics.enabled,
            metrics.clone(),
        );
        Self {
            calibration: ArcSwap::from_pointee(calibration),
            metrics,
            embedder: ArcSwapOption::empty(),
            kb,
            index: ArcSwapOption::empty(),
            reindex: tokio::sync::Notify::new(),
            intents: ArcSwapOption::empty(),
            sessions,
            session_locks: Default::default(),
            flows: crate::dialog::chat::compile_flows(&config.dialog),
            http,
            feedback,
            recorder,
            turns: operations.turns,
            desk: operations.desk,
            alerts: operations.alerts,
            recommender,
            identities,
            swap_lock: std::sync::Mutex::new(()),
            reload: std::sync::Mutex::new(ReloadStatus {
                state: "idle",
                ..Default::default()
            }),
            lifecycle: tokio::sync::Mutex::new(()),
            shutdown: Default::default(),
            tasks: Default::default(),
            config,
        }
    }

    pub fn embedder(&self) -> Result<Arc<Embedder>, Error> {
        self.embedder.load_full().ok_or(Error::NotReady)
    }

    /// The encoder and the KB index made with it. A model swap stores both under `swap_lock`;
    /// a request that reads them in the middle of one waits for the lock and reads again.
    pub fn encoder_and_index(&self) -> Result<(Arc<Embedder>, Arc<KbIndex>), Error> {
        self.with_encoder(
            || self.index.load_full(),
            |e, index| index.model_version == e.version(),
            || Error::IndexNotReady,
        )
    }

    /// The encoder and the intent models trained on it (read as in
    /// [`Self::encoder_and_index`]).
    pub fn encoder_and_intents(&self) -> Result<(Arc<Embedder>, Arc<IntentModels>), Error> {
        self.with_encoder(
            || self.intents.load_full(),
            |e, models| {
                models
                    .values()
                    .all(|m| m.check_encoder(e.manifest()).is_ok())
            },
            || Error::IntentNotReady,
        )
    }

    /// The encoder with a part made for it (`fits`): read once, and once more after any
    /// model swap in progress has ended; `not_ready` when the part is missing or still does
    /// not fit.
    fn with_encoder<T>(
        &self,
        part: impl Fn() -> Option<Arc<T>>,
        fits: impl Fn(&Embedder, &T) -> bool,
        not_ready: fn() -> Error,
    ) -> Result<(Arc<Embedder>, Arc<T>), Error> {
        let read = || -> Result<(Arc<Embedder>, Arc<T>), Error> {
            Ok((self.embedder()?, part().ok_or_else(not_ready)?))
        };
        let (e, p) = read()?;
        if fits(&e, &p) {
            return Ok((e, p));
        }
        drop(self.swap_lock.lock().expect("swap lock"));
        let (e, p) = read()?;
        if fits(&e, &p) {
            Ok((e, p))
        } else {
            Err(not_ready())
        }
    }

    /// Asks the background work to stop and waits for it until `deadline`; false when some was
    /// still running then (it is left to end with the process: everything it writes is
    /// replaced whole, so nothing is left half-written).
    pub async fn stop(&self, deadline: tokio::time::Instant) -> bool {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_ok()
    }

    pub fn set_embedder(&self, e: Embedder) {
        self.embedder.store(Some(Arc::new(e)));
        self.metrics.model_ready.set(1);
    }
}

impl Kefu {
    /// Opens everything the service serves from `cfg.server.data_dir` (the KB, loading the
    /// demo into an empty one when configured; sessions; feedback; the recommender). The
    /// models load later, in the background ([`Kefu::start`]).
    pub async fn open(cfg: Config) -> anyhow::Result<Arc<Self>> {
        let kb = KbStore::open(&cfg.server.data_dir).await.with_context(|| {
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
        let http = crate::outgoing::Outgoing::new(&cfg.outgoing).map_err(anyhow::Error::msg)?;
        let sessions = crate::dialog::chat::open_store(&cfg.dialog, &cfg.outgoing).await?;
        tracing::info!(store = sessions.kind(), "sessions");
        let feedback = crate::analytics::feedback::FeedbackStore::open(kb.pool().clone())
            .await
            .context("opening the feedback table")?;
        let operations = analytics::Operations::open(kb.pool().clone())
            .await
            .context("opening the analytics tables")?;
        let recommender = Arc::new(
            crate::recommend::serving::Recommender::open(
                crate::recommend::store::RecStore::open(kb.pool().clone())
                    .await
                    .context("opening the recommendation tables")?,
                cfg.recommend.clone(),
            )
            .await?,
        );
        recommender.load_configured(&cfg.server.data_dir)?;
        let identities = crate::dialog::identity::IdentityStore::open(kb.pool().clone())
            .await
            .context("opening the customer identity tables")?;
        Ok(Arc::new(Self::new(
            cfg,
            metrics,
            kb,
            stored,
            sessions,
            feedback,
            operations,
            recommender,
            http,
            identities,
        )))
    }

    /// Starts the background work: the index builder, and the loading of the model `serving`
    /// (then the intent models and the recommender) off the async runtime. A failure to load
    /// arrives on the returned channel; the service cannot serve without what failed. All of it
    /// ends at [`Kefu::stop`].
    pub fn start(
        self: &Arc<Self>,
        serving: std::path::PathBuf,
    ) -> tokio::sync::mpsc::Receiver<anyhow::Error> {
        self.tasks.spawn(background::index_builder(self.clone()));
        self.tasks.spawn(privacy::purge_loop(self.clone()));
        self.tasks.spawn(alerts::alert_loop(self.clone()));
        let state = self.clone();
        self.tasks.spawn(async move {
            let store = state.turns.clone();
            let linger = std::time::Duration::from_millis(state.config.analytics.flush_ms);
            state
                .recorder
                .run(store, linger, state.shutdown.clone())
                .await;
        });
        let (load_err_tx, load_err_rx) = tokio::sync::mpsc::channel::<anyhow::Error>(1);
        let state = self.clone();
        self.tasks.spawn_blocking(move || {
            let loaded = if serving == state.config.model.path {
                background::load_embedder(&state.config, state.metrics.clone())
            } else {
                Embedder::load(&serving, &state.config.embed, state.metrics.clone())
                    .with_context(|| format!("loading the activated model {}", serving.display()))
            };
            match loaded {
                Ok(e) => {
                    tracing::info!(model = e.version(), dim = e.dim(), "model loaded; ready");
                    state.set_embedder(e);
                    state.reindex.notify_one();
                    state.tasks.spawn(background::recommender_loop(
                        state.clone(),
                        load_err_tx.clone(),
                    ));
                    if state.shutdown.is_cancelled() {
                        return;
                    }
                    if let Err(e) = background::load_intents(&state) {
                        let _ = load_err_tx.blocking_send(e);
                    }
                }
                Err(e) => {
                    let _ = load_err_tx.blocking_send(e);
                }
            }
        });
        load_err_rx
    }
}

/// Whether each part the configuration serves is up (`GET /readyz`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` when every component is, else `loading`.
    pub status: &'static str,
    /// The serving model's version, once loaded.
    pub model: Option<String>,
    /// `ready` or `loading` for each of `model` (the encoder), `index` (the KB index made
    /// with it) and `intents` (the intent models, which the demo trains at first start).
    pub components: std::collections::BTreeMap<&'static str, &'static str>,
}

impl Kefu {
    /// Ready means ready for every route: the encoder, the KB index made with it and the
    /// intent models for it.
    pub fn readiness(&self) -> Readiness {
        let model = self.embedder.load_full();
        let state = |up: bool| if up { "ready" } else { "loading" };
        let index = self.encoder_and_index().is_ok();
        let intents = self.encoder_and_intents().is_ok();
        let components = [
            ("model", state(model.is_some())),
            ("index", state(index)),
            ("intents", state(intents)),
        ]
        .into_iter()
        .collect();
        Readiness {
            status: state(model.is_some() && index && intents),
            model: model.map(|e| e.version().to_string()),
            components,
        }
    }
}

/// `text` without surrounding whitespace; 422 when nothing is left, 413 beyond
/// `limits.max_input_chars`. `field` names it in the message.
pub fn checked_text<'a>(
    field: &str,
    text: &'a str,
    limits: &crate::config::LimitsConfig,
) -> Result<&'a str, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::EmptyInput(format!("{field} is empty")));
    }
    let chars = text.chars().count();
    if chars > limits.max_input_chars {
        return Err(Error::TooLarge(format!(
            "{field} has {chars} characters; at most {} are allowed (limits.max_input_chars)",
            limits.max_input_chars
        )));
    }
    Ok(text)
}

/// 422 unless `channel` is absent or one of the answer channels (web, app, wechat, sms).
pub fn checked_channel(channel: Option<&str>) -> Result<(), Error> {
    match channel {
        Some(c) if !crate::kb::entry::CHANNELS.contains(&c) => Err(Error::Invalid(format!(
            "channel {c:?} is unknown (one of {})",
            crate::kb::entry::CHANNELS.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// `limit` (or `default` when absent) when it is 1–1000, the bounds of every listing; else 422.
pub fn checked_limit<T>(limit: Option<T>, default: T) -> Result<T, Error>
where
    T: Copy + PartialOrd + From<u16> + std::fmt::Display,
{
    let l = limit.unwrap_or(default);
    if T::from(1) <= l && l <= T::from(1000) {
        Ok(l)
    } else {
        Err(Error::Invalid(format!(
            "limit must be between 1 and 1000, got {l}"
        )))
    }
}

/// A person's name or id as given (trimmed): 1–128 characters; `field` names it in the 422.
pub fn checked_name<'a>(field: &str, name: Option<&'a str>) -> Result<Option<&'a str>, Error> {
    match name.map(str::trim) {
        Some(x) if x.is_empty() || x.chars().count() > 128 => {
            Err(Error::Invalid(format!("{field} must be 1–128 characters")))
        }
        other => Ok(other),
    }
}

/// Longest customer tier.
pub const MAX_TIER_CHARS: usize = 64;

/// 422 unless `locale` is absent or one kefu serves (`zh`, `en`, with a region or script).
pub fn checked_locale(field: &str, locale: Option<&str>) -> Result<(), Error> {
    match locale.map(crate::text::check::checked_locale) {
        Some(Err(m)) => Err(Error::Invalid(format!("{field}: {m}"))),
        _ => Ok(()),
    }
}

/// 422 unless `id` is a customer id.
pub fn checked_customer_id(field: &str, id: &str) -> Result<(), Error> {
    if crate::recommend::store::valid_id(id) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{field} {id:?} is not an id (1–128 characters, no spaces or control characters)"
        )))
    }
}

impl Kefu {
    /// 422 unless `tier` is a label (1–64 characters, no spaces or control characters) that
    /// the routing policy knows (`routing.tiers`, when it lists any).
    pub fn checked_tier(&self, field: &str, tier: Option<&str>) -> Result<(), Error> {
        let Some(t) = tier else { return Ok(()) };
        if t.chars().count() > MAX_TIER_CHARS || !crate::recommend::store::valid_id(t) {
            return Err(Error::Invalid(format!(
                "{field}: a tier is 1–{MAX_TIER_CHARS} characters without spaces or control \
                 characters (got {} characters)",
                t.chars().count()
            )));
        }
        (self.config.routing.checked_tier(t)).map_err(|e| Error::Invalid(format!("{field}: {e}")))
    }
}
