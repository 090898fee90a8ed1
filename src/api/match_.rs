//! `POST /v1/match`: the customer's question against the knowledge base.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SharedState;
use super::json::ApiJson;
use crate::error::{ApiError, ErrorBody};
use crate::matcher::Decision;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    pub category: Option<String>,
    pub locale: Option<String>,
    /// Entries must carry every one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchRequest {
    pub query: String,
    /// 1–20, default 5.
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub filters: Filters,
    /// Channel for the answer variant: web, app, wechat, sms.
    #[serde(default)]
    pub channel: Option<String>,
    /// Include the dense, lexical, fuzzy and answer signals of each match.
    #[serde(default)]
    pub explain: bool,
    /// The customer asking: the question is recorded as a consult event in their profile.
    #[serde(default)]
    pub customer_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Signals {
    /// Cosine to the entry's closest question.
    pub dense: f32,
    /// Word BM25 against that question, over the query's own BM25 (0–1).
    pub lexical: f32,
    /// Character- and pinyin-bigram BM25, normalised the same way (0–1).
    pub fuzzy: f32,
    /// Cosine to the entry's answer (a passage's text).
    pub answer: f32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Match {
    /// The FAQ entry's id, or `<document id>#<n>` for a passage.
    pub faq_id: String,
    /// `faq` or `passage` (a piece of a knowledge document).
    pub kind: &'static str,
    pub question: String,
    /// The standard or similar question that matched best.
    pub matched_text: String,
    pub answer: String,
    pub category: Option<String>,
    /// Fused similarity in [0, 1].
    pub score: f32,
    /// For passages: the document they come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<PassageSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signals: Option<Signals>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PassageSource {
    pub document_id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub heading: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MatchResponse {
    /// `answer` (the first match), `clarify` (offer the matches as options) or `no_answer`.
    pub decision: Decision,
    pub matches: Vec<Match>,
    /// The query as matched when spelling correction changed it (e.g. 退宽 → 退款).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrected_query: Option<String>,
    /// With `explain`, when the KB has out-of-scope examples: the cosine between the query and
    /// the nearest one (an answer needs the first match's dense signal `out_of_scope_margin`
    /// above it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_scope_similarity: Option<f32>,
    pub model: String,
    pub took_ms: f64,
}

/// Match a question against the knowledge base.
#[utoipa::path(post, path = "/v1/match", tag = "matching", request_body = MatchRequest, responses(
    (status = 200, body = MatchResponse),
    (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn run(
    State(s): State<SharedState>,
    ApiJson(req): ApiJson<MatchRequest>,
) -> Result<Json<MatchResponse>, ApiError> {
    let started = Instant::now();
    let query = super::checked_text("query", &req.query, &s.config.limits)?;
    let top_k = req.top_k.unwrap_or(5);
    if !(1..=20).contains(&top_k) {
        return Err(ApiError::Invalid(format!(
            "top_k must be between 1 and 20, got {top_k}"
        )));
    }
    super::checked_channel(req.channel.as_deref())?;
    if let Some(id) = &req.customer_id {
        super::recommend::checked_customer_id("customer_id", id)?;
    }
    let mut r = search(
        &s,
        query,
        top_k,
        &req.filters,
        req.channel.as_deref(),
        req.explain,
    )
    .await?;
    if let Some(id) = req.customer_id {
        let answered = (r.decision == Decision::Answer)
            .then(|| r.matches.first())
            .flatten()
            .map(|m| (m.faq_id.clone(), m.category.clone()));
        let (s, query) = (s.clone(), query.to_string());
        tokio::spawn(async move {
            let a = answered.as_ref().map(|(f, c)| (f.as_str(), c.as_deref()));
            super::recommend::record_consult(&s, &id, &query, a).await;
        });
    }
    r.took_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(Json(r))
}

/// The matching itself, for `/v1/match`, `/v1/chat` and `/v1/assist`: `query` (checked) against
/// the index, filtered, decided.
pub async fn search(
    s: &super::AppState,
    query: &str,
    top_k: usize,
    f: &Filters,
    channel: Option<&str>,
    explain: bool,
) -> Result<MatchResponse, ApiError> {
    let started = Instant::now();
    let (embedder, index) = s.encoder_and_index()?;
    let corrected = index.correct(query);
    let query = corrected.as_deref().unwrap_or(query);
    let v = embedder.embed(&[query.to_string()]).await?;
    let cal = s.calibration.load().1;
    let weights = cal.weights();
    // Over-fetch so that filters and entries deleted since the last rebuild still leave top_k.
    let candidates = index.search(&v[0].vector, query, (top_k * 4).max(40), weights);
    let mut matches = Vec::new();
    // The dense signal of the first match kept (filters can skip the first candidates).
    let mut first_dense = None;
    let today = crate::kb::entry::today();
    for c in candidates {
        let indexed = &index.entries[c.entry];
        let signals = explain.then_some(Signals {
            dense: c.dense,
            lexical: c.lexical,
            fuzzy: c.fuzzy,
            answer: c.answer,
        });
        let score = c.score.clamp(0.0, 1.0);
        if let Some(p) = &index.passages[c.entry] {
            // The store is the truth: passages of deleted documents are skipped.
            let Some(doc) = s.kb.document(&p.document_id).await? else {
                continue;
            };
            if f.category
                .as_ref()
                .is_some_and(|x| doc.category.as_ref() != Some(x))
                || f.locale
                    .as_ref()
                    .is_some_and(|x| doc.locale.as_ref() != Some(x))
                || !f.tags.is_empty()
            {
                continue;
            }
            first_dense.get_or_insert(c.dense);
            matches.push(Match {
                faq_id: p.id.clone(),
                kind: "passage",
                question: p.heading.clone(),
                matched_text: p.text.clone(),
                answer: p.text.clone(),
                category: doc.category.clone(),
                score,
                source: Some(PassageSource {
                    document_id: doc.id.clone(),
                    title: doc.title.clone(),
                    source: doc.source.clone(),
                    heading: p.heading.clone(),
                }),
                signals,
            });
        } else {
            // Deleted entries are skipped, edited ones shown as they are now.
            let Some(current) = s.kb.get(&indexed.id).await? else {
                continue;
            };
            let e = current.entry;
            if !e.enabled
                || !e.valid_on(&today)
                || f.category
                    .as_ref()
                    .is_some_and(|x| e.category.as_ref() != Some(x))
                || f.locale
                    .as_ref()
                    .is_some_and(|x| e.locale.as_ref() != Some(x))
                || !f.tags.iter().all(|t| e.tags.contains(t))
            {
                continue;
            }
            first_dense.get_or_insert(c.dense);
            matches.push(Match {
                faq_id: e.id.clone(),
                kind: "faq",
                question: e.question.clone(),
                matched_text: index.texts[c.text].1.clone(),
                answer: e.answer_for(channel).to_string(),
                category: e.category.clone(),
                score,
                source: None,
                signals,
            });
        }
        if matches.len() == top_k {
            break;
        }
    }
    let scores: Vec<f32> = matches.iter().map(|m| m.score).collect();
    let out_of_scope = index.out_of_scope_similarity(&v[0].vector);
    let gap = first_dense.zip(out_of_scope).map(|(d, o)| d - o);
    let decision = cal.decide(&scores, gap);
    if decision == Decision::Clarify {
        matches.truncate(3);
    }
    Ok(MatchResponse {
        decision,
        matches,
        corrected_query: corrected,
        out_of_scope_similarity: out_of_scope.filter(|_| explain),
        model: embedder.version().to_string(),
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}
