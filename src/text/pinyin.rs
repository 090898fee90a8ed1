//! Toneless pinyin keys: pinyin input methods turn a slip into a homophone (退宽 for 退款),
//! which shares no characters with the intended word but does share its sound.

use pinyin::ToPinyin;

use super::{is_cjk, normalize};

/// Toneless pinyin of `c` ("kuan" for 款); the first reading for heteronyms, `None` for
/// characters without a reading.
pub fn syllable(c: char) -> Option<&'static str> {
    c.to_pinyin().map(|p| p.plain())
}

/// Syllable bigrams ("tui_kuan") of each maximal CJK run of `text`; a one-character run
/// yields its syllable. Non-CJK text yields nothing: Latin words are matched elsewhere.
pub fn pinyin_keys(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, out: &mut Vec<String>| {
        match run.len() {
            0 => {}
            1 => out.push(run[0].clone()),
            _ => out.extend(run.windows(2).map(|w| w.join("_"))),
        }
        run.clear();
    };
    for c in normalize(text).chars() {
        if is_cjk(c) {
            // Characters without a reading keep themselves, so they still match exactly.
            run.push(syllable(c).map_or_else(|| c.to_string(), str::to_string));
        } else {
            flush(&mut run, &mut out);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homophones_share_keys() {
        assert_eq!(pinyin_keys("退款"), ["tui_kuan"]);
        assert_eq!(pinyin_keys("退宽"), pinyin_keys("退款"));
        assert_eq!(pinyin_keys("发货"), pinyin_keys("法货"));
        assert_eq!(
            pinyin_keys("我想退款"),
            ["wo_xiang", "xiang_tui", "tui_kuan"]
        );
    }

    #[test]
    fn different_words_differ() {
        assert_ne!(pinyin_keys("退款"), pinyin_keys("发货"));
        assert_ne!(pinyin_keys("密码"), pinyin_keys("地址"));
    }

    #[test]
    fn only_cjk_runs_count() {
        assert!(pinyin_keys("How do I reset my password?").is_empty());
        assert!(pinyin_keys("").is_empty());
        assert_eq!(
            pinyin_keys("订单 ORDER 12345 退款，好"),
            ["ding_dan", "tui_kuan", "hao"]
        );
    }

    #[test]
    fn syllables() {
        assert_eq!(syllable('款'), Some("kuan"));
        assert_eq!(syllable('宽'), Some("kuan"));
        assert_eq!(syllable('a'), None);
    }
}
