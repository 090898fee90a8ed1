//! Alerts: rules over the turn records and the hand-off tickets (answer rate, a topic's volume
//! against its usual level for the hour, p95 latency, SLA breaches, the hand-off queue, the
//! service not ready), evaluated every `alerts.interval_secs`; each firing condition is an
//! alert with a state (`firing`, then `resolved`), sent to a webhook at most once per
//! cool-down. The rule logic is plain functions over the measured values ([`judge`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use utoipa::ToSchema;

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Share of decided turns answered over `window_minutes` below `threshold` (with at
    /// least `min_turns` turns).
    AnswerRate,
    /// A category's or intent's (`by`) volume over `window_minutes` more than `sigmas`
    /// standard deviations above its volume in the same window of the last `history_days`
    /// days (at least `min_volume`).
    VolumeSpike,
    /// p95 latency over `window_minutes` above `threshold` ms (with at least `min_turns`).
    LatencyP95,
    /// A hand-off past its SLA deadline, or (`about_to_breach`) within `sla.warn_fraction` of
    /// it; one alert per hand-off.
    SlaBreach,
    /// More than `threshold` hand-offs waiting for a person.
    HandoffQueue,
    /// The encoder, the index or the intent models not ready.
    NotReady,
}

/// What a volume spike is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Category,
    Intent,
}

impl Dimension {
    pub fn column(self) -> &'static str {
        match self {
            Dimension::Category => "category",
            Dimension::Intent => "intent",
        }
    }
}

fn window_minutes() -> u64 {
    30
}
fn min_turns() -> u64 {
    20
}
fn sigmas() -> f64 {
    3.0
}
fn history_days() -> u32 {
    7
}
fn min_volume() -> u64 {
    10
}
fn by() -> Dimension {
    Dimension::Category
}

/// `[[alerts.rules]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Names the rule in alerts and messages (unique).
    pub name: String,
    pub kind: RuleKind,
    /// The rate, milliseconds or count the kind compares with.
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default = "window_minutes")]
    pub window_minutes: u64,
    #[serde(default = "min_turns")]
    pub min_turns: u64,
    #[serde(default = "sigmas")]
    pub sigmas: f64,
    #[serde(default = "by")]
    pub by: Dimension,
    #[serde(default = "history_days")]
    pub history_days: u32,
    #[serde(default = "min_volume")]
    pub min_volume: u64,
    #[serde(default)]
    pub about_to_breach: bool,
    /// Overrides `alerts.cooldown_secs` for this rule.
    #[serde(default)]
    pub cooldown_secs: Option<u64>,
}

impl Rule {
    fn of(name: &str, kind: RuleKind, threshold: Option<f64>) -> Self {
        Self {
            name: name.into(),
            kind,
            threshold,
            window_minutes: window_minutes(),
            min_turns: min_turns(),
            sigmas: sigmas(),
            by: by(),
            history_days: history_days(),
            min_volume: min_volume(),
            about_to_breach: false,
            cooldown_secs: None,
        }
    }
}

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    pub enabled: bool,
    /// Seconds between evaluations.
    pub interval_secs: u64,
    /// An alert of one rule (and subject) is sent at most once per this many seconds.
    pub cooldown_secs: u64,
    /// Where alerts are POSTed (JSON), signed with `webhook_secret` like hand-offs
    /// (`X-Kefu-Signature`); none: only listed in `GET /v1/alerts`.
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub webhook_headers: BTreeMap<String, String>,
    /// The rules; the defaults watch the answer rate (< 50% over 30 min), category spikes
    /// (3σ), p95 latency (> 1 s), SLA breaches, the hand-off queue (> 10) and readiness.
    pub rules: Vec<Rule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 60,
            cooldown_secs: 1800,
            webhook_url: None,
            webhook_secret: None,
            webhook_headers: BTreeMap::new(),
            rules: vec![
                Rule::of("answer-rate", RuleKind::AnswerRate, Some(0.5)),
                Rule::of("category-spike", RuleKind::VolumeSpike, None),
                Rule::of("latency-p95", RuleKind::LatencyP95, Some(1000.0)),
                Rule::of("sla-breach", RuleKind::SlaBreach, None),
                Rule::of("handoff-queue", RuleKind::HandoffQueue, Some(10.0)),
                Rule::of("not-ready", RuleKind::NotReady, None),
            ],
        }
    }
}

