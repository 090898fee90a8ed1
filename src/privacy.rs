//! Customer data protection (PIPL, GDPR): personal numbers and addresses masked wherever kefu
//! writes for itself (logs, analytics, and transcripts when configured), data kept only as
//! long as `privacy.retention_days`, and erased on request (`DELETE /v1/customers/{id}`).
//!
//! What is masked: mainland mobile numbers (`138****5678`), resident ID-card numbers (18
//! characters whose check digit holds: `110***********123X`), bank-card numbers (13–19 digits
//! passing Luhn: `6222 **** **** 1234` keeps the first and last four) and e-mail addresses
//! (`z***@example.com`). Digits may be grouped by spaces or hyphens.

use std::borrow::Cow;
use std::io::Write;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// `[privacy]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Store the customer's turns masked too (transcripts, hand-off packages). Off by
    /// default: an agent taking over usually needs the phone number the customer gave.
    pub mask_transcripts: bool,
    /// Days to keep events, feedback and consultations; older ones are purged daily (and at
    /// start). 0 (the default, so that the demo's year of history stays) keeps them; set it
    /// to what your privacy notice promises. Conversations live `dialog.session_ttl_secs` at
    /// most.
    pub retention_days: u32,
}

impl PrivacyConfig {
    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.retention_days > 36_500 {
            return Err("privacy.retention_days must be at most 36500 (0 keeps data)".into());
        }
        Ok(())
    }

    /// Unix seconds before which data is purged; `None` keeps everything.
    pub fn cutoff(&self, now: i64) -> Option<i64> {
        (self.retention_days > 0).then(|| now - i64::from(self.retention_days) * 86_400)
    }
}

/// Digit runs, grouped or not, long enough to be a phone, ID-card or bank-card number (and an
/// ID card's final `X`); e-mail addresses.
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d(?:[ -]?\d){10,18}[Xx]?").expect("valid"));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}").expect("valid")
});

/// `text` with personal numbers and e-mail addresses masked; unchanged (borrowed) when it
/// holds none.
pub fn mask(text: &str) -> Cow<'_, str> {
    match masked(text) {
        Cow::Owned(m) if m != text => Cow::Owned(m),
        _ => Cow::Borrowed(text),
    }
}

fn masked(text: &str) -> Cow<'_, str> {
    let numbers = NUMBER.replace_all(text, |c: &regex::Captures| {
        let m = c.get(0).expect("whole match");
        // Part of a longer token (an order number such as KF2026112001, a hex id): leave it.
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        if before.is_some_and(|ch| ch.is_ascii_alphanumeric())
            || after.is_some_and(|ch| ch.is_ascii_alphanumeric())
        {
            return m.as_str().to_string();
        }
        mask_number(m.as_str()).unwrap_or_else(|| m.as_str().to_string())
    });
    match numbers {
        Cow::Borrowed(_) => EMAIL.replace_all(text, mask_email),
        Cow::Owned(s) => Cow::Owned(EMAIL.replace_all(&s, mask_email).into_owned()),
    }
}

fn mask_email(c: &regex::Captures) -> String {
    let m = c.get(0).expect("whole match").as_str();
    let (local, domain) = m.split_once('@').expect("the pattern has an @");
    let first = local.chars().next().unwrap_or('*');
    format!("{first}***@{domain}")
}

/// The masked form of a number that is personal; `None` for any other number.
fn mask_number(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let n = digits.len();
    let all_digits = digits.bytes().all(|b| b.is_ascii_digit());
    if all_digits && mobile(&digits) {
        return Some(keep_ends(raw, 3, 4));
    }
    // +86 / 0086 before a mobile number.
    for cc in ["86", "0086"] {
        if all_digits && digits.strip_prefix(cc).is_some_and(mobile) {
            return Some(keep_ends(raw, cc.len() + 3, 4));
        }
    }
    if n == 18 && id_card_valid(&digits) {
        return Some(keep_ends(raw, 3, 4));
    }
    if all_digits && (13..=19).contains(&n) && luhn_valid(&digits) {
        return Some(keep_ends(raw, 4, 4));
    }
    None
}

