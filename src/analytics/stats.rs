//! What the turn records say: volume, decision rates, containment, flow success, latency,
//! satisfaction and feedback collection, in total and per time bucket; the most asked
//! questions; the entries and categories customers are least happy with. Plain functions over
//! the records, so that the report and the API compute the same numbers.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::sla::Attainment;
use super::turns::{Kind, TurnRecord};

/// Feedback on one bot reply (by its `turn_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rated {
    pub turn_id: String,
    pub helpful: Option<bool>,
    pub rating: Option<u8>,
}

/// Time bucket of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    pub fn millis(self) -> i64 {
        match self {
            Bucket::Minute => 60_000,
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Latency {
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Satisfaction {
    /// Replies with feedback.
    pub feedback: u64,
    /// Share of `helpful` answers that said yes.
    pub helpful_share: Option<f64>,
    /// Mean 1–5 rating.
    pub mean_rating: Option<f64>,
    /// Share of ratings that are 4 or 5.
    pub csat: Option<f64>,
}

/// The numbers of one selection of turns. Rates are shares of the `decided` turns (`/v1/match`
/// and `/v1/chat` turns the bot answered, i.e. not those a person had); `null` when there is
/// nothing to divide by.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Numbers {
    /// Every recorded turn.
    pub volume: u64,
    /// Turns by operation: `match`, `intent`, `chat`.
    pub by_kind: BTreeMap<String, u64>,
    pub decided: u64,
    pub answer_rate: Option<f64>,
    pub clarify_rate: Option<f64>,
    pub no_answer_rate: Option<f64>,
    pub handoff_rate: Option<f64>,
    /// Turns a business flow handled (asked a slot, confirmed, finished).
    pub flow_rate: Option<f64>,
    /// Chat conversations with a turn in the selection.
    pub conversations: u64,
    /// Share of conversations never handed to a person.
    pub containment: Option<f64>,
    /// Flows that finished (`done`, `rejected`, `cancelled`, `failed`) and the share `done`.
    pub flows_finished: u64,
    pub flow_success_rate: Option<f64>,
    pub latency: Latency,
    pub satisfaction: Satisfaction,
    /// Share of conversations with feedback on at least one reply.
    pub feedback_collection_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Point {
    /// The bucket's start, milliseconds since the Unix epoch (UTC-aligned).
    pub start_ms: i64,
    #[serde(flatten)]
    pub numbers: Numbers,
}

fn share(n: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// The numbers of `turns`, with the feedback on them from `rated`.
pub fn numbers(turns: &[&TurnRecord], rated: &HashMap<&str, &Rated>) -> Numbers {
    let mut n = Numbers {
        volume: turns.len() as u64,
        ..Default::default()
    };
    let (mut answer, mut clarify, mut no_answer, mut handoff, mut flow) = (0, 0, 0, 0, 0);
    let mut sessions: HashMap<&str, bool> = HashMap::new();
    let mut with_feedback: HashSet<&str> = HashSet::new();
    let (mut flows_done, mut helpful, mut helpful_n, mut ratings, mut rating_sum, mut csat) =
        (0, 0, 0, 0, 0u64, 0);
    let mut latencies = Vec::with_capacity(turns.len());
    for t in turns {
        *n.by_kind.entry(t.kind.as_str().to_string()).or_default() += 1;
        latencies.push(t.latency_ms);
        if t.kind == Kind::Chat
            && let Some(s) = &t.session_id
        {
            *sessions.entry(s).or_default() |= t.handoff;
        }
        if t.kind != Kind::Intent && t.decision.as_deref() != Some("with_agent") {
            n.decided += 1;
            match t.decision.as_deref() {
                Some("answer") => answer += 1,
                Some("clarify") => clarify += 1,
                Some("no_answer") => no_answer += 1,
                Some("handoff") => handoff += 1,
                Some("ask_slot" | "confirm" | "flow_result") => flow += 1,
                _ => {}
            }
        }
        if let Some(s) = t.flow_status.as_deref()
            && matches!(s, "done" | "rejected" | "cancelled" | "failed")
        {
            n.flows_finished += 1;
            flows_done += u64::from(s == "done");
        }
        if let Some(f) = t.turn_id.as_deref().and_then(|id| rated.get(id)) {
            n.satisfaction.feedback += 1;
            if let Some(s) = &t.session_id {
                with_feedback.insert(s);
            }
            if let Some(h) = f.helpful {
                helpful_n += 1;
                helpful += u64::from(h);
            }
            if let Some(r) = f.rating {
                ratings += 1;
                rating_sum += u64::from(r);
                csat += u64::from(r >= 4);
            }
        }
    }
    n.answer_rate = share(answer, n.decided);
    n.clarify_rate = share(clarify, n.decided);
    n.no_answer_rate = share(no_answer, n.decided);
    n.handoff_rate = share(handoff, n.decided);
    n.flow_rate = share(flow, n.decided);
    n.conversations = sessions.len() as u64;
    n.containment = share(
        sessions.values().filter(|h| !**h).count() as u64,
        n.conversations,
    );
    n.flow_success_rate = share(flows_done, n.flows_finished);
    latencies.sort_by(f64::total_cmp);
    n.latency = Latency {
        p50_ms: percentile(&latencies, 0.5),
        p95_ms: percentile(&latencies, 0.95),
    };
    n.satisfaction.helpful_share = share(helpful, helpful_n);
    n.satisfaction.mean_rating = (ratings > 0).then(|| rating_sum as f64 / ratings as f64);
    n.satisfaction.csat = share(csat, ratings);
    n.feedback_collection_rate = share(with_feedback.len() as u64, n.conversations);
    n
}

/// `turns` (sorted by time) in buckets from `from_ms` to `to_ms`; empty buckets included.
pub fn series(
    turns: &[TurnRecord],
    rated: &HashMap<&str, &Rated>,
    from_ms: i64,
    to_ms: i64,
    bucket: Bucket,
) -> Vec<Point> {
    let size = bucket.millis();
    let first = from_ms.div_euclid(size) * size;
    let mut points = Vec::new();
    let mut i = 0;
    let mut start = first;
    while start < to_ms {
        let end = start + size;
        let mut these = Vec::new();
        while i < turns.len() && turns[i].at_ms < end {
            if turns[i].at_ms >= start {
                these.push(&turns[i]);
            }
            i += 1;
        }
        points.push(Point {
            start_ms: start,
            numbers: numbers(&these, rated),
        });
        start = end;
    }
    points
}

/// Lower-cased, whitespace collapsed, trailing punctuation dropped: the same question asked
/// the same way counts once.
pub fn normal_form(text: &str) -> String {
    let t: Vec<&str> = text.split_whitespace().collect();
    t.join(" ")
        .to_lowercase()
        .trim_end_matches(|c: char| c.is_ascii_punctuation() || "？。！，、；：".contains(c))
        .to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Counted {
    /// An entry id, an intent, a category or a question's normal form.
    pub key: String,
    /// How the customers put it (the first time), for questions; the entry's standard
    /// question, for entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub count: u64,
    pub share: f64,
}

/// The most asked, by what was asked and what it was about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct TopQuestions {
    /// `/v1/match` and `/v1/chat` turns counted.
    pub turns: u64,
    /// The same question, asked the same way (masked text).
    pub questions: Vec<Counted>,
    /// Entries answered with.
    pub entries: Vec<Counted>,
    /// Intents recognised (hot topics).
    pub intents: Vec<Counted>,
    /// Categories of the entries answered with.
    pub categories: Vec<Counted>,
}

fn top(counts: HashMap<String, (u64, Option<String>)>, total: u64, limit: usize) -> Vec<Counted> {
    let mut v: Vec<Counted> = counts
        .into_iter()
        .map(|(key, (count, label))| Counted {
            key,
            label,
            count,
            share: share(count, total).unwrap_or(0.0),
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v.truncate(limit);
    v
}

/// The `limit` most frequent questions, entries, intents and categories of `turns`.
pub fn top_questions(turns: &[TurnRecord], limit: usize) -> TopQuestions {
    let mut questions: HashMap<String, (u64, Option<String>)> = HashMap::new();
    let (mut entries, mut intents, mut categories) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    let mut asked = 0;
    for t in turns.iter().filter(|t| t.kind != Kind::Intent) {
        if t.decision.as_deref() == Some("with_agent") {
            continue;
        }
        asked += 1;
        let q = questions
            .entry(normal_form(&t.text))
            .or_insert((0, Some(t.text.clone())));
        q.0 += 1;
        if t.decision.as_deref() == Some("answer")
            && let Some(f) = &t.faq_id
        {
            entries.entry(f.clone()).or_insert((0, None)).0 += 1;
            if let Some(c) = &t.category {
                categories.entry(c.clone()).or_insert((0, None)).0 += 1;
            }
        }
        if let Some(i) = &t.intent {
            intents.entry(i.clone()).or_insert((0, None)).0 += 1;
        }
    }
    TopQuestions {
        turns: asked,
        questions: top(questions, asked, limit),
        entries: top(entries, asked, limit),
        intents: top(intents, asked, limit),
        categories: top(categories, asked, limit),
    }
}

/// How customers took the answers of one entry or category.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Spot {
    /// The entry id or category.
    pub key: String,
    /// The entry's standard question (entries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub answers: u64,
    pub feedback: u64,
    /// Feedback that said "not helpful" or rated 1–2.
    pub negative: u64,
    pub negative_rate: Option<f64>,
    pub mean_rating: Option<f64>,
    /// Answers the customer asked again right after (the same entry again, or a person)
    /// within `analytics.reask_window_secs`.
    pub reasks: u64,
    pub reask_rate: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct WeakSpots {
    pub entries: Vec<Spot>,
    pub categories: Vec<Spot>,
}

#[derive(Default)]
struct Tally {
    answers: u64,
    feedback: u64,
    negative: u64,
    ratings: u64,
    rating_sum: u64,
    reasks: u64,
}

impl Tally {
    fn spot(self, key: String) -> Spot {
        Spot {
            key,
            label: None,
            answers: self.answers,
            feedback: self.feedback,
            negative: self.negative,
            negative_rate: share(self.negative, self.feedback),
            mean_rating: (self.ratings > 0).then(|| self.rating_sum as f64 / self.ratings as f64),
            reasks: self.reasks,
            reask_rate: share(self.reasks, self.answers).unwrap_or(0.0),
        }
    }
}

/// Whether feedback is bad: not helpful, or rated 1–2.
pub fn negative(r: &Rated) -> bool {
    r.helpful == Some(false) || r.rating.is_some_and(|x| x <= 2)
}

/// Entries and categories answered at least `min_answers` times, worst first: by the share
/// of negative feedback, then by the share of re-asks. Only those with some negative feedback
/// or re-ask are listed.
pub fn weak_spots(
    turns: &[TurnRecord],
    rated: &HashMap<&str, &Rated>,
    reask_window_ms: i64,
    min_answers: u64,
    limit: usize,
) -> WeakSpots {
    let mut by_session: HashMap<&str, Vec<&TurnRecord>> = HashMap::new();
    for t in turns.iter().filter(|t| t.kind == Kind::Chat) {
        if let Some(s) = &t.session_id {
            by_session.entry(s).or_default().push(t);
        }
    }
    let reasked = |t: &TurnRecord| -> bool {
        let Some(s) = &t.session_id else { return false };
        let Some(turns) = by_session.get(s.as_str()) else {
            return false;
        };
        let next = turns
            .iter()
            .find(|n| n.at_ms > t.at_ms || (n.at_ms == t.at_ms && !std::ptr::eq(**n, t)));
        next.is_some_and(|n| {
            n.at_ms - t.at_ms <= reask_window_ms && (n.handoff || n.faq_id == t.faq_id)
        })
    };
    let mut entries: HashMap<String, Tally> = HashMap::new();
    let mut categories: HashMap<String, Tally> = HashMap::new();
    for t in turns.iter().filter(|t| t.kind != Kind::Intent) {
        if t.decision.as_deref() != Some("answer") {
            continue;
        }
        let Some(f) = &t.faq_id else { continue };
        let r = t.turn_id.as_deref().and_then(|id| rated.get(id));
        let again = reasked(t);
        let add = |tally: &mut Tally| {
            tally.answers += 1;
            tally.reasks += u64::from(again);
            if let Some(r) = r {
                tally.feedback += 1;
                tally.negative += u64::from(negative(r));
                if let Some(x) = r.rating {
                    tally.ratings += 1;
                    tally.rating_sum += u64::from(x);
                }
            }
        };
        add(entries.entry(f.clone()).or_default());
        if let Some(c) = &t.category {
            add(categories.entry(c.clone()).or_default());
        }
    }
    let worst = |m: HashMap<String, Tally>| {
        let mut v: Vec<Spot> = m
            .into_iter()
            .filter(|(_, t)| t.answers >= min_answers && (t.negative > 0 || t.reasks > 0))
            .map(|(k, t)| t.spot(k))
            .collect();
        v.sort_by(|a, b| {
            let (x, y) = (
                a.negative_rate.unwrap_or(0.0),
                b.negative_rate.unwrap_or(0.0),
            );
            y.total_cmp(&x)
                .then_with(|| b.reask_rate.total_cmp(&a.reask_rate))
                .then_with(|| b.answers.cmp(&a.answers))
                .then_with(|| a.key.cmp(&b.key))
        });
        v.truncate(limit);
        v
    };
    WeakSpots {
        entries: worst(entries),
        categories: worst(categories),
    }
}

/// Why a question counts as unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Gap {
    /// kefu had nothing to answer with.
    NoAnswer,
    /// kefu offered options and the customer left without choosing.
    Abandoned,
    /// The answer got bad feedback.
    BadlyRated,
}

/// The questions kefu did not answer well in `turns` (sorted by time): no answer, a
/// clarification that was the conversation's last turn, and answers rated badly.
pub fn unanswered<'a>(
    turns: &'a [TurnRecord],
    rated: &HashMap<&str, &Rated>,
) -> Vec<(&'a TurnRecord, Gap)> {
    let mut last_of_session: HashMap<&str, usize> = HashMap::new();
    for (i, t) in turns.iter().enumerate() {
        if let Some(s) = &t.session_id {
            last_of_session.insert(s, i);
        }
    }
    let mut out = Vec::new();
    for (i, t) in turns.iter().enumerate() {
        if t.kind == Kind::Intent {
            continue;
        }
        let gap = match t.decision.as_deref() {
            Some("no_answer") => Some(Gap::NoAnswer),
            Some("clarify")
                if t.session_id
                    .as_deref()
                    .is_some_and(|s| last_of_session.get(s) == Some(&i)) =>
            {
                Some(Gap::Abandoned)
            }
            _ => t
                .turn_id
                .as_deref()
                .and_then(|id| rated.get(id))
                .filter(|r| negative(r))
                .map(|_| Gap::BadlyRated),
        };
        if let Some(g) = gap {
            out.push((t, g));
        }
    }
    out
}

/// A window resolved to milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stats {
    #[serde(flatten)]
    pub window: Window,
    pub bucket: Bucket,
    pub totals: Numbers,
    /// Hand-offs created in the window and how their SLAs went.
    pub sla: Attainment,
    pub series: Vec<Point>,
    /// Turns the analytics queue dropped since start (it was full).
    pub dropped: u64,
}

/// The closest entry to a knowledge gap.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Nearest {
    pub faq_id: String,
    pub question: String,
    pub score: f32,
}

/// Questions kefu did not answer well, alike in meaning.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GapCluster {
    /// Stable while the representative question stays the same; names the cluster in
    /// `POST /v1/stats/unanswered/{id}/draft`.
    pub id: String,
    pub count: u64,
    /// The member closest to all the others.
    pub representative: String,
    /// Distinct wordings, most asked first (at most 10).
    pub examples: Vec<String>,
    /// How many members are there for each reason (`no_answer`, `abandoned`, `badly_rated`).
    pub reasons: BTreeMap<String, u64>,
    /// Mean cosine between members.
    pub cohesion: f32,
    pub first_ms: i64,
    pub last_ms: i64,
    /// The existing entry closest to the representative question, if any.
    pub nearest: Option<Nearest>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Unanswered {
    #[serde(flatten)]
    pub window: Window,
    /// Unanswered questions in the window (the newest `analytics.max_unanswered` clustered).
    pub questions: u64,
    pub clusters: Vec<GapCluster>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(at_ms: i64, session: &str, n: u32, decision: &str, faq: Option<&str>) -> TurnRecord {
        let mut t = TurnRecord::new(Kind::Chat, "q", 10.0 + f64::from(n));
        t.at_ms = at_ms;
        t.session_id = Some(session.into());
        t.turn_id = Some(format!("{session}-{n}"));
        t.decision = Some(decision.into());
        t.faq_id = faq.map(str::to_string);
        t.category = faq.map(|_| "orders".to_string());
        t.handoff = decision == "handoff";
        t
    }

    #[test]
    fn rates_containment_latency_and_feedback() {
        let turns = vec![
            turn(0, "a", 1, "answer", Some("f1")),
            turn(1000, "a", 2, "answer", Some("f1")),
            turn(2000, "b", 1, "no_answer", None),
            turn(3000, "b", 2, "handoff", None),
            turn(4000, "b", 3, "with_agent", None),
        ];
        let fb = [Rated {
            turn_id: "a-1".into(),
            helpful: Some(false),
            rating: Some(2),
        }];
        let rated: HashMap<&str, &Rated> = fb.iter().map(|r| (r.turn_id.as_str(), r)).collect();
        let all: Vec<&TurnRecord> = turns.iter().collect();
        let n = numbers(&all, &rated);
        assert_eq!(n.volume, 5);
        assert_eq!(n.decided, 4);
        assert_eq!(n.answer_rate, Some(0.5));
        assert_eq!(n.no_answer_rate, Some(0.25));
        assert_eq!(n.handoff_rate, Some(0.25));
        assert_eq!(n.conversations, 2);
        assert_eq!(n.containment, Some(0.5));
        assert_eq!(n.feedback_collection_rate, Some(0.5));
        assert_eq!(n.satisfaction.helpful_share, Some(0.0));
        assert_eq!(n.satisfaction.csat, Some(0.0));
        assert_eq!(n.latency.p50_ms, Some(12.0));
        assert_eq!(n.latency.p95_ms, Some(13.0));
        let s = series(&turns, &rated, 0, 120_000, Bucket::Minute);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].numbers.volume, 5);
        assert_eq!(s[1].numbers.volume, 0);
        assert_eq!(s[1].numbers.answer_rate, None);
        // f1 answered twice, asked again right after the first time, rated badly once.
        let w = weak_spots(&turns, &rated, 60_000, 1, 10);
        assert_eq!(w.entries[0].key, "f1");
        assert_eq!(w.entries[0].reasks, 1);
        assert_eq!(w.entries[0].negative, 1);
        let u = unanswered(&turns, &rated);
        let gaps: Vec<Gap> = u.iter().map(|x| x.1).collect();
        assert_eq!(gaps, [Gap::BadlyRated, Gap::NoAnswer]);
    }

    #[test]
    fn the_same_question_asked_the_same_way() {
        assert_eq!(normal_form(" How  do I pay? "), "how do i pay");
        assert_eq!(normal_form("怎么付款？"), "怎么付款");
    }
}
