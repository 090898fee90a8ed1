//! Evaluating the alert rules against the turn records, the hand-off tickets and readiness;
//! keeping each alert's state and sending it to the webhook at most once per cool-down.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use utoipa::IntoParams;

use super::Kefu;
use crate::analytics::alerts::{Alert, AlertState, Finding, Rule, RuleKind, judge, spike};
use crate::analytics::sla::{State, TicketQuery};
use crate::analytics::stats;
use crate::analytics::turns::{Selection, TurnRecord};
use crate::error::Error;

const DAY_MS: i64 = 86_400_000;

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

impl Kefu {
    /// What `rule` finds true at `now_ms` (its window ends with `now_ms`, included).
    async fn measure(&self, rule: &Rule, now_ms: i64) -> Result<Vec<Finding>, Error> {
        let now_ms = now_ms + 1;
        let window_ms = (rule.window_minutes * 60_000) as i64;
        let mins = rule.window_minutes;
        let one = |value: f64, message: String| {
            if judge(rule, value) {
                vec![Finding {
                    key: String::new(),
                    value,
                    message,
                }]
            } else {
                vec![]
            }
        };
        Ok(match rule.kind {
            RuleKind::AnswerRate | RuleKind::LatencyP95 => {
                let turns = self
                    .turns
                    .select(&Selection {
                        from_ms: now_ms - window_ms,
                        to_ms: now_ms,
                        ..Default::default()
                    })
                    .await
                    .map_err(Error::storage)?;
                let all: Vec<&TurnRecord> = turns.iter().collect();
                let n = stats::numbers(&all, &Default::default());
                let t = rule.threshold.unwrap_or_default();
                match (rule.kind, n.answer_rate, n.latency.p95_ms) {
                    (RuleKind::AnswerRate, Some(r), _) if n.decided >= rule.min_turns => one(
                        r,
                        format!(
                            "answer rate {} over the last {mins} min ({} turns) is below {}",
                            pct(r),
                            n.decided,
                            pct(t)
                        ),
                    ),
                    (RuleKind::LatencyP95, _, Some(p)) if n.volume >= rule.min_turns => one(
                        p,
                        format!(
                            "p95 latency {p:.0} ms over the last {mins} min ({} turns) is above \
                             {t:.0} ms",
                            n.volume
                        ),
                    ),
                    _ => vec![],
                }
            }
            RuleKind::VolumeSpike => {
                let now = self
                    .turns
                    .counts(now_ms - window_ms, now_ms, rule.by)
                    .await
                    .map_err(Error::storage)?;
                let mut history = Vec::new();
                for d in 1..=i64::from(rule.history_days) {
                    let end = now_ms - d * DAY_MS;
                    history.push(
                        self.turns
                            .counts(end - window_ms, end, rule.by)
                            .await
                            .map_err(Error::storage)?,
                    );
                }
                let mut found = Vec::new();
                for (key, &count) in &now {
                    let usual: Vec<u64> = history
                        .iter()
                        .map(|h| h.get(key).copied().unwrap_or(0))
                        .collect();
                    if let Some(z) = spike(count, &usual, rule.sigmas, rule.min_volume) {
                        let mean = usual.iter().sum::<u64>() as f64 / usual.len() as f64;
                        found.push(Finding {
                            key: key.clone(),
                            value: count as f64,
                            message: format!(
                                "{} {key:?}: {count} turns in the last {mins} min, usually \
                                 {mean:.1} at this time ({z:.1} standard deviations above)",
                                rule.by.column()
                            ),
                        });
                    }
                }
                found
            }
            RuleKind::SlaBreach => {
                let open = self
                    .desk
                    .list(&TicketQuery {
                        limit: usize::MAX,
                        ..Default::default()
                    })
                    .await
                    .map_err(Error::storage)?;
                let warn = self.config.sla.warn_fraction;
                open.into_iter()
                    .filter(|t| t.state != State::Resolved)
                    .filter_map(|t| {
                        let due = t.due_in_ms?;
                        let deadline = if t.state == State::Waiting {
                            t.pickup_due_ms.min(t.resolve_due_ms)
                        } else {
                            t.resolve_due_ms
                        };
                        let span = (deadline - t.created_ms).max(1) as f64;
                        let soon = rule.about_to_breach && (due as f64) < warn * span;
                        if !(t.breached() || soon) {
                            return None;
                        }
                        let what = if t.complaint { "complaint" } else { "hand-off" };
                        let clock = if t.state == State::Waiting {
                            "pick-up"
                        } else {
                            "resolution"
                        };
                        let message = if t.breached() {
                            format!(
                                "{what} {} ({}) is past its {clock} deadline{}",
                                t.id,
                                t.target,
                                if due < 0 {
                                    format!(" by {} s", -due / 1000)
                                } else {
                                    String::new()
                                }
                            )
                        } else {
                            format!(
                                "{what} {} ({}) reaches its {clock} deadline in {} s",
                                t.id,
                                t.target,
                                due / 1000
                            )
                        };
                        Some(Finding {
                            key: t.id,
                            value: (-due) as f64 / 1000.0,
                            message,
                        })
                    })
                    .collect()
            }
            RuleKind::HandoffQueue => {
                let waiting = self
                    .desk
                    .list(&TicketQuery {
                        state: Some(State::Waiting),
                        limit: usize::MAX,
                        ..Default::default()
                    })
                    .await
                    .map_err(Error::storage)?
                    .len() as f64;
                one(
                    waiting,
                    format!(
                        "{waiting} hand-offs are waiting for a person (more than {})",
                        rule.threshold.unwrap_or_default()
                    ),
                )
            }
            RuleKind::NotReady => {
                let r = self.readiness();
                let down: Vec<&str> = r
                    .components
                    .iter()
                    .filter(|(_, s)| **s != "ready")
                    .map(|(c, _)| *c)
                    .collect();
                one(down.len() as f64, format!("not ready: {}", down.join(", ")))
            }
        })
    }

