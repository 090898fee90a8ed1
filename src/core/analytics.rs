//! Operations on what happened: recording each turn, the stats read from the records,
//! knowledge gaps (clusters of unanswered questions, turned into draft entries), hand-off
//! tickets with their SLA clocks, and the service's clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::Digest;
use utoipa::{IntoParams, ToSchema};

use super::Kefu;
use super::matching::{MatchOptions, MatchRequest, MatchResponse};
use super::understand::{IntentRequest, IntentResponse};
use crate::analytics::json_name;
use crate::analytics::sla::{self, Change, Desk, Ticket, TicketQuery};
use crate::analytics::stats::{self, Bucket, Gap, Rated, TopQuestions, WeakSpots};
pub use crate::analytics::stats::{GapCluster, Nearest, Stats, Unanswered, Window};
use crate::analytics::turns::{Kind, Selection, TurnRecord, TurnStore};
use crate::dialog::chat::{ChatResponse, FlowView};
use crate::error::Error;
use crate::kb::FaqEntry;
use crate::matcher::Decision;

/// The analytics tables, opened with the KB's store.
pub struct Operations {
    pub turns: TurnStore,
    pub desk: Desk,
    pub alerts: crate::analytics::alerts::AlertStore,
}

impl Operations {
    pub async fn open(pool: sqlx::SqlitePool) -> Result<Self, sqlx::Error> {
        Ok(Self {
            turns: TurnStore::open(pool.clone()).await?,
            desk: Desk::open(pool.clone()).await?,
            alerts: crate::analytics::alerts::AlertStore::open(pool).await?,
        })
    }
}

fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Answer => "answer",
        Decision::Clarify => "clarify",
        Decision::NoAnswer => "no_answer",
    }
}

impl Kefu {
    /// Records a `/v1/match` turn.
    pub(super) fn record_match(&self, req: &MatchRequest, r: &MatchResponse) {
        let mut t = TurnRecord::new(Kind::Match, &req.query, r.took_ms);
        t.channel = req.channel.clone();
        t.customer_id = req.customer_id.clone();
        t.decision = Some(decision_name(r.decision).into());
        if let Some(m) = r.matches.first() {
            t.faq_id = Some(m.faq_id.clone());
            t.category = m.category.clone();
            t.score = Some(m.score);
        }
        self.recorder.record(t);
    }

    /// `/v1/intent`: the request checked, understood ([`Kefu::understand`]) and recorded.
    pub async fn intent_request(&self, req: IntentRequest) -> Result<IntentResponse, Error> {
        let text = super::checked_text("text", &req.text, &self.config.limits)?;
        let tier = req.customer.as_ref().and_then(|c| c.tier.as_deref());
        self.checked_tier("customer.tier", tier)?;
        let customer_id = req.customer.as_ref().and_then(|c| c.id.as_deref());
        if let Some(id) = customer_id {
            super::checked_customer_id("customer.id", id)?;
        }
        let r = self.understand(text, req.model.as_deref(), tier).await?;
        let mut t = TurnRecord::new(Kind::Intent, text, r.took_ms);
        t.tier = tier.map(str::to_string);
        t.customer_id = customer_id.map(str::to_string);
        t.intent = Some(r.intent.clone());
        t.confidence = Some(r.confidence);
        t.route = Some(json_name(&r.route.target));
        self.recorder.record(t);
        Ok(r)
    }

    /// Records a `/v1/chat` turn.
    pub(super) fn record_chat(
        &self,
        text: &str,
        channel: Option<&str>,
        customer: Option<&super::understand::Customer>,
        r: &ChatResponse,
    ) {
        let mut t = TurnRecord::new(Kind::Chat, text, r.took_ms);
        t.session_id = Some(r.session_id.clone());
        t.turn_id = Some(r.turn_id.clone());
        t.channel = channel.map(str::to_string);
        t.customer_id = customer.and_then(|c| c.id.clone());
        t.tier = customer.and_then(|c| c.tier.clone());
        t.decision = Some(r.action.as_str().into());
        if let Some(m) = r.matches.first() {
            t.faq_id = Some(m.faq_id.clone());
            t.category = m.category.clone();
            t.score = Some(m.score);
        }
        if let Some(i) = &r.intent {
            t.intent = Some(i.name.clone());
            t.confidence = Some(i.confidence);
        }
        t.route = r.route.as_ref().map(|x| json_name(&x.target));
        t.handoff = r.action == crate::dialog::chat::Action::Handoff;
        if let Some(FlowView { name, status, .. }) = &r.flow {
            t.flow = Some(name.clone());
            t.flow_status = Some((*status).to_string());
        }
        self.recorder.record(t);
    }
}

