//! FAQ entries and their validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::text::check::{checked_chars, schema};

/// Channels an answer may have a variant for.
pub const CHANNELS: &[&str] = &["web", "app", "wechat", "sms"];

pub const MAX_ID_CHARS: usize = 128;
pub const MAX_TEXT_CHARS: usize = 2_000;
pub const MAX_ANSWER_CHARS: usize = 20_000;
pub const MAX_SIMILAR: usize = 200;
/// What a draft entry made from a knowledge gap answers until an editor writes the answer; an
/// entry with it cannot be enabled.
pub const DRAFT_ANSWER: &str = "(draft: write the answer, then enable the entry)";
/// Longest category or tag.
pub const MAX_LABEL_CHARS: usize = 64;
pub const MAX_TAGS: usize = 50;

/// One knowledge-base entry. The shared `faq` format (`id`, `question`, `answer`) is a valid
/// subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaqEntry {
    /// Stable identifier: letters, digits and `-_.:`, at most 128 characters.
    #[schema(schema_with = schema::kb_id)]
    pub id: String,
    /// The standard question.
    #[schema(schema_with = schema::question)]
    pub question: String,
    /// Other ways customers ask the same thing.
    #[serde(default)]
    #[schema(schema_with = schema::similar)]
    pub similar: Vec<String>,
    /// The default answer.
    #[schema(schema_with = schema::answer)]
    pub answer: String,
    /// Per-channel answer variants (`web`, `app`, `wechat`, `sms`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = channel_answers)]
    pub answers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::label)]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = schema::tags)]
    pub tags: Vec<String>,
    /// e.g. `zh-CN`, `en`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::locale)]
    pub locale: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// First day the entry applies (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = date)]
    pub valid_from: Option<String>,
    /// Last day the entry applies (`YYYY-MM-DD`), not before `valid_from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = date)]
    pub valid_to: Option<String>,
}

/// `YYYY-MM-DD` as [`is_date`] takes it.
fn date() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"))
        .build()
}

/// An object with an answer per channel.
fn channel_answers() -> utoipa::openapi::Object {
    let mut b = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Object)
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ));
    for c in CHANNELS {
        b = b.property(*c, schema::answer());
    }
    b.build()
}

fn yes() -> bool {
    true
}

impl FaqEntry {
    /// An enabled entry with nothing but its id, question and answer.
    pub fn new(id: String, question: String, answer: String) -> Self {
        Self {
            id,
            question,
            similar: vec![],
            answer,
            answers: Default::default(),
            category: None,
            tags: vec![],
            locale: None,
            enabled: true,
            valid_from: None,
            valid_to: None,
        }
    }
}

/// One problem with one field of one entry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    matches!((num(0..4), num(5..7), num(8..10)), (Some(_), Some(m), Some(d)) if (1..=12).contains(&m) && (1..=31).contains(&d))
}

