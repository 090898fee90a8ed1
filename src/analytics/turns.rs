//! Turn records: every `/v1/match`, `/v1/intent` and `/v1/chat` turn, once, with what kefu
//! decided and how long it took, in the KB's store. Requests hand records to a bounded queue
//! ([`Recorder::record`] never waits: a full queue drops the record and counts it); one writer
//! stores them in batches, one transaction each.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use super::metrics::Metrics;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    session_id TEXT,
    turn_id TEXT,
    customer_id TEXT,
    channel TEXT,
    tier TEXT,
    text TEXT NOT NULL,
    decision TEXT,
    faq_id TEXT,
    category TEXT,
    score REAL,
    intent TEXT,
    confidence REAL,
    route TEXT,
    handoff INTEGER NOT NULL DEFAULT 0,
    flow TEXT,
    flow_status TEXT,
    latency_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_at ON turns(at_ms);
CREATE INDEX IF NOT EXISTS turns_session ON turns(session_id, at_ms);
CREATE INDEX IF NOT EXISTS turns_turn ON turns(turn_id);
CREATE INDEX IF NOT EXISTS turns_customer ON turns(customer_id);
CREATE TABLE IF NOT EXISTS rec_impressions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    strategy TEXT NOT NULL,
    source TEXT NOT NULL,
    channel TEXT,
    arm TEXT
);
CREATE INDEX IF NOT EXISTS rec_impressions_at ON rec_impressions(at_ms);
CREATE INDEX IF NOT EXISTS rec_impressions_customer ON rec_impressions(customer_id);
";

/// One item shown to a customer by `/v1/recommend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impression {
    pub at_ms: i64,
    pub customer_id: String,
    pub item_id: String,
    /// 0 for the first item of the answer.
    pub position: u32,
    pub strategy: String,
    pub source: String,
    pub channel: Option<String>,
    /// `treatment` or `control` while an experiment runs.
    pub arm: Option<String>,
}

/// Which operation the turn went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Match,
    Intent,
    Chat,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Match => "match",
            Kind::Intent => "intent",
            Kind::Chat => "chat",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "match" => Kind::Match,
            "intent" => Kind::Intent,
            _ => Kind::Chat,
        }
    }
}

/// One recorded turn. The customer's text is kept masked (phone, card and ID numbers, e-mail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TurnRecord {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The bot's reply turn (chat), which feedback names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
    /// Kept for erasure on request; never shown in stats.
    #[serde(skip)]
    pub customer_id: Option<String>,
    pub channel: Option<String>,
    pub tier: Option<String>,
    /// What the customer wrote, masked.
    pub text: String,
    /// `answer`, `clarify`, `no_answer`, `handoff`, `ask_slot`, `confirm`, `flow_result`,
    /// `with_agent`; none for `/v1/intent`.
    pub decision: Option<String>,
    /// The first match: the entry answered with or offered first.
    pub faq_id: Option<String>,
    pub category: Option<String>,
    pub score: Option<f32>,
    pub intent: Option<String>,
    pub confidence: Option<f32>,
    /// Where routing sent the conversation (`bot`, `agent`, `vip_agent`, `complaints`).
    pub route: Option<String>,
    /// The turn handed the conversation to a person.
    pub handoff: bool,
    pub flow: Option<String>,
    /// The flow's status after the turn (`asking`, `confirming`, `done`, `rejected`,
    /// `cancelled`, `failed`).
    pub flow_status: Option<String>,
    pub latency_ms: f64,
}

impl TurnRecord {
    /// A record of `kind` at the service's time now, `text` masked.
    pub fn new(kind: Kind, text: &str, latency_ms: f64) -> Self {
        Self {
            at_ms: crate::clock::now_ms(),
            kind,
            session_id: None,
            turn_id: None,
            customer_id: None,
            channel: None,
            tier: None,
            text: crate::privacy::mask(text).into_owned(),
            decision: None,
            faq_id: None,
            category: None,
            score: None,
            intent: None,
            confidence: None,
            route: None,
            handoff: false,
            flow: None,
            flow_status: None,
            latency_ms,
        }
    }

