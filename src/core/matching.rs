//! The match pipeline, the one every entry point runs: `/v1/match`, the chat turn, agent
//! assist, `kefu match` and `kefu eval faq`. A query is corrected ([`prepare`]), encoded,
//! scored by every signal ([`score`]); the candidates are checked against the KB as stored
//! now and the request's filters ([`admit`]), fused and ranked ([`rank`]), decided
//! ([`decide`]) and shown ([`respond`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Kefu;
use crate::error::Error;
use crate::kb::{Document, FaqEntry, KbStore};
use crate::matcher::{Calibration, Candidate, Decision, FusionWeights, KbIndex};
use crate::text::check::schema;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    #[schema(schema_with = schema::label)]
    pub category: Option<String>,
    #[schema(schema_with = schema::locale)]
    pub locale: Option<String>,
    /// Entries must carry every one of these tags.
    #[serde(default)]
    #[schema(schema_with = schema::tags)]
    pub tags: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchRequest {
    #[schema(schema_with = schema::input)]
    pub query: String,
    /// 1–20, default 5.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 20)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub filters: Filters,
    /// Channel for the answer variant: web, app, wechat, sms.
    #[serde(default)]
    #[schema(schema_with = schema::channel)]
    pub channel: Option<String>,
    /// Include the dense, lexical, fuzzy and answer signals of each match.
    #[serde(default)]
    pub explain: bool,
    /// The customer asking: the question is recorded as a consult event in their profile.
    #[serde(default)]
    #[schema(schema_with = schema::external_id)]
    pub customer_id: Option<String>,
    /// A hit test (the console's): answered as usual and recorded nowhere, neither in the
    /// analytics nor in the customer's profile.
    #[serde(default)]
    pub hit_test: bool,
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

/// Most matches a request may ask for.
pub const MAX_TOP_K: usize = 20;
/// Matches a request gets unless it asks for another number.
pub const DEFAULT_TOP_K: usize = 5;
/// Options a clarification offers.
pub const CLARIFY_OPTIONS: usize = 3;

/// How one query is matched, besides its text.
#[derive(Debug, Clone, Copy)]
pub struct MatchOptions<'a> {
    pub top_k: usize,
    pub filters: &'a Filters,
    /// Picks the answer variant (web, app, wechat, sms).
    pub channel: Option<&'a str>,
    /// Include each match's signals and the out-of-scope similarity.
    pub explain: bool,
}

impl Default for MatchOptions<'_> {
    fn default() -> Self {
        const NONE: &Filters = &Filters {
            category: None,
            locale: None,
            tags: Vec::new(),
        };
        Self {
            top_k: DEFAULT_TOP_K,
            filters: NONE,
            channel: None,
            explain: false,
        }
    }
}

/// The spelling-corrected query, when correction changed it (退宽 → 退款): matched instead of
/// the text as typed.
pub fn prepare(index: &KbIndex, query: &str) -> Option<String> {
    index.correct(query)
}

/// A query scored against the index: every signal of every candidate, before the store and
/// the filters have a say.
#[derive(Debug, Clone)]
pub struct Scored {
    pub corrected: Option<String>,
    pub signals: Vec<Candidate>,
    /// Cosine to the nearest out-of-scope example (`None`: the KB has none).
    pub out_of_scope: Option<f32>,
}

/// Scores `text` (the prepared query) with its vector against the index.
pub fn score(index: &KbIndex, text: &str, vector: &[f32], corrected: Option<String>) -> Scored {
    Scored {
        corrected,
        signals: index.signals(vector, text),
        out_of_scope: index.out_of_scope_similarity(vector),
    }
}

/// The entries and documents the candidates stand for, as they are now. The index lags the
/// store by one rebuild, so the store is the truth: deleted entries drop out, edited ones show
/// as edited.
#[derive(Debug, Default)]
pub struct Current {
    faqs: HashMap<String, FaqEntry>,
    documents: HashMap<String, Document>,
}

impl Current {
    /// Reads what `candidates` stand for from the store, in one query.
    pub async fn read(
        kb: &KbStore,
        index: &KbIndex,
        candidates: &[Candidate],
    ) -> Result<Self, Error> {
        let (mut faq_ids, mut doc_ids) = (Vec::new(), Vec::new());
        for c in candidates {
            match &index.passages[c.entry] {
                Some(p) => doc_ids.push(p.document_id.as_str()),
                None => faq_ids.push(index.entries[c.entry].id.as_str()),
            }
        }
        doc_ids.sort_unstable();
        doc_ids.dedup();
        let (faqs, documents) = kb.current(&faq_ids, &doc_ids).await?;
        Ok(Self {
            faqs: faqs.into_iter().map(|e| (e.id.clone(), e)).collect(),
            documents: documents.into_iter().map(|d| (d.id.clone(), d)).collect(),
        })
    }

