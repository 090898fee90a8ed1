//! Spelling correction against the knowledge base's own vocabulary: a Chinese character
//! whose neighbours never occur next to it anywhere in the KB, while a homophone of it does
//! with both (退宽 → 退款), is taken for an input-method slip and replaced; so is a pair of
//! characters typed the wrong way round. Only full support from every neighbour counts, so
//! text the KB merely lacks is left alone.

use std::collections::HashSet;

use super::is_cjk;
use super::typo::homophones;

#[derive(Default)]
pub struct Speller {
    bigrams: HashSet<(char, char)>,
}

impl Speller {
    /// Learns which Chinese character pairs occur in `texts`.
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut bigrams = HashSet::new();
        for t in texts {
            let chars: Vec<char> = super::normalize(t).chars().collect();
            for w in chars.windows(2) {
                if is_cjk(w[0]) && is_cjk(w[1]) {
                    bigrams.insert((w[0], w[1]));
                }
            }
        }
        Self { bigrams }
    }

    fn known(&self, a: char, b: char) -> bool {
        self.bigrams.contains(&(a, b))
    }

    /// The corrected text, or `None` when nothing needed correcting.
    pub fn correct(&self, text: &str) -> Option<String> {
        let norm = super::normalize(text);
        let mut c: Vec<char> = norm.chars().collect();
        let mut changed = false;
        // A fix can give a neighbouring fix the support it lacked: two rounds.
        for _ in 0..2 {
            let round = self.swaps(&mut c) | self.homophones(&mut c);
            changed |= round;
            if !round {
                break;
            }
        }
        changed.then(|| c.into_iter().collect())
    }

    /// Swapped pairs: a-b unknown but b-a known, with the outer neighbours agreeing.
    fn swaps(&self, c: &mut [char]) -> bool {
        let n = c.len();
        let cjk = |c: &[char], i: usize| i < n && is_cjk(c[i]);
        let mut changed = false;
        let mut i = 0;
        while i + 1 < n {
            if cjk(c, i) && cjk(c, i + 1) && !self.known(c[i], c[i + 1]) {
                let (a, b) = (c[i + 1], c[i]);
                let left = i > 0 && cjk(c, i - 1);
                let right = cjk(c, i + 2);
                if self.known(a, b)
                    && (left || right)
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
            if need == 0 || support(c[i]) > 0 {
                continue;
            }
            if let Some(&h) = homophones(c[i])
                .iter()
                .find(|&&h| h != c[i] && support(h) == need)
            {
                c[i] = h;
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
}