impl AlertsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_secs == 0 {
            return Err("alerts.interval_secs must be at least 1".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("alerts.rules[{i}] ({:?})", r.name);
            if r.name.trim().is_empty() || !names.insert(r.name.as_str()) {
                return Err(format!("{at}: every rule needs a name of its own"));
            }
            let need = |what: &str| format!("{at}: a {:?} rule needs a threshold ({what})", r.kind);
            match r.kind {
                RuleKind::AnswerRate => match r.threshold {
                    Some(t) if (0.0..=1.0).contains(&t) => {}
                    _ => return Err(need("a rate between 0 and 1")),
                },
                RuleKind::LatencyP95 | RuleKind::HandoffQueue => match r.threshold {
                    Some(t) if t >= 0.0 && t.is_finite() => {}
                    _ => return Err(need("a number ≥ 0")),
                },
                RuleKind::VolumeSpike => {
                    if !(r.sigmas > 0.0 && r.sigmas.is_finite()) || r.history_days == 0 {
                        return Err(format!(
                            "{at}: sigmas must be > 0 and history_days at least 1"
                        ));
                    }
                }
                RuleKind::SlaBreach | RuleKind::NotReady => {}
            }
            if r.window_minutes == 0 {
                return Err(format!("{at}: window_minutes must be at least 1"));
            }
        }
        Ok(())
    }

    /// The webhook settings as the hand-off's delivery takes them.
    pub fn webhook(&self) -> crate::dialog::handoff::HandoffConfig {
        crate::dialog::handoff::HandoffConfig {
            webhook_url: self.webhook_url.clone(),
            webhook_secret: self.webhook_secret.clone(),
            webhook_headers: self.webhook_headers.clone(),
            ..Default::default()
        }
    }
}

/// One condition found true: the rule, what it is about (a category, a hand-off; empty for
/// the whole service), the value measured and words for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub key: String,
    pub value: f64,
    pub message: String,
}

