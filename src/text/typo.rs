//! Seeded, realistic typos for measuring how well matching survives them: homophones,
//! dropped and swapped characters for Chinese (what pinyin input methods produce), keyboard
//! slips for Latin text.

use std::collections::HashMap;
use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::is_cjk;
use super::pinyin::syllable;

/// GB2312 level-1 characters (3755): substituting only these keeps homophone typos to
/// characters an input method would actually offer.
fn common_chars() -> &'static [char] {
    static CHARS: OnceLock<Vec<char>> = OnceLock::new();
    CHARS.get_or_init(|| {
        let mut bytes = Vec::with_capacity(3755 * 2);
        for row in 0xB0..=0xD7u8 {
            let last = if row == 0xD7 { 0xF9 } else { 0xFE };
            for cell in 0xA1..=last {
                bytes.extend([row, cell]);
            }
        }
        let (text, _, _) = encoding_rs::GBK.decode(&bytes);
        text.chars().collect()
    })
}

/// Common characters sharing `c`'s toneless syllable, `c` itself included when it is common;
/// empty when `c` has no reading.
pub fn homophones(c: char) -> &'static [char] {
    static BY_SYLLABLE: OnceLock<HashMap<&'static str, Vec<char>>> = OnceLock::new();
    let map = BY_SYLLABLE.get_or_init(|| {
        let mut map: HashMap<&'static str, Vec<char>> = HashMap::new();
        for &h in common_chars() {
            if let Some(s) = syllable(h) {
                map.entry(s).or_default().push(h);
            }
        }
        map
    });
    syllable(c)
        .and_then(|s| map.get(s))
        .map_or(&[], Vec::as_slice)
}

/// QWERTY keys next to `c` (lower-case ASCII letter), same and adjacent rows.
fn neighbours(c: char) -> &'static str {
    match c {
        'q' => "wa",
        'w' => "qeas",
        'e' => "wrsd",
        'r' => "etdf",
        't' => "ryfg",
        'y' => "tugh",
        'u' => "yihj",
        'i' => "uojk",
        'o' => "ipkl",
        'p' => "ol",
        'a' => "qwsz",
        's' => "awedzx",
        'd' => "serfxc",
        'f' => "drtgcv",
        'g' => "ftyhvb",
        'h' => "gyujbn",
        'j' => "huiknm",
        'k' => "jiolm",
        'l' => "kop",
        'z' => "asx",
        'x' => "zsdc",
        'c' => "xdfv",
        'v' => "cfgb",
        'b' => "vghn",
        'n' => "bhjm",
        'm' => "njk",
        _ => "",
    }
}

/// FNV-1a: stable across runs and platforms, unlike std's `RandomState`.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Picks an index into `weights` with probability proportional to its weight; `None` when
/// all weights are zero.
fn weighted(rng: &mut StdRng, weights: &[f64]) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = rng.random_range(0.0..total);
    for (i, &w) in weights.iter().enumerate() {
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    weights.iter().rposition(|&w| w > 0.0)
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())])
}

/// One Chinese typo: a homophone (most frequent, as pinyin input methods produce), a dropped
/// character or two adjacent characters swapped.
fn cjk_edit(rng: &mut StdRng, s: &mut Vec<char>) {
    let subs: Vec<usize> = (0..s.len())
        .filter(|&i| is_cjk(s[i]) && homophones(s[i]).iter().any(|&h| h != s[i]))
        .collect();
    let drops: Vec<usize> = if s.len() > 1 {
        (0..s.len()).filter(|&i| is_cjk(s[i])).collect()
    } else {
        vec![]
    };
    let swaps: Vec<usize> = (0..s.len().saturating_sub(1))
        .filter(|&i| is_cjk(s[i]) && is_cjk(s[i + 1]) && s[i] != s[i + 1])
        .collect();
    let w = |v: &Vec<usize>, p: f64| if v.is_empty() { 0.0 } else { p };
    match weighted(rng, &[w(&subs, 0.5), w(&drops, 0.25), w(&swaps, 0.25)]) {
        Some(0) => {
            let i = pick(rng, &subs).unwrap();
            let c = s[i];
            let others: Vec<char> = homophones(c).iter().copied().filter(|&h| h != c).collect();
            s[i] = pick(rng, &others).unwrap();
        }
        Some(1) => {
            s.remove(pick(rng, &drops).unwrap());
        }
        Some(2) => {
            let i = pick(rng, &swaps).unwrap();
            s.swap(i, i + 1);
        }
        _ => {}
    }
}