/// A time window and filters, as every stats route takes them.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Start (inclusive): RFC 3339 (`2026-12-07T08:00:00Z`), a UTC day (`2026-12-07`) or
    /// Unix seconds. Default: 24 hours before `to`.
    pub from: Option<String>,
    /// End (exclusive), in the same forms. Default: now.
    pub to: Option<String>,
    /// `minute`, `hour` (default) or `day`, for the series.
    pub bucket: Option<Bucket>,
    /// Only turns of this channel (web, app, wechat, sms).
    pub channel: Option<String>,
    /// Only turns whose first match is of this category.
    pub category: Option<String>,
    /// Most rows in each list (1–1000, default 20).
    pub limit: Option<usize>,
    /// Weak spots: entries answered fewer times are left out (default 3). Knowledge gaps:
    /// clusters with fewer questions are left out (default 2).
    pub min_count: Option<u64>,
}

/// Most buckets one series may have.
const MAX_POINTS: i64 = 10_000;

pub(super) fn parse_time(field: &str, s: &str) -> Result<i64, Error> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs.saturating_mul(1000));
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    if s.parse::<jiff::civil::Date>().is_ok()
        && let Ok(t) = format!("{s}T00:00:00Z").parse::<jiff::Timestamp>()
    {
        return Ok(t.as_millisecond());
    }
    Err(Error::Invalid(format!(
        "{field} {s:?} is not a time: give RFC 3339 (2026-12-07T08:00:00Z), a day (2026-12-07) \
         or Unix seconds"
    )))
}

impl StatsQuery {
    pub fn window(&self) -> Result<Window, Error> {
        let to_ms = match &self.to {
            Some(t) => parse_time("to", t)?,
            None => crate::clock::now_ms(),
        };
        let from_ms = match &self.from {
            Some(f) => parse_time("from", f)?,
            None => to_ms - 86_400_000,
        };
        if from_ms >= to_ms {
            return Err(Error::Invalid("from must be before to".into()));
        }
        Ok(Window { from_ms, to_ms })
    }

    fn selection(&self, w: Window) -> Result<Selection, Error> {
        super::checked_channel(self.channel.as_deref())?;
        Ok(Selection {
            from_ms: w.from_ms,
            to_ms: w.to_ms,
            channel: self.channel.clone(),
            category: self.category.clone(),
            ..Default::default()
        })
    }

    fn limit(&self) -> Result<usize, Error> {
        super::checked_limit(self.limit, 20)
    }
}

/// Turn records and the feedback on them.
struct Read {
    turns: Vec<TurnRecord>,
    feedback: Vec<Rated>,
}

impl Read {
    fn rated(&self) -> HashMap<&str, &Rated> {
        self.feedback
            .iter()
            .map(|r| (r.turn_id.as_str(), r))
            .collect()
    }
}

impl Kefu {
    /// The selected records (every queued one stored first) with their feedback.
    async fn read(&self, s: &Selection) -> Result<Read, Error> {
        self.recorder.flush().await;
        let turns = self.turns.select(s).await.map_err(Error::storage)?;
        let feedback = self
            .turns
            .feedback_on(s.from_ms, s.to_ms)
            .await
            .map_err(Error::storage)?;
        Ok(Read { turns, feedback })
    }

    /// `GET /v1/stats`: the window's numbers in total and per bucket.
    pub async fn stats(&self, q: &StatsQuery) -> Result<Stats, Error> {
        let w = q.window()?;
        let bucket = q.bucket.unwrap_or(Bucket::Hour);
        let points = (w.to_ms - w.from_ms + bucket.millis() - 1) / bucket.millis();
        if points > MAX_POINTS {
            return Err(Error::Invalid(format!(
                "{points} buckets of a {bucket:?} are too many (at most {MAX_POINTS}): choose a \
                 larger bucket or a shorter window"
            )));
        }
        let read = self.read(&q.selection(w)?).await?;
        let rated = read.rated();
        let all: Vec<&TurnRecord> = read.turns.iter().collect();
        let tickets = self
            .desk
            .list(&TicketQuery {
                from_ms: Some(w.from_ms),
                to_ms: Some(w.to_ms),
                limit: usize::MAX,
                ..Default::default()
            })
            .await
            .map_err(Error::storage)?;
        Ok(Stats {
            window: w,
            bucket,
            totals: stats::numbers(&all, &rated),
            sla: sla::attainment(&tickets),
            series: stats::series(&read.turns, &rated, w.from_ms, w.to_ms, bucket),
            dropped: self.metrics.analytics_dropped.get(),
        })
    }