/// Today's date in UTC as `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    civil_date((secs / 86_400) as i64)
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let t = secs % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        civil_date((secs / 86_400) as i64),
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Days since 1970-01-01 → `YYYY-MM-DD` (proleptic Gregorian; H. Hinnant's algorithm).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A category or tag: one line of at most [`MAX_LABEL_CHARS`] characters, not blank.
pub(crate) fn label(err: &mut impl FnMut(&str, String), field: &str, v: &str) {
    if v.trim().is_empty() {
        err(field, "is empty".into());
    } else if v.chars().count() > MAX_LABEL_CHARS {
        err(
            field,
            format!("is longer than {MAX_LABEL_CHARS} characters"),
        );
    } else if let Err(m) = checked_chars(v, false) {
        err(field, m);
    }
}

impl FaqEntry {
    /// Every problem with this entry (empty when valid).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut err = |field: &str, message: String| {
            errs.push(FieldError {
                field: field.into(),
                message,
            })
        };
        if self.id.is_empty() {
            err("id", "is empty".into());
        } else if self.id.chars().count() > MAX_ID_CHARS {
            err("id", format!("is longer than {MAX_ID_CHARS} characters"));
        } else if !self
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            err(
                "id",
                format!("{:?} may only contain letters, digits and -_.:", self.id),
            );
        }
        if self.question.trim().is_empty() {
            err("question", "is empty".into());
        } else if self.question.chars().count() > MAX_TEXT_CHARS {
            err(
                "question",
                format!("is longer than {MAX_TEXT_CHARS} characters"),
            );
        } else if let Err(m) = checked_chars(&self.question, false) {
            err("question", m);
        }
        if self.similar.len() > MAX_SIMILAR {
            err("similar", format!("has more than {MAX_SIMILAR} questions"));
        }
        for (i, s) in self.similar.iter().enumerate() {
            if s.trim().is_empty() {
                err(&format!("similar[{i}]"), "is empty".into());
            } else if s.chars().count() > MAX_TEXT_CHARS {
                err(
                    &format!("similar[{i}]"),
                    format!("is longer than {MAX_TEXT_CHARS} characters"),
                );
            } else if let Err(m) = checked_chars(s, false) {
                err(&format!("similar[{i}]"), m);
            }
        }
        if let Some(c) = &self.category {
            label(&mut err, "category", c);
        }
        if self.tags.len() > MAX_TAGS {
            err("tags", format!("has more than {MAX_TAGS} tags"));
        }
        for (i, t) in self.tags.iter().enumerate() {
            label(&mut err, &format!("tags[{i}]"), t);
        }
        if let Some(l) = &self.locale
            && let Err(m) = crate::text::check::checked_locale(l)
        {
            err("locale", m);
        }
        if self.answer.trim().is_empty() {
            err("answer", "is empty".into());
        } else if self.answer.chars().count() > MAX_ANSWER_CHARS {
            err(
                "answer",
                format!("is longer than {MAX_ANSWER_CHARS} characters"),
            );
        } else if let Err(m) = checked_chars(&self.answer, true) {
            err("answer", m);
        } else if self.enabled && self.answer.trim() == DRAFT_ANSWER {
            err(
                "answer",
                "is still the draft's placeholder: write the answer before enabling the entry"
                    .into(),
            );
        }
        for (channel, a) in &self.answers {
            if !CHANNELS.contains(&channel.as_str()) {
                err(
                    &format!("answers.{channel}"),
                    format!("unknown channel (one of {})", CHANNELS.join(", ")),
                );
            } else if a.trim().is_empty() {
                err(&format!("answers.{channel}"), "is empty".into());
            } else if a.chars().count() > MAX_ANSWER_CHARS {
                err(
                    &format!("answers.{channel}"),
                    format!("is longer than {MAX_ANSWER_CHARS} characters"),
                );
            } else if let Err(m) = checked_chars(a, true) {
                err(&format!("answers.{channel}"), m);
            }
        }
        for (field, v) in [
            ("valid_from", &self.valid_from),
            ("valid_to", &self.valid_to),
        ] {
            if let Some(d) = v
                && !is_date(d)
            {
                err(field, format!("{d:?} is not a date (YYYY-MM-DD)"));
            }
        }
        if let (Some(a), Some(b)) = (&self.valid_from, &self.valid_to)
            && is_date(a)
            && is_date(b)
            && a > b
        {
            err("valid_to", format!("{b} is before valid_from {a}"));
        }
        errs
    }

    /// Whether `day` (`YYYY-MM-DD`) lies within the entry's validity dates (inclusive).
    pub fn valid_on(&self, day: &str) -> bool {
        self.valid_from.as_deref().is_none_or(|f| f <= day)
            && self.valid_to.as_deref().is_none_or(|t| day <= t)
    }

    /// The answer for `channel`, falling back to the default.
    pub fn answer_for(&self, channel: Option<&str>) -> &str {
        channel
            .and_then(|c| self.answers.get(c))
            .map_or(&self.answer, |s| s.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> FaqEntry {
        serde_json::from_str(
            r#"{"id": "zh-refunds-001", "question": "退款多久到账", "answer": "1-3个工作日"}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_draft_cannot_be_enabled_before_its_answer_is_written() {
        let mut e = entry();
        e.answer = DRAFT_ANSWER.into();
        e.enabled = false;
        assert!(
            e.validate().is_empty(),
            "a disabled draft is stored as it is"
        );
        e.enabled = true;
        let errs = e.validate();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].message.contains("placeholder"), "{errs:?}");
    }

    #[test]
    fn shared_faq_format_is_a_valid_subset() {
        let e = entry();
        assert!(e.enabled);
        assert!(e.validate().is_empty());
    }

    #[test]
    fn validation_names_each_field() {
        let mut e = entry();
        e.id = "bad id!".into();
        e.question = " ".into();
        e.similar = vec!["ok".into(), "".into()];
        e.answers.insert("fax".into(), "x".into());
        e.valid_from = Some("2026-13-01".into());
        let fields: Vec<String> = e.validate().into_iter().map(|f| f.field).collect();
        assert_eq!(
            fields,
            ["id", "question", "similar[1]", "answers.fax", "valid_from"]
        );
    }

    #[test]
    fn dates_and_validity_windows() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_513), "2026-03-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(today().len(), 10);
        let mut e = entry();
        assert!(e.valid_on("2026-11-29"));
        e.valid_from = Some("2026-12-01".into());
        assert!(!e.valid_on("2026-11-29") && e.valid_on("2026-12-01"));
        e.valid_to = Some("2026-12-31".into());
        assert!(e.valid_on("2026-12-31") && !e.valid_on("2027-01-01"));
    }

    #[test]
    fn channel_answers_fall_back_to_the_default() {
        let mut e = entry();
        e.answers.insert("sms".into(), "短".into());
        assert_eq!(e.answer_for(Some("sms")), "短");
        assert_eq!(e.answer_for(Some("web")), "1-3个工作日");
        assert_eq!(e.answer_for(None), "1-3个工作日");
    }
}
