//! The recommender as served: the catalogue with its item embeddings, the collaborative model
//! (trained on the event log at start and every `recommend.retrain_interval_secs`, or loaded
//! from a `kefu train recommend` directory), customer profiles and `/v1/recommend`.
//!
//! A customer is read from their events at request time, so every event counts at once:
//! collaborative scores come from the customer's history through the item-side model (fold-in,
//! no retraining), and the blend of signals depends on how much is known about them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::data::{Histories, Interaction};
use super::model::{DataRef, RecommendModel};
use super::store::{Customer, Event, EventType, RecStore, StoredEvent, StoredItem};
use crate::index::dense::dot;

/// `[recommend]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommendConfig {
    /// With an empty catalogue, load the demo shop (items, customers, purchases and
    /// consultations from datasets/demo/recommend).
    pub load_demo: bool,
    /// A model directory written by `kefu train recommend`. Without one, kefu trains on its
    /// own event log at start and again every `retrain_interval_secs` when events arrived.
    pub model: Option<PathBuf>,
    /// 0 = never retrain.
    pub retrain_interval_secs: u64,
    /// Half-life of interest in profiles and of consultations in recommendations.
    pub half_life_days: f64,
    /// Below this many distinct items, a customer is recommended mostly by co-occurrence and
    /// content; from it on, by the collaborative model.
    pub few_events: usize,
    /// Newest events of a customer read per request.
    pub max_history: usize,
    pub default_k: usize,
    pub max_k: usize,
    /// A click or purchase of a recommended item by the same customer within this many
    /// seconds of the recommendation counts as its conversion.
    pub conversion_window_secs: u64,
    /// `[recommend.experiment]`: a share of customers gets the control.
    pub experiment: Experiment,
}

/// An A/B split by customer id: `control_share` of the customers (stable: by a hash of the
/// id and `salt`) get what is popular instead of the personal blend, so that the lift of the
/// recommender is measured (`GET /v1/stats/recommendations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Experiment {
    /// 0 (default) switches the experiment off.
    pub control_share: f64,
    /// Changing it reshuffles the customers between the arms.
    pub salt: String,
}

impl Default for Experiment {
    fn default() -> Self {
        Self {
            control_share: 0.0,
            salt: "kefu".into(),
        }
    }
}

/// Which side of the experiment a customer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// The recommender as configured.
    Treatment,
    /// Popularity only.
    Control,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Treatment => "treatment",
            Arm::Control => "control",
        }
    }

    /// The arm of `customer_id` (none when the experiment is off or the customer unknown).
    pub fn of(e: &Experiment, customer_id: Option<&str>) -> Option<Arm> {
        use sha2::Digest;
        let id = customer_id?;
        if e.control_share <= 0.0 {
            return None;
        }
        let h = sha2::Sha256::digest(format!("{}:{id}", e.salt).as_bytes());
        let x = u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) as f64 / u64::MAX as f64;
        Some(if x < e.control_share {
            Arm::Control
        } else {
            Arm::Treatment
        })
    }
}

impl Default for RecommendConfig {
    fn default() -> Self {
        Self {
            load_demo: true,
            model: None,
            retrain_interval_secs: 600,
            half_life_days: 30.0,
            few_events: 5,
            max_history: 1000,
            default_k: 10,
            max_k: 100,
            conversion_window_secs: 7 * 86_400,
            experiment: Experiment::default(),
        }
    }
}

impl RecommendConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.half_life_days.is_finite() && self.half_life_days > 0.0) {
            return Err("recommend.half_life_days must be a positive number".into());
        }
        for (key, v) in [
            ("recommend.few_events", self.few_events),
            ("recommend.max_history", self.max_history),
            ("recommend.default_k", self.default_k),
            ("recommend.max_k", self.max_k),
        ] {
            if v == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if self.default_k > self.max_k {
            return Err("recommend.default_k is larger than recommend.max_k".into());
        }
        if !(0.0..1.0).contains(&self.experiment.control_share) {
            return Err(format!(
                "recommend.experiment.control_share must be in [0, 1), got {}",
                self.experiment.control_share
            ));
        }
        if self.conversion_window_secs == 0 {
            return Err("recommend.conversion_window_secs must be at least 1".into());
        }
        Ok(())
    }
}

pub const DEMO_ITEMS: &str = include_str!("../../datasets/demo/recommend/items.jsonl");
pub const DEMO_CUSTOMERS: &str = include_str!("../../datasets/demo/recommend/customers.jsonl");
pub const DEMO_INTERACTIONS: &str = include_str!("../../datasets/demo/recommend/interactions.csv");
pub const DEMO_CONSULTATIONS: &str =
    include_str!("../../datasets/demo/recommend/consultations.jsonl");

/// The catalogue in memory: items in id order and their unit-length embeddings.
pub struct Catalogue {
    pub items: Vec<StoredItem>,
    pub index: HashMap<String, u32>,
    /// `items.len() × dim`, zeros for an item not embedded yet.
    pub embeddings: Vec<f32>,
    pub embedded: Vec<bool>,
    pub dim: usize,
    /// The encoder the embeddings come from.
    pub model: String,
}

impl Catalogue {
    pub fn empty() -> Self {
        Self {
            items: vec![],
            index: HashMap::new(),
            embeddings: vec![],
            embedded: vec![],
            dim: 0,
            model: String::new(),
        }
    }

    fn build(rows: Vec<(StoredItem, Option<Vec<f32>>)>, model: &str) -> Self {
        let dim = rows
            .iter()
            .find_map(|(_, e)| e.as_ref().map(Vec::len))
            .unwrap_or(0);
        let mut c = Self::empty();
        c.dim = dim;
        c.model = model.to_string();
        for (k, (item, emb)) in rows.into_iter().enumerate() {
            c.index.insert(item.item.id.clone(), k as u32);
            match emb.filter(|e| e.len() == dim) {
                Some(mut e) => {
                    unit(&mut e);
                    c.embeddings.extend(e);
                    c.embedded.push(true);
                }
                None => {
                    c.embeddings.extend(std::iter::repeat_n(0.0, dim));
                    c.embedded.push(false);
                }
            }
            c.items.push(item);
        }
        c
    }