    /// `GET /v1/stats/top-questions`.
    pub async fn top_questions(&self, q: &StatsQuery) -> Result<TopQuestions, Error> {
        let limit = q.limit()?;
        let read = self.read(&q.selection(q.window()?)?).await?;
        let mut t = stats::top_questions(&read.turns, limit);
        for c in &mut t.entries {
            c.label = self.kb.get(&c.key).await?.map(|e| e.entry.question);
        }
        Ok(t)
    }

    /// `GET /v1/stats/weak-spots`.
    pub async fn weak_spots(&self, q: &StatsQuery) -> Result<WeakSpots, Error> {
        let limit = q.limit()?;
        let read = self.read(&q.selection(q.window()?)?).await?;
        let mut w = stats::weak_spots(
            &read.turns,
            &read.rated(),
            (self.config.analytics.reask_window_secs * 1000) as i64,
            q.min_count.unwrap_or(3),
            limit,
        );
        for s in &mut w.entries {
            s.label = self.kb.get(&s.key).await?.map(|e| e.entry.question);
        }
        Ok(w)
    }
}

impl Kefu {
    /// `GET /v1/stats/unanswered`: unanswered, abandoned and badly rated questions clustered
    /// by the serving encoder's vectors (average linkage at `analytics.cluster_similarity`),
    /// largest first.
    pub async fn unanswered(&self, q: &StatsQuery) -> Result<Unanswered, Error> {
        let limit = q.limit()?;
        let w = q.window()?;
        let mut sel = q.selection(w)?;
        sel.category = None;
        let read = self.read(&sel).await?;
        let rated = read.rated();
        let gaps = stats::unanswered(&read.turns, &rated);
        let questions = gaps.len() as u64;
        let max = self.config.analytics.max_unanswered;
        let gaps = &gaps[gaps.len().saturating_sub(max)..];
        let mut clusters = Vec::new();
        if !gaps.is_empty() {
            let (embedder, _) = self.encoder_and_index()?;
            let texts: Vec<String> = gaps.iter().map(|(t, _)| t.text.clone()).collect();
            let vectors = embedder.embed(&texts).await?;
            let dim = embedder.dim();
            let mut m = ndarray::Array2::<f32>::zeros((texts.len(), dim));
            for (i, v) in vectors.iter().enumerate() {
                m.row_mut(i)
                    .assign(&ndarray::ArrayView1::from(&v.vector[..]));
            }
            let min = q.min_count.unwrap_or(2).max(1) as usize;
            let similarity = self.config.analytics.cluster_similarity;
            // Quadratic in the questions: off the async runtime's threads.
            let mut found = tokio::task::spawn_blocking(move || {
                crate::analytics::cluster::agglomerate(m.view(), similarity, min)
            })
            .await
            .map_err(|e| Error::Storage(format!("clustering failed: {e}")))?;
            found.sort_by_key(|c| std::cmp::Reverse(c.members.len()));
            for c in found.into_iter().take(limit) {
                clusters.push(self.gap_cluster(gaps, &c).await?);
            }
            clusters.sort_by(|a, b| b.count.cmp(&a.count).then(a.first_ms.cmp(&b.first_ms)));
        }
        Ok(Unanswered {
            window: w,
            questions,
            clusters,
        })
    }

    async fn gap_cluster(
        &self,
        gaps: &[(&TurnRecord, Gap)],
        c: &crate::analytics::cluster::Cluster,
    ) -> Result<GapCluster, Error> {
        let representative = gaps[c.representative].0.text.clone();
        let mut wordings: Vec<(String, u64, usize)> = Vec::new();
        let mut reasons = BTreeMap::new();
        let (mut first_ms, mut last_ms) = (i64::MAX, i64::MIN);
        for &i in &c.members {
            let (t, g) = gaps[i];
            first_ms = first_ms.min(t.at_ms);
            last_ms = last_ms.max(t.at_ms);
            *reasons.entry(json_name(&g)).or_insert(0) += 1;
            let key = stats::normal_form(&t.text);
            match wordings
                .iter_mut()
                .find(|w| stats::normal_form(&w.0) == key)
            {
                Some(w) => w.1 += 1,
                None => wordings.push((t.text.clone(), 1, i)),
            }
        }
        wordings.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        let nearest = self
            .search(
                &representative,
                &MatchOptions {
                    top_k: 1,
                    ..Default::default()
                },
            )
            .await?
            .matches
            .into_iter()
            .next()
            .map(|m| Nearest {
                faq_id: m.faq_id,
                question: m.question,
                score: m.score,
            });
        let digest = sha2::Sha256::digest(stats::normal_form(&representative).as_bytes());
        Ok(GapCluster {
            id: hex::encode(&digest[..6]),
            count: c.members.len() as u64,
            representative,
            examples: wordings.into_iter().take(10).map(|w| w.0).collect(),
            reasons,
            cohesion: c.cohesion,
            first_ms,
            last_ms,
            nearest,
        })
    }

