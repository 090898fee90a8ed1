//! The operations report: a window's stats, SLA, hot topics, top questions, knowledge gaps
//! and weak spots, with the change against the window before it, gathered from the same
//! operations as the API (so its numbers are the API's) and rendered by
//! [`crate::analytics::report`].

use serde::Deserialize;
use utoipa::IntoParams;

use super::Kefu;
use super::analytics::{StatsQuery, Unanswered, Window};
pub use crate::analytics::report::{Report, SlaPoint};
use crate::analytics::sla::{self, TicketQuery};
use crate::analytics::stats::Bucket;
use crate::error::Error;

/// A day, in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// `GET /v1/reports/weekly` and `kefu report` parameters.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Start (as the stats take it); default: 7 days before `to`.
    pub from: Option<String>,
    /// End; default: now.
    pub to: Option<String>,
    /// `zh` (default) or `en`.
    pub lang: Option<String>,
    /// Only turns of this channel.
    pub channel: Option<String>,
}

impl Kefu {
    /// The report of a window: daily buckets (hourly for a window under two days).
    pub async fn report(&self, q: &ReportQuery) -> Result<Report, Error> {
        let lang = match q.lang.as_deref() {
            None | Some("zh") => "zh",
            Some("en") => "en",
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "lang {other:?} is not one of zh, en"
                )));
            }
        };
        let to_ms = match &q.to {
            Some(t) => super::analytics::parse_time("to", t)?,
            None => crate::clock::now_ms(),
        };
        let from_ms = match &q.from {
            Some(f) => super::analytics::parse_time("from", f)?,
            None => to_ms - 7 * DAY_MS,
        };
        let sq = StatsQuery {
            from: Some(ms_text(from_ms)),
            to: Some(ms_text(to_ms)),
            channel: q.channel.clone(),
            ..Default::default()
        };
        let window = sq.window()?;
        let span = window.to_ms - window.from_ms;
        let bucket = if span < 2 * DAY_MS {
            Bucket::Hour
        } else {
            Bucket::Day
        };
        let sq = StatsQuery {
            bucket: Some(bucket),
            limit: Some(20),
            ..sq
        };
        let stats = self.stats(&sq).await?;
        let previous = Window {
            from_ms: window.from_ms - span,
            to_ms: window.from_ms,
        };
        let prev_q = StatsQuery {
            from: Some(ms_text(previous.from_ms)),
            to: Some(ms_text(previous.to_ms)),
            bucket: Some(Bucket::Day),
            ..sq.clone()
        };
        let previous_totals = self.stats(&prev_q).await?.totals;
        let tickets = self
            .desk
            .list(&TicketQuery {
                from_ms: Some(window.from_ms),
                to_ms: Some(window.to_ms),
                limit: usize::MAX,
                ..Default::default()
            })
            .await
            .map_err(Error::storage)?;
        let sla_series = stats
            .series
            .iter()
            .map(|p| {
                let end = p.start_ms + bucket.millis();
                let these: Vec<_> = tickets
                    .iter()
                    .filter(|t| t.created_ms >= p.start_ms && t.created_ms < end)
                    .cloned()
                    .collect();
                SlaPoint {
                    start_ms: p.start_ms,
                    attainment: sla::attainment(&these),
                }
            })
            .collect();
        let top = self.top_questions(&sq).await?;
        let weak_spots = self.weak_spots(&sq).await?;
        // Knowledge gaps need the encoder; without it the report says so and goes on.
        let unanswered = match self.unanswered(&sq).await {
            Ok(u) => u,
            Err(Error::NotReady | Error::IndexNotReady) => Unanswered {
                window,
                questions: 0,
                clusters: vec![],
            },
            Err(e) => return Err(e),
        };
        Ok(Report {
            lang: lang.into(),
            generated_ms: crate::clock::now_ms(),
            window,
            previous,
            stats,
            previous_totals,
            sla_series,
            top,
            weak_spots,
            unanswered,
        })
    }
}

/// Milliseconds as an RFC 3339 time the stats parse back exactly.
fn ms_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| (ms / 1000).to_string())
}