    pub fn embedding(&self, i: u32) -> Option<&[f32]> {
        let i = i as usize;
        self.embedded
            .get(i)
            .copied()
            .unwrap_or(false)
            .then(|| &self.embeddings[i * self.dim..(i + 1) * self.dim])
    }
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The collaborative model and the map between its items and the catalogue's.
pub struct Served {
    pub model: Arc<RecommendModel>,
    /// Catalogue index → model index (None: an item the model has not seen).
    to_model: Vec<Option<u32>>,
    /// Model index → catalogue index.
    to_catalogue: Vec<Option<u32>>,
    /// Where it came from: `event log` or its directory.
    pub source: String,
    /// `DIR@sha` for a directory, `event-log@SEQ` for a model trained on the event log.
    pub version: String,
    /// Events it was trained on (the log's last sequence number then).
    pub trained_seq: i64,
}

impl Served {
    fn new(
        model: Arc<RecommendModel>,
        cat: &Catalogue,
        (source, version): (String, String),
        trained_seq: i64,
    ) -> Self {
        let to_catalogue: Vec<Option<u32>> = model
            .card
            .items
            .iter()
            .map(|id| cat.index.get(id).copied())
            .collect();
        let mut to_model = vec![None; cat.items.len()];
        for (m, c) in to_catalogue.iter().enumerate() {
            if let Some(c) = c {
                to_model[*c as usize] = Some(m as u32);
            }
        }
        Self {
            model,
            to_model,
            to_catalogue,
            source,
            version,
            trained_seq,
        }
    }

    fn remap(&self, cat: &Catalogue) -> Self {
        Self::new(
            self.model.clone(),
            cat,
            (self.source.clone(), self.version.clone()),
            self.trained_seq,
        )
    }

    /// A model-space signal moved into catalogue space (0 for items the model has not seen).
    fn to_catalogue_scores(&self, scores: &[f32], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n];
        for (m, s) in scores.iter().enumerate() {
            if let Some(Some(c)) = self.to_catalogue.get(m) {
                out[*c as usize] = *s;
            }
        }
        out
    }
}

pub struct Recommender {
    pub store: RecStore,
    pub config: RecommendConfig,
    pub catalogue: ArcSwap<Catalogue>,
    pub model: ArcSwapOption<Served>,
    /// Sequence number of the newest event (to know whether retraining is worth it).
    pub last_seq: AtomicI64,
    /// Serialises training runs.
    training: tokio::sync::Mutex<()>,
    /// Events were erased or purged: the served model may know what is gone; retrain.
    forgotten: std::sync::atomic::AtomicBool,
    /// The model directory that serves (activated, else `recommend.model`); None: the model is
    /// trained on the event log.
    pinned: std::sync::Mutex<Option<PathBuf>>,
}

/// Now in Unix seconds.
pub fn now_secs() -> i64 {
    crate::clock::now()
}

fn decay(now: i64, ts: i64, half_life_secs: f64) -> f32 {
    0.5f64.powf(((now - ts).max(0) as f64) / half_life_secs) as f32
}

/// How much is known about a customer, and so which signals lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// No item history: content (the context and past questions) and popularity.
    ColdStart,
    /// A few items: co-occurrence with them, content and popularity.
    FewEvents,
    /// Enough history for the collaborative model to lead.
    Personal,
}

/// The signal that put an item on the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Collaborative,
    Cooccurrence,
    Context,
    Consultations,
    Popularity,
    New,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendRequest {
    /// Unknown or absent: cold-start recommendations.
    #[serde(default)]
    #[schema(schema_with = crate::text::check::schema::external_id)]
    pub customer_id: Option<String>,
    /// How many items (default `recommend.default_k`, at most `recommend.max_k`).
    #[serde(default)]
    pub k: Option<usize>,
    /// Text to recommend for, e.g. the question just answered.
    #[serde(default)]
    #[schema(schema_with = crate::text::check::schema::input)]
    pub context: Option<String>,
    /// Only items of this category.
    #[serde(default)]
    pub category: Option<String>,
    /// Item ids never to return.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Also recommend what the customer already bought (default false).
    #[serde(default)]
    pub include_purchased: bool,
    /// `zh` or `en` for titles and reasons (default: the customer's, else the context's).
    #[serde(default)]
    #[schema(schema_with = crate::text::check::schema::language)]
    pub locale: Option<String>,
    /// Add each signal's normalised score to every item.
    #[serde(default)]
    pub explain: bool,
    /// Where the items are shown (web, app, wechat, sms), for the conversion stats.
    #[serde(default)]
    #[schema(schema_with = crate::text::check::schema::channel)]
    pub channel: Option<String>,
}

/// Each signal in [0, 1] over the candidates, before weighting.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = RecommendSignals)]
pub struct Signals {
    pub collaborative: f32,
    pub cooccurrence: f32,
    pub content: f32,
    pub popularity: f32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Recommended {
    pub item_id: String,
    pub title: String,
    pub categories: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    pub score: f32,
    pub reason: String,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signals: Option<Signals>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = RecommendModelInfo)]
