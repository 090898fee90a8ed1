//! Cutting a reply into SMS messages: 160 characters per message in the GSM 7-bit alphabet,
//! 70 (UTF-16 units) once any character is outside it, numbered `(i/n) ` when there is more
//! than one.

/// The GSM 7-bit default alphabet (one septet each) and its extension table (two each).
const GSM: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXT: &str = "^{}\\[~]|€\u{c}";

/// The length of `s` in the encoding it would go in: septets in GSM-7, UTF-16 units otherwise.
fn units(s: &str, gsm: bool) -> usize {
    if gsm {
        s.chars()
            .map(|c| if GSM_EXT.contains(c) { 2 } else { 1 })
            .sum()
    } else {
        s.encode_utf16().count()
    }
}

/// Whether every character of `s` is in the GSM 7-bit alphabet.
pub fn is_gsm(s: &str) -> bool {
    s.chars().all(|c| GSM.contains(c) || GSM_EXT.contains(c))
}

/// `text` cut into messages of at most 160 (GSM-7) or 70 (UCS-2) units each, numbered
/// `(i/n) ` when there is more than one, cut at a line break, a space or a punctuation mark
/// where one is near; at most `max_parts`, the last ending in `…` when the text was longer.
pub fn split(text: &str, max_parts: usize) -> Vec<String> {
    let text = text.trim();
    let gsm = is_gsm(text);
    let limit = if gsm { 160 } else { 70 };
    if units(text, gsm) <= limit {
        return vec![text.to_string()];
    }
    // The prefix's width depends on the count: settle it by trying.
    let mut n = 2;
    loop {
        let parts = cut(text, gsm, limit, n);
        if parts.len() <= n || n >= 99 {
            let total = parts.len();
            let mut parts: Vec<String> = parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| format!("({}/{}) {p}", i + 1, total.min(max_parts)))
                .collect();
            if parts.len() > max_parts {
                parts.truncate(max_parts);
                let last = parts.last_mut().expect("max_parts ≥ 1");
                while units(last, gsm) + 1 > limit {
                    last.pop();
                }
                last.push('…');
            }
            return parts;
        }
        n = parts.len();
    }
}

/// Cuts `text` into pieces that fit `limit` with the prefix of `n` parts.
fn cut(text: &str, gsm: bool, limit: usize, n: usize) -> Vec<String> {
    let prefix = units(&format!("({n}/{n}) "), gsm);
    let budget = limit - prefix;
    let chars: Vec<char> = text.chars().collect();
    let mut parts = vec![];
    let mut start = 0;
    while start < chars.len() {
        let mut end = start;
        let mut used = 0;
        while end < chars.len() {
            let w = units(chars[end].encode_utf8(&mut [0; 4]), gsm);
            if used + w > budget {
                break;
            }
            used += w;
            end += 1;
        }
        if end < chars.len() {
            // Prefer a break in the last third of the piece.
            let floor = start + (end - start) * 2 / 3;
            if let Some(b) = (floor..end).rev().find(|&i| is_break(chars[i])) {
                end = b + 1;
            }
        }
        let piece: String = chars[start..end].iter().collect();
        let piece = piece.trim().to_string();
        if !piece.is_empty() {
            parts.push(piece);
        }
        start = end;
    }
    parts
}

fn is_break(c: char) -> bool {
    c.is_whitespace() || "，。！？；：、,.!?;:)）".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_replies_are_one_message() {
        assert_eq!(split("Your refund takes 3-5 days.", 5).len(), 1);
        assert_eq!(split(&"退".repeat(70), 5).len(), 1);
    }

    #[test]
    fn chinese_is_cut_at_70_with_numbers() {
        let text = "退款会在审核通过后的三到五个工作日内原路退回。".repeat(6);
        let parts = split(&text, 5);
        assert!(parts.len() >= 2, "{parts:?}");
        for (i, p) in parts.iter().enumerate() {
            assert!(p.encode_utf16().count() <= 70, "{p}");
            assert!(
                p.starts_with(&format!("({}/{}) ", i + 1, parts.len())),
                "{p}"
            );
        }
        let joined: String = parts
            .iter()
            .map(|p| p.split_once(") ").unwrap().1)
            .collect();
        assert_eq!(joined, text, "nothing lost");
    }

    #[test]
    fn english_is_cut_at_160_between_words() {
        let text = "You can return any item within 30 days of delivery. ".repeat(5);
        let parts = split(&text, 5);
        assert_eq!(parts.len(), 2, "{parts:?}");
        for p in &parts {
            assert!(p.chars().count() <= 160);
            assert!(!p.ends_with("deliv"), "cut inside a word: {p}");
        }
    }

    #[test]
    fn one_non_gsm_character_makes_it_unicode() {
        assert!(is_gsm("Hello [world] €5"));
        assert!(!is_gsm("Hello 你好"));
        assert!(!is_gsm("smart “quotes”"));
        assert_eq!(units("[]", true), 4);
    }

    #[test]
    fn too_long_is_cut_to_max_parts() {
        let parts = split(&"很长的回复。".repeat(100), 3);
        assert_eq!(parts.len(), 3);
        assert!(parts[2].ends_with('…'));
        assert!(parts[2].starts_with("(3/3) "));
        assert!(parts[2].encode_utf16().count() <= 70);
    }
}