/// One keyboard slip on a letter inside a word of at least three letters (shorter words are
/// left alone: a typo there changes the word rather than disguising it).
fn latin_edit(rng: &mut StdRng, s: &mut Vec<char>) {
    let mut eligible = Vec::new();
    let mut start = 0;
    for i in 0..=s.len() {
        if i < s.len() && s[i].is_alphabetic() {
            continue;
        }
        if i - start >= 3 {
            eligible.extend(start..i);
        }
        start = i + 1;
    }
    let Some(i) = pick(rng, &eligible) else {
        return;
    };
    let c = s[i];
    let lower = c.to_ascii_lowercase();
    let near = neighbours(lower);
    // Swap with the next letter of the word, else the previous; identical letters would be a
    // no-op.
    let partner = [i + 1, i.wrapping_sub(1)]
        .into_iter()
        .find(|&j| j < s.len() && s[j].is_alphabetic() && s[j] != c);
    let weights = [
        if near.is_empty() { 0.0 } else { 0.4 },
        0.2,
        if partner.is_some() { 0.2 } else { 0.0 },
        0.2,
    ];
    match weighted(rng, &weights) {
        Some(0) => {
            let n = near.as_bytes()[rng.random_range(0..near.len())] as char;
            s[i] = if c.is_ascii_uppercase() {
                n.to_ascii_uppercase()
            } else {
                n
            };
        }
        Some(1) => {
            s.remove(i);
        }
        Some(2) => s.swap(i, partner.unwrap()),
        Some(3) => s.insert(i, c),
        _ => {}
    }
}

/// `text` with realistic typos, deterministic for `(text, seed)`: one edit for up to 12
/// letters, two beyond. Text with CJK gets Chinese typos on its CJK characters; other text
/// gets keyboard slips. Never empty; text with nothing to edit comes back unchanged.
pub fn perturb(text: &str, seed: u64) -> String {
    let orig: Vec<char> = text.chars().collect();
    if orig.len() <= 1 {
        return text.to_string();
    }
    let mut rng = StdRng::seed_from_u64(seed ^ fnv1a(text));
    let letters = orig.iter().filter(|c| c.is_alphanumeric()).count();
    let edits = if letters <= 12 { 1 } else { 2 };
    let cjk = orig.iter().any(|&c| is_cjk(c));
    // A second edit can undo the first (swap back, homophone back); redo from scratch then.
    let mut s = orig.clone();
    for _ in 0..8 {
        s = orig.clone();
        for _ in 0..edits {
            if cjk {
                cjk_edit(&mut rng, &mut s);
            } else {
                latin_edit(&mut rng, &mut s);
            }
        }
        if s != orig {
            break;
        }
    }
    s.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &[&str] = &[
        "我想申请退款怎么操作",
        "How do I reset my password",
        "订单已经发货了但是一直没有收到，物流信息也不更新",
        "Where is my ORDER 12345?",
        "退款",
        "发票",
        "Can't log in",
    ];

    #[test]
    fn level1_table() {
        let chars = common_chars();
        assert_eq!(chars.len(), 3755);
        assert_eq!(chars[0], '啊');
        assert_eq!(chars[3754], '座');
        assert!(chars.iter().all(|&c| is_cjk(c)));
    }

    #[test]
    fn homophones_share_syllable() {
        assert!(homophones('款').contains(&'宽'), "{:?}", homophones('款'));
        assert!(homophones('货').iter().all(|&h| syllable(h) == Some("huo")));
        assert!(homophones('a').is_empty());
    }

    #[test]
    fn deterministic_per_seed() {
        for &t in SAMPLES {
            for seed in 0..20 {
                assert_eq!(perturb(t, seed), perturb(t, seed));
            }
        }
        let outs: std::collections::HashSet<String> = (0..20)
            .map(|s| perturb("How do I reset my password", s))
            .collect();
        assert!(outs.len() > 5, "seeds should vary the typos: {outs:?}");
    }

    #[test]
    fn changes_typical_inputs() {
        for &t in SAMPLES {
            for seed in 0..50 {
                let out = perturb(t, seed);
                assert_ne!(out, t, "seed {seed}");
                assert!(!out.is_empty());
            }
        }
    }

    #[test]
    fn length_changes_at_most_edits() {
        for &t in SAMPLES {
            let letters = t.chars().filter(|c| c.is_alphanumeric()).count();
            let edits = if letters <= 12 { 1 } else { 2 };
            for seed in 0..50 {
                let out = perturb(t, seed);
                let diff = out.chars().count().abs_diff(t.chars().count());
                assert!(diff <= edits, "{t} → {out}");
            }
        }
    }

    #[test]
    fn single_substitution_is_homophone() {
        let t = "我想申请退款怎么操作";
        let mut seen = 0;
        for seed in 0..100 {
            let out: Vec<char> = perturb(t, seed).chars().collect();
            let orig: Vec<char> = t.chars().collect();
            if out.len() != orig.len() {
                continue;
            }
            let diff: Vec<usize> = (0..orig.len()).filter(|&i| out[i] != orig[i]).collect();
            if let [i] = diff[..] {
                seen += 1;
                assert_eq!(syllable(out[i]), syllable(orig[i]), "{orig:?} → {out:?}");
                assert!(common_chars().contains(&out[i]));
            }
        }
        assert!(
            seen > 25,
            "homophones should be the most frequent edit: {seen}/100"
        );
    }

    #[test]
    fn latin_typos_keep_short_words_and_case() {
        for seed in 0..50 {
            let out = perturb("Hi OK no", seed);
            assert_eq!(out, "Hi OK no", "nothing of 3+ letters to touch");
            let out = perturb("RESET", seed);
            assert!(!out.chars().any(|c| c.is_lowercase()), "{out}");
        }
        assert_eq!(perturb("a", 1), "a");
        assert_eq!(perturb("", 1), "");
    }
}
