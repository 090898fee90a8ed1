//! One customer turn: record it, carry on a flow in progress or understand the turn (rewritten
//! to stand alone, classified, matched against the KB), then answer, offer options, run a flow
//! or hand the customer to a person.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::flows::{Extracted, Flow, FlowState, Flows};
use super::handoff::{self, Cause, HandoffPackage, Reason};
use super::session::{Choice, CustomerRef, Role, Session, SessionStore};
use crate::core::Kefu;
use crate::core::matching::{Match, MatchOptions, MatchResponse};
use crate::core::understand::{Customer, IntentResponse};
use crate::error::Error;
use crate::intent::routing::{Route, RouteInput, Target};
use crate::matcher::Decision;
use crate::text::check::schema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The conversation; a new one is started when missing or unknown (1–64 letters, digits,
    /// `-`, `_`).
    #[serde(default)]
    #[schema(schema_with = schema::session_id)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub customer: Option<Customer>,
    /// `web`, `app`, `wechat` or `sms`: picks the answer variant.
    #[serde(default)]
    #[schema(schema_with = schema::channel)]
    pub channel: Option<String>,
    #[schema(schema_with = schema::input)]
    pub text: String,
}

/// What the bot did with the turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Answered from the KB (or small talk).
    Answer,
    /// Several entries are close: `options` to choose from (by number).
    Clarify,
    /// A flow asks for a missing or invalid slot.
    AskSlot,
    /// A flow asks the customer to confirm before calling the operator's system.
    Confirm,
    /// A flow finished (its call answered) or was cancelled.
    FlowResult,
    /// Nothing to answer with; the customer is asked to rephrase.
    NoAnswer,
    /// Handed to a person: see `handoff`.
    Handoff,
    /// A person has the conversation; the turn was recorded for them.
    WithAgent,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Clarify => "clarify",
            Self::AskSlot => "ask_slot",
            Self::Confirm => "confirm",
            Self::FlowResult => "flow_result",
            Self::NoAnswer => "no_answer",
            Self::Handoff => "handoff",
            Self::WithAgent => "with_agent",
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IntentView {
    pub name: String,
    /// The intent model's version that classified the turn.
    pub model_version: String,
    pub confidence: f32,
    pub out_of_scope: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

/// The flow in progress or just finished.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlowView {
    pub name: String,
    /// `asking`, `confirming`, `done`, `rejected` (the system said no), `cancelled`, `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<String>,
    pub slots: std::collections::BTreeMap<String, String>,
    /// The operator's system's reply (done, rejected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatResponse {
    pub session_id: String,
    /// The bot's reply turn (for `/v1/feedback`).
    pub turn_id: String,
    pub reply: String,
    pub action: Action,
    /// For `clarify`: the entries to choose from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<Choice>,
    /// The turn as matched, when context rewriting changed it.
    pub rewritten_query: Option<String>,
    pub matches: Vec<Match>,
    pub intent: Option<IntentView>,
    pub route: Option<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<FlowView>,
    /// The package sent to the agent desk, when handed off (also while with a person).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff: Option<HandoffPackage>,
    /// The conversation ended with this reply: ask for a rating.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub survey: Option<super::survey::Survey>,
    pub took_ms: f64,
}

/// The bot's side of a turn, before it is recorded.
struct Outcome {
    reply: String,
    action: Action,
    options: Vec<Choice>,
    rewritten: Option<String>,
    matches: Vec<Match>,
    intent: Option<IntentView>,
    route: Option<Route>,
    flow: Option<FlowView>,
    handoff: Option<HandoffPackage>,
    faq_id: Option<String>,
    /// The turn ended the conversation (goodbye).
    ending: Option<super::survey::Ending>,
}

impl Outcome {
    fn say(reply: String, action: Action) -> Self {
        Self {
            reply,
            action,
            options: vec![],
            rewritten: None,
            matches: vec![],
            intent: None,
            route: None,
            flow: None,
            handoff: None,
            faq_id: None,
            ending: None,
        }
    }
}

/// What the turn means: rewritten, classified and matched.
pub struct Understanding {
    pub query: String,
    pub rewritten: Option<String>,
    pub intent: Option<IntentResponse>,
    pub matched: MatchResponse,
}

