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
