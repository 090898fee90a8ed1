//! Text processing shared by indexing and matching: normalisation, segmentation (jieba for
//! Chinese, words for Latin scripts) and character n-grams for typo-tolerant matching.

pub mod check;
pub mod correct;
pub mod pinyin;
pub mod sms;
pub mod typo;

use std::sync::OnceLock;

use jieba_rs::Jieba;

/// A SQL `LIKE` pattern matching texts that contain `q` (trimmed; `%`, `_` and `\` dropped,
/// so they cannot act as wildcards); none for a missing or blank `q`.
pub fn like_contains(q: Option<&str>) -> Option<String> {
    q.map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| format!("%{}%", q.replace(['%', '_', '\\'], "")))
}

/// NFKC (full-width → half-width), lower case, whitespace collapsed.
pub fn normalize(text: &str) -> String {
    crate::embed::normalize(text).to_lowercase()
}

pub(crate) fn jieba() -> &'static Jieba {
    static JIEBA: OnceLock<Jieba> = OnceLock::new();
    JIEBA.get_or_init(Jieba::new)
}

pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Words too common to tell questions apart.
const STOP: &[&str] = &[
    "的", "了", "吗", "呢", "吧", "啊", "呀", "么", "是", "我", "你", "在", "有", "和", "就", "都",
    "也", "要", "这", "那", "个", "a", "an", "the", "is", "are", "am", "be", "to", "of", "in",
    "on", "for", "and", "or", "i", "my", "me", "you", "your", "it", "do", "does", "can", "what",
    "how", "with", "at", "this", "that",
];

/// Lexical tokens of `text`: jieba words for Chinese runs, lower-cased words and numbers for
/// the rest; punctuation and stop words dropped.
pub fn tokens(text: &str) -> Vec<String> {
    let norm = normalize(text);
    let mut out = Vec::new();
    let mut run = String::new();
    let mut cjk_run = false;
    let flush = |run: &mut String, cjk: bool, out: &mut Vec<String>| {
        if run.is_empty() {
            return;
        }
        if cjk {
            for t in jieba().cut_for_search(run, true) {
                if !STOP.contains(&t.word) {
                    out.push(t.word.to_string());
                }
            }
        } else if !STOP.contains(&run.as_str()) {
            out.push(run.clone());
        }
        run.clear();
    };
    for c in norm.chars() {
        let cjk = is_cjk(c);
        if cjk || c.is_alphanumeric() {
            if !run.is_empty() && cjk != cjk_run {
                flush(&mut run, cjk_run, &mut out);
            }
            cjk_run = cjk;
            run.push(c);
        } else {
            flush(&mut run, cjk_run, &mut out);
        }
    }
    flush(&mut run, cjk_run, &mut out);
    out
}

/// Character bigrams of the letters and digits of `text` (a single character yields itself):
/// they survive dropped, swapped and wrong characters better than words do.
pub fn char_bigrams(text: &str) -> Vec<String> {
    let chars: Vec<char> = normalize(text)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect();
    match chars.len() {
        0 => vec![],
        1 => vec![chars[0].to_string()],
        _ => chars.windows(2).map(|w| w.iter().collect()).collect(),
    }
}

/// Keys of the fuzzy signal: character bigrams plus toneless-pinyin syllable bigrams, so that
/// both wrong characters and homophone slips of an input method (退宽 → 退款) still meet.
pub fn fuzzy_keys(text: &str) -> Vec<String> {
    let mut keys = char_bigrams(text);
    keys.extend(pinyin::pinyin_keys(text));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_mix_jieba_and_words() {
        let t = tokens("我想申请退款，ORDER 12345 怎么办？");
        assert!(t.contains(&"退款".to_string()), "{t:?}");
        assert!(
            t.contains(&"order".to_string()) && t.contains(&"12345".to_string()),
            "{t:?}"
        );
        assert!(!t.contains(&"我".to_string()), "stop words dropped: {t:?}");
        assert!(tokens("How do I reset my password?").contains(&"password".to_string()));
    }

    #[test]
    fn fuzzy_keys_meet_across_homophones() {
        let a = fuzzy_keys("退宽多久到账");
        let b = fuzzy_keys("退款多久到账");
        assert!(a.contains(&"tui_kuan".to_string()) && b.contains(&"tui_kuan".to_string()));
        assert!(!a.contains(&"退款".to_string()));
    }

    #[test]
    fn bigrams_ignore_punctuation_and_width() {
        assert_eq!(char_bigrams("退款！ＡＢ"), ["退款", "款a", "ab"]);
        assert_eq!(char_bigrams("好"), ["好"]);
        assert!(char_bigrams("？？").is_empty());
    }
}