/// A volume now against its history (one count per earlier day).
pub fn spike(now: u64, history: &[u64], sigmas: f64, min_volume: u64) -> Option<f64> {
    if now < min_volume || history.is_empty() {
        return None;
    }
    let n = history.len() as f64;
    let mean = history.iter().sum::<u64>() as f64 / n;
    let var = history
        .iter()
        .map(|&x| (x as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    // Counts are at least as spread as a Poisson process of that mean.
    let sd = var.sqrt().max(mean.max(1.0).sqrt());
    let z = (now as f64 - mean) / sd;
    (z > sigmas).then_some(z)
}

/// Whether a measured `value` breaks `rule` (for the kinds with one value).
pub fn judge(rule: &Rule, value: f64) -> bool {
    let t = rule.threshold.unwrap_or(f64::NAN);
    match rule.kind {
        RuleKind::AnswerRate => value < t,
        RuleKind::LatencyP95 | RuleKind::HandoffQueue => value > t,
        RuleKind::NotReady => value > 0.0,
        RuleKind::VolumeSpike | RuleKind::SlaBreach => value > 0.0,
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value REAL NOT NULL,
    message TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    resolved_ms INTEGER,
    notified_ms INTEGER,
    notifications INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts(rule, key, resolved_ms);
";

/// `firing` or `resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Alert {
    pub id: i64,
    pub rule: String,
    pub kind: RuleKind,
    /// What it is about: a category or intent (spikes), a hand-off (SLA); empty otherwise.
    pub key: String,
    pub state: AlertState,
    /// The value measured at the last evaluation that found it.
    pub value: f64,
    pub message: String,
    pub started_ms: i64,
    pub resolved_ms: Option<i64>,
    /// When it was last sent to the webhook.
    pub notified_ms: Option<i64>,
    pub notifications: i64,
}

impl Alert {
    fn from_row(r: &SqliteRow) -> Self {
        let resolved_ms: Option<i64> = r.get("resolved_ms");
        Self {
            id: r.get("id"),
            rule: r.get("rule"),
            kind: serde_json::from_value(serde_json::Value::String(r.get("kind")))
                .unwrap_or(RuleKind::NotReady),
            key: r.get("key"),
            state: if resolved_ms.is_some() {
                AlertState::Resolved
            } else {
                AlertState::Firing
            },
            value: r.get("value"),
            message: r.get("message"),
            started_ms: r.get("started_ms"),
            resolved_ms,
            notified_ms: r.get("notified_ms"),
            notifications: r.get("notifications"),
        }
    }
}

#[derive(Clone)]
pub struct AlertStore {
    pool: SqlitePool,
}

impl AlertStore {
    pub async fn open(pool: SqlitePool) -> Result<Self, sqlx::Error> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool })
    }

    /// The firing alerts of `rule`, by key.
    pub async fn firing(&self, rule: &str) -> Result<BTreeMap<String, Alert>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM alerts WHERE rule = ? AND resolved_ms IS NULL")
            .bind(rule)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(Alert::from_row)
            .map(|a| (a.key.clone(), a))
            .collect())
    }

    /// Opens an alert, or updates the value and message of the firing one.
    pub async fn fire(
        &self,
        rule: &Rule,
        f: &Finding,
        open: Option<&Alert>,
        now_ms: i64,
    ) -> Result<Alert, sqlx::Error> {
        let id = match open {
            Some(a) => {
                sqlx::query("UPDATE alerts SET value = ?, message = ? WHERE id = ?")
                    .bind(f.value)
                    .bind(&f.message)
                    .bind(a.id)
                    .execute(&self.pool)
                    .await?;
                a.id
            }
            None => {
                let kind = serde_json::to_value(rule.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                sqlx::query_scalar(
                    "INSERT INTO alerts (rule, kind, key, value, message, started_ms)
                     VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(&rule.name)
                .bind(kind)
                .bind(&f.key)
                .bind(f.value)
                .bind(&f.message)
                .bind(now_ms)
                .fetch_one(&self.pool)
                .await?
            }
        };
        self.get(id).await
    }

    pub async fn resolve(&self, id: i64, now_ms: i64) -> Result<Alert, sqlx::Error> {
        sqlx::query("UPDATE alerts SET resolved_ms = ? WHERE id = ? AND resolved_ms IS NULL")
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.get(id).await
    }

    /// When an alert of `rule` about `key` was last sent, over all its firings.
    pub async fn last_notified(&self, rule: &str, key: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT MAX(notified_ms) FROM alerts WHERE rule = ? AND key = ?")
            .bind(rule)
            .bind(key)
            .fetch_one(&self.pool)
            .await
    }

    pub async fn notified(&self, id: i64, now_ms: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE alerts SET notified_ms = ?, notifications = notifications + 1 WHERE id = ?",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get(&self, id: i64) -> Result<Alert, sqlx::Error> {
        let r = sqlx::query("SELECT * FROM alerts WHERE id = ?")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(Alert::from_row(&r))
    }

    /// Alerts newest first, optionally in one state.
    pub async fn list(
        &self,
        state: Option<AlertState>,
        limit: i64,
    ) -> Result<Vec<Alert>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM alerts WHERE (?1 IS NULL OR (?1 = 'firing') = (resolved_ms IS NULL))
             ORDER BY started_ms DESC, id DESC LIMIT ?2",
        )
        .bind(state.map(|s| match s {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(Alert::from_row).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_is_far_above_the_usual_level() {
        // Usually 10 ± 1 in this hour; 30 is a spike, 13 is not.
        let usual = [9, 10, 11, 10, 9, 11, 10];
        assert!(spike(30, &usual, 3.0, 10).is_some());
        assert!(spike(13, &usual, 3.0, 10).is_none());
        // Nothing before: 12 turns are a spike only past the minimum volume.
        assert!(spike(12, &[0; 7], 3.0, 10).is_some());
        assert!(spike(9, &[0; 7], 3.0, 10).is_none());
    }

    #[test]
    fn rules_compare_the_way_they_read() {
        let r = Rule::of("a", RuleKind::AnswerRate, Some(0.5));
        assert!(judge(&r, 0.4) && !judge(&r, 0.5));
        let r = Rule::of("l", RuleKind::LatencyP95, Some(100.0));
        assert!(judge(&r, 101.0) && !judge(&r, 100.0));
        assert!(AlertsConfig::default().validate().is_ok());
        let mut c = AlertsConfig::default();
        c.rules
            .push(Rule::of("answer-rate", RuleKind::NotReady, None));
        assert!(c.validate().unwrap_err().contains("name of its own"));
        let c = AlertsConfig {
            rules: vec![Rule::of("x", RuleKind::AnswerRate, Some(2.0))],
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("threshold"));
    }
}
