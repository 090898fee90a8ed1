//! What text kefu accepts to store: no control characters (tab and line breaks only where a
//! field holds paragraphs) and no bidirectional embeddings, overrides or isolates, which make
//! stored text display as something other than what it is (an answer whose digits show
//! reversed, an id that reads as another). Locales are the languages kefu serves.

/// Whether `c` may appear in a stored text; `multiline` fields (answers, documents) also take
/// tab and line breaks.
pub fn allowed(c: char, multiline: bool) -> bool {
    if multiline && matches!(c, '\t' | '\n' | '\r') {
        return true;
    }
    !(c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
}

/// `Err(message)` naming the first character `text` must not contain and where it is
/// (1-based, in characters). One-line texts may end or start with line breaks (they are
/// trimmed), not hold them.
pub fn checked_chars(text: &str, multiline: bool) -> Result<(), String> {
    let lead = if multiline {
        0
    } else {
        text.chars().take_while(|c| c.is_whitespace()).count()
    };
    let body = if multiline { text } else { text.trim() };
    match body
        .chars()
        .enumerate()
        .find(|(_, c)| !allowed(*c, multiline))
    {
        None => Ok(()),
        Some((i, c)) => Err(format!(
            "contains {} at character {}; control characters{} and bidirectional-override \
             characters are not allowed",
            describe(c),
            lead + i + 1,
            if multiline {
                " (other than tab and line breaks)"
            } else {
                " (tab and line breaks included)"
            }
        )),
    }
}

fn describe(c: char) -> String {
    let name = match c {
        '\0' => " (NUL)",
        '\t' => " (tab)",
        '\n' => " (line feed)",
        '\r' => " (carriage return)",
        '\u{1B}' => " (ESC)",
        '\u{7F}' => " (DEL)",
        '\u{202E}' => " (right-to-left override)",
        '\u{202D}' => " (left-to-right override)",
        '\u{202A}'..='\u{202C}' => " (bidirectional embedding)",
        '\u{2066}'..='\u{2069}' => " (bidirectional isolate)",
        _ => "",
    };
    format!("U+{:04X}{name}", c as u32)
}

/// The languages kefu serves (its replies, segmentation and demo models).
pub const LANGUAGES: &[&str] = &["zh", "en"];

/// A locale kefu serves: `zh` or `en`, optionally with a region (`zh-CN`, `en-US`) or script
/// (`zh-Hans`, `zh-Hant`). The pattern the OpenAPI document states for locales.
pub const LOCALE_PATTERN: &str = "^(zh|en)(-([A-Z]{2}|Hans|Hant))?$";

pub fn checked_locale(locale: &str) -> Result<(), String> {
    let (lang, rest) = match locale.split_once('-') {
        Some((l, r)) => (l, Some(r)),
        None => (locale, None),
    };
    let region_ok = |r: &str| {
        (r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase())) || r == "Hans" || r == "Hant"
    };
    if LANGUAGES.contains(&lang) && rest.is_none_or(region_ok) {
        Ok(())
    } else {
        Err(format!(
            "{locale:?} is not a locale kefu serves: zh or en, optionally with a region or \
             script (zh-CN, zh-TW, zh-Hans, en-US)"
        ))
    }
}

