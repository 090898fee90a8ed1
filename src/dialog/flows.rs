//! Business flows, declared in configuration: an intent starts a flow; the flow asks for each
//! missing slot (validated: a pattern, a phone number, one of a list, free text), asks the
//! customer to confirm, calls the operator's own system over HTTP and renders its JSON reply.
//! Templates (URL, headers, body, prompts, replies) are minijinja: `{{ slots.order_id }}`,
//! `{{ response.status_zh }}`, `{{ services.orders }}`, `{{ session.customer_id }}`.

use std::collections::BTreeMap;
use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior};
use regex::Regex;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::retry::{self, Attempt, Backoff};

/// The demo shop's flows (order status, refund, change of address, ticket), built in.
pub const DEMO_FLOWS: &str = include_str!("../../datasets/demo/flows.toml");

/// A text in the two languages kefu speaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub zh: String,
    pub en: String,
}

impl Text {
    pub fn get(&self, locale: &str) -> &str {
        if locale == "en" { &self.en } else { &self.zh }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotKind {
    /// Matches `pattern` (a regular expression) anywhere in the customer's words.
    Pattern,
    /// A mobile number (mainland China, `+86` allowed) or an international `+` number.
    Phone,
    /// One of `options` (its value or a synonym appears in the words, or its number is given).
    Choice,
    /// Whatever the customer answers when asked.
    Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotOption {
    pub value: String,
    /// How the option is shown to the customer (default: the value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Text>,
    #[serde(default)]
    pub synonyms: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    pub name: String,
    pub kind: SlotKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<SlotOption>,
    /// Asks for the value.
    pub prompt: Text,
    /// Said when the answer is not a valid value (default: the prompt again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<Text>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub url: String,
    #[serde(default = "get")]
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// JSON body; every string in it is a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u64,
    /// Further attempts after a failure (connection error, timeout, 5xx, 429) — only for
    /// idempotent methods, or for POST/PATCH when `idempotency_key` sends a key.
    #[serde(default = "retries")]
    pub retries: u32,
    /// Send an `Idempotency-Key` header (the session and flow instance), so the operator's
    /// system can tell a retry from a new request.
    #[serde(default = "yes")]
    pub idempotency_key: bool,
}

fn get() -> String {
    "GET".into()
}
fn timeout_ms() -> u64 {
    3000
}
fn retries() -> u32 {
    2
}
fn yes() -> bool {
    true
}
fn min_confidence() -> f32 {
    0.5
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Intents that start the flow.
    pub intents: Vec<String>,
    /// The intent's confidence needed to start it.
    #[serde(default = "min_confidence")]
    pub min_confidence: f32,
    #[serde(default)]
    pub slots: Vec<Slot>,
    /// Asked once every slot is filled (answer yes to go on); none: call at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<Text>,
    pub call: Call,
    /// Rendered from a 2xx reply.
    pub reply: Text,
    /// Replies for other statuses by code (e.g. "404"); any other failure hands the customer
    /// to a person.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replies: BTreeMap<String, Text>,
}

/// The demo flows file: `[[flows]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowsFile {
    flows: Vec<Flow>,
}

pub fn demo_flows() -> Vec<Flow> {
    toml::from_str::<FlowsFile>(DEMO_FLOWS)
        .expect("datasets/demo/flows.toml is valid")
        .flows
}

/// A flow in progress, kept in the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlowState {
    pub name: String,
    /// Which run of a flow in this session (part of the idempotency key).
    pub run: u32,
    pub slots: BTreeMap<String, String>,
    /// The slot just asked for.
    pub awaiting: Option<String>,
    /// Waiting for the customer to confirm.
    pub confirming: bool,
    /// Invalid answers to the current question.
    pub invalid: u32,
}

/// What the customer's words gave for one slot.
#[derive(Debug, PartialEq)]
pub enum Extracted {
    Value(String),
    Nothing,
}

/// Checked flows, ready to run.
pub struct Flows {
    pub flows: Vec<Flow>,
    patterns: BTreeMap<(String, String), Regex>,
    phone: Regex,
    env: Environment<'static>,
}

impl std::fmt::Debug for Flows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flows").field("flows", &self.flows).finish()
    }
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