    /// `POST /v1/stats/unanswered/{id}/draft`: the cluster (as listed for the same query) as
    /// a new, disabled FAQ entry `draft-<id>` whose question is the representative and whose
    /// similar questions are the other wordings; an editor writes the answer and enables it.
    pub async fn draft_from_gap(
        &self,
        id: &str,
        q: &StatsQuery,
    ) -> Result<crate::kb::StoredEntry, Error> {
        let mut q = q.clone();
        q.limit = Some(1000);
        let found = self.unanswered(&q).await?;
        let c = found
            .clusters
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "knowledge gap {id:?} is not among the clusters of this window (they change \
                     as turns arrive): list GET /v1/stats/unanswered again"
                ))
            })?;
        let entry_id = format!("draft-{id}");
        if self.kb.get(&entry_id).await?.is_some() {
            return Err(Error::Conflict(format!(
                "FAQ {entry_id} exists already: edit it (PUT /v1/faqs/{entry_id})"
            )));
        }
        let max = crate::kb::entry::MAX_TEXT_CHARS;
        let clip = |s: &str| s.chars().take(max).collect::<String>();
        let question = clip(&c.representative);
        let entry = FaqEntry {
            id: entry_id.clone(),
            similar: c
                .examples
                .iter()
                .map(|s| clip(s))
                .filter(|s| *s != question)
                .collect(),
            question,
            answer: DRAFT_ANSWER.into(),
            answers: Default::default(),
            category: None,
            tags: vec!["draft".into(), "knowledge-gap".into()],
            locale: None,
            enabled: false,
            valid_from: None,
            valid_to: None,
        };
        if let Some(e) = entry.validate().first() {
            return Err(Error::Invalid(format!("{}: {}", e.field, e.message)));
        }
        self.kb.upsert_all(std::slice::from_ref(&entry)).await?;
        self.reindex.notify_one();
        self.kb
            .get(&entry_id)
            .await?
            .ok_or_else(|| Error::Storage("the draft entry vanished".into()))
    }
}

pub use crate::kb::entry::DRAFT_ANSWER;

/// `GET /v1/handoffs` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HandoffQuery {
    /// `waiting`, `accepted` or `resolved`.
    pub state: Option<sla::State>,
    /// Only tickets past a deadline (`true`) or within them (`false`).
    pub breached: Option<bool>,
    /// Created from (same forms as the stats' `from`).
    pub from: Option<String>,
    pub to: Option<String>,
    /// 1–1000, default 100.
    pub limit: Option<usize>,
}

/// `POST /v1/handoffs/{id}/accept` and `/resolve`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketAction {
    /// Who (an agent's name or id), at most 128 characters.
    #[serde(default)]
    pub agent: Option<String>,
    /// How it was resolved (resolve only), at most `limits.max_input_chars` characters.
    #[serde(default)]
    pub resolution: Option<String>,
    /// Resolve only: give the conversation back to the bot (default true).
    #[serde(default)]
    pub release: Option<bool>,
}

impl Kefu {
    /// Opens the SLA ticket of a hand-off (called when one is made).
    pub async fn open_ticket(&self, p: &crate::dialog::handoff::HandoffPackage) {
        let complaint = p.route.target == crate::intent::routing::Target::Complaints
            || p.intent
                .as_deref()
                .is_some_and(|i| self.config.routing.is_complaint(i));
        if let Err(e) = self
            .desk
            .open_ticket(p, complaint, &self.config.sla, true)
            .await
        {
            tracing::error!(id = p.id, "opening the hand-off's SLA ticket failed: {e}");
        }
    }