    /// The index's own entries and documents as the truth: for evaluating a KB file, which is
    /// its own store.
    pub fn of_index(index: &KbIndex, documents: &[Document]) -> Self {
        Self {
            faqs: (index.entries.iter().zip(&index.passages))
                .filter(|(_, p)| p.is_none())
                .map(|(e, _)| (e.id.clone(), e.clone()))
                .collect(),
            documents: documents
                .iter()
                .map(|d| (d.id.clone(), d.clone()))
                .collect(),
        }
    }
}

/// What a candidate stands for now.
enum Now<'a> {
    Faq(&'a FaqEntry),
    Passage(&'a Document),
}

fn now_of<'a>(index: &KbIndex, current: &'a Current, c: &Candidate) -> Option<Now<'a>> {
    match &index.passages[c.entry] {
        Some(p) => current.documents.get(&p.document_id).map(Now::Passage),
        None => current.faqs.get(&index.entries[c.entry].id).map(Now::Faq),
    }
}

/// The candidates that may be shown: still in the store, enabled, valid `today`
/// (`YYYY-MM-DD`), and passing the filters (a passage has no tags, so a tag filter leaves
/// passages out).
pub fn admit(
    index: &KbIndex,
    mut signals: Vec<Candidate>,
    current: &Current,
    f: &Filters,
    today: &str,
) -> Vec<Candidate> {
    let fits = |category: &Option<String>, locale: &Option<String>| {
        f.category
            .as_ref()
            .is_none_or(|x| category.as_ref() == Some(x))
            && f.locale.as_ref().is_none_or(|x| locale.as_ref() == Some(x))
    };
    signals.retain(|c| match now_of(index, current, c) {
        Some(Now::Faq(e)) => {
            e.enabled
                && e.valid_on(today)
                && fits(&e.category, &e.locale)
                && f.tags.iter().all(|t| e.tags.contains(t))
        }
        Some(Now::Passage(d)) => fits(&d.category, &d.locale) && f.tags.is_empty(),
        None => false,
    });
    signals
}

/// The best `top_k` admitted candidates by fused score, best first; never fewer than two when
/// there are two, because the decision weighs the runner-up whatever the caller shows.
pub fn rank(admitted: Vec<Candidate>, w: FusionWeights, top_k: usize) -> Vec<Candidate> {
    crate::matcher::fuse(admitted, w, top_k.max(2))
}

/// The decision for ranked candidates: thresholds on the first and the lead over the second,
/// and the first's dense cosine against the nearest out-of-scope example.
pub fn decide(cal: &Calibration, ranked: &[Candidate], out_of_scope: Option<f32>) -> Decision {
    let scores: Vec<f32> = ranked.iter().take(2).map(|c| c.score).collect();
    cal.decide(&scores, out_of_scope_gap(ranked, out_of_scope))
}

/// The first candidate's dense cosine minus the nearest out-of-scope example's.
pub fn out_of_scope_gap(ranked: &[Candidate], out_of_scope: Option<f32>) -> Option<f32> {
    ranked.first().zip(out_of_scope).map(|(c, o)| c.dense - o)
}

/// Admits, ranks and decides a scored query, and shows the matches: the whole pipeline after
/// encoding.
pub fn respond(
    index: &KbIndex,
    scored: Scored,
    current: &Current,
    cal: &Calibration,
    o: &MatchOptions,
) -> MatchResponse {
    let today = crate::kb::entry::today();
    let admitted = admit(index, scored.signals, current, o.filters, &today);
    let mut ranked = rank(admitted, cal.weights(), o.top_k);
    let decision = decide(cal, &ranked, scored.out_of_scope);
    ranked.truncate(match decision {
        Decision::Clarify => o.top_k.min(CLARIFY_OPTIONS),
        _ => o.top_k,
    });
    let matches = ranked
        .iter()
        .filter_map(|c| show(index, current, c, o))
        .collect();
    MatchResponse {
        decision,
        matches,
        corrected_query: scored.corrected,
        out_of_scope_similarity: scored.out_of_scope.filter(|_| o.explain),
        model: index.model_version.clone(),
        took_ms: 0.0,
    }
}

