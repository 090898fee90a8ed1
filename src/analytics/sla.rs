//! Hand-offs and complaints as work for people, each with its clocks: from creation to
//! pick-up (`POST /v1/handoffs/{id}/accept`) and to resolution (`…/resolve`), against the
//! deadlines of `[sla]`. Times are the service's clock's ([`crate::clock`]).

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use utoipa::ToSchema;

use crate::dialog::handoff::HandoffPackage;

/// `[sla]`: deadlines for people, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlaConfig {
    /// A hand-off is picked up by an agent within this (30 s).
    pub pickup_secs: u64,
    /// An urgent complaint is resolved within this (15 minutes).
    pub urgent_secs: u64,
    /// A major complaint is resolved within this (24 hours).
    pub major_secs: u64,
    /// Any other hand-off is resolved within this: first contact (24 hours).
    pub resolve_secs: u64,
    /// A deadline this close counts as "about to breach" (for alerts): 20% of it by default.
    pub warn_fraction: f64,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            pickup_secs: 30,
            urgent_secs: 15 * 60,
            major_secs: 24 * 3600,
            resolve_secs: 24 * 3600,
            warn_fraction: 0.2,
        }
    }
}

impl SlaConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in [
            ("sla.pickup_secs", self.pickup_secs),
            ("sla.urgent_secs", self.urgent_secs),
            ("sla.major_secs", self.major_secs),
            ("sla.resolve_secs", self.resolve_secs),
        ] {
            if v == 0 {
                return Err(format!("{k} must be at least 1"));
            }
        }
        if !(0.0..1.0).contains(&self.warn_fraction) {
            return Err(format!(
                "sla.warn_fraction must be in [0, 1), got {}",
                self.warn_fraction
            ));
        }
        Ok(())
    }

    /// Seconds to resolve `p`: the route's own SLA when the routing rule gives one, else by
    /// severity for complaints, else `resolve_secs`.
    pub fn resolve_within(&self, p: &HandoffPackage, complaint: bool) -> u64 {
        if let Some(m) = p.route.sla_minutes {
            return u64::from(m) * 60;
        }
        match (complaint, p.severity.as_deref()) {
            (true, Some("urgent")) => self.urgent_secs,
            (true, Some("major")) => self.major_secs,
            _ => self.resolve_secs,
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS handoffs (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    customer_id TEXT,
    tier TEXT,
    channel TEXT,
    reason TEXT NOT NULL,
    target TEXT NOT NULL,
    priority TEXT NOT NULL,
    intent TEXT,
    severity TEXT,
    complaint INTEGER NOT NULL,
    summary TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    pickup_due_ms INTEGER NOT NULL,
    resolve_due_ms INTEGER NOT NULL,
    accepted_ms INTEGER,
    agent TEXT,
    resolved_ms INTEGER,
    resolution TEXT
);
CREATE INDEX IF NOT EXISTS handoffs_created ON handoffs(created_ms);
CREATE INDEX IF NOT EXISTS handoffs_session ON handoffs(session_id);
";

/// Where a hand-off is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// No agent has it yet.
    Waiting,
    Accepted,
    Resolved,
}

/// A hand-off with its SLA clocks. Times in milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Ticket {
    /// The hand-off package's id.
    pub id: String,
    pub session_id: String,
    pub tier: Option<String>,
    pub channel: Option<String>,
    /// Why it went to a person (`explicit_request`, `routing`, …).
    pub reason: String,
    /// `agent`, `vip_agent`, `complaints`.
    pub target: String,
    pub priority: String,
    pub intent: Option<String>,
    pub severity: Option<String>,
    /// A complaint (routed to complaints or of a complaint intent).
    pub complaint: bool,
    /// The customer's most telling sentences.
    pub summary: String,
    pub state: State,
    pub created_ms: i64,
    pub pickup_due_ms: i64,
    pub resolve_due_ms: i64,
    pub accepted_ms: Option<i64>,
    pub agent: Option<String>,
    pub resolved_ms: Option<i64>,
    pub resolution: Option<String>,
    /// Picked up late, or still waiting past the deadline.
    pub pickup_breached: bool,
    /// Resolved late, or still open past the deadline.
    pub resolve_breached: bool,
    /// Milliseconds left to the next open deadline (negative: overdue); none when resolved.
    pub due_in_ms: Option<i64>,
}

