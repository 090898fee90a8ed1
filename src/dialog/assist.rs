//! Agent assist: for the customer's latest question in a conversation, the KB's best answers,
//! the likely intent and the flow the agent could run (with what is already known for it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::chat::{IntentView, understand};
use super::session::{CustomerRef, Role, Session};
use crate::core::Kefu;
use crate::error::Error;
use crate::text::check::schema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub role: Role,
    #[schema(schema_with = schema::input)]
    pub text: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssistRequest {
    /// A live session; or give `transcript`.
    #[serde(default)]
    #[schema(schema_with = schema::session_id)]
    pub session_id: Option<String>,
    /// The conversation so far, oldest first.
    #[serde(default)]
    pub transcript: Option<Vec<Line>>,
    /// Suggested replies, 1–5 (default 3).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 5)]
    pub top_k: Option<usize>,
    #[serde(default)]
    #[schema(schema_with = schema::channel)]
    pub channel: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Suggestion {
    pub faq_id: String,
    pub question: String,
    /// The reply to send (the answer for the channel).
    pub answer: String,
    pub score: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlowSuggestion {
    pub name: String,
    pub description: String,
    /// Slot values already given in the conversation.
    pub known: BTreeMap<String, String>,
    /// Slots still to ask for.
    pub missing: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssistResponse {
    /// The customer's latest question.
    pub question: String,
    /// It rewritten with the conversation's context, when that changed it.
    pub rewritten_query: Option<String>,
    pub suggestions: Vec<Suggestion>,
    pub intent: Option<IntentView>,
    pub flow: Option<FlowSuggestion>,
    pub took_ms: f64,
}

pub async fn assist(s: &Kefu, req: AssistRequest) -> Result<AssistResponse, Error> {
    let started = std::time::Instant::now();
    let top_k = req.top_k.unwrap_or(3);
    if !(1..=5).contains(&top_k) {
        return Err(Error::Invalid(format!(
            "top_k must be between 1 and 5, got {top_k}"
        )));
    }
    let mut session = match (&req.session_id, req.transcript) {
        (Some(id), None) => s.sessions.get(id).await?.ok_or_else(|| {
            Error::NotFound(format!("session {id:?} does not exist (or expired)"))
        })?,
        (None, Some(lines)) => {
            let mut session = Session::new("assist".into(), CustomerRef::default(), None);
            for (i, l) in lines.iter().enumerate() {
                let t = crate::core::checked_text(
                    &format!("transcript[{i}].text"),
                    &l.text,
                    &s.config.limits,
                )?;
                session.push(l.role, t);
            }
            session
        }
        _ => {
            return Err(Error::Invalid(
                "give either session_id or transcript (not both)".into(),
            ));
        }
    };
    if req.channel.is_some() {
        session.channel = req.channel;
    }
    let last = session
        .turns
        .iter()
        .rposition(|t| t.role == Role::Customer)
        .ok_or_else(|| Error::Invalid("the conversation has no customer turn yet".into()))?;
    session.turns.truncate(last + 1);
    let question = session.turns[last].text.clone();
    for t in session.turns.iter().filter(|t| t.role == Role::Customer) {
        for (k, v) in s.flows.scan(&t.text) {
            session.slots.entry(k).or_insert(v);
        }
    }
    let u = understand(s, &session, &question).await?;
    let flow = u.intent.as_ref().and_then(|i| {
        let f = s.flows.for_intent(&i.intent, i.confidence)?;
        let known: BTreeMap<String, String> = f
            .slots
            .iter()
            .filter_map(|x| Some((x.name.clone(), session.slots.get(&x.name)?.clone())))
            .collect();
        Some(FlowSuggestion {
            name: f.name.clone(),
            description: f.description.clone(),
            missing: f
                .slots
                .iter()
                .filter(|x| !known.contains_key(&x.name))
                .map(|x| x.name.clone())
                .collect(),
            known,
        })
    });
    Ok(AssistResponse {
        question,
        rewritten_query: u.rewritten,
        suggestions: u
            .matched
            .matches
            .into_iter()
            .take(top_k)
            .map(|m| Suggestion {
                faq_id: m.faq_id,
                question: m.question,
                answer: m.answer,
                score: m.score,
            })
            .collect(),
        intent: u.intent.as_ref().map(super::chat::intent_view),
        flow,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}