pub struct ModelInfo {
    /// `recency_ease` or `als`.
    pub method: String,
    /// `event log`, or the model directory.
    pub source: String,
    /// `DIR@sha` of a model directory; `event-log@SEQ` for a model trained on the event log.
    pub version: String,
    pub created_at: String,
    pub items: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecommendResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Whether kefu has events for this customer.
    pub known: bool,
    pub strategy: Strategy,
    /// The customer's side of the experiment (`recommend.experiment`), when one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm: Option<Arm>,
    pub locale: String,
    pub items: Vec<Recommended>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
    pub took_ms: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Interest {
    pub name: String,
    /// Time-decayed, the strongest = 1.
    pub weight: f32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Purchase {
    pub item_id: String,
    pub title: String,
    pub ts: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Consultation {
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faq_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    pub ts: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Profile {
    pub customer_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Catalogue categories from what they bought, rated, clicked and viewed, and from what
    /// they asked about (the categories of the items closest to their questions).
    pub interests: Vec<Interest>,
    /// What they asked about: the answering entry's category, else the question.
    pub topics: Vec<Interest>,
    /// Newest first, at most 10.
    pub recent_purchases: Vec<Purchase>,
    /// Newest first, at most 10.
    pub recent_consultations: Vec<Consultation>,
    /// Events by type.
    pub counts: BTreeMap<String, u64>,
    /// Unix seconds of the first and last event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
}

/// What a customer's events say, in catalogue terms.
struct Known {
    /// Item interactions in time order: (catalogue index, value, ts, type).
    items: Vec<(u32, f32, i64, EventType)>,
    purchased: HashSet<u32>,
    dismissed: HashSet<u32>,
    /// (text, unit embedding, ts) of consult events with an embedding.
    consults: Vec<(String, Vec<f32>, i64)>,
}

impl Known {
    fn of(events: &[StoredEvent], cat: &Catalogue) -> Self {
        let mut k = Known {
            items: vec![],
            purchased: HashSet::new(),
            dismissed: HashSet::new(),
            consults: vec![],
        };
        for s in events {
            let e = &s.event;
            let item = e.item_id.as_ref().and_then(|id| cat.index.get(id)).copied();
            match (e.kind, item) {
                (EventType::Consult, _) => {
                    if let (Some(t), Some(v)) = (&e.text, &s.embedding)
                        && v.len() == cat.dim
                    {
                        let mut v = v.clone();
                        unit(&mut v);
                        k.consults.push((t.clone(), v, e.ts));
                    }
                }
                (EventType::Dismiss, Some(i)) => {
                    k.dismissed.insert(i);
                }
                (kind, Some(i)) if kind.is_interaction() => {
                    if kind == EventType::Purchase {
                        k.purchased.insert(i);
                    }
                    k.items.push((i, e.value.unwrap_or(1.0) as f32, e.ts, kind));
                }
                _ => {}
            }
        }
        k
    }

    fn distinct_items(&self) -> usize {
        self.items.iter().map(|x| x.0).collect::<HashSet<_>>().len()
    }
}

fn short(text: &str, max: usize) -> String {
    let t: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        format!("{t}…")
    } else {
        t
    }
}

/// Why an item is on the list; `bought`: the customer bought the item behind a collaborative
/// reason (else they only viewed, clicked or rated it).
fn reason(locale: &str, source: Source, subject: &str, bought: bool) -> String {
    let zh = locale != "en";
    match (source, zh) {
        (Source::Collaborative, true) if bought => format!("因为您购买过「{subject}」"),
        (Source::Collaborative, true) => format!("因为您看过「{subject}」"),
        (Source::Collaborative, false) if bought => format!("Because you bought “{subject}”"),
        (Source::Collaborative, false) => format!("Because you looked at “{subject}”"),
        (Source::Cooccurrence, true) => format!("购买「{subject}」的顾客也常买这件"),
        (Source::Cooccurrence, false) => {
            format!("Customers who bought “{subject}” also bought this")
        }
        (Source::Context, true) => format!("与您刚才咨询的「{subject}」相关"),
        (Source::Context, false) => format!("Related to your question “{subject}”"),
        (Source::Consultations, true) => format!("因为您咨询过「{subject}」"),
        (Source::Consultations, false) => format!("Because you asked “{subject}”"),
        (Source::Popularity, true) => "近期热销".into(),
        (Source::Popularity, false) => "Popular right now".into(),
        (Source::New, true) => "新上架".into(),
        (Source::New, false) => "New in the catalogue".into(),
    }
}

/// Scales the candidates' values of a signal into [0, 1] (min–max; all equal → 0).
fn normalise(scores: &[f32], candidates: &[u32]) -> Vec<f32> {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &c in candidates {
        let s = scores[c as usize];
        lo = lo.min(s);
        hi = hi.max(s);
    }
    let mut out = vec![0f32; scores.len()];
    if hi > lo {
        for &c in candidates {
            out[c as usize] = (scores[c as usize] - lo) / (hi - lo);
        }
    }
    out
}

impl Recommender {
    pub async fn open(store: RecStore, config: RecommendConfig) -> anyhow::Result<Self> {
        let last = store.last_seq().await?;
        Ok(Self {
            store,
            catalogue: ArcSwap::from_pointee(Catalogue::empty()),
            model: ArcSwapOption::empty(),
            last_seq: AtomicI64::new(last),
            training: tokio::sync::Mutex::new(()),
            forgotten: std::sync::atomic::AtomicBool::new(false),
            pinned: std::sync::Mutex::new(config.model.clone()),
            config,
        })
    }

    fn half_life_secs(&self) -> f64 {
        self.config.half_life_days * 86_400.0
    }

    /// Reads the catalogue again (after a change) and maps the model onto it.
    pub async fn reload_catalogue(&self, model: &str) -> Result<(), sqlx::Error> {
        let cat = Catalogue::build(self.store.items(model).await?, model);
        if let Some(m) = self.model.load_full() {
            self.model.store(Some(Arc::new(m.remap(&cat))));
        }
        self.catalogue.store(Arc::new(cat));
        Ok(())
    }

    /// Loads the demo shop into an empty store: items, customers, purchases, consultations.
    pub async fn load_demo(&self) -> anyhow::Result<bool> {
        if self.store.item_count().await? > 0 {
            return Ok(false);
        }
        let items = super::store::parse_items(super::store::ItemFormat::Jsonl, DEMO_ITEMS)
            .map_err(|p| anyhow::anyhow!("the demo catalogue is invalid: {p:?}"))?;
        self.store.upsert_items(&items).await?;
        #[derive(Deserialize)]
        struct DemoCustomer {
            id: String,
            tier: Option<String>,
            locale: Option<String>,
        }
        let customers: Vec<(String, Customer)> = DEMO_CUSTOMERS
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let c: DemoCustomer = serde_json::from_str(l)?;
                Ok((
                    c.id,
                    Customer {
                        tier: c.tier,
                        locale: c.locale,
                    },
                ))
            })
            .collect::<Result<_, serde_json::Error>>()?;
        self.store.upsert_customers(&customers).await?;
        let mut events: Vec<(Event, Option<Vec<f32>>)> = Vec::new();
        let mut r = csv::Reader::from_reader(DEMO_INTERACTIONS.as_bytes());
        for rec in r.deserialize::<(String, String, f64, i64)>() {
            let (customer_id, item_id, _rating, ts) = rec?;
            events.push((
                Event {
                    customer_id,
                    kind: EventType::Purchase,
                    item_id: Some(item_id),
                    text: None,
                    value: None,
                    ts,
                    faq_id: None,
                    topic: None,
                },
                None,
            ));
        }
        #[derive(Deserialize)]
        struct DemoConsult {
            customer_id: String,
            text: String,
            ts: i64,
        }
        for l in DEMO_CONSULTATIONS.lines().filter(|l| !l.trim().is_empty()) {
            let c: DemoConsult = serde_json::from_str(l)?;
            events.push((
                Event {
                    customer_id: c.customer_id,
                    kind: EventType::Consult,
                    item_id: None,
                    text: Some(c.text),
                    value: None,
                    ts: c.ts,
                    faq_id: None,
                    topic: None,
                },
                None,
            ));
        }
        events.sort_by_key(|(e, _)| e.ts);
        self.store.add_events(&events, "").await?;
        self.last_seq
            .store(self.store.last_seq().await?, Ordering::SeqCst);
        tracing::info!(
            items = items.len(),
            customers = customers.len(),
            events = events.len(),
            "recommendations: loaded the demo shop"
        );
        Ok(true)
    }

    /// Embeds items (then reloads the catalogue) and consultations that lack an embedding from
    /// `embedder`, in batches with progress in the log.
    pub async fn embed_missing(&self, embedder: &crate::embed::Embedder) -> anyhow::Result<()> {
        self.embed_items(embedder).await?;
        let model = embedder.version().to_string();
        let mut done = 0;
        loop {
            let consults = self.store.consults_to_embed(&model, 256).await?;
            if consults.is_empty() {
                break;
            }
            let texts: Vec<String> = consults.iter().map(|(_, t)| t.clone()).collect();
            let vs = embedder.embed(&texts).await?;
            let rows: Vec<(i64, Vec<f32>)> = consults
                .iter()
                .zip(vs)
                .map(|((seq, _), v)| (*seq, v.vector.to_vec()))
                .collect();
            self.store.set_event_embeddings(&model, &rows).await?;
            done += rows.len();
            tracing::info!("embedding consultations: {done} done");
        }
        Ok(())
    }

    /// Embeds the items that lack an embedding of `embedder`'s model and reloads the catalogue:
    /// what a change of the catalogue needs before it is answered (consultations waiting for
    /// their embeddings are the background's work, not the request's).
    pub async fn embed_items(&self, embedder: &crate::embed::Embedder) -> anyhow::Result<()> {
        let model = embedder.version().to_string();
        let items = self.store.items_to_embed(&model).await?;
        let total = items.len();
        for (n, chunk) in items.chunks(64).enumerate() {
            let texts: Vec<String> = chunk.iter().map(|(_, t)| t.clone()).collect();
            let vs = embedder.embed(&texts).await?;
            let rows: Vec<(String, Vec<f32>)> = chunk
                .iter()
                .zip(vs)
                .map(|((id, _), v)| (id.clone(), v.vector.to_vec()))
                .collect();
            self.store.set_item_embeddings(&model, &rows).await?;
            if total > 256 && n % 8 == 7 {
                tracing::info!("embedding items: {}/{total}", (n + 1) * 64);
            }
        }
        if total > 0 {
            tracing::info!(items = total, "recommendations: items embedded");
        }
        self.reload_catalogue(&model).await?;
        Ok(())
    }

    /// Marks the served model as knowing events that are gone: the next [`Self::retrain`]
    /// trains even when no event arrived.
    pub fn forget(&self) {
        self.forgotten
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Trains the collaborative model on the event log (unless one was configured) and swaps
    /// it in. `Ok(false)` when there is nothing (new) to learn from.
    pub async fn retrain(self: &Arc<Self>) -> anyhow::Result<bool> {
        let _one = self.training.lock().await;
        if self.pinned().is_some() {
            return Ok(false);
        }
        let last = self.store.last_seq().await?;
        let forgotten = self
            .forgotten
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        if !forgotten
            && self
                .model
                .load()
                .as_ref()
                .is_some_and(|m| m.trained_seq >= last)
        {
            return Ok(false);
        }
        let rows = self.store.interactions().await?;
        if rows.is_empty() {
            if forgotten {
                // Nothing left to learn from: nothing of the erased may stay in the model.
                self.model.store(None);
            }
            return Ok(false);
        }
        let log: Vec<Interaction> = rows
            .into_iter()
            .map(|(user, item, rating, ts, seq)| Interaction {
                user,
                item,
                rating,
                ts,
                line: seq as usize,
            })
            .collect();
        let cat = self.catalogue.load_full();
        let ids: Vec<String> = cat.items.iter().map(|i| i.item.id.clone()).collect();
        let this = self.clone();
        let served = tokio::task::spawn_blocking(move || -> anyhow::Result<Served> {
            let h = Histories::build(&log, &ids);
            let data = DataRef {
                path: "event log".into(),
                sha256: format!("events up to {last}"),
            };
            let started = std::time::Instant::now();
            let model = RecommendModel::train(
                &h,
                data,
                None,
                log.len(),
                &indicatif::ProgressBar::hidden(),
            )?;
            tracing::info!(
                method = model.card.method,
                interactions = log.len(),
                customers = h.users.len(),
                items = h.items.len(),
                seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                "recommendations: trained on the event log"
            );
            let cat = this.catalogue.load_full();
            Ok(Served::new(
                Arc::new(model),
                &cat,
                ("event log".into(), format!("event-log@{last}")),
                last,
            ))
        })
        .await??;
        self.model.store(Some(Arc::new(served)));
        Ok(true)
    }

    /// The model directory that serves, if one does (else the event log's model).
    pub fn pinned(&self) -> Option<PathBuf> {
        self.pinned.lock().expect("pinned lock").clone()
    }

    /// Loads the model directory to serve at start: the one activated in `data_dir`
    /// (`kefu model activate recommend DIR`), else `recommend.model`.
    pub fn load_configured(&self, data_dir: &std::path::Path) -> anyhow::Result<()> {
        let slot = crate::model::registry::Slot::recommend();
        let dir = match crate::model::registry::activated_path(data_dir, &slot)? {
            Some(d) => Some((d, "the activated recommender")),
            None => self.config.model.clone().map(|d| (d, "recommend.model")),
        };
        if let Some((dir, what)) = dir {
            let (m, origin) =
                load_dir(&dir).map_err(|e| anyhow::anyhow!("{what} {}: {e:#}", dir.display()))?;
            let cat = self.catalogue.load_full();
            self.model.store(Some(Arc::new(Served::new(
                Arc::new(m),
                &cat,
                (origin.path, origin.version),
                i64::MAX,
            ))));
            *self.pinned.lock().expect("pinned lock") = Some(dir);
        }
        Ok(())
    }

    /// Serves `m` (loaded from `origin.path`) from now on, in one swap: a request is answered
    /// wholly by the old model or wholly by this one. Waits for a retraining under way, which
    /// then leaves this model in place.
    pub async fn install(&self, m: RecommendModel, origin: crate::model::registry::ModelRef) {
        let _one = self.training.lock().await;
        let cat = self.catalogue.load_full();
        let dir = PathBuf::from(&origin.path);
        self.model.store(Some(Arc::new(Served::new(
            Arc::new(m),
            &cat,
            (origin.path, origin.version),
            i64::MAX,
        ))));
        *self.pinned.lock().expect("pinned lock") = Some(dir);
    }

    /// Serves the event log's model again (no directory): trained now; the directory's model
    /// serves until the new one is ready.
    pub async fn unpin(self: &Arc<Self>) -> anyhow::Result<()> {
        *self.pinned.lock().expect("pinned lock") = None;
        self.forget();
        self.retrain().await?;
        Ok(())
    }

    /// A customer's profile; `None` when kefu knows nothing about them.
    pub async fn profile(&self, customer_id: &str, model: &str) -> anyhow::Result<Option<Profile>> {
        // Counts and events first, the customer row last: a chat turn stores the customer's
        // tier before its event, so a profile that counts the event shows the tier too.
        let total = self.store.customer_counts(customer_id).await?;
        let events = self
            .store
            .customer_events(customer_id, self.config.max_history, model)
            .await?;
        let customer = self.store.customer(customer_id).await?;
        if customer.is_none() && events.is_empty() {
            return Ok(None);
        }
        let customer = customer.unwrap_or_default();
        let cat = self.catalogue.load_full();
        let now = now_secs();
        let hl = self.half_life_secs();
        let mut interests: HashMap<String, f32> = HashMap::new();
        let mut topics: HashMap<String, f32> = HashMap::new();
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut purchases = Vec::new();
        let mut consultations = Vec::new();
        for s in &events {
            let e = &s.event;
            *counts.entry(e.kind.as_str().to_string()).or_default() += 1;
            let d = decay(now, e.ts, hl);
            let item = e.item_id.as_ref().and_then(|id| cat.index.get(id)).copied();
            let weight = match e.kind {
                EventType::Purchase => 3.0,
                EventType::Rating => (e.value.unwrap_or(3.0) as f32 - 2.5) / 1.25,
                EventType::Click => 1.0,
                EventType::View => 0.5,
                EventType::Dismiss => -1.0,
                EventType::Consult => 0.0,
            };
            if let Some(i) = item {
                let cats = &cat.items[i as usize].item.categories;
                for c in cats {
                    *interests.entry(c.clone()).or_default() += weight * d / cats.len() as f32;
                }
                if e.kind == EventType::Purchase {
                    purchases.push(Purchase {
                        item_id: cat.items[i as usize].item.id.clone(),
                        title: cat.items[i as usize]
                            .item
                            .title_for(customer.locale.as_deref().unwrap_or("zh"))
                            .to_string(),
                        ts: e.ts,
                    });
                }
            }
            if e.kind == EventType::Consult {
                let text = e.text.clone().unwrap_or_default();
                let topic = e.topic.clone().unwrap_or_else(|| short(&text, 40));
                *topics.entry(topic).or_default() += d;
                // The categories of the three items closest to the question.
                if let Some(v) = &s.embedding
                    && v.len() == cat.dim
                    && cat.dim > 0
                {
                    let mut best: Vec<(f32, u32)> = (0..cat.items.len() as u32)
                        .filter_map(|i| cat.embedding(i).map(|e| (dot(e, v), i)))
                        .collect();
                    best.sort_by(|a, b| b.0.total_cmp(&a.0));
                    for (_, i) in best.into_iter().take(3) {
                        let cats = &cat.items[i as usize].item.categories;
                        for c in cats {
                            *interests.entry(c.clone()).or_default() += d / 3.0 / cats.len() as f32;
                        }
                    }
                }
                consultations.push(Consultation {
                    text,
                    faq_id: e.faq_id.clone(),
                    topic: e.topic.clone(),
                    ts: e.ts,
                });
            }
        }
        let ranked = |m: HashMap<String, f32>| {
            let mut v: Vec<(String, f32)> = m.into_iter().filter(|(_, w)| *w > 0.0).collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let top = v.first().map_or(1.0, |x| x.1);
            v.into_iter()
                .take(10)
                .map(|(name, w)| Interest {
                    name,
                    weight: w / top,
                })
                .collect::<Vec<_>>()
        };
        purchases.reverse();
        purchases.truncate(10);
        consultations.reverse();
        consultations.truncate(10);
        Ok(Some(Profile {
            customer_id: customer_id.to_string(),
            tier: customer.tier,
            locale: customer.locale,
            interests: ranked(interests),
            topics: ranked(topics),
            recent_purchases: purchases,
            recent_consultations: consultations,
            counts: if total.counts.is_empty() {
                counts
            } else {
                total.counts
            },
            first_seen: total.first_seen,
            last_seen: total.last_seen,
        }))
    }

    /// Ranks the catalogue for a request. `context` is the request's context text, embedded.
    pub async fn recommend(
        &self,
        req: &RecommendRequest,
        context: Option<(&str, Vec<f32>)>,
        model: &str,
    ) -> anyhow::Result<RecommendResponse> {
        let started = std::time::Instant::now();
        let arm = Arm::of(&self.config.experiment, req.customer_id.as_deref());
        let cat = self.catalogue.load_full();
        let served = self.model.load_full();
        let (events, customer) = match &req.customer_id {
            Some(id) => (
                self.store
                    .customer_events(id, self.config.max_history, model)
                    .await?,
                self.store.customer(id).await?,
            ),
            None => (vec![], None),
        };
        let known = Known::of(&events, &cat);
        let locale = req
            .locale
            .clone()
            .or_else(|| customer.as_ref().and_then(|c| c.locale.clone()))
            .or_else(|| {
                context
                    .as_ref()
                    .and_then(|(t, _)| crate::dialog::locale_of(t).map(str::to_string))
            })
            .unwrap_or_else(|| "zh".into());
        let n = cat.items.len();
        let excluded: HashSet<&str> = req.exclude.iter().map(String::as_str).collect();
        let candidates: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                let it = &cat.items[i as usize].item;
                it.active
                    && !excluded.contains(it.id.as_str())
                    && !known.dismissed.contains(&i)
                    && (req.include_purchased || !known.purchased.contains(&i))
                    && req
                        .category
                        .as_ref()
                        .is_none_or(|c| it.categories.iter().any(|x| x == c))
            })
            .collect();
        let distinct = known.distinct_items();
        let strategy = if distinct == 0 {
            Strategy::ColdStart
        } else if distinct < self.config.few_events {
            Strategy::FewEvents
        } else {
            Strategy::Personal
        };

        // The model-space history (items the model knows) for fold-in.
        let history: Vec<(u32, f32, i64)> = served
            .as_ref()
            .map(|s| {
                known
                    .items
                    .iter()
                    .filter_map(|&(c, v, ts, _)| s.to_model[c as usize].map(|m| (m, v, ts)))
                    .collect()
            })
            .unwrap_or_default();
        let zeros = || vec![0f32; n];
        let (cf, co, pop) = match &served {
            Some(s) => (
                if history.is_empty() {
                    zeros()
                } else {
                    s.to_catalogue_scores(&s.model.cf_scores(&history), n)
                },
                if history.is_empty() {
                    zeros()
                } else {
                    s.to_catalogue_scores(&s.model.cooc_scores(&history), n)
                },
                s.to_catalogue_scores(&s.model.popularity, n),
            ),
            None => (zeros(), zeros(), zeros()),
        };
        // Content: the context (weight 2) and past questions (recency-weighted, 1 in all).
        let now = now_secs();
        let hl = self.half_life_secs();
        let mut q = vec![0f32; cat.dim];
        let mut has_content = false;
        if let Some((_, v)) = &context
            && v.len() == cat.dim
        {
            let mut v = v.clone();
            unit(&mut v);
            q.iter_mut().zip(&v).for_each(|(a, b)| *a += 2.0 * b);
            has_content = true;
        }
        let recent: Vec<&(String, Vec<f32>, i64)> = known.consults.iter().rev().take(10).collect();
        let wsum: f32 = recent.iter().map(|c| decay(now, c.2, hl)).sum();
        if wsum > 0.0 {
            for c in &recent {
                let w = decay(now, c.2, hl) / wsum;
                q.iter_mut().zip(&c.1).for_each(|(a, b)| *a += w * b);
            }
            has_content = true;
        }
        let content: Vec<f32> = if has_content {
            (0..n as u32)
                .map(|i| cat.embedding(i).map_or(f32::MIN, |e| dot(e, &q)))
                .collect()
        } else {
            zeros()
        };
        let content_candidates: Vec<u32> = candidates
            .iter()
            .copied()
            .filter(|&i| cat.embedded[i as usize])
            .collect();
        // Model signals are scaled over the items the model knows (the rest stay at 0).
        let model_candidates: Vec<u32> = match &served {
            Some(s) => candidates
                .iter()
                .copied()
                .filter(|&i| s.to_model[i as usize].is_some())
                .collect(),
            None => vec![],
        };
        let (cf, co, content, pop) = (
            normalise(&cf, &model_candidates),
            normalise(&co, &model_candidates),
            normalise(&content, &content_candidates),
            normalise(&pop, &model_candidates),
        );
        let has = |s: &[f32]| s.iter().any(|&x| x > 0.0);
        let with_context = context.is_some();
        // (collaborative, co-occurrence, content, popularity)
        let mut w: [f32; 4] = match strategy {
            Strategy::ColdStart => [0.0, 0.0, 0.7, 0.3],
            Strategy::FewEvents => [0.15, 0.45, 0.2, 0.2],
            Strategy::Personal => [0.7, 0.1, 0.1, 0.1],
        };
        if with_context {
            w[2] = w[2].max(0.5);
        }
        if arm == Some(Arm::Control) {
            w = [0.0, 0.0, 0.0, 1.0];
        }
        for (k, s) in [&cf, &co, &content, &pop].into_iter().enumerate() {
            if !has(s) {
                w[k] = 0.0;
            }
        }
        let total: f32 = w.iter().sum();
        let k = req
            .k
            .unwrap_or(self.config.default_k)
            .clamp(1, self.config.max_k);
        let mut scored: Vec<(f32, u32)> = candidates
            .iter()
            .map(|&i| {
                let i_ = i as usize;
                let s = if total > 0.0 {
                    (w[0] * cf[i_] + w[1] * co[i_] + w[2] * content[i_] + w[3] * pop[i_]) / total
                } else {
                    0.0
                };
                (s, i)
            })
            .collect();
        // Ties (e.g. nothing known at all) go to the newest items.
        scored.sort_by(|a, b| {
            b.0.total_cmp(&a.0).then_with(|| {
                cat.items[b.1 as usize]
                    .created_at
                    .cmp(&cat.items[a.1 as usize].created_at)
                    .then(a.1.cmp(&b.1))
            })
        });
        scored.truncate(k);
        let title = |c: u32| short(cat.items[c as usize].item.title_for(&locale), 40);
        let items = scored
            .into_iter()
            .map(|(score, i)| {
                let i_ = i as usize;
                let parts = [
                    w[0] * cf[i_],
                    w[1] * co[i_],
                    w[2] * content[i_],
                    w[3] * pop[i_],
                ];
                let lead = (0..4)
                    .max_by(|&a, &b| parts[a].total_cmp(&parts[b]))
                    .filter(|&a| parts[a] > 0.0);
                let (source, subject, bought) = match (lead, &served) {
                    (Some(l @ (0 | 1)), Some(s)) if s.to_model[i_].is_some() => {
                        let m = s.to_model[i_].unwrap_or_default();
                        let support = if l == 0 {
                            s.model.explain(&history, m)
                        } else {
                            history.iter().map(|h| h.0).max_by(|a, b| {
                                s.model.cooc.row(*a)[m as usize]
                                    .total_cmp(&s.model.cooc.row(*b)[m as usize])
                            })
                        };
                        let behind = support.and_then(|j| s.to_catalogue[j as usize]);
                        let src = if l == 0 {
                            Source::Collaborative
                        } else {
                            Source::Cooccurrence
                        };
                        (
                            src,
                            behind.map(title).unwrap_or_default(),
                            behind.is_some_and(|c| known.purchased.contains(&c)),
                        )
                    }
                    (Some(2), _) => {
                        let e = cat.embedding(i).unwrap_or(&[]);
                        let ctx_sim = context.as_ref().map_or(f32::MIN, |(_, v)| dot(e, v));
                        let best = known
                            .consults
                            .iter()
                            .map(|c| (dot(e, &c.1), c.0.as_str()))
                            .max_by(|a, b| a.0.total_cmp(&b.0));
                        let (src, subject) = match (context.as_ref(), best) {
                            (Some((t, _)), Some((s, _))) if ctx_sim >= s => {
                                (Source::Context, short(t, 30))
                            }
                            (Some((t, _)), None) => (Source::Context, short(t, 30)),
                            (_, Some((_, t))) => (Source::Consultations, short(t, 30)),
                            (None, None) => (Source::Popularity, String::new()),
                        };
                        (src, subject, false)
                    }
                    (None, _) if total == 0.0 => (Source::New, String::new(), false),
                    _ => (Source::Popularity, String::new(), false),
                };
                let it = &cat.items[i_].item;
                Recommended {
                    item_id: it.id.clone(),
                    title: it.title_for(&locale).to_string(),
                    categories: it.categories.clone(),
                    price: it.price,
                    score,
                    reason: reason(&locale, source, &subject, bought),
                    source,
                    signals: req.explain.then(|| Signals {
                        collaborative: cf[i_],
                        cooccurrence: co[i_],
                        content: content[i_],
                        popularity: pop[i_],
                    }),
                }
            })
            .collect();
        Ok(RecommendResponse {
            customer_id: req.customer_id.clone(),
            known: !events.is_empty(),
            strategy,
            arm,
            locale,
            items,
            model: served.as_ref().map(|s| ModelInfo {
                method: s.model.card.method.clone(),
                source: s.source.clone(),
                version: s.version.clone(),
                created_at: s.model.card.created_at.clone(),
                items: s.model.card.items.len(),
            }),
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }
}

/// The last second of the year 9999.
const MAX_TS: i64 = 253_402_300_799;

/// Seconds since the epoch from a JSON timestamp: Unix seconds or an RFC 3339 string, from
/// 1970 to 9999.
pub fn parse_ts(v: &serde_json::Value) -> Result<i64, String> {
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .filter(|&t| (0..=MAX_TS).contains(&t))
            .ok_or_else(|| format!("{n} is not Unix seconds")),
        serde_json::Value::String(s) => match s.parse::<jiff::Timestamp>() {
            Ok(t) if (0..=MAX_TS).contains(&t.as_second()) => Ok(t.as_second()),
            Ok(_) => Err(format!("{s:?} is before 1970")),
            Err(e) => Err(format!("{s:?} is not an RFC 3339 time ({e})")),
        },
        other => Err(format!(
            "{other} is neither Unix seconds nor an RFC 3339 string"
        )),
    }
}

/// An event as posted.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    #[schema(schema_with = crate::text::check::schema::external_id)]
    pub customer_id: String,
    /// view, click, purchase, consult, dismiss or rating.
    #[serde(rename = "type")]
    #[schema(value_type = crate::recommend::store::EventType)]
    pub kind: String,
    /// The item (in the catalogue); needed by every type but consult.
    #[serde(default)]
    #[schema(schema_with = crate::text::check::schema::external_id)]
    pub item_id: Option<String>,
    /// The question, for consult events.
    #[serde(default)]
    #[schema(schema_with = crate::text::check::schema::input)]
    pub text: Option<String>,
    /// The rating (1–5) for rating events; an amount for others (optional).
    #[serde(default)]
    pub value: Option<f64>,
    /// Unix seconds or RFC 3339 (from 1970 to 9999); default now. At most a day ahead.
    #[serde(default)]
    #[schema(schema_with = timestamp)]
    pub ts: Option<serde_json::Value>,
}

