//! The routing policy: ordered rules over intent, confidence, customer tier, complaint
//! severity and explicit requests for a person decide where a conversation goes. Configured in
//! `[routing]` of `kefu.toml`; the first rule whose conditions all hold wins, and when none
//! does the bot keeps the conversation.
//!
//! The defaults follow the shop demo's service standards (datasets/demo/README.md): a request
//! for a person always reaches one (a VIP agent for VIP tiers); complaints go to the
//! complaints team graded by severity (urgent: response within 15 minutes; major: resolved
//! within 24 hours; general: first contact within 24 hours); a VIP customer the bot cannot
//! answer goes to a VIP agent.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Bot,
    Agent,
    VipAgent,
    Complaints,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

/// One rule: conditions (all must hold; an absent or empty condition holds always) and the
/// route it gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Shown in the route as `rule`.
    pub name: String,
    /// The customer asked for a person (the `human_intents` or one of `human_phrases`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_request: Option<bool>,
    /// The customer's tier is one of `vip_tiers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<bool>,
    /// The bot cannot answer: out of scope, or confidence under `min_confidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unanswered: Option<bool>,
    /// The intent is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intents: Vec<String>,
    /// The complaint severity (from the severity model) is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<String>,
    /// The customer's tier is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<String>,
    pub target: Target,
    pub priority: Priority,
    /// Service-level commitment in minutes (none for the bot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_minutes: Option<u32>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Every customer tier requests may name (case-insensitive); any other is refused, so that
    /// a mistyped tier never silently loses its routing. Empty: any tier is accepted.
    pub tiers: Vec<String>,
    /// Customer tiers treated as VIP.
    pub vip_tiers: Vec<String>,
    /// Intents that are a request for a person.
    pub human_intents: Vec<String>,
    /// Phrases that are a request for a person wherever they appear (case-insensitive), so
    /// that such a request reaches a person even when the classifier is unsure.
    pub human_phrases: Vec<String>,
    /// Intents graded by the severity model.
    pub complaint_intents: Vec<String>,
    /// The intent model that grades complaints.
    pub severity_model: String,
    /// Below this confidence the bot is taken not to know the answer.
    pub min_confidence: f32,
    pub rules: Vec<Rule>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        let rule = |name: &str, target, priority, sla: Option<u32>, reason: &str| Rule {
            name: name.into(),
            human_request: None,
            vip: None,
            unanswered: None,
            intents: vec![],
            severity: vec![],
            tiers: vec![],
            target,
            priority,
            sla_minutes: sla,
            reason: reason.into(),
        };
        use Priority::*;
        use Target::*;
        Self {
            tiers: ["regular", "silver", "gold", "diamond", "vip"]
                .map(String::from)
                .to_vec(),
            vip_tiers: vec!["vip".into(), "gold".into(), "diamond".into()],
            human_intents: vec!["transfer_to_human".into()],
            human_phrases: [
                "转人工",
                "人工客服",
                "人工服务",
                "找人工",
                "真人客服",
                "human agent",
                "real person",
                "talk to a human",
                "speak to a human",
                "talk to a person",
                "speak to a person",
                "i want a human",
                "live agent",
            ]
            .map(String::from)
            .to_vec(),
            complaint_intents: vec!["complaint".into()],
            severity_model: "complaint_severity".into(),
            min_confidence: 0.5,
            rules: vec![
                Rule {
                    human_request: Some(true),
                    vip: Some(true),
                    ..rule(
                        "vip_asks_for_person",
                        VipAgent,
                        High,
                        Some(5),
                        "a VIP customer asked for a person",
                    )
                },
                Rule {
                    human_request: Some(true),
                    ..rule(
                        "asks_for_person",
                        Agent,
                        Normal,
                        Some(15),
                        "the customer asked for a person",
                    )
                },
                Rule {
                    intents: vec!["complaint".into()],
                    severity: vec!["urgent".into()],
                    ..rule(
                        "urgent_complaint",
                        Complaints,
                        Urgent,
                        Some(15),
                        "urgent complaint: response within 15 minutes",
                    )
                },
                Rule {
                    intents: vec!["complaint".into()],
                    severity: vec!["major".into()],
                    ..rule(
                        "major_complaint",
                        Complaints,
                        High,
                        Some(24 * 60),
                        "major complaint: resolved within 24 hours",
                    )
                },
                Rule {
                    intents: vec!["complaint".into()],
                    ..rule(
                        "complaint",
                        Complaints,
                        Normal,
                        Some(24 * 60),
                        "general complaint: first contact within 24 hours, solution within 3 business days",
                    )
                },
                Rule {
                    vip: Some(true),
                    unanswered: Some(true),
                    ..rule(
                        "vip_unanswered",
                        VipAgent,
                        High,
                        Some(5),
                        "a VIP customer asked something the bot cannot answer",
                    )
                },
                Rule {
                    unanswered: Some(true),
                    ..rule(
                        "unanswered",
                        Bot,
                        Low,
                        None,
                        "the bot is not sure what the customer wants and asks them to rephrase",
                    )
                },
            ],
        }
    }
}