fn show(index: &KbIndex, current: &Current, c: &Candidate, o: &MatchOptions) -> Option<Match> {
    let signals = o.explain.then_some(Signals {
        dense: c.dense,
        lexical: c.lexical,
        fuzzy: c.fuzzy,
        answer: c.answer,
    });
    Some(match now_of(index, current, c)? {
        Now::Passage(doc) => {
            let p = index.passages[c.entry].as_ref()?;
            Match {
                faq_id: p.id.clone(),
                kind: "passage",
                question: p.heading.clone(),
                matched_text: p.text.clone(),
                answer: p.text.clone(),
                category: doc.category.clone(),
                score: c.score,
                source: Some(PassageSource {
                    document_id: doc.id.clone(),
                    title: doc.title.clone(),
                    source: doc.source.clone(),
                    heading: p.heading.clone(),
                }),
                signals,
            }
        }
        Now::Faq(e) => Match {
            faq_id: e.id.clone(),
            kind: "faq",
            question: e.question.clone(),
            matched_text: index.texts[c.text].1.clone(),
            answer: e.answer_for(o.channel).to_string(),
            category: e.category.clone(),
            score: c.score,
            source: None,
            signals,
        },
    })
}

/// Matches `query` against an index built outside the service (`kefu match`): the same
/// pipeline as [`Kefu::match_query`], with the index's own entries and `documents` as the
/// store (the index was just built from them).
pub fn match_offline(
    embedder: &crate::embed::Embedder,
    index: &KbIndex,
    documents: &[Document],
    cal: &Calibration,
    query: &str,
    o: &MatchOptions,
) -> Result<MatchResponse, Error> {
    let started = Instant::now();
    let corrected = prepare(index, query);
    let text = corrected.as_deref().unwrap_or(query).to_string();
    let v = embedder.embed_blocking(std::slice::from_ref(&text))?;
    let scored = score(index, &text, &v[0].vector, corrected);
    let mut r = respond(index, scored, &Current::of_index(index, documents), cal, o);
    r.took_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(r)
}

/// 422 unless `top_k` is between 1 and [`MAX_TOP_K`].
pub fn checked_top_k(top_k: usize) -> Result<usize, Error> {
    if (1..=MAX_TOP_K).contains(&top_k) {
        Ok(top_k)
    } else {
        Err(Error::Invalid(format!(
            "top_k must be between 1 and {MAX_TOP_K}, got {top_k}"
        )))
    }
}

impl Kefu {
    /// `/v1/match`: the request's query matched ([`Kefu::match_query`]); a known customer's
    /// question goes into their profile, with the entry that answered it.
    pub async fn match_request(
        self: &Arc<Self>,
        req: MatchRequest,
    ) -> Result<MatchResponse, Error> {
        if let Some(id) = &req.customer_id {
            super::checked_customer_id("customer_id", id)?;
        }
        super::checked_locale("filters.locale", req.filters.locale.as_deref())?;
        let o = MatchOptions {
            top_k: req.top_k.unwrap_or(DEFAULT_TOP_K),
            filters: &req.filters,
            channel: req.channel.as_deref(),
            explain: req.explain,
        };
        let r = self.match_query(&req.query, &o).await?;
        if req.hit_test {
            return Ok(r);
        }
        self.record_match(&req, &r);
        if let Some(id) = req.customer_id {
            let answered = (r.decision == Decision::Answer)
                .then(|| r.matches.first())
                .flatten()
                .map(|m| (m.faq_id.clone(), m.category.clone()));
            let (s, query) = (self.clone(), req.query.trim().to_string());
            tokio::spawn(async move {
                let a = answered.as_ref().map(|(f, c)| (f.as_str(), c.as_deref()));
                s.record_consult(&id, &query, a).await;
            });
        }
        Ok(r)
    }

    /// Matches `query` against the serving KB: the operation behind `/v1/match`, the chat turn
    /// and agent assist. `query` is checked (empty, too long); the options are the caller's.
    pub async fn match_query(
        &self,
        query: &str,
        o: &MatchOptions<'_>,
    ) -> Result<MatchResponse, Error> {
        let query = super::checked_text("query", query, &self.config.limits)?;
        checked_top_k(o.top_k)?;
        super::checked_channel(o.channel)?;
        self.search(query, o).await
    }

    /// [`Kefu::match_query`] for a query and options already checked (the chat turn's query
    /// rewritten with its context).
    pub async fn search(&self, query: &str, o: &MatchOptions<'_>) -> Result<MatchResponse, Error> {
        let started = Instant::now();
        let (embedder, index) = self.encoder_and_index()?;
        let corrected = prepare(&index, query);
        let text = corrected.as_deref().unwrap_or(query).to_string();
        let v = embedder.embed(std::slice::from_ref(&text)).await?;
        let scored = score(&index, &text, &v[0].vector, corrected);
        let current = Current::read(&self.kb, &index, &scored.signals).await?;
        let cal = self.calibration.load().1;
        let mut r = respond(&index, scored, &current, &cal, o);
        r.model = embedder.version().to_string();
        r.took_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(r)
    }
}