impl Ticket {
    fn from_row(r: &SqliteRow, now_ms: i64) -> Self {
        let accepted_ms: Option<i64> = r.get("accepted_ms");
        let resolved_ms: Option<i64> = r.get("resolved_ms");
        let pickup_due_ms: i64 = r.get("pickup_due_ms");
        let resolve_due_ms: i64 = r.get("resolve_due_ms");
        let state = match (accepted_ms, resolved_ms) {
            (_, Some(_)) => State::Resolved,
            (Some(_), None) => State::Accepted,
            _ => State::Waiting,
        };
        let due_in_ms = match state {
            State::Waiting => Some(pickup_due_ms.min(resolve_due_ms) - now_ms),
            State::Accepted => Some(resolve_due_ms - now_ms),
            State::Resolved => None,
        };
        Self {
            id: r.get("id"),
            session_id: r.get("session_id"),
            tier: r.get("tier"),
            channel: r.get("channel"),
            reason: r.get("reason"),
            target: r.get("target"),
            priority: r.get("priority"),
            intent: r.get("intent"),
            severity: r.get("severity"),
            complaint: r.get::<i64, _>("complaint") != 0,
            summary: r.get("summary"),
            state,
            created_ms: r.get("created_ms"),
            pickup_due_ms,
            resolve_due_ms,
            pickup_breached: accepted_ms.unwrap_or(now_ms) > pickup_due_ms,
            resolve_breached: resolved_ms.unwrap_or(now_ms) > resolve_due_ms,
            accepted_ms,
            agent: r.get("agent"),
            resolved_ms,
            resolution: r.get("resolution"),
            due_in_ms,
        }
    }

    pub fn breached(&self) -> bool {
        self.pickup_breached || self.resolve_breached
    }
}

/// Which tickets a listing reads.
#[derive(Debug, Clone, Default)]
pub struct TicketQuery {
    pub state: Option<State>,
    pub breached: Option<bool>,
    /// Created in `[from_ms, to_ms)`.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: usize,
}

#[derive(Clone)]
pub struct Desk {
    pool: SqlitePool,
}

/// What [`Desk::accept`] and [`Desk::resolve`] found.
pub enum Change {
    Done(Ticket),
    Missing,
    /// In another state already (the ticket as it is).
    Conflict(Ticket),
}