/// What the OpenAPI document states of these texts: JSON Schemas (the regular expressions
/// in both ECMAScript's and Python's dialect) for `#[schema(schema_with = …)]`.
pub mod schema {
    use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Type};
    use utoipa::openapi::{Array, RefOr, Schema};

    /// Characters no stored text may hold (see [`super::allowed`]).
    const BANNED: &str = r"\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069";

    /// A string of `min..=max` characters kefu stores: one line (no tab or line breaks)
    /// or paragraphs, not blank when `min` ≥ 1.
    pub fn string(min: usize, max: usize, one_line: bool, description: &str) -> Object {
        let no = if one_line {
            format!(r"{BANNED}\t\n\r")
        } else {
            BANNED.to_string()
        };
        let pattern = if min == 0 {
            format!(r"^[^{no}]*$")
        } else {
            format!(r"^[^{no}]*[^\s{no}][^{no}]*$")
        };
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(min))
            .max_length(Some(max))
            .pattern(Some(pattern))
            .description(Some(description))
            .build()
    }

    /// Paragraphs of at most `max` characters, possibly empty.
    pub fn text(max: usize, description: &str) -> Object {
        string(0, max, false, description)
    }

    /// A list of at most `max` `item`s.
    pub fn list(item: Object, max: usize, description: &str) -> Array {
        ArrayBuilder::new()
            .items(RefOr::T(Schema::Object(item)))
            .max_items(Some(max))
            .description(Some(description))
            .build()
    }

    fn pattern(min: usize, max: usize, pattern: String, description: &str) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(min))
            .max_length(Some(max))
            .pattern(Some(pattern))
            .description(Some(description))
            .build()
    }

    /// A KB id (FAQ entries, documents).
    pub fn kb_id() -> Object {
        pattern(
            1,
            crate::kb::entry::MAX_ID_CHARS,
            "^[A-Za-z0-9._:-]+$".into(),
            "Letters, digits and `-_.:`, at most 128 characters.",
        )
    }

    /// A customer or item id.
    pub fn external_id() -> Object {
        pattern(
            1,
            128,
            format!(r"^[^\s{BANNED}]+$"),
            "1–128 characters without spaces, control or bidirectional-override characters.",
        )
    }

    /// A question or other one-line text.
    pub fn question() -> Object {
        string(
            1,
            crate::kb::entry::MAX_TEXT_CHARS,
            true,
            "One line (no control or bidirectional-override characters), at most 2000 characters.",
        )
    }

    pub fn similar() -> Array {
        list(
            question(),
            crate::kb::entry::MAX_SIMILAR,
            "Other ways customers ask the same thing (at most 200).",
        )
    }

    /// A category or tag.
    pub fn label() -> Object {
        string(
            1,
            crate::kb::entry::MAX_LABEL_CHARS,
            true,
            "One line, at most 64 characters.",
        )
    }

    pub fn tags() -> Array {
        list(label(), crate::kb::entry::MAX_TAGS, "At most 50 tags.")
    }

    /// An answer: paragraphs.
    pub fn answer() -> Object {
        string(
            1,
            crate::kb::entry::MAX_ANSWER_CHARS,
            false,
            "The default answer: tab and line breaks allowed, other control and \
             bidirectional-override characters not; at most 20000 characters.",
        )
    }

    /// A document's content.
    pub fn content() -> Object {
        string(
            1,
            crate::kb::document::MAX_DOCUMENT_CHARS,
            false,
            "Markdown or plain text: tab and line breaks allowed, other control and \
             bidirectional-override characters not.",
        )
    }

    /// An out-of-scope example.
    pub fn examples() -> Array {
        list(
            string(
                1,
                crate::kb::out_of_scope::MAX_CHARS,
                true,
                "One line, at most 1000 characters.",
            ),
            crate::kb::out_of_scope::MAX_EXAMPLES,
            "Example questions (trimmed; duplicates kept once), e.g. \"what's the weather tomorrow\".",
        )
    }

    /// What a customer typed (a query, a turn): not blank, at most `limits.max_input_chars`
    /// (8192 by default).
    pub fn input() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(8192))
            .pattern(Some(r"\S"))
            .description(Some(
                "Not blank; at most `limits.max_input_chars` characters (8192 by default).",
            ))
            .build()
    }

    fn one_of(values: &[&str], description: &str) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied()))
            .description(Some(description))
            .build()
    }

    /// The channel of an answer variant.
    pub fn channel() -> Object {
        one_of(
            crate::kb::entry::CHANNELS,
            "`web`, `app`, `wechat` or `sms`: picks the answer variant.",
        )
    }

    /// A session id a caller may choose.
    pub fn session_id() -> Object {
        pattern(
            1,
            64,
            "^[A-Za-z0-9_-]+$".into(),
            "1–64 letters, digits, `-` and `_`.",
        )
    }

    /// A membership tier of the routing policy.
    pub fn tier() -> Object {
        one_of(
            &["regular", "silver", "gold", "diamond", "vip"],
            "Membership tier: one of `routing.tiers` (by default regular, silver, gold, \
             diamond, vip; any case).",
        )
    }

    /// The language of a customer's titles and reasons.
    pub fn language() -> Object {
        one_of(super::LANGUAGES, "`zh` or `en`.")
    }

    /// A locale kefu serves.
    pub fn locale() -> Object {
        pattern(
            2,
            7,
            super::LOCALE_PATTERN.into(),
            "`zh` or `en`, optionally with a region or script: `zh-CN`, `zh-Hant`, `en-US`.",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_named() {
        assert!(checked_chars("退款多久到账 refund?", false).is_ok());
        assert!(checked_chars("第一段\n\n第二段\t表格", true).is_ok());
        let e = checked_chars("ab\0c", false).unwrap_err();
        assert!(e.contains("U+0000 (NUL) at character 3"), "{e}");
        assert!(
            checked_chars("a\u{1B}[31m", true)
                .unwrap_err()
                .contains("ESC")
        );
        let e = checked_chars("price \u{202E}001", true).unwrap_err();
        assert!(e.contains("U+202E (right-to-left override)"), "{e}");
        assert!(checked_chars("a\u{2067}b", false).is_err());
        assert!(checked_chars("a\u{85}b", true).is_err());
        assert!(
            checked_chars("two\nlines", false)
                .unwrap_err()
                .contains("line feed")
        );
        assert!(checked_chars("a\tb", false).is_err());
        assert!(checked_chars(" question?\n", false).is_ok(), "trimmed");
        assert!(
            checked_chars("  a\0", false)
                .unwrap_err()
                .contains("at character 4")
        );
    }

    #[test]
    fn locales_are_zh_and_en() {
        for ok in ["zh", "en", "zh-CN", "zh-TW", "en-US", "zh-Hans", "zh-Hant"] {
            assert!(checked_locale(ok).is_ok(), "{ok}");
        }
        for bad in ["", "fr", "zh-cn", "en-", "zh-CN-x", "english", "zh_CN"] {
            assert!(checked_locale(bad).is_err(), "{bad}");
        }
        let re = regex::Regex::new(LOCALE_PATTERN).unwrap();
        for s in ["zh", "en-US", "zh-Hant", "fr", "zh-cn", "zh-CN-x", "zh_CN"] {
            assert_eq!(re.is_match(s), checked_locale(s).is_ok(), "{s}");
        }
    }
}