/// Unix seconds or an RFC 3339 time.
fn timestamp() -> utoipa::openapi::schema::OneOfBuilder {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(MAX_TS)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
}

/// Checks one event; problems as `(field, message)`.
pub fn check_event(
    e: &EventIn,
    now: i64,
    max_text_chars: usize,
) -> Result<Event, Vec<(&'static str, String)>> {
    let mut p = Vec::new();
    if !super::store::valid_id(&e.customer_id) {
        p.push((
            "customer_id",
            format!(
                "{:?} is not an id (1–128 characters, no spaces or control characters)",
                e.customer_id
            ),
        ));
    }
    let kind = EventType::parse(&e.kind);
    if kind.is_none() {
        p.push((
            "type",
            format!(
                "{:?} is not an event type (one of view, click, purchase, consult, dismiss, rating)",
                e.kind
            ),
        ));
    }
    let ts = match &e.ts {
        None => now,
        Some(v) => match parse_ts(v) {
            Ok(t) if t > now + 86_400 => {
                p.push(("ts", format!("{t} is more than a day in the future")));
                now
            }
            Ok(t) => t,
            Err(m) => {
                p.push(("ts", m));
                now
            }
        },
    };
    if let Some(kind) = kind {
        let needs_item = kind != EventType::Consult;
        match (&e.item_id, needs_item) {
            (None, true) => p.push((
                "item_id",
                format!("a {} event needs item_id", kind.as_str()),
            )),
            (Some(id), _) if !super::store::valid_id(id) => {
                p.push(("item_id", format!("{id:?} is not an id")))
            }
            _ => {}
        }
        if kind == EventType::Consult {
            match e.text.as_deref().map(str::trim) {
                None | Some("") => p.push(("text", "a consult event needs the question".into())),
                Some(t) if t.chars().count() > max_text_chars => p.push((
                    "text",
                    format!("longer than {max_text_chars} characters (limits.max_input_chars)"),
                )),
                _ => {}
            }
        }
        match (kind, e.value) {
            (EventType::Rating, None) => p.push(("value", "a rating event needs value 1–5".into())),
            (EventType::Rating, Some(v)) if !(1.0..=5.0).contains(&v) => {
                p.push(("value", format!("{v} is not a rating 1–5")))
            }
            (_, Some(v)) if !v.is_finite() => p.push(("value", "is not a number".into())),
            _ => {}
        }
    }
    if !p.is_empty() {
        return Err(p);
    }
    Ok(Event {
        customer_id: e.customer_id.clone(),
        kind: kind.expect("checked"),
        item_id: e.item_id.clone(),
        text: e.text.as_ref().map(|t| t.trim().to_string()),
        value: e.value,
        ts,
        faq_id: None,
        topic: None,
    })
}