    fn from_row(r: &SqliteRow) -> Self {
        Self {
            at_ms: r.get("at_ms"),
            kind: Kind::parse(r.get::<&str, _>("kind")),
            session_id: r.get("session_id"),
            turn_id: r.get("turn_id"),
            customer_id: r.get("customer_id"),
            channel: r.get("channel"),
            tier: r.get("tier"),
            text: r.get("text"),
            decision: r.get("decision"),
            faq_id: r.get("faq_id"),
            category: r.get("category"),
            score: r.get::<Option<f64>, _>("score").map(|x| x as f32),
            intent: r.get("intent"),
            confidence: r.get::<Option<f64>, _>("confidence").map(|x| x as f32),
            route: r.get("route"),
            handoff: r.get::<i64, _>("handoff") != 0,
            flow: r.get("flow"),
            flow_status: r.get("flow_status"),
            latency_ms: r.get("latency_ms"),
        }
    }
}

/// One conversation in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SessionSummary {
    pub session_id: String,
    /// Recorded turns.
    pub turns: i64,
    /// Milliseconds since the Unix epoch of the first and the last turn.
    pub first_ms: i64,
    pub last_ms: i64,
    /// A turn handed the conversation to a person.
    pub handoff: bool,
    pub channel: Option<String>,
    /// What the customer wrote first (masked).
    pub first_text: String,
}

/// Which records a query reads: `[from_ms, to_ms)`, optionally one channel, category,
/// session or kind.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub from_ms: i64,
    pub to_ms: i64,
    pub channel: Option<String>,
    pub category: Option<String>,
    pub session_id: Option<String>,
    pub kind: Option<Kind>,
}

#[derive(Clone)]
pub struct TurnStore {
    pool: SqlitePool,
}