impl Flows {
    /// Checks every flow (names, patterns, methods, templates); the error names the flow and
    /// the field.
    pub fn compile(flows: Vec<Flow>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        let mut patterns = BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        for f in &flows {
            let at = |field: &str| format!("dialog flow {:?}: {field}", f.name);
            if f.name.trim().is_empty() {
                return Err("dialog flow with an empty name".into());
            }
            if !names.insert(f.name.clone()) {
                return Err(format!("dialog flow {:?} is declared twice", f.name));
            }
            if f.intents.is_empty() {
                return Err(at("intents is empty: name the intents that start it"));
            }
            if !(0.0..=1.0).contains(&f.min_confidence) {
                return Err(at("min_confidence must be between 0 and 1"));
            }
            let method = f.call.method.to_uppercase();
            if !METHODS.contains(&method.as_str()) {
                return Err(at(&format!(
                    "call.method {:?} is not one of {}",
                    f.call.method,
                    METHODS.join(", ")
                )));
            }
            if f.call.timeout_ms == 0 {
                return Err(at("call.timeout_ms must be at least 1"));
            }
            let mut slot_names = std::collections::BTreeSet::new();
            for s in &f.slots {
                if !slot_names.insert(&s.name) {
                    return Err(at(&format!("slot {:?} is declared twice", s.name)));
                }
                match s.kind {
                    SlotKind::Pattern => {
                        let p = s.pattern.as_deref().ok_or_else(|| {
                            at(&format!("slot {:?} of kind pattern has no pattern", s.name))
                        })?;
                        let re = Regex::new(p).map_err(|e| {
                            at(&format!("slot {:?}: pattern is invalid: {e}", s.name))
                        })?;
                        patterns.insert((f.name.clone(), s.name.clone()), re);
                    }
                    SlotKind::Choice if s.options.is_empty() => {
                        return Err(at(&format!(
                            "slot {:?} of kind choice has no options",
                            s.name
                        )));
                    }
                    _ => {}
                }
                for (what, t) in std::iter::once(("prompt", &s.prompt))
                    .chain(s.invalid.as_ref().map(|t| ("invalid", t)))
                {
                    check_text(&env, t)
                        .map_err(|e| at(&format!("slot {:?} {what}: {e}", s.name)))?;
                }
            }
            let mut templates = vec![("call.url", f.call.url.as_str())];
            for (k, v) in &f.call.headers {
                templates.push((k.as_str(), v.as_str()));
            }
            for (what, t) in templates {
                env.template_from_str(t)
                    .map_err(|e| at(&format!("{what}: {e}")))?;
            }
            if let Some(b) = &f.call.body {
                check_json(&env, b).map_err(|e| at(&format!("call.body: {e}")))?;
            }
            check_text(&env, &f.reply).map_err(|e| at(&format!("reply: {e}")))?;
            if let Some(c) = &f.confirm {
                check_text(&env, c).map_err(|e| at(&format!("confirm: {e}")))?;
            }
            for (code, t) in &f.replies {
                if code
                    .parse::<u16>()
                    .map_or(true, |c| !(100..600).contains(&c))
                {
                    return Err(at(&format!("replies: {code:?} is not an HTTP status")));
                }
                check_text(&env, t).map_err(|e| at(&format!("replies.{code}: {e}")))?;
            }
        }
        let phone = Regex::new(r"(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d){8}|\+\d{8,15}").expect("valid");
        Ok(Self {
            flows,
            patterns,
            phone,
            env,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// The flow an intent starts, when confident enough.
    pub fn for_intent(&self, intent: &str, confidence: f32) -> Option<&Flow> {
        self.flows
            .iter()
            .find(|f| f.intents.iter().any(|i| i == intent) && confidence >= f.min_confidence)
    }

    /// The value `text` gives for `slot`. `asked`: the customer is answering this slot's
    /// question (free text and option numbers count only then).
    pub fn extract(&self, flow: &Flow, slot: &Slot, text: &str, asked: bool) -> Extracted {
        let text = crate::embed::normalize(text);
        let found = match slot.kind {
            SlotKind::Pattern => self
                .patterns
                .get(&(flow.name.clone(), slot.name.clone()))
                .and_then(|re| re.find(&text))
                .map(|m| m.as_str().to_string()),
            SlotKind::Phone => self
                .phone
                .find(&text)
                .map(|m| m.as_str().replace([' ', '-'], "")),
            SlotKind::Choice => choose(&slot.options, &text, asked),
            SlotKind::Text => {
                let t = text.trim();
                (asked && !t.is_empty()).then(|| t.to_string())
            }
        };
        found.map_or(Extracted::Nothing, Extracted::Value)
    }

    /// Values for pattern and phone slots of any flow found in `text`, by slot name: what a
    /// later flow may reuse without asking.
    pub fn scan(&self, text: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = vec![];
        for f in &self.flows {
            for s in &f.slots {
                if matches!(s.kind, SlotKind::Pattern | SlotKind::Phone)
                    && let Extracted::Value(v) = self.extract(f, s, text, false)
                    && !out.iter().any(|(n, _)| n == &s.name)
                {
                    out.push((s.name.clone(), v));
                }
            }
        }
        out
    }

    /// Each filled slot as the customer should read it: a choice's label, else the value.
    pub fn labels(
        &self,
        flow: &Flow,
        slots: &BTreeMap<String, String>,
        locale: &str,
    ) -> BTreeMap<String, String> {
        slots
            .iter()
            .map(|(name, v)| {
                let label = flow
                    .slots
                    .iter()
                    .find(|s| &s.name == name)
                    .and_then(|s| s.options.iter().find(|o| &o.value == v))
                    .and_then(|o| o.label.as_ref())
                    .map_or(v.as_str(), |l| l.get(locale));
                (name.clone(), label.to_string())
            })
            .collect()
    }

    /// Renders a template with `ctx`.
    pub fn render(&self, template: &str, ctx: &serde_json::Value) -> Result<String, String> {
        self.env
            .render_str(template, ctx)
            .map_err(|e| format!("template: {e}"))
    }

    /// Renders every string of a JSON body.
    pub fn render_json(
        &self,
        v: &serde_json::Value,
        ctx: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        Ok(match v {
            Value::String(s) => Value::String(self.render(s, ctx)?),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.render_json(x, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| Ok((k.clone(), self.render_json(x, ctx)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }

    /// Calls the operator's system: the rendered request, retried (when safe) after connection
    /// errors, timeouts, 429 and 5xx. Returns the final status and JSON body (`null` when the
    /// body is not JSON), or why no reply came; a redirect (not followed) and a body over
    /// `outgoing.max_response_bytes` are failures.
    pub async fn call(
        &self,
        http: &crate::outgoing::Outgoing,
        flow: &Flow,
        ctx: &serde_json::Value,
        idempotency_key: &str,
    ) -> Result<(u16, serde_json::Value), String> {
        self.send(http, &flow.call, ctx, idempotency_key).await
    }

    /// Makes the templated request `c` with `ctx` (a flow's call, an SMS provider's send),
    /// retried as [`Flows::call`] says.
    pub async fn send(
        &self,
        http: &crate::outgoing::Outgoing,
        c: &Call,
        ctx: &serde_json::Value,
        idempotency_key: &str,
    ) -> Result<(u16, serde_json::Value), String> {
        let url = self.render(&c.url, ctx)?;
        let method = reqwest::Method::from_bytes(c.method.to_uppercase().as_bytes())
            .map_err(|e| e.to_string())?;
        let body = c
            .body
            .as_ref()
            .map(|b| self.render_json(b, ctx))
            .transpose()?;
        let mut headers = vec![];
        for (k, v) in &c.headers {
            headers.push((k.clone(), self.render(v, ctx)?));
        }
        let idempotent = matches!(method.as_str(), "GET" | "PUT" | "DELETE");
        let keyed = c.idempotency_key && !idempotent;
        let (method, url, body, headers) = (&method, &url, &body, &headers);
        let attempt = |_: u32| async move {
            let mut req = http
                .client
                .request(method.clone(), url)
                .timeout(Duration::from_millis(c.timeout_ms));
            for (k, v) in headers {
                req = req.header(k, v);
            }
            if keyed {
                req = req.header("idempotency-key", idempotency_key);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) if resp.status().is_redirection() => Attempt::Fail(format!(
                    "{method} {url} {}",
                    crate::outgoing::redirect_refusal(&resp).unwrap_or_default()
                )),
                Ok(resp) if retry::retryable(resp.status()) => Attempt::Retry(format!(
                    "{method} {url} answered {}",
                    resp.status().as_u16()
                )),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match crate::outgoing::read_capped(resp, http.max_response_bytes).await {
                        Ok(bytes) => Attempt::Done((
                            status,
                            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
                        )),
                        Err(e) => Attempt::Fail(format!("{method} {url}: {e}")),
                    }
                }
                Err(e) if e.is_timeout() => Attempt::Retry(format!(
                    "{method} {url} timed out after {} ms",
                    c.timeout_ms
                )),
                Err(e) => Attempt::Retry(format!(
                    "{method} {url} failed: {}",
                    crate::outgoing::chain(&e)
                )),
            }
        };
        backoff(c, method)
            .run(attempt)
            .await
            .map(|(reply, _attempts)| reply)
    }
}

/// The retry policy of a flow's call: its `retries` when the request may be repeated
/// (see [`retry::may_repeat`]), none otherwise.
fn backoff(c: &Call, method: &reqwest::Method) -> Backoff {
    Backoff {
        retries: if retry::may_repeat(method, c.idempotency_key) {
            c.retries
        } else {
            0
        },
        first_delay: Duration::from_millis(200),
        max_doublings: 4,
    }
}

/// Checks a templated request outside a flow (an SMS provider's send): its method, timeout and
/// templates; `key` names the setting in the message.
pub fn check_call(key: &str, c: &Call) -> Result<(), String> {
    let method = c.method.to_uppercase();
    if !METHODS.contains(&method.as_str()) {
        return Err(format!(
            "{key}.method {:?} is not one of {}",
            c.method,
            METHODS.join(", ")
        ));
    }
    if c.timeout_ms == 0 {
        return Err(format!("{key}.timeout_ms must be at least 1"));
    }
    let env = Environment::new();
    env.template_from_str(&c.url)
        .map_err(|e| format!("{key}.url: {e}"))?;
    for (h, v) in &c.headers {
        env.template_from_str(v)
            .map_err(|e| format!("{key}.headers.{h}: {e}"))?;
    }
    if let Some(b) = &c.body {
        check_json(&env, b).map_err(|e| format!("{key}.body: {e}"))?;
    }
    Ok(())
}

fn check_text(env: &Environment<'static>, t: &Text) -> Result<(), String> {
    for s in [&t.zh, &t.en] {
        env.template_from_str(s).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn check_json(env: &Environment<'static>, v: &serde_json::Value) -> Result<(), String> {
    match v {
        serde_json::Value::String(s) => env
            .template_from_str(s)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        serde_json::Value::Array(a) => a.iter().try_for_each(|x| check_json(env, x)),
        serde_json::Value::Object(o) => o.values().try_for_each(|x| check_json(env, x)),
        _ => Ok(()),
    }
}

/// The option the words name: a value or synonym they contain (the longest wins), or when
/// answering the question, its number.
fn choose(options: &[SlotOption], text: &str, asked: bool) -> Option<String> {
    let lower = text.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for o in options {
        let labels = o.label.iter().flat_map(|l| [&l.zh, &l.en]);
        for w in std::iter::once(&o.value).chain(labels).chain(&o.synonyms) {
            let w = w.to_lowercase();
            if !w.is_empty() && lower.contains(&w) && best.is_none_or(|(n, _)| w.len() > n) {
                best = Some((w.len(), &o.value));
            }
        }
    }
    if let Some((_, v)) = best {
        return Some(v.to_string());
    }
    if asked {
        let t = lower
            .trim()
            .trim_start_matches('第')
            .trim_end_matches(['个', '项', '.']);
        if let Ok(n) = t.parse::<usize>()
            && (1..=options.len()).contains(&n)
        {
            return Some(options[n - 1].value.clone());
        }
    }
    None
}

/// Words that leave a flow ("never mind").
pub fn is_cancel(text: &str) -> bool {
    let t: String = crate::text::normalize(text)
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect();
    let t = t.trim();
    const EXACT: &[&str] = &[
        "算了",
        "取消",
        "不用了",
        "不要了",
        "不办了",
        "不需要了",
        "不弄了",
        "退出",
        "cancel",
        "stop",
        "quit",
        "exit",
        "never mind",
        "nevermind",
        "forget it",
        "no thanks",
    ];
    const START: &[&str] = &["算了", "不用了", "不要了", "never mind", "forget it"];
    EXACT.contains(&t) || START.iter().any(|s| t.starts_with(s))
}

/// A yes or no to a confirmation question; `None` when it is neither.
pub fn yes_no(text: &str) -> Option<bool> {
    let t: String = crate::text::normalize(text)
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect();
    let t = t.trim();
    const YES: &[&str] = &[
        "是",
        "是的",
        "对",
        "对的",
        "确认",
        "确定",
        "好",
        "好的",
        "可以",
        "行",
        "嗯",
        "没问题",
        "提交",
        "yes",
        "y",
        "yeah",
        "yep",
        "ok",
        "okay",
        "sure",
        "confirm",
        "correct",
        "right",
    ];
    const NO: &[&str] = &[
        "不",
        "否",
        "不是",
        "不对",
        "不行",
        "不可以",
        "错了",
        "no",
        "n",
        "nope",
        "wrong",
    ];
    if YES.contains(&t) || t.starts_with("确认") || t.starts_with("yes") {
        Some(true)
    } else if NO.contains(&t) || t.starts_with("不对") || t.starts_with("no ") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls the demo's first flow with its call pointed at `url`, changed by `edit`.
    async fn call_at(
        url: &str,
        edit: impl FnOnce(&mut Call),
    ) -> Result<(u16, serde_json::Value), String> {
        let mut flow = demo_flows().remove(0);
        flow.call.url = url.to_string();
        flow.call.body = None;
        edit(&mut flow.call);
        let f = Flows::compile(vec![flow.clone()]).unwrap();
        f.call(
            &crate::outgoing::Outgoing::new(&Default::default()).unwrap(),
            &flow,
            &serde_json::json!({}),
            "s1-f1",
        )
        .await
    }

    #[tokio::test]
    async fn calls_retry_when_safe_with_the_shared_backoff() {
        // A keyed POST is retried after 5xx, sending its key every time.
        let (url, seen) = retry::flaky_server(2, 503).await;
        let started = std::time::Instant::now();
        let r = call_at(&url, |c| c.method = "POST".into()).await;
        assert_eq!(r.unwrap(), (200, serde_json::json!({"ok": true})));
        assert_eq!(*seen.lock().unwrap(), vec![Some("s1-f1".to_string()); 3]);
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "200 + 400 ms"
        );

        // Without a key a POST is not repeated.
        let (url, seen) = retry::flaky_server(1, 503).await;
        let r = call_at(&url, |c| {
            c.method = "POST".into();
            c.idempotency_key = false;
        })
        .await;
        assert!(r.unwrap_err().contains("answered 503"));
        assert_eq!(seen.lock().unwrap().len(), 1);

        // A GET is repeated without a key, `retries` times; the last failure is returned.
        let (url, seen) = retry::flaky_server(9, 429).await;
        let r = call_at(&url, |c| c.retries = 1).await;
        assert!(r.unwrap_err().contains("answered 429"));
        assert_eq!(*seen.lock().unwrap(), vec![None, None]);

        // A 4xx other than 429 is the operator's answer, not a failure.
        let (url, seen) = retry::flaky_server(1, 404).await;
        assert_eq!(call_at(&url, |_| {}).await.unwrap().0, 404);
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn backoff_of_a_call() {
        let mut c = demo_flows().remove(0).call;
        c.retries = 5;
        let b = backoff(&c, &reqwest::Method::POST);
        assert_eq!(b.retries, 5);
        let waits: Vec<u64> = (0..7).map(|n| b.delay(n).as_millis() as u64).collect();
        assert_eq!(waits, [0, 200, 400, 800, 1600, 3200, 3200]);
        c.idempotency_key = false;
        assert_eq!(backoff(&c, &reqwest::Method::POST).retries, 0);
        assert_eq!(backoff(&c, &reqwest::Method::DELETE).retries, 5);
    }

    fn flows() -> Flows {
        Flows::compile(demo_flows()).expect("demo flows compile")
    }

    #[test]
    fn demo_flows_compile_and_start_from_intents() {
        let f = flows();
        assert_eq!(
            f.for_intent("order_status", 0.9).unwrap().name,
            "order_status"
        );
        assert!(f.for_intent("order_status", 0.1).is_none(), "not confident");
        assert!(f.for_intent("greeting", 0.99).is_none());
    }

    #[test]
    fn slots_are_extracted_and_validated() {
        let f = flows();
        let flow = f.get("order_status").unwrap();
        let slot = &flow.slots[0];
        assert_eq!(
            f.extract(flow, slot, "帮我查下订单ＫＦ2026112001到哪了", false),
            Extracted::Value("KF2026112001".into()),
            "full-width letters normalised"
        );
        assert_eq!(f.extract(flow, slot, "订单12345", true), Extracted::Nothing);
        assert_eq!(
            f.scan("我的手机号是 138-0013-8000，订单 KF2026112002"),
            vec![
                ("order_id".to_string(), "KF2026112002".to_string()),
                ("phone".to_string(), "13800138000".to_string())
            ]
        );
        let refund = f.get("refund").unwrap();
        let reason = refund.slots.iter().find(|s| s.name == "reason").unwrap();
        assert_eq!(
            f.extract(refund, reason, "东西坏了，质量太差", true),
            Extracted::Value("quality".into())
        );
        assert_eq!(
            f.extract(refund, reason, "2", true),
            Extracted::Value(reason.options[1].value.clone())
        );
        assert_eq!(f.extract(refund, reason, "2", false), Extracted::Nothing);
    }

    #[test]
    fn broken_flows_are_refused_with_the_field() {
        let mut bad = demo_flows();
        bad[0].slots[0].pattern = Some("KF(".into());
        let e = Flows::compile(bad).unwrap_err();
        assert!(e.contains("pattern is invalid"), "{e}");
        let mut bad = demo_flows();
        bad[0].reply.zh = "{{ response.status ".into();
        assert!(Flows::compile(bad).unwrap_err().contains("reply"));
        let mut bad = demo_flows();
        bad[0].call.method = "FETCH".into();
        assert!(Flows::compile(bad).unwrap_err().contains("call.method"));
        let mut twice = demo_flows();
        twice.push(twice[0].clone());
        assert!(
            Flows::compile(twice)
                .unwrap_err()
                .contains("declared twice")
        );
    }

    #[test]
    fn templates_render_slots_and_replies() {
        let f = flows();
        let ctx =
            serde_json::json!({"slots": {"order_id": "kf1"}, "response": {"status_zh": "已发货"}});
        assert_eq!(
            f.render(
                "{{ slots.order_id | upper }} {{ response.status_zh }} {{ response.missing.deep }}",
                &ctx
            )
            .unwrap(),
            "KF1 已发货 "
        );
        let body = serde_json::json!({"order_id": "{{ slots.order_id }}", "n": 1});
        assert_eq!(
            f.render_json(&body, &ctx).unwrap(),
            serde_json::json!({"order_id": "kf1", "n": 1})
        );
    }

    #[test]
    fn cancel_and_confirm_words() {
        assert!(is_cancel("算了"));
        assert!(is_cancel("算了吧，不退了"));
        assert!(is_cancel("Never mind."));
        assert!(!is_cancel("取消订单怎么操作"));
        assert_eq!(yes_no("是的"), Some(true));
        assert_eq!(yes_no("确认提交"), Some(true));
        assert_eq!(yes_no("OK!"), Some(true));
        assert_eq!(yes_no("不对"), Some(false));
        assert_eq!(yes_no("运费谁出"), None);
    }
}
