//! Recommendation operations that more than one entry point needs: recording events (a
//! consultation from the match and chat operations among them) and keeping the catalogue's
//! embeddings current.

use super::Kefu;
use crate::error::Error;
use crate::recommend::serving::now_secs;
use crate::recommend::store::{Event, EventType};

impl Kefu {
    /// The serving encoder's version, or "" before it has loaded (embeddings are then made
    /// later).
    pub fn model_version(&self) -> String {
        self.embedder
            .load_full()
            .map(|e| e.version().to_string())
            .unwrap_or_default()
    }

    /// Embeds what a catalogue change left without an embedding and swaps in the new
    /// catalogue.
    pub async fn refresh_catalogue(&self) -> Result<(), Error> {
        match self.embedder.load_full() {
            Some(e) => self
                .recommender
                .embed_items(&e)
                .await
                // A busy model is a 429, not a failed store.
                .map_err(|e| match e.downcast::<crate::embed::EmbedError>() {
                    Ok(e) => Error::Embed(e),
                    Err(e) => Error::storage(format!("{e:#}")),
                }),
            None => Ok(()),
        }
    }

    /// Stores checked events, consult events with their question's embedding when the encoder is
    /// ready (else it is made later). Questions are kept masked (kefu::privacy).
    pub async fn record_events(&self, mut events: Vec<Event>) -> Result<(), Error> {
        for e in &mut events {
            if let Some(t) = &mut e.text
                && let std::borrow::Cow::Owned(m) = crate::privacy::mask(t)
            {
                *t = m;
            }
        }
        let embedder = self.embedder.load_full();
        let texts: Vec<String> = events
            .iter()
            .filter(|e| e.kind == EventType::Consult)
            .filter_map(|e| e.text.clone())
            .collect();
        let mut vectors = match (&embedder, texts.is_empty()) {
            (Some(e), false) => e.embed(&texts).await?.into_iter(),
            _ => Vec::new().into_iter(),
        };
        let rows: Vec<(Event, Option<Vec<f32>>)> = events
            .into_iter()
            .map(|e| {
                let v = (e.kind == EventType::Consult && e.text.is_some())
                    .then(|| vectors.next().map(|v| v.vector.to_vec()))
                    .flatten();
                (e, v)
            })
            .collect();
        let model = embedder
            .map(|e| e.version().to_string())
            .unwrap_or_default();
        self.recommender
            .store
            .add_events(&rows, &model)
            .await
            .map_err(Error::storage)
    }

    /// Records a question a known customer asked (from `/v1/chat` and `/v1/match`), with the entry
    /// that answered it. Failures are logged, never the caller's problem.
    pub async fn record_consult(
        &self,
        customer_id: &str,
        text: &str,
        answered: Option<(&str, Option<&str>)>,
    ) {
        let event = Event {
            customer_id: customer_id.to_string(),
            kind: EventType::Consult,
            item_id: None,
            text: Some(text.to_string()),
            value: None,
            ts: now_secs(),
            faq_id: answered.map(|a| a.0.to_string()),
            topic: answered.and_then(|a| a.1.map(str::to_string)),
        };
        if let Err(e) = self.record_events(vec![event]).await {
            tracing::warn!(customer_id, "recording a consultation failed: {e}");
        }
    }
}

impl Kefu {
    /// `/v1/recommend`: the request checked, ranked for the customer (or the experiment's
    /// control), and each item shown recorded as an impression.
    pub async fn recommend_request(
        &self,
        req: crate::recommend::serving::RecommendRequest,
    ) -> Result<crate::recommend::serving::RecommendResponse, Error> {
        if let Some(id) = &req.customer_id {
            super::checked_customer_id("customer_id", id)?;
        }
        super::checked_channel(req.channel.as_deref())?;
        if let Some(k) = req.k
            && !(1..=self.config.recommend.max_k).contains(&k)
        {
            return Err(Error::Invalid(format!(
                "k must be between 1 and {} (recommend.max_k), got {k}",
                self.config.recommend.max_k
            )));
        }
        if let Some(l) = &req.locale
            && !matches!(l.as_str(), "zh" | "en")
        {
            return Err(Error::Invalid(format!("locale: {l:?} is not zh or en")));
        }
        let embedder = self.embedder()?;
        let context = match &req.context {
            Some(t) => {
                let t = super::checked_text("context", t, &self.config.limits)?;
                let v = embedder.embed(&[t.to_string()]).await?;
                Some((t, v[0].vector.to_vec()))
            }
            None => None,
        };
        let r = self
            .recommender
            .recommend(&req, context, embedder.version())
            .await
            .map_err(Error::storage)?;
        if let Some(customer) = &req.customer_id {
            let at_ms = crate::clock::now_ms();
            let shown = r
                .items
                .iter()
                .enumerate()
                .map(|(i, it)| crate::analytics::turns::Impression {
                    at_ms,
                    customer_id: customer.clone(),
                    item_id: it.item_id.clone(),
                    position: i as u32,
                    strategy: crate::analytics::json_name(&r.strategy),
                    source: crate::analytics::json_name(&it.source),
                    channel: req.channel.clone(),
                    arm: r.arm.map(|a| a.as_str().to_string()),
                })
                .collect();
            self.recorder.record_impressions(shown);
        }
        Ok(r)
    }

    /// `GET /v1/stats/recommendations`: click-through and conversion of what was shown in the
    /// window, by strategy, source, channel and experiment arm.
    pub async fn recommendation_stats(
        &self,
        q: &super::analytics::StatsQuery,
    ) -> Result<crate::analytics::conversion::RecommendationStats, Error> {
        let w = q.window()?;
        self.recorder.flush().await;
        let shown = self
            .turns
            .impressions(w.from_ms, w.to_ms)
            .await
            .map_err(Error::storage)?;
        let window_secs = self.config.recommend.conversion_window_secs;
        let events = self
            .recommender
            .store
            .conversions_between(
                w.from_ms.div_euclid(1000),
                w.to_ms.div_euclid(1000) + window_secs as i64 + 1,
            )
            .await
            .map_err(Error::storage)?;
        let shown: Vec<_> = match &q.channel {
            Some(c) => shown
                .into_iter()
                .filter(|s| s.channel.as_deref() == Some(c))
                .collect(),
            None => shown,
        };
        Ok(crate::analytics::conversion::conversions(
            w,
            &shown,
            &events,
            window_secs,
        ))
    }
}