impl TurnStore {
    pub async fn open(pool: SqlitePool) -> Result<Self, sqlx::Error> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool })
    }

    /// Stores `records` and `shown` in one transaction.
    pub async fn insert(
        &self,
        records: &[TurnRecord],
        shown: &[Impression],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for i in shown {
            sqlx::query(
                "INSERT INTO rec_impressions (at_ms, customer_id, item_id, position, strategy,
                 source, channel, arm) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(i.at_ms)
            .bind(&i.customer_id)
            .bind(&i.item_id)
            .bind(i.position)
            .bind(&i.strategy)
            .bind(&i.source)
            .bind(&i.channel)
            .bind(&i.arm)
            .execute(&mut *tx)
            .await?;
        }
        for r in records {
            sqlx::query(
                "INSERT INTO turns (at_ms, kind, session_id, turn_id, customer_id, channel, tier,
                 text, decision, faq_id, category, score, intent, confidence, route, handoff, flow,
                 flow_status, latency_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(r.at_ms)
            .bind(r.kind.as_str())
            .bind(&r.session_id)
            .bind(&r.turn_id)
            .bind(&r.customer_id)
            .bind(&r.channel)
            .bind(&r.tier)
            .bind(&r.text)
            .bind(&r.decision)
            .bind(&r.faq_id)
            .bind(&r.category)
            .bind(r.score.map(f64::from))
            .bind(&r.intent)
            .bind(r.confidence.map(f64::from))
            .bind(&r.route)
            .bind(i64::from(r.handoff))
            .bind(&r.flow)
            .bind(&r.flow_status)
            .bind(r.latency_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// The selected records, oldest first.
    pub async fn select(&self, s: &Selection) -> Result<Vec<TurnRecord>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM turns WHERE at_ms >= ?1 AND at_ms < ?2
             AND (?3 IS NULL OR channel = ?3) AND (?4 IS NULL OR category = ?4)
             AND (?5 IS NULL OR session_id = ?5) AND (?6 IS NULL OR kind = ?6)
             ORDER BY at_ms, id",
        )
        .bind(s.from_ms)
        .bind(s.to_ms)
        .bind(&s.channel)
        .bind(&s.category)
        .bind(&s.session_id)
        .bind(s.kind.map(Kind::as_str))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(TurnRecord::from_row).collect())
    }

    /// The conversations with turns in `[from_ms, to_ms)` (and, with `q`, a turn whose masked
    /// text contains it), newest first, up to `limit`: for browsing transcripts.
    pub async fn sessions(
        &self,
        from_ms: i64,
        to_ms: i64,
        q: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SessionSummary>, sqlx::Error> {
        let pattern = crate::text::like_contains(q);
        let rows = sqlx::query(
            "SELECT session_id, COUNT(*) AS n, MIN(at_ms) AS first, MAX(at_ms) AS last,
                    MAX(handoff) AS handed_off, MAX(channel) AS channel,
                    (SELECT t2.text FROM turns t2 WHERE t2.session_id = t.session_id
                     ORDER BY t2.at_ms, t2.id LIMIT 1) AS first_text
             FROM turns t
             WHERE session_id IS NOT NULL AND at_ms >= ?1 AND at_ms < ?2
             AND (?3 IS NULL OR session_id IN
                  (SELECT session_id FROM turns WHERE text LIKE ?3 AND session_id IS NOT NULL))
             GROUP BY session_id ORDER BY last DESC LIMIT ?4",
        )
        .bind(from_ms)
        .bind(to_ms)
        .bind(pattern)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SessionSummary {
                session_id: r.get("session_id"),
                turns: r.get("n"),
                first_ms: r.get("first"),
                last_ms: r.get("last"),
                handoff: r.get::<i64, _>("handed_off") != 0,
                channel: r.get("channel"),
                first_text: r.get("first_text"),
            })
            .collect())
    }

    /// Feedback on the replies recorded in `[from_ms, to_ms)`, the latest per reply.
    pub async fn feedback_on(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<super::stats::Rated>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT f.turn_id, f.helpful, f.rating FROM feedback f
             WHERE f.id IN (SELECT MAX(f2.id) FROM feedback f2 JOIN turns t ON t.turn_id = f2.turn_id
                            WHERE t.at_ms >= ?1 AND t.at_ms < ?2 AND f2.source IS NULL
                            GROUP BY f2.turn_id)",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| super::stats::Rated {
                turn_id: r.get("turn_id"),
                helpful: r.get("helpful"),
                rating: r.get::<Option<i64>, _>("rating").map(|x| x as u8),
            })
            .collect())
    }

    /// Turns in `[from_ms, to_ms)` by `dimension` (category or intent), those without one
    /// left out.
    pub async fn counts(
        &self,
        from_ms: i64,
        to_ms: i64,
        dimension: super::alerts::Dimension,
    ) -> Result<std::collections::HashMap<String, u64>, sqlx::Error> {
        let sql = match dimension {
            super::alerts::Dimension::Category => {
                "SELECT category AS k, COUNT(*) AS n FROM turns
                 WHERE at_ms >= ? AND at_ms < ? AND category IS NOT NULL GROUP BY category"
            }
            super::alerts::Dimension::Intent => {
                "SELECT intent AS k, COUNT(*) AS n FROM turns
                 WHERE at_ms >= ? AND at_ms < ? AND intent IS NOT NULL GROUP BY intent"
            }
        };
        let rows = sqlx::query(sql)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("k"), r.get::<i64, _>("n") as u64))
            .collect())
    }

    /// Impressions in `[from_ms, to_ms)`, oldest first.
    pub async fn impressions(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Impression>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM rec_impressions WHERE at_ms >= ? AND at_ms < ? ORDER BY at_ms, id",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Impression {
                at_ms: r.get("at_ms"),
                customer_id: r.get("customer_id"),
                item_id: r.get("item_id"),
                position: r.get::<i64, _>("position") as u32,
                strategy: r.get("strategy"),
                source: r.get("source"),
                channel: r.get("channel"),
                arm: r.get("arm"),
            })
            .collect())
    }

    /// The record of the bot's reply `turn_id`.
    pub async fn by_turn(&self, turn_id: &str) -> Result<Option<TurnRecord>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM turns WHERE turn_id = ? ORDER BY id LIMIT 1")
            .bind(turn_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(TurnRecord::from_row))
    }

    /// The conversations recorded under a customer's id.
    pub async fn sessions_of(&self, customer_id: &str) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT DISTINCT session_id FROM turns WHERE customer_id = ? AND session_id IS NOT NULL",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await
    }

    /// Removes a customer's records: under their id, or in one of `sessions`.
    pub async fn erase(&self, customer_id: &str, sessions: &[String]) -> Result<u64, sqlx::Error> {
        Ok(
            super::erase_rows(&self.pool, "turns", customer_id, sessions).await?
                + super::erase_rows(&self.pool, "rec_impressions", customer_id, &[]).await?,
        )
    }

    /// Removes records older than `cutoff` (Unix seconds); how many.
    pub async fn purge_before(&self, cutoff: i64) -> Result<u64, sqlx::Error> {
        let at = cutoff.saturating_mul(1000);
        Ok(super::purge_rows(&self.pool, "turns", "at_ms", at).await?
            + super::purge_rows(&self.pool, "rec_impressions", "at_ms", at).await?)
    }
}