/// What a routing decision looks at.
#[derive(Debug, Clone, Default)]
pub struct RouteInput<'a> {
    pub text: &'a str,
    pub intent: &'a str,
    pub confidence: f32,
    pub out_of_scope: bool,
    pub tier: Option<&'a str>,
    pub severity: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Route {
    pub target: Target,
    pub priority: Priority,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_minutes: Option<u32>,
    /// The rule that decided (`default` when none matched).
    pub rule: String,
}

impl RoutingConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(format!(
                "routing.min_confidence must be between 0 and 1, got {}",
                self.min_confidence
            ));
        }
        let unknown = |t: &String| self.checked_tier(t).is_err();
        if let Some(t) = self.vip_tiers.iter().find(|t| unknown(t)) {
            return Err(format!(
                "routing.vip_tiers names {t:?}, which routing.tiers does not list"
            ));
        }
        for (i, r) in self.rules.iter().enumerate() {
            if let Some(t) = r.tiers.iter().find(|t| unknown(t)) {
                return Err(format!(
                    "routing.rules[{i}] ({}): tier {t:?} is not in routing.tiers",
                    r.name
                ));
            }
            if r.name.trim().is_empty() {
                return Err(format!("routing.rules[{i}].name is empty"));
            }
            if r.reason.trim().is_empty() {
                return Err(format!("routing.rules[{i}] ({}): reason is empty", r.name));
            }
        }
        Ok(())
    }

    /// `Err` naming the known tiers unless `tier` is one of `tiers` (or `tiers` is empty).
    pub fn checked_tier(&self, tier: &str) -> Result<(), String> {
        if self.tiers.is_empty() || self.tiers.iter().any(|t| t.eq_ignore_ascii_case(tier)) {
            Ok(())
        } else {
            Err(format!(
                "tier {tier:?} is unknown (one of {}; routing.tiers)",
                self.tiers.join(", ")
            ))
        }
    }

    /// Whether the text or the intent asks for a person.
    pub fn human_request(&self, text: &str, intent: &str) -> bool {
        let lower = text.to_lowercase();
        self.human_intents.iter().any(|i| i == intent)
            || self
                .human_phrases
                .iter()
                .any(|p| lower.contains(&p.to_lowercase()))
    }

    pub fn is_vip(&self, tier: Option<&str>) -> bool {
        tier.is_some_and(|t| self.vip_tiers.iter().any(|v| v.eq_ignore_ascii_case(t)))
    }

    pub fn is_complaint(&self, intent: &str) -> bool {
        self.complaint_intents.iter().any(|c| c == intent)
    }

    pub fn route(&self, x: &RouteInput) -> Route {
        let human = self.human_request(x.text, x.intent);
        let vip = self.is_vip(x.tier);
        let unanswered = x.out_of_scope || x.confidence < self.min_confidence;
        let holds = |want: Option<bool>, have: bool| want.is_none_or(|w| w == have);
        let within = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|l| l.eq_ignore_ascii_case(v)))
        };
        for r in &self.rules {
            if holds(r.human_request, human)
                && holds(r.vip, vip)
                && holds(r.unanswered, unanswered)
                && within(&r.intents, Some(x.intent))
                && within(&r.severity, x.severity)
                && within(&r.tiers, x.tier)
            {
                return Route {
                    target: r.target,
                    priority: r.priority,
                    reason: r.reason.clone(),
                    sla_minutes: r.sla_minutes,
                    rule: r.name.clone(),
                };
            }
        }
        Route {
            target: Target::Bot,
            priority: Priority::Normal,
            reason: format!("the bot handles {}", x.intent),
            sla_minutes: None,
            rule: "default".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(text: &'a str, intent: &'a str) -> RouteInput<'a> {
        RouteInput {
            text,
            intent,
            confidence: 0.9,
            out_of_scope: false,
            tier: None,
            severity: None,
        }
    }

    fn route(x: RouteInput) -> (Target, Priority, Option<u32>, String) {
        let r = RoutingConfig::default().route(&x);
        (r.target, r.priority, r.sla_minutes, r.rule)
    }

    #[test]
    fn a_request_for_a_person_always_reaches_one() {
        // By intent, and by phrase whatever the classifier thought.
        let (t, _, _, rule) = route(input("can I talk to someone", "transfer_to_human"));
        assert_eq!((t, rule.as_str()), (Target::Agent, "asks_for_person"));
        let mut x = input("别跟我扯了，转人工！", "chitchat");
        x.out_of_scope = true;
        x.confidence = 0.2;
        assert_eq!(route(x).0, Target::Agent);
        let x = input("I want a HUMAN AGENT now", "oos");
        assert_eq!(route(x).0, Target::Agent);
        let mut x = input("转人工", "transfer_to_human");
        x.tier = Some("Diamond");
        assert_eq!(
            route(x),
            (
                Target::VipAgent,
                Priority::High,
                Some(5),
                "vip_asks_for_person".into()
            )
        );
    }

    #[test]
    fn complaints_are_graded_by_severity() {
        let mut x = input("充电器冒烟了", "complaint");
        x.severity = Some("urgent");
        assert_eq!(
            route(x.clone()),
            (
                Target::Complaints,
                Priority::Urgent,
                Some(15),
                "urgent_complaint".into()
            )
        );
        x.severity = Some("major");
        assert_eq!(
            route(x.clone()),
            (
                Target::Complaints,
                Priority::High,
                Some(1440),
                "major_complaint".into()
            )
        );
        x.severity = Some("general");
        assert_eq!(
            route(x.clone()),
            (
                Target::Complaints,
                Priority::Normal,
                Some(1440),
                "complaint".into()
            )
        );
        // Without a severity model the complaint still reaches the complaints team.
        x.severity = None;
        assert_eq!(route(x).0, Target::Complaints);
    }

    #[test]
    fn what_the_bot_cannot_answer_goes_to_a_vip_agent_only_for_vips() {
        let mut x = input("what's the weather", "oos");
        x.out_of_scope = true;
        assert_eq!(
            route(x.clone()),
            (Target::Bot, Priority::Low, None, "unanswered".into())
        );
        x.tier = Some("gold");
        assert_eq!(route(x.clone()).3, "vip_unanswered");
        assert_eq!(route(x.clone()).0, Target::VipAgent);
        x.tier = Some("silver");
        assert_eq!(route(x).0, Target::Bot);
        // Low confidence counts as not answerable.
        let mut x = input("hmm the thing", "order_status");
        x.confidence = 0.3;
        assert_eq!(route(x.clone()).3, "unanswered");
        x.tier = Some("vip");
        assert_eq!(route(x).0, Target::VipAgent);
    }

    #[test]
    fn a_confident_ordinary_intent_stays_with_the_bot() {
        let mut x = input("我的快递到哪了", "order_status");
        x.tier = Some("diamond");
        let r = RoutingConfig::default().route(&x);
        assert_eq!((r.target, r.rule.as_str()), (Target::Bot, "default"));
        assert!(r.reason.contains("order_status"), "{}", r.reason);
    }

    #[test]
    fn rules_apply_in_order_and_validate() {
        let mut cfg = RoutingConfig::default();
        cfg.rules.insert(
            0,
            Rule {
                name: "refunds_to_agents".into(),
                human_request: None,
                vip: None,
                unanswered: None,
                intents: vec!["refund_request".into()],
                severity: vec![],
                tiers: vec!["silver".into()],
                target: Target::Agent,
                priority: Priority::Normal,
                sla_minutes: Some(30),
                reason: "silver refunds".into(),
            },
        );
        let mut x = input("退款", "refund_request");
        assert_eq!(cfg.route(&x).target, Target::Bot);
        x.tier = Some("silver");
        assert_eq!(cfg.route(&x).rule, "refunds_to_agents");
        assert!(cfg.validate().is_ok());
        cfg.min_confidence = 1.5;
        assert!(cfg.validate().unwrap_err().contains("min_confidence"));
        cfg.min_confidence = 0.5;
        cfg.rules[0].reason = " ".into();
        assert!(cfg.validate().unwrap_err().contains("refunds_to_agents"));
    }

    #[test]
    fn unknown_tiers_are_refused_and_config_must_name_known_ones() {
        let c = RoutingConfig::default();
        assert!(c.checked_tier("Gold").is_ok());
        let e = c.checked_tier("platinum").unwrap_err();
        assert!(e.contains("platinum") && e.contains("routing.tiers"), "{e}");
        let any = RoutingConfig {
            tiers: vec![],
            ..RoutingConfig::default()
        };
        assert!(any.checked_tier("platinum").is_ok());
        let bad = RoutingConfig {
            vip_tiers: vec!["platinum".into()],
            ..RoutingConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("routing.vip_tiers"));
    }
}