/// A recommender directory and its reference (absolute path, `DIR@sha` version).
pub fn load_dir(
    dir: &std::path::Path,
) -> anyhow::Result<(RecommendModel, crate::model::registry::ModelRef)> {
    let m = RecommendModel::load(dir)?;
    let origin = crate::model::registry::ModelRef {
        path: crate::model::registry::absolute(dir),
        version: crate::model::registry::dir_version(dir, super::model::WEIGHTS_FILE)?,
    };
    Ok((m, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_unix_seconds_or_rfc3339() {
        assert_eq!(parse_ts(&serde_json::json!(1767279991)), Ok(1767279991));
        assert_eq!(
            parse_ts(&serde_json::json!("2026-01-01T00:00:00Z")),
            Ok(1767225600)
        );
        assert_eq!(
            parse_ts(&serde_json::json!("2026-01-01T08:00:00+08:00")),
            Ok(1767225600)
        );
        assert!(parse_ts(&serde_json::json!("yesterday")).is_err());
        assert!(parse_ts(&serde_json::json!(-5)).is_err());
        assert!(parse_ts(&serde_json::json!(1.5)).is_err());
    }

    #[test]
    fn events_are_checked_field_by_field() {
        let now = 1_800_000_000;
        let ev = |v: serde_json::Value| serde_json::from_value::<EventIn>(v).unwrap();
        let ok = check_event(
            &ev(serde_json::json!({"customer_id": "c1", "type": "purchase", "item_id": "p1"})),
            now,
            100,
        )
        .unwrap();
        assert_eq!((ok.kind, ok.ts), (EventType::Purchase, now));
        let fields = |v| {
            check_event(&ev(v), now, 100)
                .unwrap_err()
                .into_iter()
                .map(|x| x.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fields(serde_json::json!({"customer_id": "c1", "type": "like", "item_id": "p1"})),
            ["type"]
        );
        assert_eq!(
            fields(serde_json::json!({"customer_id": "c1", "type": "view", "ts": "soon"})),
            ["ts", "item_id"]
        );
        assert_eq!(
            fields(
                serde_json::json!({"customer_id": "c1", "type": "rating", "item_id": "p1", "value": 9})
            ),
            ["value"]
        );
        assert_eq!(
            fields(serde_json::json!({"customer_id": "", "type": "consult", "ts": now + 100_000})),
            ["customer_id", "ts", "text"]
        );
    }

    #[test]
    fn normalising_maps_candidates_to_the_unit_interval() {
        let s = normalise(&[2.0, 4.0, 3.0, 100.0], &[0, 1, 2]);
        assert_eq!(s, [0.0, 1.0, 0.5, 0.0], "item 3 is no candidate");
        assert_eq!(normalise(&[1.0, 1.0], &[0, 1]), [0.0, 0.0]);
    }
}