enum Msg {
    Turn(Box<TurnRecord>),
    Impressions(Vec<Impression>),
    Flush(oneshot::Sender<()>),
}

/// The requests' side of the queue.
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Msg>>>,
    metrics: Arc<Metrics>,
    enabled: bool,
}

/// Most records written in one transaction.
const BATCH: usize = 512;

impl Recorder {
    /// A queue of `capacity` records; nothing is written until [`Recorder::run`] runs.
    pub fn new(capacity: usize, enabled: bool, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            metrics,
            enabled,
        }
    }

    /// Queues `r` without waiting; counted as dropped when the queue is full.
    pub fn record(&self, r: TurnRecord) {
        if !self.enabled {
            return;
        }
        if self.tx.try_send(Msg::Turn(Box::new(r))).is_err() {
            self.metrics.analytics_dropped.inc();
        }
    }

    /// Queues the items of one recommendation without waiting (dropped and counted when the
    /// queue is full).
    pub fn record_impressions(&self, items: Vec<Impression>) {
        if !self.enabled || items.is_empty() {
            return;
        }
        if self.tx.try_send(Msg::Impressions(items)).is_err() {
            self.metrics.analytics_dropped.inc();
        }
    }

    /// Waits (up to 10 s) until every record queued before the call is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        let wait = async {
            if self.tx.send(Msg::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
    }

    /// The writer: stores queued records until `stop`, then stores what is left. A batch is
    /// written when it has [`BATCH`] records, when a flush asks, or `linger` after its first
    /// record: at most one commit per `linger` in a steady stream, so the store's commits
    /// (fsync) stay off the requests' way. Runs once; a second call returns at once.
    pub async fn run(
        &self,
        store: TurnStore,
        linger: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let Some(mut rx) = self.rx.lock().expect("recorder").take() else {
            return;
        };
        let mut batch = Vec::with_capacity(BATCH);
        let mut shown: Vec<Impression> = Vec::new();
        let mut flushes = Vec::new();
        'serve: loop {
            let first = tokio::select! {
                m = rx.recv() => m,
                () = stop.cancelled() => None,
            };
            let Some(first) = first else { break };
            let deadline = tokio::time::Instant::now() + linger;
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Msg::Turn(r) => batch.push(*r),
                    Msg::Impressions(i) => shown.extend(i),
                    Msg::Flush(done) => flushes.push(done),
                }
                if batch.len() + shown.len() >= BATCH || !flushes.is_empty() {
                    break;
                }
                next = tokio::select! {
                    m = tokio::time::timeout_at(deadline, rx.recv()) => m.ok().flatten(),
                    () = stop.cancelled() => {
                        self.write(&store, &mut batch, &mut shown).await;
                        break 'serve;
                    }
                };
            }
            self.write(&store, &mut batch, &mut shown).await;
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
        // Shutting down: what was queued is still written.
        while let Ok(m) = rx.try_recv() {
            match m {
                Msg::Turn(r) => batch.push(*r),
                Msg::Impressions(i) => shown.extend(i),
                Msg::Flush(_) => {}
            }
        }
        self.write(&store, &mut batch, &mut shown).await;
    }

    async fn write(
        &self,
        store: &TurnStore,
        batch: &mut Vec<TurnRecord>,
        shown: &mut Vec<Impression>,
    ) {
        if batch.is_empty() && shown.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        match store.insert(batch, shown).await {
            Ok(()) => self.metrics.analytics_recorded.inc_by(n),
            Err(e) => {
                self.metrics.analytics_failed.inc_by(n);
                tracing::warn!(
                    records = n,
                    impressions = shown.len(),
                    "analytics: storing turn records failed: {e}"
                );
            }
        }
        batch.clear();
        shown.clear();
    }
}