    pub async fn handoffs(&self, q: &HandoffQuery) -> Result<Vec<Ticket>, Error> {
        let limit = super::checked_limit(q.limit, 100)?;
        let from_ms = q
            .from
            .as_deref()
            .map(|f| parse_time("from", f))
            .transpose()?;
        let to_ms = q.to.as_deref().map(|t| parse_time("to", t)).transpose()?;
        self.desk
            .list(&TicketQuery {
                state: q.state,
                breached: q.breached,
                from_ms,
                to_ms,
                limit,
            })
            .await
            .map_err(Error::storage)
    }

    pub async fn handoff(&self, id: &str) -> Result<Ticket, Error> {
        self.desk
            .get(id)
            .await
            .map_err(Error::storage)?
            .ok_or_else(|| no_ticket(id))
    }

    /// An agent picks the hand-off up; 409 when it was picked up or resolved already.
    pub async fn accept_handoff(&self, id: &str, a: &TicketAction) -> Result<Ticket, Error> {
        let agent = super::checked_name("agent", a.agent.as_deref())?;
        match self.desk.accept(id, agent).await.map_err(Error::storage)? {
            Change::Done(t) => Ok(t),
            Change::Missing => Err(no_ticket(id)),
            Change::Conflict(t) => Err(Error::Conflict(format!(
                "hand-off {id:?} is {} already",
                json_name(&t.state)
            ))),
        }
    }