impl Desk {
    pub async fn open(pool: SqlitePool) -> Result<Self, sqlx::Error> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool })
    }

    /// Opens a ticket for `p` now; a package already known (a retried delivery) is kept.
    pub async fn open_ticket(
        &self,
        p: &HandoffPackage,
        complaint: bool,
        cfg: &SlaConfig,
        mask: bool,
    ) -> Result<(), sqlx::Error> {
        let now = crate::clock::now_ms();
        let resolve = cfg.resolve_within(p, complaint);
        let summary = if mask {
            crate::privacy::mask(&p.summary).into_owned()
        } else {
            p.summary.clone()
        };
        sqlx::query(
            "INSERT OR IGNORE INTO handoffs (id, session_id, customer_id, tier, channel, reason,
             target, priority, intent, severity, complaint, summary, created_ms, pickup_due_ms,
             resolve_due_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&p.id)
        .bind(&p.session_id)
        .bind(&p.customer.id)
        .bind(&p.customer.tier)
        .bind(&p.channel)
        .bind(p.reason.as_str())
        .bind(super::json_name(&p.route.target))
        .bind(super::json_name(&p.route.priority))
        .bind(&p.intent)
        .bind(&p.severity)
        .bind(i64::from(complaint))
        .bind(summary)
        .bind(now)
        .bind(now + (cfg.pickup_secs * 1000) as i64)
        .bind(now + (resolve * 1000) as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<Ticket>, sqlx::Error> {
        let now = crate::clock::now_ms();
        let row = sqlx::query("SELECT * FROM handoffs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(|r| Ticket::from_row(r, now)))
    }

    /// Tickets, newest first.
    pub async fn list(&self, q: &TicketQuery) -> Result<Vec<Ticket>, sqlx::Error> {
        let now = crate::clock::now_ms();
        let rows = sqlx::query(
            "SELECT * FROM handoffs WHERE created_ms >= ?1 AND created_ms < ?2
             ORDER BY created_ms DESC, id DESC",
        )
        .bind(q.from_ms.unwrap_or(i64::MIN))
        .bind(q.to_ms.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ticket::from_row(r, now))
            .filter(|t| q.state.is_none_or(|s| s == t.state))
            .filter(|t| q.breached.is_none_or(|b| b == t.breached()))
            .take(q.limit)
            .collect())
    }

    /// An agent picks the ticket up.
    pub async fn accept(&self, id: &str, agent: Option<&str>) -> Result<Change, sqlx::Error> {
        let now = crate::clock::now_ms();
        let n = sqlx::query(
            "UPDATE handoffs SET accepted_ms = ?, agent = ?
             WHERE id = ? AND accepted_ms IS NULL AND resolved_ms IS NULL",
        )
        .bind(now)
        .bind(agent)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.changed(id, n).await
    }

    /// The ticket is done (picked up now if it was not yet).
    pub async fn resolve(
        &self,
        id: &str,
        agent: Option<&str>,
        resolution: Option<&str>,
    ) -> Result<Change, sqlx::Error> {
        let now = crate::clock::now_ms();
        let n = sqlx::query(
            "UPDATE handoffs SET resolved_ms = ?1, resolution = ?2,
             accepted_ms = COALESCE(accepted_ms, ?1), agent = COALESCE(agent, ?3)
             WHERE id = ?4 AND resolved_ms IS NULL",
        )
        .bind(now)
        .bind(resolution)
        .bind(agent)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.changed(id, n).await
    }

    async fn changed(&self, id: &str, n: u64) -> Result<Change, sqlx::Error> {
        Ok(match self.get(id).await? {
            None => Change::Missing,
            Some(t) if n == 0 => Change::Conflict(t),
            Some(t) => Change::Done(t),
        })
    }

    /// Removes a customer's tickets: under their id, or of one of `sessions`.
    pub async fn erase(&self, customer_id: &str, sessions: &[String]) -> Result<u64, sqlx::Error> {
        super::erase_rows(&self.pool, "handoffs", customer_id, sessions).await
    }

    /// Removes tickets created before `cutoff` (Unix seconds).
    pub async fn purge_before(&self, cutoff: i64) -> Result<u64, sqlx::Error> {
        super::purge_rows(
            &self.pool,
            "handoffs",
            "created_ms",
            cutoff.saturating_mul(1000),
        )
        .await
    }
}

/// SLA attainment of a set of tickets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Attainment {
    pub handoffs: u64,
    pub complaints: u64,
    pub waiting: u64,
    /// Share of tickets picked up in time (of those picked up or overdue).
    pub pickup_attainment: Option<f64>,
    /// Share resolved in time (of those resolved or overdue).
    pub resolve_attainment: Option<f64>,
    /// Tickets past a deadline now or when they met it.
    pub breached: u64,
    pub pickup_p50_secs: Option<f64>,
}

pub fn attainment(tickets: &[Ticket]) -> Attainment {
    let mut a = Attainment {
        handoffs: tickets.len() as u64,
        ..Default::default()
    };
    let (mut picked, mut picked_ok, mut closed, mut closed_ok) = (0u64, 0u64, 0u64, 0u64);
    let mut waits = Vec::new();
    for t in tickets {
        a.complaints += u64::from(t.complaint);
        a.waiting += u64::from(t.state == State::Waiting);
        a.breached += u64::from(t.breached());
        if t.accepted_ms.is_some() || t.pickup_breached {
            picked += 1;
            picked_ok += u64::from(!t.pickup_breached);
        }
        if let Some(at) = t.accepted_ms {
            waits.push((at - t.created_ms) as f64 / 1000.0);
        }
        if t.resolved_ms.is_some() || t.resolve_breached {
            closed += 1;
            closed_ok += u64::from(!t.resolve_breached);
        }
    }
    a.pickup_attainment = (picked > 0).then(|| picked_ok as f64 / picked as f64);
    a.resolve_attainment = (closed > 0).then(|| closed_ok as f64 / closed as f64);
    waits.sort_by(f64::total_cmp);
    a.pickup_p50_secs = (!waits.is_empty()).then(|| waits[(waits.len() - 1) / 2]);
    a
}
