//! Spelling correction against the knowledge base's own vocabulary: a Chinese character
//! whose neighbours never occur next to it anywhere in the KB, while a homophone of it does
//! with both (退宽 → 退款), is taken for an input-method slip and replaced; so is a pair of
//! characters typed the wrong way round. Only full support from every neighbour counts, so
//! text the KB merely lacks is left alone, and so is a character that makes a word of the
//! dictionary (jieba's) with a neighbour (试用 is not 使用 mistyped); among several supported
//! fixes, the one the KB uses most wins (为渗么 → 为什么, not 为甚么), and swaps supported from
//! both sides go first.

use std::collections::HashMap;

use super::is_cjk;
use super::typo::homophones;

#[derive(Default)]
pub struct Speller {
    /// How often each pair of Chinese characters occurs in the KB.
    bigrams: HashMap<(char, char), u32>,
}

impl Speller {
    /// Learns which Chinese character pairs occur in `texts`.
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut bigrams = HashMap::new();
        for t in texts {
            let chars: Vec<char> = super::normalize(t).chars().collect();
            for w in chars.windows(2) {
                if is_cjk(w[0]) && is_cjk(w[1]) {
                    *bigrams.entry((w[0], w[1])).or_insert(0) += 1;
                }
            }
        }
        Self { bigrams }
    }

    fn count(&self, a: char, b: char) -> u32 {
        self.bigrams.get(&(a, b)).copied().unwrap_or(0)
    }

    fn known(&self, a: char, b: char) -> bool {
        self.bigrams.contains_key(&(a, b))
    }

    /// Whether `a` and `b` make a word of the dictionary (jieba's): such a pair is what the
    /// customer meant (试用, 一半, 物理), however rarely the KB uses it.
    fn word(a: char, b: char) -> bool {
        super::jieba().has_word(&String::from_iter([a, b]))
    }

    /// The corrected text, or `None` when nothing needed correcting.
    pub fn correct(&self, text: &str) -> Option<String> {
        let norm = super::normalize(text);
        let mut c: Vec<char> = norm.chars().collect();
        let mut changed = false;
        // A fix can give a neighbouring fix the support it lacked: two rounds.
        for _ in 0..2 {
            let round = self.swaps(&mut c, true)
                | self.swaps(&mut c, false)
                | self.homophones(&mut c)
                | self.homophone_pairs(&mut c);
            changed |= round;
            if !round {
                break;
            }
        }
        changed.then(|| c.into_iter().collect())
    }

    /// Swapped pairs: a-b unknown but b-a known, with the outer neighbours agreeing (with
    /// `both`, only pairs that have a neighbour on each side).
    fn swaps(&self, c: &mut [char], both: bool) -> bool {
        let n = c.len();
        let cjk = |c: &[char], i: usize| i < n && is_cjk(c[i]);
        let mut changed = false;
        let mut i = 0;
        while i + 1 < n {
            if cjk(c, i)
                && cjk(c, i + 1)
                && !self.known(c[i], c[i + 1])
                && !Self::word(c[i], c[i + 1])
            {
                let (a, b) = (c[i + 1], c[i]);
                let left = i > 0 && cjk(c, i - 1);
                let right = cjk(c, i + 2);
                if self.known(a, b)
                    && (left || right)
                    && (!both || (left && right))
                    && (!left || self.known(c[i - 1], a))
                    && (!right || self.known(b, c[i + 2]))
                {
                    c.swap(i, i + 1);
                    changed = true;
                    i += 2;
                    continue;
                }
            }
            i += 1;
        }
        changed
    }

    /// Homophones: a character no neighbour supports, replaced by one every neighbour does.
    fn homophones(&self, c: &mut [char]) -> bool {
        let n = c.len();
        let cjk = |c: &[char], i: usize| i < n && is_cjk(c[i]);
        let mut changed = false;
        for i in 0..n {
            if !cjk(c, i) {
                continue;
            }
            let left = i > 0 && cjk(c, i - 1);
            let right = cjk(c, i + 1);
            let need = left as u8 + right as u8;
            let support = |x: char| {
                (left && self.known(c[i - 1], x)) as u8 + (right && self.known(x, c[i + 1])) as u8
            };
            let in_word =
                || (left && Self::word(c[i - 1], c[i])) || (right && Self::word(c[i], c[i + 1]));
            if need == 0 || support(c[i]) > 0 || in_word() {
                continue;
            }
            // The most used of the fully supported homophones: its rarer side, then both.
            let usage = |x: char| {
                let l = if left {
                    self.count(c[i - 1], x)
                } else {
                    u32::MAX
                };
                let r = if right {
                    self.count(x, c[i + 1])
                } else {
                    u32::MAX
                };
                (l.min(r), l.max(r))
            };
            if let Some(&h) = homophones(c[i])
                .iter()
                .filter(|&&h| h != c[i] && support(h) == need)
                .max_by_key(|&&h| usage(h))
            {
                c[i] = h;
                changed = true;
            }
        }
        changed
    }

    /// Two slips side by side (镁尤 → 没有): neither character is supported by its outer
    /// neighbour nor by the other, and a pair of homophones is supported all along — by both
    /// outer neighbours and by each other.
    fn homophone_pairs(&self, c: &mut [char]) -> bool {
        let n = c.len();
        let mut changed = false;
        for i in 1..n.saturating_sub(2) {
            let (l, a, b, r) = (c[i - 1], c[i], c[i + 1], c[i + 2]);
            if ![l, a, b, r].into_iter().all(is_cjk)
                || self.known(l, a)
                || self.known(a, b)
                || self.known(b, r)
                || Self::word(l, a)
                || Self::word(a, b)
                || Self::word(b, r)
            {
                continue;
            }
            let mut best: Option<((u32, u32), char, char)> = None;
            for &x in homophones(a).iter().filter(|&&x| self.known(l, x)) {
                for &y in homophones(b).iter().filter(|&&y| self.known(x, y)) {
                    if !self.known(y, r) {
                        continue;
                    }
                    let counts = [self.count(l, x), self.count(x, y), self.count(y, r)];
                    let usage = (counts.into_iter().min().unwrap_or(0), counts.iter().sum());
                    if best.is_none_or(|(u, _, _)| usage > u) {
                        best = Some((usage, x, y));
                    }
                }
            }
            if let Some((_, x, y)) = best {
                c[i] = x;
                c[i + 1] = y;
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kb() -> Speller {
        Speller::new(["退款多久能到账", "怎么申请退货", "发票怎么开"])
    }

    #[test]
    fn fixes_homophones_and_swaps_the_kb_knows() {
        let s = kb();
        assert_eq!(
            s.correct("退宽多久能到账").as_deref(),
            Some("退款多久能到账")
        );
        assert_eq!(
            s.correct("款退多久能到账").as_deref(),
            Some("退款多久能到账")
        );
        assert_eq!(s.correct("怎么申请退或").as_deref(), Some("怎么申请退货"));
        // One fix enabling the next: a swap next to a homophone.
        assert_eq!(
            s.correct("款退多旧能到账").as_deref(),
            Some("退款多久能到账")
        );
    }

    #[test]
    fn prefers_the_fix_the_kb_uses_most() {
        let s = Speller::new([
            "为什么不能借",
            "为什么还款失败",
            "为甚么",
            "微粒贷",
            "微粒带",
        ]);
        assert_eq!(s.correct("为渗么").as_deref(), Some("为什么"));
        let s = Speller::new(["微粒贷开通", "微粒贷额度", "微粒带"]);
        assert_eq!(s.correct("开通微粒殆").as_deref(), Some("开通微粒贷"));
        // Of two candidate swaps, the one both neighbours support: 还日款期 → 还款日期.
        let s = Speller::new(["还款日期", "日还"]);
        assert_eq!(s.correct("还日款期").as_deref(), Some("还款日期"));
    }

    #[test]
    fn fixes_two_slips_side_by_side() {
        let s = Speller::new(["额度没有提高", "为什么没有额度"]);
        assert_eq!(
            s.correct("为什么额度镁尤提高").as_deref(),
            Some("为什么额度没有提高")
        );
        // Only with support all along: an unknown pair between known text stays.
        assert_eq!(s.correct("额度苹果提高"), None);
    }

    #[test]
    fn leaves_correct_and_unknown_text_alone() {
        let s = kb();
        assert_eq!(s.correct("退款多久能到账"), None);
        assert_eq!(s.correct("今天天气怎么样"), None);
        assert_eq!(s.correct("refund please"), None);
        assert_eq!(s.correct("宽"), None);
        // 气 has no support here, and 期 has some (到期怎么办) but not from both sides: a
        // plain question must not be "corrected" into nonsense.
        let s2 = Speller::new(["到期怎么办", "今天能发货吗"]);
        assert_eq!(s2.correct("今天天气怎么样"), None);
    }

    #[test]
    fn leaves_dictionary_words_alone() {
        // 试 has no support in this KB and 使 has (使用), but 试用 is a word: meant, not mistyped.
        let s = Speller::new(["使用方法", "使用期限"]);
        assert_eq!(s.correct("试用期多久"), None);
        assert_eq!(s.correct("式用期多久").as_deref(), Some("使用期多久"));
        // 不收 is a word too, though the KB only knows 收不: not a swapped pair.
        let s = Speller::new(["收不到验证码", "能收到吗"]);
        assert_eq!(s.correct("怎么才能不收"), None);
    }
}