    /// Evaluates every rule now: opens alerts for conditions found, resolves those no longer
    /// found, sends what is due. Returns the alerts that fired or resolved.
    pub async fn evaluate_alerts(&self) -> Result<Vec<Alert>, Error> {
        let now_ms = crate::clock::now_ms();
        self.recorder.flush().await;
        let cfg = &self.config.alerts;
        let mut changed = Vec::new();
        for rule in &cfg.rules {
            let findings = self.measure(rule, now_ms).await?;
            let open = self
                .alerts
                .firing(&rule.name)
                .await
                .map_err(Error::storage)?;
            let cooldown = (rule.cooldown_secs.unwrap_or(cfg.cooldown_secs) * 1000) as i64;
            let mut seen = BTreeSet::new();
            for f in &findings {
                seen.insert(f.key.as_str());
                let was = open.get(&f.key);
                let a = self
                    .alerts
                    .fire(rule, f, was, now_ms)
                    .await
                    .map_err(Error::storage)?;
                let last = self
                    .alerts
                    .last_notified(&rule.name, &f.key)
                    .await
                    .map_err(Error::storage)?;
                if last.is_none_or(|t| now_ms - t >= cooldown) {
                    self.notify(&a, now_ms).await?;
                }
                if was.is_none() {
                    tracing::warn!(rule = rule.name, key = f.key, "alert: {}", f.message);
                    changed.push(a);
                }
            }
            for (key, a) in &open {
                if seen.contains(key.as_str()) {
                    continue;
                }
                let a = self
                    .alerts
                    .resolve(a.id, now_ms)
                    .await
                    .map_err(Error::storage)?;
                tracing::info!(rule = rule.name, key, "alert resolved");
                if a.notifications > 0 {
                    self.notify(&a, now_ms).await?;
                }
                changed.push(a);
            }
        }
        Ok(changed)
    }

    /// Sends `a` to the webhook (in the background) and notes when.
    async fn notify(&self, a: &Alert, now_ms: i64) -> Result<(), Error> {
        self.alerts
            .notified(a.id, now_ms)
            .await
            .map_err(Error::storage)?;
        let cfg = self.config.alerts.webhook();
        if cfg.webhook_url.is_none() {
            return Ok(());
        }
        let mut a = a.clone();
        a.notified_ms = Some(now_ms);
        a.notifications += 1;
        let key = format!("alert-{}-{}", a.id, a.notifications);
        let http = self.http.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::dialog::handoff::post_webhook(
                &http,
                &cfg,
                &key,
                &serde_json::json!({"alert": a}),
            )
            .await
            {
                tracing::error!(alert = a.id, "the alert could not be sent: {e}");
            }
        });
        Ok(())
    }

    pub async fn list_alerts(&self, q: &AlertQuery) -> Result<Vec<Alert>, Error> {
        let limit = super::checked_limit(q.limit, 100)?;
        self.alerts
            .list(q.state, limit)
            .await
            .map_err(Error::storage)
    }
}

/// `GET /v1/alerts` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// `firing` or `resolved`.
    pub state: Option<AlertState>,
    /// 1–1000, default 100.
    pub limit: Option<i64>,
}

/// Evaluates the rules every `alerts.interval_secs` until shutdown.
pub(super) async fn alert_loop(kefu: Arc<Kefu>) {
    let cfg = &kefu.config.alerts;
    if !cfg.enabled || cfg.rules.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = kefu.shutdown.cancelled() => return,
        }
        if let Err(e) = kefu.evaluate_alerts().await {
            tracing::warn!("evaluating the alert rules failed: {e}");
        }
    }
}
