//! Operations: turn records and what they say (stats, top questions, weak spots, knowledge
//! gaps), hand-offs as work with SLA clocks, feedback, and the process's metrics.

pub mod alerts;
pub mod cluster;
pub mod conversion;
pub mod feedback;
pub mod metrics;
pub mod report;
pub mod sla;
pub mod stats;
pub mod turns;

use serde::{Deserialize, Serialize};

/// The name a unit enum has in JSON (`vip_agent`, `no_answer`, …), as stored and shown.
pub fn json_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => String::new(),
    }
}

/// Deletes, in one transaction, the rows of `table` kept under `customer_id` or of one of
/// `sessions` (the table has `customer_id` and `session_id` columns; `table` is a name in
/// this crate, never input).
pub(crate) async fn erase_rows(
    pool: &sqlx::SqlitePool,
    table: &'static str,
    customer_id: &str,
    sessions: &[String],
) -> Result<u64, sqlx::Error> {
    let by = |col: &str| sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE {col} = ?"));
    let mut tx = pool.begin().await?;
    let mut n = sqlx::query(by("customer_id"))
        .bind(customer_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    for s in sessions {
        n += sqlx::query(by("session_id"))
            .bind(s)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(n)
}

/// Deletes the rows of `table` whose `column` is below `before` (names in this crate, never
/// input); how many.
pub(crate) async fn purge_rows(
    pool: &sqlx::SqlitePool,
    table: &'static str,
    column: &'static str,
    before: i64,
) -> Result<u64, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE {column} < ?"));
    Ok(sqlx::query(sql)
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected())
}

/// `[analytics]`: recording turns and reading them back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// Record every `/v1/match`, `/v1/intent` and `/v1/chat` turn (masked).
    pub enabled: bool,
    /// Turn records waiting to be written; beyond it records are dropped and counted
    /// (`kefu_analytics_turns_dropped_total`), never waited for.
    pub queue: usize,
    /// Milliseconds a batch of turn records waits for more before it is written (one commit
    /// per batch).
    pub flush_ms: u64,
    /// An answer counts as re-asked when the customer's next turn within this many seconds
    /// gets the same entry again or a person.
    pub reask_window_secs: u64,
    /// Unanswered questions join a cluster when their average cosine to it is at least this.
    pub cluster_similarity: f32,
    /// Most unanswered questions clustered in one call (the newest).
    pub max_unanswered: usize,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            queue: 10_000,
            flush_ms: 1000,
            reask_window_secs: 300,
            cluster_similarity: 0.88,
            max_unanswered: 2000,
        }
    }
}

impl AnalyticsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.queue == 0 {
            return Err("analytics.queue must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.cluster_similarity) {
            return Err(format!(
                "analytics.cluster_similarity must be between 0 and 1, got {}",
                self.cluster_similarity
            ));
        }
        if !(2..=20_000).contains(&self.max_unanswered) {
            return Err(format!(
                "analytics.max_unanswered must be between 2 and 20000, got {}",
                self.max_unanswered
            ));
        }
        Ok(())
    }
}
