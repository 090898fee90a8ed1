//! Customer data on request and on schedule: erasure of one customer everywhere kefu keeps
//! them, and the daily purge of what is older than `privacy.retention_days`.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::Kefu;
use crate::error::Error;

/// What an erasure removed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Erased {
    pub customer_id: String,
    /// Events (purchases, views, consultations…) removed.
    pub events: u64,
    /// Whether a customer record (tier, locale) was removed.
    pub profile: bool,
    /// Feedback given by the customer or in their conversations.
    pub feedback: u64,
    /// Recorded turns and recommendation impressions (analytics), and hand-off tickets, of the
    /// customer or their conversations.
    pub turns: u64,
    pub handoffs: u64,
    /// Channel identities (phone numbers, WeChat openids, …) and the pointer to the open
    /// conversation.
    pub identities: u64,
    /// Conversations (with their transcripts) removed.
    pub sessions: Vec<String>,
    /// Whether the recommendation model is being retrained without the customer.
    pub retraining: bool,
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Purged {
    pub events: u64,
    pub feedback: u64,
    pub turns: u64,
    pub handoffs: u64,
    /// Pointers to customers' open conversations and phone codes.
    pub identities: u64,
}

impl Kefu {
    /// Removes everything kefu keeps about `customer_id`: events, profile, feedback and
    /// conversations; the recommendation model learnt from the log is retrained without them.
    pub async fn erase_customer(self: &Arc<Self>, customer_id: &str) -> Result<Erased, Error> {
        crate::core::checked_customer_id("id", customer_id)?;
        let sessions = self.sessions.delete_customer(customer_id).await?;
        let feedback = self
            .feedback
            .erase(customer_id, &sessions)
            .await
            .map_err(Error::storage)?;
        // Their recorded turns name more conversations than the live ones.
        let mut sessions_seen = sessions.clone();
        sessions_seen.extend(
            self.turns
                .sessions_of(customer_id)
                .await
                .map_err(Error::storage)?,
        );
        sessions_seen.sort();
        sessions_seen.dedup();
        let handoffs = self
            .desk
            .erase(customer_id, &sessions_seen)
            .await
            .map_err(Error::storage)?;
        let turns = self
            .turns
            .erase(customer_id, &sessions_seen)
            .await
            .map_err(Error::storage)?;
        let (events, profile) = self
            .recommender
            .store
            .erase_customer(customer_id)
            .await
            .map_err(Error::storage)?;
        let identities = self
            .identities
            .erase(customer_id)
            .await
            .map_err(Error::storage)?;
        let retraining = events > 0 && self.recommender.pinned().is_none();
        if retraining {
            self.retrain_without_forgotten();
        }
        // The id is kept in the log as an audit trail (masked if it is a phone number).
        tracing::info!(
            customer_id,
            events,
            profile,
            feedback,
            turns,
            handoffs,
            identities,
            sessions = sessions.len(),
            "erased a customer's data on request"
        );
        Ok(Erased {
            customer_id: customer_id.to_string(),
            events,
            profile,
            feedback,
            turns,
            handoffs,
            identities,
            sessions,
            retraining,
        })
    }

    /// Removes events and feedback older than `privacy.retention_days`.
    pub async fn purge_expired(self: &Arc<Self>) -> Result<Purged, Error> {
        let Some(cutoff) = self.config.privacy.cutoff(crate::dialog::session::now()) else {
            return Ok(Purged::default());
        };
        let events = self
            .recommender
            .store
            .purge_events_before(cutoff)
            .await
            .map_err(Error::storage)?;
        let feedback = self
            .feedback
            .purge_before(cutoff)
            .await
            .map_err(Error::storage)?;
        let turns = self
            .turns
            .purge_before(cutoff)
            .await
            .map_err(Error::storage)?;
        let handoffs = self
            .desk
            .purge_before(cutoff)
            .await
            .map_err(Error::storage)?;
        let identities = self
            .identities
            .purge_before(cutoff)
            .await
            .map_err(Error::storage)?;
        if events > 0 {
            self.retrain_without_forgotten();
        }
        Ok(Purged {
            events,
            feedback,
            turns,
            handoffs,
            identities,
        })
    }

    fn retrain_without_forgotten(self: &Arc<Self>) {
        let r = self.recommender.clone();
        r.forget();
        tokio::spawn(async move {
            if let Err(e) = r.retrain().await {
                tracing::warn!("recommendations: retraining after erasure failed: {e:#}");
            }
        });
    }
}

/// Purges at start, then once a day.
pub(super) async fn purge_loop(kefu: Arc<Kefu>) {
    if kefu.config.privacy.retention_days == 0 {
        return;
    }
    loop {
        match kefu.purge_expired().await {
            Ok(p) if p.events + p.feedback + p.turns + p.handoffs + p.identities > 0 => {
                tracing::info!(
                    events = p.events,
                    feedback = p.feedback,
                    turns = p.turns,
                    handoffs = p.handoffs,
                    identities = p.identities,
                    days = kefu.config.privacy.retention_days,
                    "purged data older than privacy.retention_days"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("purging expired data failed: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(86_400)) => {}
            _ = kefu.shutdown.cancelled() => return,
        }
    }
}