/// Runs one customer turn and stores the session.
pub async fn turn(s: &Kefu, req: ChatRequest) -> Result<ChatResponse, Error> {
    let started = Instant::now();
    let text = crate::core::checked_text("text", &req.text, &s.config.limits)?;
    crate::core::checked_channel(req.channel.as_deref())?;
    s.checked_tier(
        "customer.tier",
        req.customer.as_ref().and_then(|c| c.tier.as_deref()),
    )?;
    let id = match req.session_id {
        Some(id) if !super::session::valid_id(&id) => {
            return Err(Error::Invalid(format!(
                "session_id {id:?} is invalid: 1–64 letters, digits, '-' or '_'"
            )));
        }
        Some(id) => id,
        None => super::session::new_id(),
    };
    let _turns_in_order = s.session_locks.lock(&id).await;
    let mut session = match s.sessions.get(&id).await? {
        Some(x) => x,
        None => Session::new(id.clone(), CustomerRef::default(), None),
    };
    if let Some(c) = &req.customer {
        if c.id.is_some() {
            session.customer.id = c.id.clone();
        }
        if c.tier.is_some() {
            session.customer.tier = c.tier.clone();
        }
    }
    if req.channel.is_some() {
        session.channel = req.channel.clone();
    }
    if let Some(l) = super::locale_of(text) {
        session.locale = l.into();
    }
    // The customer comes back after a silence: the conversation before it ended idle.
    let idle = s.config.dialog.survey.idle_secs;
    let came_back = idle > 0
        && session.turns.iter().any(|t| t.role == Role::Bot)
        && super::session::now() - session.updated_at >= idle as i64;
    // The turn is understood from what was said; the transcript keeps it masked when
    // configured (privacy.mask_transcripts).
    if s.config.privacy.mask_transcripts {
        session.push(Role::Customer, &crate::privacy::mask(text));
    } else {
        session.push(Role::Customer, text);
    }

    let out = if session.with_human {
        let mut o = Outcome::say(
            s.config
                .dialog
                .replies
                .with_agent
                .get(&session.locale)
                .into(),
            Action::WithAgent,
        );
        o.handoff = session.handoff.clone();
        o
    } else {
        for (slot, value) in s.flows.scan(text) {
            session.slots.insert(slot, value);
        }
        respond(s, &mut session, text).await?
    };

    {
        let t = session.last_mut();
        t.rewritten = out.rewritten.clone();
        t.intent = out.intent.as_ref().map(|i| i.name.clone());
    }
    let survey = survey_for(s, &mut session, &out, came_back);
    let turn_id = session.push(Role::Bot, &out.reply);
    {
        let t = session.last_mut();
        t.action = Some(out.action.as_str().into());
        t.faq_id = out.faq_id.clone();
    }
    session.trim(s.config.dialog.max_turns, s.config.dialog.max_session_bytes);
    s.sessions.put(&session).await?;
    s.metrics
        .chat_actions
        .with_label_values(&[out.action.as_str()])
        .inc();
    if out.action == Action::Handoff
        && let Some(p) = &out.handoff
    {
        send_handoff(s, p.clone()).await;
    }
    Ok(ChatResponse {
        session_id: session.id,
        turn_id,
        reply: out.reply,
        action: out.action,
        options: out.options,
        rewritten_query: out.rewritten,
        matches: out.matches,
        intent: out.intent,
        route: out.route,
        flow: out.flow,
        handoff: out.handoff,
        survey,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// The survey this reply offers: once a conversation ends (goodbye, a flow done, or the
/// customer came back after `dialog.survey.idle_secs` of silence) unless it was rated already,
/// and on the first reply after a person gave it back.
fn survey_for(
    s: &Kefu,
    session: &mut Session,
    out: &Outcome,
    came_back: bool,
) -> Option<super::survey::Survey> {
    use super::survey::{Ending, Survey};
    let cfg = &s.config.dialog.survey;
    if !cfg.enabled || session.with_human {
        return None;
    }
    let ending = if session.survey_due {
        Some(Ending::Released)
    } else if session.surveyed {
        None
    } else if out.flow.as_ref().is_some_and(|f| f.status == "done") {
        Some(Ending::FlowDone)
    } else {
        out.ending.or(came_back.then_some(Ending::Idle))
    }?;
    session.survey_due = false;
    session.surveyed = true;
    Some(Survey::new(
        cfg,
        session.channel.as_deref(),
        &session.locale,
        ending,
    ))
}

/// Counts the hand-off, opens its SLA ticket and posts it to the desk's webhook in the
/// background.
pub async fn send_handoff(s: &Kefu, p: HandoffPackage) {
    s.open_ticket(&p).await;
    s.metrics
        .handoffs
        .with_label_values(&[p.reason.as_str()])
        .inc();
    if s.config.dialog.handoff.webhook_url.is_none() {
        return;
    }
    let (client, cfg, metrics) = (
        s.http.clone(),
        s.config.dialog.handoff.clone(),
        s.metrics.clone(),
    );
    tokio::spawn(async move {
        match handoff::deliver(&client, &cfg, &p).await {
            Ok(attempts) => {
                metrics
                    .handoff_deliveries
                    .with_label_values(&["delivered"])
                    .inc();
                tracing::info!(id = p.id, attempts, "hand-off delivered to the agent desk");
            }
            Err(e) => {
                metrics
                    .handoff_deliveries
                    .with_label_values(&["failed"])
                    .inc();
                tracing::error!(id = p.id, error = e, "hand-off could not be delivered");
            }
        }
    });
}

async fn respond(s: &Kefu, session: &mut Session, text: &str) -> Result<Outcome, Error> {
    // A number after a `clarify` reply picks an option.
    if let Some(c) = pick(&session.choices, text) {
        session.choices.clear();
        if let Some(stored) = s.kb.get(&c.faq_id).await? {
            let e = stored.entry;
            session.fallbacks = 0;
            session.topic.faq_id = Some(e.id.clone());
            session.topic.question = Some(e.question.clone());
            if let Some(cat) = &e.category {
                session.note(cat);
            }
            let mut o = Outcome::say(
                e.answer_for(session.channel.as_deref()).to_string(),
                Action::Answer,
            );
            o.faq_id = Some(e.id);
            return Ok(o);
        }
    }
    session.choices.clear();

    if let Some(state) = session.flow.clone() {
        let flow = s.flows.get(&state.name).cloned();
        match flow {
            Some(flow) => match continue_flow(s, session, &flow, state, text).await? {
                FlowTurn::Reply(o) => return Ok(*o),
                FlowTurn::Left(Some(u)) => return decide(s, session, text, *u).await,
                FlowTurn::Left(None) => {}
            },
            None => session.flow = None,
        }
    }
    let u = understand(s, session, text).await?;
    decide(s, session, text, u).await
}

/// The option a reply to `clarify` names: its number (1, 第2个, "2.") or its question.
fn pick(choices: &[Choice], text: &str) -> Option<Choice> {
    if choices.is_empty() {
        return None;
    }
    let t = crate::embed::normalize(text);
    let t = t
        .trim()
        .trim_start_matches('第')
        .trim_end_matches(['个', '条', '项', '.', '。']);
    let n = match t {
        "一" => Some(1),
        "二" | "两" => Some(2),
        "三" => Some(3),
        _ => t.parse::<usize>().ok(),
    };
    if let Some(n) = n {
        return choices.get(n.checked_sub(1)?).cloned();
    }
    choices
        .iter()
        .find(|c| crate::text::normalize(&c.question) == crate::text::normalize(text))
        .cloned()
}

/// Rewrites the turn with the conversation's context, classifies it and matches it.
pub async fn understand(s: &Kefu, session: &Session, text: &str) -> Result<Understanding, Error> {
    // A request for a person stands alone whatever came before.
    let rewritten = if s.config.dialog.rewrite && !s.config.routing.human_request(text, "") {
        let history = history(session);
        let h: Vec<&str> = history.iter().map(String::as_str).collect();
        super::context::rewrite(&h, text).filter(|r| r != text)
    } else {
        None
    };
    let query = rewritten.clone().unwrap_or_else(|| text.to_string());
    let models = s.intents.load_full().ok_or(Error::IntentNotReady)?;
    let tier = session.customer.tier.as_deref();
    let o = MatchOptions {
        channel: session.channel.as_deref(),
        ..Default::default()
    };
    let classify = async {
        if models.is_empty() {
            Ok(None)
        } else {
            s.understand(&query, None, tier).await.map(Some)
        }
    };
    let (intent, matched) = tokio::join!(classify, s.search(&query, &o));
    Ok(Understanding {
        query,
        rewritten,
        intent: intent?,
        matched: matched?,
    })
}

/// The turns before the current one, as the rewriter reads them: the last exchange (the
/// customer's previous turn and the bot's reply, whose first sentence is enough).
fn history(session: &Session) -> Vec<String> {
    let n = session.turns.len().saturating_sub(1);
    session.turns[..n]
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(|t| match t.role {
            Role::Customer => t.rewritten.clone().unwrap_or_else(|| t.text.clone()),
            _ => first_sentence(&t.text),
        })
        .collect()
}

fn first_sentence(text: &str) -> String {
    let end = text
        .char_indices()
        .find(|(_, c)| matches!(c, '。' | '！' | '？' | '!' | '?' | '\n'))
        .map_or(text.len(), |(i, c)| i + c.len_utf8());
    text[..end].chars().take(80).collect()
}

pub fn intent_view(i: &IntentResponse) -> IntentView {
    IntentView {
        name: i.intent.clone(),
        model_version: i.model_version.clone(),
        confidence: i.confidence,
        out_of_scope: i.out_of_scope,
        severity: i.severity.as_ref().map(|s| s.label.clone()),
    }
}

/// Whether the turn asks how something works (who, what, how long, whether) rather than asking
/// for something to be done.
pub fn asks_about_policy(text: &str) -> bool {
    const ZH: &[&str] = &[
        "谁",
        "什么",
        "怎么",
        "怎样",
        "如何",
        "多久",
        "多少",
        "几天",
        "能不能",
        "可不可以",
        "是否",
        "规则",
        "政策",
    ];
    const EN: &[&str] = &[
        "how ", "what ", "who ", "why ", "which ", "when ", "can i", "do you", "is it", "does ",
        "policy",
    ];
    let t = format!("{} ", crate::text::normalize(text));
    ZH.iter().any(|w| t.contains(w)) || EN.iter().any(|w| t.contains(w))
}

const SMALL_TALK: &[&str] = &["greeting", "thanks", "goodbye"];

async fn decide(
    s: &Kefu,
    session: &mut Session,
    text: &str,
    u: Understanding,
) -> Result<Outcome, Error> {
    let routing = &s.config.routing;
    let replies = &s.config.dialog.replies;
    let locale = session.locale.clone();
    let answered = u.matched.decision == Decision::Answer;
    let top = u.matched.matches.first().map_or(0.0, |m| m.score);
    let (intent, confidence, oos) = u.intent.as_ref().map_or(("", 0.0, false), |i| {
        (i.intent.as_str(), i.confidence, i.out_of_scope)
    });
    let severity = u
        .intent
        .as_ref()
        .and_then(|i| i.severity.as_ref())
        .map(|s| s.label.clone());
    // The KB answering confidently makes the turn answerable whatever the classifier says.
    let route = routing.route(&RouteInput {
        text,
        intent,
        confidence: if answered {
            confidence.max(top)
        } else {
            confidence
        },
        out_of_scope: oos && !answered,
        tier: session.customer.tier.as_deref(),
        severity: severity.as_deref(),
    });
    if !intent.is_empty() && !oos {
        session.topic.intent = Some(intent.to_string());
        session.note(intent);
    }
    let mut o = Outcome::say(String::new(), Action::Answer);
    o.rewritten = u.rewritten.clone();
    o.intent = u.intent.as_ref().map(intent_view);
    o.route = Some(route.clone());
    let human = routing.human_request(text, intent);
    if human || route.target != Target::Bot {
        let reason = if human {
            Reason::ExplicitRequest
        } else {
            Reason::Routing
        };
        let cause = Cause {
            reason,
            detail: route.reason.clone(),
            route: route.clone(),
            intent: (!intent.is_empty()).then_some(intent),
            severity: severity.as_deref(),
            vip: routing.is_vip(session.customer.tier.as_deref()),
        };
        return Ok(hand_over(s, session, cause, o));
    }
    // A question about a policy ("退货运费谁出") the KB answers gets the answer; a request
    // ("我要退货", "我的订单到哪了") starts the flow.
    let flow = s.flows.for_intent(intent, confidence).cloned();
    if let Some(flow) = flow.filter(|_| !(answered && asks_about_policy(text))) {
        session.note(&format!("flow:{}", flow.name));
        session.flows_started += 1;
        let mut state = FlowState {
            name: flow.name.clone(),
            run: session.flows_started,
            slots: Default::default(),
            awaiting: None,
            confirming: false,
            invalid: 0,
        };
        for slot in &flow.slots {
            let v = match s.flows.extract(&flow, slot, text, false) {
                Extracted::Value(v) => Some(v),
                Extracted::Nothing => session.slots.get(&slot.name).cloned(),
            };
            if let Some(v) = v {
                state.slots.insert(slot.name.clone(), v);
            }
        }
        let mut f = advance(s, session, &flow, state).await?;
        f.rewritten = o.rewritten;
        f.intent = o.intent;
        f.route = o.route;
        return Ok(f);
    }
    if SMALL_TALK.contains(&intent) && confidence >= 0.5 && !answered {
        o.reply = match intent {
            "greeting" => &replies.greeting,
            "thanks" => &replies.thanks,
            _ => &replies.goodbye,
        }
        .get(&locale)
        .into();
        session.fallbacks = 0;
        if intent == "goodbye" {
            o.ending = Some(super::survey::Ending::Goodbye);
        }
        return Ok(o);
    }
    o.matches = u.matched.matches;
    match u.matched.decision {
        Decision::Answer => {
            let m = &o.matches[0];
            session.fallbacks = 0;
            session.topic.faq_id = Some(m.faq_id.clone());
            session.topic.question = Some(m.question.clone());
            session.topic.category = m.category.clone();
            if let Some(c) = &m.category {
                session.note(c);
            }
            o.reply = m.answer.clone();
            o.faq_id = Some(m.faq_id.clone());
        }
        Decision::Clarify => {
            session.fallbacks = 0;
            o.options = o
                .matches
                .iter()
                .map(|m| Choice {
                    faq_id: m.faq_id.clone(),
                    question: m.question.clone(),
                })
                .collect();
            let mut reply = replies.clarify.get(&locale).to_string();
            for (i, c) in o.options.iter().enumerate() {
                reply.push_str(&format!("\n{}. {}", i + 1, c.question));
            }
            session.choices = o.options.clone();
            o.reply = reply;
            o.action = Action::Clarify;
        }
        Decision::NoAnswer => {
            session.fallbacks += 1;
            if session.fallbacks >= s.config.dialog.handoff.after_no_answers {
                let cause = Cause {
                    reason: Reason::NoAnswer,
                    detail: format!(
                        "the bot could not answer {} turns in a row",
                        session.fallbacks
                    ),
                    route: unanswered_route(s, session),
                    intent: (!intent.is_empty()).then_some(intent),
                    severity: severity.as_deref(),
                    vip: routing.is_vip(session.customer.tier.as_deref()),
                };
                o = hand_over(s, session, cause, o);
            } else {
                o.reply = replies.no_answer.get(&locale).into();
                o.action = Action::NoAnswer;
            }
        }
    }
    Ok(o)
}

/// Where an unanswerable conversation goes: the routing policy's answer for an out-of-scope
/// turn, or an agent when the policy would keep it with the bot.
fn unanswered_route(s: &Kefu, session: &Session) -> Route {
    let r = s.config.routing.route(&RouteInput {
        text: "",
        intent: "oos",
        confidence: 0.0,
        out_of_scope: true,
        tier: session.customer.tier.as_deref(),
        severity: None,
    });
    if r.target != Target::Bot {
        return r;
    }
    Route {
        target: Target::Agent,
        priority: crate::intent::routing::Priority::Normal,
        reason: "the bot could not answer".into(),
        sla_minutes: None,
        rule: "no_answer".into(),
    }
}

/// What a flow made of a turn.
enum FlowTurn {
    Reply(Box<Outcome>),
    /// The turn is about something else: the flow is dropped, and the turn is decided afresh
    /// (with its understanding when the flow already had it worked out).
    Left(Option<Box<Understanding>>),
}

/// Leaves the flow at the customer's word.
fn cancelled(s: &Kefu, session: &mut Session, state: &FlowState) -> FlowTurn {
    session.flow = None;
    let mut o = Outcome::say(
        s.config
            .dialog
            .replies
            .cancelled
            .get(&session.locale)
            .into(),
        Action::FlowResult,
    );
    o.flow = Some(view(state, "cancelled", None));
    FlowTurn::Reply(Box::new(o))
}

/// A turn while a flow runs: leave it, confirm, or fill the slot asked for.
async fn continue_flow(
    s: &Kefu,
    session: &mut Session,
    flow: &Flow,
    mut state: FlowState,
    text: &str,
) -> Result<FlowTurn, Error> {
    let locale = session.locale.clone();
    if super::flows::is_cancel(text) {
        return Ok(cancelled(s, session, &state));
    }
    if state.confirming {
        return match super::flows::yes_no(text) {
            Some(true) => {
                state.confirming = false;
                Ok(FlowTurn::Reply(Box::new(
                    execute(s, session, flow, state).await?,
                )))
            }
            Some(false) => Ok(cancelled(s, session, &state)),
            None => {
                if let Some(u) = switches_topic(s, session, flow, text).await? {
                    session.flow = None;
                    return Ok(FlowTurn::Left(Some(Box::new(u))));
                }
                Ok(FlowTurn::Reply(Box::new(ask_confirm(
                    s, session, flow, state,
                )?)))
            }
        };
    }
    let Some(awaiting) = state.awaiting.clone() else {
        session.flow = None;
        return Ok(FlowTurn::Left(None));
    };
    let mut got = false;
    for slot in &flow.slots {
        let asked = slot.name == awaiting;
        if (asked || !state.slots.contains_key(&slot.name))
            && let Extracted::Value(v) = s.flows.extract(flow, slot, text, asked)
        {
            got |= asked;
            state.slots.insert(slot.name.clone(), v);
        }
    }
    if !got {
        if let Some(u) = switches_topic(s, session, flow, text).await? {
            session.flow = None;
            return Ok(FlowTurn::Left(Some(Box::new(u))));
        }
        state.invalid += 1;
        let slot = flow.slots.iter().find(|x| x.name == awaiting);
        let Some(slot) = slot else {
            session.flow = None;
            return Ok(FlowTurn::Left(None));
        };
        if state.invalid >= 3 {
            let detail = format!("no valid {} after {} tries", slot.name, state.invalid);
            return Ok(FlowTurn::Reply(Box::new(flow_failed(
                s, session, flow, state, &detail,
            ))));
        }
        let ctx = context(s, session, flow, &state, None);
        let t = slot.invalid.as_ref().unwrap_or(&slot.prompt).get(&locale);
        let reply = s.flows.render(t, &ctx).map_err(flow_error)?;
        session.flow = Some(state.clone());
        let mut o = Outcome::say(reply, Action::AskSlot);
        o.flow = Some(view(&state, "asking", None));
        return Ok(FlowTurn::Reply(Box::new(o)));
    }
    state.invalid = 0;
    Ok(FlowTurn::Reply(Box::new(
        advance(s, session, flow, state).await?,
    )))
}

/// The turn's understanding when a turn that fills nothing is about something else: the KB
/// answers it, or the classifier is sure of another intent; `None` when it is not.
async fn switches_topic(
    s: &Kefu,
    session: &Session,
    flow: &Flow,
    text: &str,
) -> Result<Option<Understanding>, Error> {
    let u = understand(s, session, text).await?;
    let other_intent = u.intent.as_ref().is_some_and(|i| {
        !i.out_of_scope
            && i.confidence >= 0.7
            && !flow.intents.contains(&i.intent)
            && (s.flows.for_intent(&i.intent, i.confidence).is_some()
                || s.config.routing.human_request(text, &i.intent))
    });
    let leaves = u.matched.decision == Decision::Answer
        || other_intent
        || s.config.routing.human_request(text, "");
    Ok(leaves.then_some(u))
}

/// Asks for the next missing slot, asks to confirm, or calls.
async fn advance(
    s: &Kefu,
    session: &mut Session,
    flow: &Flow,
    mut state: FlowState,
) -> Result<Outcome, Error> {
    let locale = session.locale.clone();
    if let Some(slot) = flow
        .slots
        .iter()
        .find(|x| !state.slots.contains_key(&x.name))
    {
        state.awaiting = Some(slot.name.clone());
        let ctx = context(s, session, flow, &state, None);
        let reply = s
            .flows
            .render(slot.prompt.get(&locale), &ctx)
            .map_err(flow_error)?;
        session.flow = Some(state.clone());
        let mut o = Outcome::say(reply, Action::AskSlot);
        o.flow = Some(view(&state, "asking", None));
        return Ok(o);
    }
    state.awaiting = None;
    if flow.confirm.is_some() {
        return ask_confirm(s, session, flow, state);
    }
    execute(s, session, flow, state).await
}

fn ask_confirm(
    s: &Kefu,
    session: &mut Session,
    flow: &Flow,
    mut state: FlowState,
) -> Result<Outcome, Error> {
    state.confirming = true;
    let ctx = context(s, session, flow, &state, None);
    let t = flow.confirm.as_ref().map_or("", |c| c.get(&session.locale));
    let reply = s.flows.render(t, &ctx).map_err(flow_error)?;
    session.flow = Some(state.clone());
    let mut o = Outcome::say(reply, Action::Confirm);
    o.flow = Some(view(&state, "confirming", None));
    Ok(o)
}

/// Calls the operator's system and renders its reply; a failure hands the customer on.
async fn execute(
    s: &Kefu,
    session: &mut Session,
    flow: &Flow,
    state: FlowState,
) -> Result<Outcome, Error> {
    let locale = session.locale.clone();
    let ctx = context(s, session, flow, &state, None);
    let key = format!("{}-{}-{}", session.id, flow.name, state.run);
    let called = s.flows.call(&s.http, flow, &ctx, &key).await;
    session.flow = None;
    for (k, v) in &state.slots {
        session.slots.insert(k.clone(), v.clone());
    }
    let failure = match called {
        Ok((status, body)) => {
            let template = if (200..300).contains(&status) {
                Some((&flow.reply, "done"))
            } else {
                flow.replies
                    .get(&status.to_string())
                    .map(|t| (t, "rejected"))
            };
            match template {
                Some((t, how)) => {
                    let mut ctx = context(s, session, flow, &state, Some(&body));
                    ctx["status"] = status.into();
                    let reply = s.flows.render(t.get(&locale), &ctx).map_err(flow_error)?;
                    let mut o = Outcome::say(reply, Action::FlowResult);
                    o.flow = Some(view(&state, how, Some(body)));
                    return Ok(o);
                }
                None => format!("{} {} answered {status}", flow.call.method, flow.name),
            }
        }
        Err(e) => e,
    };
    tracing::warn!(
        flow = flow.name,
        error = failure,
        "flow call failed: handing off"
    );
    Ok(flow_failed(s, session, flow, state, &failure))
}

/// Hands the customer on when a flow cannot finish; the flow's slots travel in the package.
fn flow_failed(
    s: &Kefu,
    session: &mut Session,
    flow: &Flow,
    state: FlowState,
    why: &str,
) -> Outcome {
    session.flow = Some(state.clone());
    let route = unanswered_route(s, session);
    let vip = s.config.routing.is_vip(session.customer.tier.as_deref());
    let cause = Cause {
        reason: Reason::FlowFailed,
        detail: format!("flow {}: {why}", flow.name),
        route,
        intent: flow.intents.first().map(String::as_str),
        severity: None,
        vip,
    };
    let mut o = Outcome::say(String::new(), Action::Handoff);
    o.flow = Some(view(&state, "failed", None));
    hand_over(s, session, cause, o)
}

/// Hands the customer to a person: the package and the hand-off reply in `o`.
fn hand_over(s: &Kefu, session: &mut Session, cause: Cause, mut o: Outcome) -> Outcome {
    o.handoff = Some(handoff::hand_off(session, cause));
    o.reply = s.config.dialog.replies.handoff.get(&session.locale).into();
    o.action = Action::Handoff;
    o
}

fn view(state: &FlowState, status: &'static str, result: Option<serde_json::Value>) -> FlowView {
    FlowView {
        name: state.name.clone(),
        status,
        awaiting: state.awaiting.clone(),
        slots: state.slots.clone(),
        result,
    }
}

/// What flow templates see.
fn context(
    s: &Kefu,
    session: &Session,
    flow: &Flow,
    state: &FlowState,
    response: Option<&serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({
        "slots": state.slots,
        "labels": s.flows.labels(flow, &state.slots, &session.locale),
        "services": s.config.dialog.services,
        "response": response.cloned().unwrap_or(serde_json::Value::Null),
        "session": {
            "id": session.id,
            "customer_id": session.customer.id,
            "tier": session.customer.tier,
            "channel": session.channel,
            "locale": session.locale,
        },
    })
}

fn flow_error(e: String) -> Error {
    Error::Flow(e)
}

/// The flows configured for this server.
pub fn compile_flows(cfg: &super::DialogConfig) -> Arc<Flows> {
    Arc::new(Flows::compile(cfg.effective_flows()).expect("validated at start"))
}

/// Sessions as configured: memory, or Redis (connected and checked).
pub async fn open_store(
    cfg: &super::DialogConfig,
    outgoing: &crate::outgoing::OutgoingConfig,
) -> anyhow::Result<Arc<dyn SessionStore>> {
    use anyhow::Context as _;
    let ttl = std::time::Duration::from_secs(cfg.session_ttl_secs);
    let ca = outgoing.ca_pem().map_err(anyhow::Error::msg)?;
    Ok(match cfg.store {
        super::StoreKind::Memory => {
            Arc::new(super::session::MemoryStore::new(ttl, cfg.max_sessions))
        }
        super::StoreKind::Redis => Arc::new(
            super::session::RedisStore::connect(
                &cfg.redis_url,
                &cfg.redis_prefix,
                ttl,
                ca.as_deref(),
            )
            .await
            .with_context(|| {
                format!(
                    "connecting to the session store at dialog.redis_url {}",
                    cfg.redis_url
                )
            })?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_questions_and_requests() {
        assert!(asks_about_policy("退货运费谁出"));
        assert!(asks_about_policy("How long does a refund take?"));
        assert!(!asks_about_policy("我要退货"));
        assert!(!asks_about_policy("我的订单到哪了"));
        assert!(!asks_about_policy("能帮我查下订单吗"));
        assert!(!asks_about_policy("I want a refund"));
    }

    #[test]
    fn options_are_picked_by_number_or_question() {
        let c = |id: &str, q: &str| Choice {
            faq_id: id.into(),
            question: q.into(),
        };
        let choices = vec![c("a", "退款多久到账"), c("b", "退货运费谁承担")];
        assert_eq!(pick(&choices, "2").unwrap().faq_id, "b");
        assert_eq!(pick(&choices, "第一个").unwrap().faq_id, "a");
        assert_eq!(pick(&choices, "退货运费谁承担").unwrap().faq_id, "b");
        assert!(pick(&choices, "3").is_none());
        assert!(pick(&choices, "0").is_none());
        assert!(pick(&[], "1").is_none());
    }

    #[test]
    fn bot_replies_are_cut_to_their_first_sentence() {
        assert_eq!(first_sentence("好的。请提供订单号。"), "好的。");
        assert_eq!(first_sentence("Sure! Which order?"), "Sure!");
        assert_eq!(first_sentence("没有标点"), "没有标点");
    }

    #[test]
    fn locale_follows_the_words() {
        assert_eq!(crate::dialog::locale_of("我要退款"), Some("zh"));
        assert_eq!(crate::dialog::locale_of("I want a refund"), Some("en"));
        assert_eq!(crate::dialog::locale_of("KF2026112001"), None);
        assert_eq!(crate::dialog::locale_of("13800138000"), None);
    }
}