    /// The hand-off is done; the conversation goes back to the bot unless `release` is false
    /// (and the session still lives). 409 when it was resolved already.
    pub async fn resolve_handoff(
        self: &Arc<Self>,
        id: &str,
        a: &TicketAction,
    ) -> Result<Ticket, Error> {
        let agent = super::checked_name("agent", a.agent.as_deref())?;
        if let Some(r) = &a.resolution {
            super::checked_text("resolution", r, &self.config.limits)?;
        }
        let resolution = a.resolution.as_deref().map(|r| crate::privacy::mask(r));
        let t = match self
            .desk
            .resolve(id, agent, resolution.as_deref())
            .await
            .map_err(Error::storage)?
        {
            Change::Done(t) => t,
            Change::Missing => return Err(no_ticket(id)),
            Change::Conflict(_) => {
                return Err(Error::Conflict(format!(
                    "hand-off {id:?} is resolved already"
                )));
            }
        };
        if a.release.unwrap_or(true) {
            match self.release(&t.session_id).await {
                Ok(_) | Err(Error::NotFound(_) | Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(t)
    }
}

fn no_ticket(id: &str) -> Error {
    Error::NotFound(format!("no hand-off {id:?}"))
}

/// `POST /v1/admin/clock`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockRequest {
    /// Move the clock forward (or back, when negative) by this many seconds.
    #[serde(default)]
    pub advance_secs: Option<i64>,
    /// Set the clock to this time (RFC 3339, a UTC day or Unix seconds).
    #[serde(default)]
    pub set: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClockState {
    /// Milliseconds since the Unix epoch, by the service's clock.
    pub now_ms: i64,
    /// RFC 3339.
    pub now: String,
    pub manual: bool,
}

impl Kefu {
    pub fn clock(&self) -> ClockState {
        let now_ms = crate::clock::now_ms();
        ClockState {
            now_ms,
            now: jiff::Timestamp::from_millisecond(now_ms)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            manual: self.config.server.manual_clock,
        }
    }

    /// Moves the service's clock; 409 unless `server.manual_clock` is on.
    pub fn move_clock(&self, r: &ClockRequest) -> Result<ClockState, Error> {
        if !self.config.server.manual_clock {
            return Err(Error::Conflict(
                "the clock is the system's: server.manual_clock (tests and demos on a loopback \
                 address) lets it move"
                    .into(),
            ));
        }
        match (r.advance_secs, &r.set) {
            (Some(s), None) => {
                crate::clock::advance(s.saturating_mul(1000));
            }
            (None, Some(t)) => {
                crate::clock::set(parse_time("set", t)?);
            }
            _ => {
                return Err(Error::Invalid(
                    "give exactly one of advance_secs and set".into(),
                ));
            }
        }
        Ok(self.clock())
    }

    /// Conversations in the window, newest first; with `q`, those with a turn containing it.
    pub async fn conversations(
        &self,
        q: &ConversationsQuery,
    ) -> Result<Vec<crate::analytics::turns::SessionSummary>, Error> {
        let w = StatsQuery {
            from: q.from.clone(),
            to: q.to.clone(),
            ..Default::default()
        }
        .window()?;
        let limit = super::checked_limit(q.limit, 50)?;
        if let Some(text) = &q.q {
            super::checked_text("q", text, &self.config.limits)?;
        }
        self.recorder.flush().await;
        self.turns
            .sessions(w.from_ms, w.to_ms, q.q.as_deref(), limit as i64)
            .await
            .map_err(Error::storage)
    }

    /// The recorded turns of one conversation, oldest first (for reading a transcript with
    /// what kefu decided at each turn).
    pub async fn conversation_turns(&self, session_id: &str) -> Result<Vec<TurnRecord>, Error> {
        self.recorder.flush().await;
        self.turns
            .select(&Selection {
                from_ms: i64::MIN,
                to_ms: i64::MAX,
                session_id: Some(session_id.to_string()),
                ..Default::default()
            })
            .await
            .map_err(Error::storage)
    }
}

/// `GET /v1/conversations`.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConversationsQuery {
    /// Start (inclusive), as in `/v1/stats`. Default: 24 hours before `to`.
    pub from: Option<String>,
    /// End (exclusive). Default: now.
    pub to: Option<String>,
    /// Only conversations with a turn whose (masked) text contains this.
    pub q: Option<String>,
    /// Most conversations (1–1000, default 50).
    pub limit: Option<usize>,
}

/// `POST /v1/annotations`: a person's label of one recorded turn.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnotationRequest {
    /// The bot's reply turn (`turn_id` of `/v1/chat`, as recorded).
    pub turn_id: String,
    /// The entry that should have answered.
    #[serde(default)]
    #[schema(schema_with = crate::text::check::schema::kb_id)]
    pub faq_id: Option<String>,
    /// The intent the turn really had (a label of the default intent model).
    #[serde(default)]
    pub intent: Option<String>,
    /// A person should have taken over (or, `false`, should not have).
    #[serde(default)]
    pub should_handoff: Option<bool>,
    /// Who annotates, 1–128 characters.
    #[serde(default)]
    pub annotator: Option<String>,
    /// At most `limits.max_input_chars` characters.
    #[serde(default)]
    pub comment: Option<String>,
}

impl Kefu {
    /// Stores an annotation of a recorded turn as labelled feedback (`source: annotation`),
    /// with the turn's question and the entry answered; it does not count in satisfaction.
    pub async fn annotate(
        &self,
        req: AnnotationRequest,
    ) -> Result<crate::analytics::feedback::Feedback, Error> {
        if req.faq_id.is_none() && req.intent.is_none() && req.should_handoff.is_none() {
            return Err(Error::Invalid(
                "give at least one of faq_id, intent and should_handoff".into(),
            ));
        }
        let annotator =
            super::checked_name("annotator", req.annotator.as_deref())?.map(str::to_string);
        if let Some(c) = &req.comment {
            super::checked_text("comment", c, &self.config.limits)?;
        }
        self.recorder.flush().await;
        let turn = self
            .turns
            .by_turn(&req.turn_id)
            .await
            .map_err(Error::storage)?
            .ok_or_else(|| Error::NotFound(format!("no recorded turn {:?}", req.turn_id)))?;
        if let Some(f) = &req.faq_id
            && self.kb.get(f).await?.is_none()
        {
            return Err(Error::NotFound(format!(
                "faq_id {f:?} is not in the knowledge base"
            )));
        }
        if let Some(i) = &req.intent
            && let Some(models) = self.intents.load_full()
            && let Some(m) = models.get(&self.config.intent.default_model)
            && !m.card.labels.contains(i)
        {
            return Err(Error::Invalid(format!(
                "intent {i:?} is not a label of the intent model {:?}",
                self.config.intent.default_model
            )));
        }
        let f = crate::analytics::feedback::Feedback {
            id: 0,
            turn_id: req.turn_id,
            session_id: turn.session_id.clone().unwrap_or_default(),
            helpful: None,
            rating: None,
            comment: req.comment.map(|c| crate::privacy::mask(&c).into_owned()),
            faq_id: req.faq_id,
            question: Some(turn.text.clone()),
            answered_faq_id: turn.faq_id.clone(),
            created_at: crate::clock::now(),
            intent: req.intent,
            should_handoff: req.should_handoff,
            annotator,
            source: Some("annotation".into()),
        };
        self.feedback
            .add(f, turn.customer_id.as_deref())
            .await
            .map_err(Error::storage)
    }
}