fn mobile(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1])
}

/// Mainland resident ID (GB 11643): 17 digits and a check character.
fn id_card_valid(d: &str) -> bool {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let b = d.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(W)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    b[17].to_ascii_uppercase() == CHECK[(sum % 11) as usize]
}

fn luhn_valid(d: &str) -> bool {
    let mut sum = 0;
    for (i, c) in d.bytes().rev().enumerate() {
        let mut v = u32::from(c - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// Keeps the first `head` and last `tail` digits (and every separator), stars the rest.
fn keep_ends(raw: &str, head: usize, tail: usize) -> String {
    let total = raw.chars().filter(|c| c.is_ascii_alphanumeric()).count();
    let mut seen = 0;
    raw.chars()
        .map(|c| {
            if !c.is_ascii_alphanumeric() {
                return c;
            }
            seen += 1;
            if seen <= head || seen > total - tail {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// A log writer that masks each line before it reaches stderr: whatever a log line carries
/// (a customer's text in an error, a flow's URL), personal numbers do not reach the log.
#[derive(Clone, Copy, Default)]
pub struct MaskedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MaskedStderr {
    type Writer = MaskedLine;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedLine(Vec::with_capacity(256))
    }
}

/// One log event, buffered and written masked when the formatter is done with it.
pub struct MaskedLine(Vec<u8>);

impl Write for MaskedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MaskedLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().lock().write_all(mask(&text).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_phones_ids_cards_and_emails() {
        let t = "电话13812345678，身份证11010519491231002X，卡号6222 0212 3456 7890 128，邮箱zhang.san@example.com";
        let m = mask(t);
        assert!(!m.contains("13812345678"), "{m}");
        assert!(m.contains("138****5678"), "{m}");
        assert!(!m.contains("11010519491231002X"), "{m}");
        assert!(m.contains("110***********002X"), "{m}");
        assert!(m.contains("卡号6222 **** **** ***0 128"), "{m}");
        assert!(m.contains("z***@example.com"), "{m}");
        assert!(!m.contains("zhang.san"), "{m}");
    }

    #[test]
    fn masks_grouped_and_prefixed_phones() {
        assert_eq!(mask("call 138-1234-5678"), "call 138-****-5678");
        assert_eq!(mask("+86 13812345678"), "+86 138****5678");
        assert_eq!(mask("+8613812345678"), "+86138****5678");
        assert_eq!(mask("tel:15900001111."), "tel:159****1111.");
    }

    #[test]
    fn leaves_other_numbers_alone() {
        for t in [
            "订单 KF2026112001 到哪了",
            "运单号 SF1234567890",
            "12345678901",                  // 11 digits, not a mobile prefix
            "110105194912310021",           // 18 digits, wrong check digit
            "4111111111111112",             // 16 digits failing Luhn
            "request 0b5e0d6c13812345678f", // inside a hex id
        ] {
            assert_eq!(mask(t), t, "{t}");
            assert!(matches!(mask(t), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn checks_id_cards_and_luhn() {
        assert!(id_card_valid("11010519491231002X"));
        assert!(id_card_valid("11010519491231002x"));
        assert!(!id_card_valid("110105194912310021"));
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert_eq!(mask("card 4111111111111111 ok"), "card 4111********1111 ok");
    }

    #[test]
    fn retention_cutoff() {
        let p = PrivacyConfig {
            retention_days: 2,
            ..Default::default()
        };
        assert_eq!(p.cutoff(1_000_000), Some(1_000_000 - 2 * 86_400));
        let keep = PrivacyConfig {
            retention_days: 0,
            ..Default::default()
        };
        assert_eq!(keep.cutoff(1_000_000), None);
        assert!(
            PrivacyConfig {
                retention_days: 99_999,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
