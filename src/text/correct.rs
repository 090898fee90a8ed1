//! Spelling correction against the knowledge base's own vocabulary: a Chinese character
//! whose neighbours never occur next to it anywhere in the KB, while a homophone of it does
//! with both (退宽 → 退款), is taken for an input-method slip and replaced; so is a pair of
//! characters typed the wrong way round. Support from one neighbour alone counts only when
//! the fix makes a word on that side: at a phrase's edge (怎么半 → 怎么办), or inside one
//! for a character the KB never uses (何始审批 → 何时审批). So text the KB merely lacks is
//! left alone, and so is a character that already makes a dictionary word (jieba's) with a
//! neighbour (试用 is not 使用 mistyped); among several fixes, the one the KB uses most wins
//! (为渗么 → 为什么, not 为甚么), and swaps supported from both sides go first.

use std::collections::{HashMap, HashSet};

use super::is_cjk;
use super::typo::homophones;

#[derive(Default)]
pub struct Speller {
    /// How often each pair of Chinese characters occurs in the KB.
    bigrams: HashMap<(char, char), u32>,
    /// The Chinese characters the KB uses.
    chars: HashSet<char>,
}

impl Speller {
    /// Learns which Chinese characters and pairs of them occur in `texts`.
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut bigrams = HashMap::new();
        let mut chars = HashSet::new();
        for t in texts {
            let text: Vec<char> = super::normalize(t).chars().collect();
            chars.extend(text.iter().copied().filter(|&c| is_cjk(c)));
            for w in text.windows(2) {
                if is_cjk(w[0]) && is_cjk(w[1]) {
                    *bigrams.entry((w[0], w[1])).or_insert(0) += 1;
                }
            }
        }
        Self { bigrams, chars }
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
        Self::in_dictionary(&[a, b])
    }

    fn in_dictionary(w: &[char]) -> bool {
        super::jieba().has_word(&String::from_iter(w))
    }

    /// Whether `h` in place of `c[i]` makes a word on a side: a dictionary word of two or
    /// three characters with its neighbours there (怎么半 → 怎么办), or three characters the
    /// KB chains together (微粒 and 粒贷: 开通微粒殆 → 开通微粒贷, a word jieba lacks).
    fn makes_word(&self, c: &[char], i: usize, h: char) -> bool {
        let cjk = |j: usize| j < c.len() && is_cjk(c[j]);
        let has = Self::in_dictionary;
        let left2 = i >= 2 && cjk(i - 1) && cjk(i - 2);
        let right2 = cjk(i + 1) && cjk(i + 2);
        (i >= 1 && cjk(i - 1) && has(&[c[i - 1], h]))
            || (cjk(i + 1) && has(&[h, c[i + 1]]))
            || (left2
                && (has(&[c[i - 2], c[i - 1], h])
                    || self.known(c[i - 2], c[i - 1]) && self.known(c[i - 1], h)))
            || (right2
                && (has(&[h, c[i + 1], c[i + 2]])
                    || self.known(h, c[i + 1]) && self.known(c[i + 1], c[i + 2])))
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
            // At a phrase's edge one neighbour is all the support there is, so the fix must
            // also make a word on that side (签证吗 is not 签证码 mistyped).
            let full = |h: char| support(h) == need && (need == 2 || self.makes_word(c, i, h));
            // Inside a phrase, one side is enough for a character the KB never uses when the
            // fix makes a dictionary word the KB uses with it (何始审批 → 何时审批: 何时, though
            // never 时审).
            let word_side = |h: char| {
                let l = self.known(c[i - 1], h) && Self::word(c[i - 1], h);
                let r = self.known(h, c[i + 1]) && Self::word(h, c[i + 1]);
                let l = if l { self.count(c[i - 1], h) } else { 0 };
                let r = if r { self.count(h, c[i + 1]) } else { 0 };
                l.max(r)
            };
            let options = homophones(c[i]).iter().copied().filter(|&h| h != c[i]);
            let fix = options
                .clone()
                .filter(|&h| full(h))
                .max_by_key(|&h| usage(h));
            let fix = fix.or_else(|| {
                if need < 2 || self.chars.contains(&c[i]) {
                    return None;
                }
                let scored = options.map(|h| (word_side(h), h)).filter(|&(n, _)| n > 0);
                scored.max().map(|(_, h)| h)
            });
            if let Some(h) = fix {
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

    #[test]
    fn one_neighbour_is_enough_only_for_a_dictionary_word() {
        // 始 is unknown to this KB; 时 makes 何时 with its left neighbour, never 时审.
        let s = Speller::new(["何时放款", "审批多久"]);
        assert_eq!(s.correct("何始审批").as_deref(), Some("何时审批"));
        // A character the KB uses elsewhere is taken as meant.
        let s = Speller::new(["何时放款", "审批多久", "开始还款"]);
        assert_eq!(s.correct("何始审批"), None);
        // At a phrase's edge, the fix must make a word: 怎么办 does, 证码 does not.
        let s = Speller::new(["不会怎么办", "验证码收不到"]);
        assert_eq!(s.correct("忘了怎么半").as_deref(), Some("忘了怎么办"));
        assert_eq!(s.correct("要签证吗"), None);
    }
}
