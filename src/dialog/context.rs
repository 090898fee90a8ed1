//! Context rewriting: a turn that leans on earlier ones becomes a question that stands alone.
//!
//! Chinese: the omitted topic is a span of the last two turns (scored by a small linear model)
//! put where a pronoun stands or at the best token boundary (a second linear model). English:
//! rules over the customer's previous question ("what about X", pronouns, "does it take").

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::text::{is_cjk, jieba};

/// `utterance` rewritten to stand alone given `history` (earlier turns, oldest first, alternating
/// speakers, the last one is the turn just before the utterance), or `None` when it already
/// stands alone.
pub fn rewrite(history: &[&str], utterance: &str) -> Option<String> {
    let utterance = utterance.trim();
    let history: Vec<&str> = history
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect();
    if history.is_empty() || utterance.is_empty() || is_social(utterance) {
        return None;
    }
    let out = if utterance.chars().any(is_cjk) {
        rewrite_zh(&history, utterance)
    } else {
        rewrite_en(&history, utterance)
    }?;
    (out != utterance).then_some(out)
}

/// Thanks, greetings, goodbyes and acknowledgements stand alone whatever came before.
fn is_social(utterance: &str) -> bool {
    const SOCIAL: &[&str] = &[
        "谢谢",
        "谢谢你",
        "多谢",
        "感谢",
        "好的",
        "好",
        "嗯",
        "嗯嗯",
        "行",
        "可以",
        "知道了",
        "明白了",
        "收到",
        "你好",
        "您好",
        "在吗",
        "再见",
        "拜拜",
        "没有了",
        "没事了",
        "ok",
        "okay",
        "thanks",
        "thank you",
        "thx",
        "hi",
        "hello",
        "hey",
        "bye",
        "goodbye",
        "got it",
        "great",
        "cool",
        "no",
        "yes",
    ];
    let t: String = crate::text::normalize(utterance)
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ')
        .collect();
    let t = t.trim().trim_end_matches(['啊', '呀', '哈', '啦', '了']);
    SOCIAL.contains(&t)
        || SOCIAL
            .iter()
            .any(|s| s.chars().count() >= 2 && t == format!("{s}{s}"))
}

// ---------------------------------------------------------------------------------------------
// Chinese

/// Weights of the span model (is this context span the omitted topic?) and the position model
/// (is this where it goes?): logistic regressions fitted on the zh_su2019 train split (18,000
/// rows; labels from the gold rewrites), weights under 0.05 dropped.
const SPAN_WEIGHTS: &str = "\
    after_want=0.36 allnoun=0.19 at_end=1.12 at_start=1.21 bias=-2.28 common=2.49 \
    first_a=0.19 first_eng=1.05 first_i=-0.05 first_m=-0.63 first_n=0.24 first_nr=1.04 \
    first_ns=0.65 first_nz=0.71 first_o=-0.58 first_r=-1.97 first_t=-0.26 first_v=-0.97 \
    has_stopv=-1.12 has_wo_ni=-1.24 head_a=-0.92 head_eng=0.37 head_i=-0.22 head_m=-0.22 \
    head_n=0.38 head_nr=0.52 head_ns=0.55 head_nz=0.6 head_o=-0.64 head_p=0.34 head_r=-1.48 \
    head_t=-0.07 head_u=-0.69 head_v=-0.61 head_x=0.08 head_y=-0.27 in_other=0.28 \
    in_utt=-2.99 len=1.78 ntok1=0.88 ntok2=0.54 ntok3=-0.54 ntok4=-1.47 p_none_a=-0.19 \
    p_none_i=0.07 p_none_n=0.37 p_none_nr=-0.14 p_none_ns=0.23 p_none_nz=0.22 \
    p_none_o=-0.15 p_none_p=0.1 p_none_r=-0.42 p_none_t=-0.08 p_none_u=-0.25 p_none_v=0.61 \
    p_none_y=-0.15 p_person_a=-0.5 p_person_eng=0.1 p_person_i=-0.75 p_person_m=-0.6 \
    p_person_n=-0.26 p_person_nr=0.8 p_person_nz=-0.45 p_person_o=-0.2 p_person_p=0.21 \
    p_person_r=-0.68 p_person_u=-0.41 p_person_v=-0.8 p_person_x=0.05 p_person_y=-0.05 \
    p_place_eng=-0.06 p_place_m=-0.06 p_place_n=-0.16 p_place_nr=-0.16 p_place_ns=0.17 \
    p_place_nz=0.16 p_place_o=-0.05 p_place_u=0.05 p_place_v=-0.2 p_thing_a=-0.21 \
    p_thing_eng=0.36 p_thing_i=0.5 p_thing_m=0.45 p_thing_n=0.42 p_thing_ns=0.18 \
    p_thing_nz=0.68 p_thing_o=-0.23 p_thing_r=-0.39 p_thing_u=-0.08 p_thing_v=-0.23 \
    p_thing_y=-0.06 part_in_utt=-2.21 turn0=-0.66 turn1=0.07 whole=-0.75 intercept=-2.35 \
";
const POSITION_WEIGHTS: &str = "\
    bias=0.22 ins=-3.69 ins_after_pron=-1.46 ins_end_after_BOS=-0.14 ins_end_after_a=0.69 \
    ins_end_after_eng=-0.32 ins_end_after_i=2.14 ins_end_after_m=3.62 ins_end_after_n=1.74 \
    ins_end_after_nr=0.88 ins_end_after_ns=2.22 ins_end_after_nz=1.35 ins_end_after_o=0.38 \
    ins_end_after_p=3.26 ins_end_after_q=2.07 ins_end_after_r=3.3 ins_end_after_t=3.15 \
    ins_end_after_u=1.92 ins_end_after_v=2.83 ins_end_after_x=-0.3 ins_end_after_y=-4 \
    ins_next_EOS=-0.8 ins_next_a=0.64 ins_next_eng=0.06 ins_next_i=0.34 ins_next_m=-0.17 \
    ins_next_n=0.12 ins_next_nr=0.08 ins_next_ns=-0.24 ins_next_nz=0.25 ins_next_o=-0.19 \
    ins_next_p=-0.17 ins_next_q=0.62 ins_next_r=-3.03 ins_next_t=0.7 ins_next_u=0.12 \
    ins_next_v=-0.22 ins_next_x=-0.84 ins_next_y=-0.96 ins_nextw_不=-0.19 \
    ins_nextw_为什么=-2.64 ins_nextw_也=1.2 ins_nextw_什么=-0.72 ins_nextw_几=-0.1 ins_nextw_吗=0.5 \
    ins_nextw_吧=1.04 ins_nextw_呢=0.48 ins_nextw_哪=-1.16 ins_nextw_啊=2.04 ins_nextw_在=1.04 \
    ins_nextw_多少=0.63 ins_nextw_太=1.35 ins_nextw_好=-0.44 ins_nextw_就=-0.16 ins_nextw_很=1.36 \
    ins_nextw_怎么=-0.32 ins_nextw_是=1.86 ins_nextw_有=1.02 ins_nextw_的=-0.57 \
    ins_nextw_真=-0.05 ins_nextw_还=0.88 ins_nextw_都=1.17 ins_prev_BOS=2.92 ins_prev_a=-1.68 \
    ins_prev_eng=-0.08 ins_prev_i=0.14 ins_prev_m=0.23 ins_prev_n=-1.23 ins_prev_nr=-1.05 \
    ins_prev_ns=-0.99 ins_prev_nz=-0.61 ins_prev_o=-0.23 ins_prev_p=-0.5 ins_prev_q=-1.09 \
    ins_prev_r=-1.92 ins_prev_v=0.56 ins_prev_x=0.27 ins_prev_y=1.49 ins_prevw_也=-2.26 \
    ins_prevw_买=1.17 ins_prevw_你=1.19 ins_prevw_去=1.62 ins_prevw_叫=-0.34 ins_prevw_吃=1.14 \
    ins_prevw_喜欢=1.48 ins_prevw_在=0.37 ins_prevw_就=-1.22 ins_prevw_我=0.81 ins_prevw_是=-1.27 \
    ins_prevw_有=0.27 ins_prevw_玩=0.97 ins_prevw_的=0.08 ins_prevw_看=1.24 ins_prevw_还=-1.31 \
    ins_prevw_都=-2.16 repl_dem_np=0.62 repl_person=3.04 repl_place=1.11 repl_start=0.58 \
    repl_thing=-0.86 intercept=0.36 \
";

/// Third-person pronouns and demonstratives that stand for an omitted topic.
const PERSON: &str = "他 她 他们 她们 他俩 她俩 他们俩 人家";
const THING: &str = "它 它们 这个 那个 这 那 这些 那些 这种 那种 这样 那样 此 其 这部 这本 这首 那部 这位 那位 这家 那家 这款 那款";
const PLACE: &str = "这里 那里 这儿 那儿 那边 这边";
const QWORDS: &str = "什么 怎么 为什么 哪 哪里 哪儿 哪个 谁 多少 怎样 怎么样 如何 啥 咋 几";
/// Service actions jieba tags as verbs but that are the topic of a customer question (a domain
/// prior, not fitted).
const SERVICE: &str =
    "退货 退款 换货 退换 发货 付款 支付 充值 提现 退订 开票 注册 登录 维修 安装 配送 取消订单";
const STOP_VERBS: &str = "是 有 知道 喜欢 在 要 想 去 说 看 会 没有 可以 觉得 认识";
const WANT: &str = "想 要 想要 需要 申请 我要 我想";
const PREV_WORDS: &str = "我 你 是 在 的 去 有 吃 看 买 喜欢 玩 叫 就 都 也 还";
const NEXT_WORDS: &str =
    "是 的 在 有 吗 呢 啊 吧 怎么 什么 为什么 哪 多少 几 好 不 也 都 还 就 很 真 太 没";
/// Words that mark a turn as a follow-up even when it names a topic of its own.
const FOLLOW_UP: &str = "里面 其他 其它 还有 也是 一样 类似 主角 作者 这 那";
const QUESTION: &str = "怎么 什么 吗 如何 多少 哪 为什么 能否 能不能 可以 是否 ? ？ 几 谁 啥 咋";
const CONTENT_TAGS: &str = "n nr nrt nrfg ns nz nt eng vn nl j";

/// `word` is one of the space-separated words of `list`.
fn listed(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|w| w == word)
}

struct Tok<'a> {
    word: &'a str,
    tag: &'a str,
    byte_start: usize,
    byte_end: usize,
}

fn tag(text: &str) -> Vec<Tok<'_>> {
    jieba()
        .tag(text, true)
        .into_iter()
        .map(|t| Tok {
            word: t.word,
            tag: t.tag,
            byte_start: t.byte_start,
            byte_end: t.byte_end,
        })
        .collect()
}

/// Coarse POS group of a jieba tag.
fn group(tag: &str) -> &'static str {
    match tag {
        "nr" | "nrt" | "nrfg" => "nr",
        "ns" => "ns",
        "nz" | "nt" | "j" => "nz",
        "n" | "ng" | "nl" | "vn" | "an" => "n",
        "eng" => "eng",
        "m" | "mq" | "q" => "m",
        "t" | "tg" | "f" | "s" => "t",
        "r" | "rr" | "rz" => "r",
        "i" | "l" => "i",
        "x" => "x",
        "y" | "e" | "o" => "y",
        "p" | "c" | "d" => "p",
        t if t.starts_with('v') => "v",
        t if t.starts_with('a') => "a",
        t if t.starts_with('u') => "u",
        _ => "o",
    }
}

/// Group for insertion points: question words apart from other pronouns.
fn position_group(t: &Tok) -> &'static str {
    if listed(QWORDS, t.word) {
        "q"
    } else {
        group(t.tag)
    }
}

fn is_noun_group(g: &str) -> bool {
    matches!(g, "nr" | "ns" | "nz" | "n" | "eng")
}

fn is_pronoun(w: &str) -> bool {
    listed(PERSON, w) || listed(THING, w) || listed(PLACE, w)
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// `needle` occurs in `hay` without cutting an ASCII word ("iphone" is not in "iphonex").
fn has_word(hay: &str, needle: &str) -> bool {
    let (Some(first), Some(last)) = (needle.chars().next(), needle.chars().next_back()) else {
        return false;
    };
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    hay.match_indices(needle).any(|(i, _)| {
        let (before, after) = (
            hay[..i].chars().next_back(),
            hay[i + needle.len()..].chars().next(),
        );
        !(word(Some(first)) && word(before) || word(Some(last)) && word(after))
    })
}

/// Binary (and one real-valued) features of a candidate, scored against a weight table.
#[derive(Default, Clone)]
struct Feats(Vec<(String, f32)>);

impl Feats {
    fn set(&mut self, name: impl Into<String>, value: f32) {
        let name = name.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
    fn on(&mut self, name: impl Into<String>) {
        self.set(name, 1.0);
    }
    fn on_if(&mut self, cond: bool, name: impl Into<String>) {
        if cond {
            self.on(name);
        }
    }
    fn with(names: &[&str]) -> Self {
        let mut f = Feats::default();
        names.iter().for_each(|n| f.on(*n));
        f
    }
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, v)| n == name && *v != 0.0)
    }
    fn head(&self) -> &str {
        self.0
            .iter()
            .find_map(|(n, _)| n.strip_prefix("head_"))
            .unwrap_or("o")
    }
    fn score(&self, weights: &HashMap<&'static str, f32>) -> f32 {
        let w = |n: &str| weights.get(n).copied().unwrap_or(0.0);
        w("intercept") + self.0.iter().map(|(n, v)| w(n) * v).sum::<f32>()
    }
}

fn parse_weights(table: &'static str) -> HashMap<&'static str, f32> {
    table
        .split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k, v.parse().ok()?))
        })
        .collect()
}

fn span_weights() -> &'static HashMap<&'static str, f32> {
    static W: OnceLock<HashMap<&'static str, f32>> = OnceLock::new();
    W.get_or_init(|| parse_weights(SPAN_WEIGHTS))
}

fn position_weights() -> &'static HashMap<&'static str, f32> {
    static W: OnceLock<HashMap<&'static str, f32>> = OnceLock::new();
    W.get_or_init(|| parse_weights(POSITION_WEIGHTS))
}

/// Maximal substrings (two characters or more, letters and digits only) shared by `a` and `b`:
/// names jieba splits differently in the two turns.
fn common_substrings(a: &str, b: &str) -> Vec<String> {
    let chars: Vec<(usize, char)> = a.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(a.len(), |c| c.0);
    let mut found: Vec<String> = Vec::new();
    for i in 0..chars.len() {
        for j in (i + 2..=chars.len()).rev() {
            let sub = &a[byte_at(i)..byte_at(j)];
            if b.contains(sub) {
                let clean = sub
                    .chars()
                    .all(|c| ('\u{4e00}'..='\u{9fff}').contains(&c) || c.is_alphanumeric());
                if clean && has_word(a, sub) && has_word(b, sub) && !found.iter().any(|f| f == sub)
                {
                    found.push(sub.to_string());
                }
                break;
            }
        }
    }
    let maximal: Vec<String> = found
        .iter()
        .filter(|x| !found.iter().any(|y| y != *x && y.contains(x.as_str())))
        .cloned()
        .collect();
    maximal
}

/// Candidate topic spans (up to four words) of the context turns, with their features.
fn candidate_spans(ctx: &[&str], utt: &str) -> Vec<(String, Feats)> {
    let mut out: Vec<(String, Feats)> = Vec::new();
    let n = ctx.len();
    for (ci, c) in ctx.iter().enumerate() {
        let toks = tag(c);
        let len = toks.len();
        let g = |t: &Tok| {
            if listed(SERVICE, t.word) {
                "n"
            } else {
                group(t.tag)
            }
        };
        for a in 0..len {
            for b in a..(a + 4).min(len) {
                let seg = &toks[a..=b];
                let gs: Vec<&str> = seg.iter().map(g).collect();
                let (first, last) = (gs[0], gs[gs.len() - 1]);
                if matches!(first, "u" | "y" | "x" | "p") || matches!(last, "u" | "p" | "x" | "y") {
                    continue;
                }
                if is_pronoun(seg[0].word)
                    || is_pronoun(seg[seg.len() - 1].word)
                    || ["我", "你", "我们", "你们"].contains(&seg[0].word)
                {
                    continue;
                }
                if !gs
                    .iter()
                    .any(|g| is_noun_group(g) || matches!(*g, "v" | "a" | "i" | "m" | "t"))
                {
                    continue;
                }
                if seg.iter().any(|t| t.word.trim().is_empty()) {
                    continue;
                }
                let text = &c[seg[0].byte_start..seg[seg.len() - 1].byte_end];
                let turn = n - 1 - ci;
                let mut f = Feats::default();
                f.on("bias");
                f.on(format!("turn{}", turn.min(1)));
                f.on(format!("ntok{}", b - a + 1));
                f.set("len", char_len(text).min(8) as f32 / 8.0);
                f.on(format!("head_{last}"));
                f.on(format!("first_{first}"));
                f.on_if(b > a && gs.iter().all(|g| is_noun_group(g)), "allnoun");
                f.on_if(a == 0, "at_start");
                f.on_if(a > 0 && listed(WANT, toks[a - 1].word), "after_want");
                f.on_if(
                    b == len - 1 || (b + 2 == len && matches!(group(toks[len - 1].tag), "y" | "x")),
                    "at_end",
                );
                f.on_if(a == 0 && b == len - 1, "whole");
                let in_other = ctx
                    .iter()
                    .enumerate()
                    .any(|(j, x)| j != ci && has_word(x, text));
                f.on_if(in_other, "in_other");
                if has_word(utt, text) {
                    f.on("in_utt");
                } else {
                    let part = seg
                        .iter()
                        .any(|t| char_len(t.word) > 1 && utt.contains(t.word));
                    f.on_if(part, "part_in_utt");
                }
                f.on_if(seg.iter().any(|t| listed(STOP_VERBS, t.word)), "has_stopv");
                match out.iter_mut().find(|(t, _)| t == text) {
                    Some((_, old)) if old.has("turn0") || !f.has("turn0") => {
                        if in_other {
                            old.on("in_other");
                        }
                    }
                    Some((_, old)) => *old = f,
                    None => out.push((text.to_string(), f)),
                }
            }
        }
    }
    if n >= 2 {
        for sub in common_substrings(ctx[n - 2], ctx[n - 1]) {
            if let Some((_, f)) = out.iter_mut().find(|(t, _)| *t == sub) {
                f.on("common");
                continue;
            }
            let mut f = Feats::with(&["bias", "common", "in_other"]);
            f.set("len", char_len(&sub).min(8) as f32 / 8.0);
            f.on_if(has_word(utt, &sub), "in_utt");
            let head = tag(&sub).last().map_or("o", |t| group(t.tag));
            f.on(format!("head_{head}"));
            out.push((sub, f));
        }
    }
    let words: Vec<&str> = tag(utt).iter().map(|t| t.word).collect();
    let any_of = |list: &str| words.iter().any(|w| listed(list, w));
    let pronoun = if any_of(PERSON) {
        "person"
    } else if any_of(PLACE) {
        "place"
    } else if any_of(THING) {
        "thing"
    } else {
        "none"
    };
    for (text, f) in &mut out {
        f.on_if(text.contains(['我', '你']), "has_wo_ni");
        let head = f.head().to_string();
        f.on(format!("p_{pronoun}_{head}"));
    }
    out
}

/// Candidate edits of the utterance: byte range to replace (empty: insert) with its features.
fn candidate_positions(utt: &str) -> Vec<(usize, usize, Feats)> {
    let toks = tag(utt);
    let len = toks.len();
    let mut out = Vec::new();
    for (k, t) in toks.iter().enumerate() {
        if !is_pronoun(t.word) {
            continue;
        }
        let kind = if listed(PERSON, t.word) {
            "person"
        } else if listed(PLACE, t.word) {
            "place"
        } else {
            "thing"
        };
        let mut f = Feats::with(&["bias", &format!("repl_{kind}")]);
        f.on_if(k == 0, "repl_start");
        out.push((t.byte_start, t.byte_end, f));
        if let Some(next) = toks.get(k + 1).filter(|n| {
            listed(THING, t.word) && matches!(group(n.tag), "n" | "nz" | "m") && n.word != "人"
        }) {
            let f = Feats::with(&["bias", "repl_dem_np"]);
            out.push((t.byte_start, next.byte_end, f));
        }
    }
    for k in 0..=len {
        let at = toks.get(k).map_or(utt.len(), |t| t.byte_start);
        let prev = k.checked_sub(1).map_or("BOS", |p| position_group(&toks[p]));
        let next = toks.get(k).map_or("EOS", position_group);
        let (p, n) = (format!("ins_prev_{prev}"), format!("ins_next_{next}"));
        let mut f = Feats::with(&["bias", "ins", &p, &n]);
        f.on_if(
            next == "EOS" || (k + 1 == len && matches!(next, "y" | "x")),
            format!("ins_end_after_{prev}"),
        );
        if let Some(w) = k.checked_sub(1).map(|p| toks[p].word) {
            f.on_if(listed(PREV_WORDS, w), format!("ins_prevw_{w}"));
        }
        if let Some(w) = toks.get(k).map(|t| t.word) {
            f.on_if(listed(NEXT_WORDS, w), format!("ins_nextw_{w}"));
        }
        f.on_if(
            k > 0 && k < len && is_pronoun(toks[k - 1].word),
            "ins_after_pron",
        );
        out.push((at, at, f));
    }
    out
}

/// A Chinese turn that names its own topic, shares none with the context and asks a question.
fn stands_alone_zh(ctx: &[&str], utt: &str) -> bool {
    let toks = tag(utt);
    if toks.iter().any(|t| is_pronoun(t.word))
        || utt.contains(['他', '她', '它'])
        || utt.starts_with(['这', '那'])
        || FOLLOW_UP.split_whitespace().any(|m| utt.contains(m))
    {
        return false;
    }
    let content = |t: &&Tok| listed(CONTENT_TAGS, t.tag) && char_len(t.word) >= 2;
    let own: Vec<&str> = toks.iter().filter(content).map(|t| t.word).collect();
    if own.is_empty() || own.iter().any(|w| ctx.iter().any(|c| c.contains(w))) {
        return false;
    }
    let shared = ctx
        .iter()
        .any(|c| tag(c).iter().filter(content).any(|t| utt.contains(t.word)));
    !shared && char_len(utt) >= 6 && QUESTION.split_whitespace().any(|q| utt.contains(q))
}

fn rewrite_zh(history: &[&str], utt: &str) -> Option<String> {
    let ctx = &history[history.len().saturating_sub(2)..];
    if stands_alone_zh(ctx, utt) {
        return None;
    }
    let (sw, pw) = (span_weights(), position_weights());
    let best = |a: &f32, b: &f32| a.total_cmp(b);
    let span = candidate_spans(ctx, utt)
        .into_iter()
        .map(|(t, f)| (f.score(sw), t))
        .max_by(|a, b| best(&a.0, &b.0))?
        .1;
    let (start, end, _) = candidate_positions(utt)
        .into_iter()
        .max_by(|a, b| best(&a.2.score(pw), &b.2.score(pw)))?;
    Some(format!("{}{}{}", &utt[..start], span, &utt[end..]))
}

// ---------------------------------------------------------------------------------------------
// English

const SUBJECTS: &str = "i you we";
/// Words between the subject and the main verb ("I want to return ...").
const VERB_LEAD: &str = "\
    want wanna need would like to still also just have be able please can could \
    will should";
const PREPOSITIONS: &str = "to for in into on at from with about of";
/// Words after which the object of a question ends ("... a jacket within 30 days").
const CLAUSE_END: &str = "within by before after if when without because";
const STARTERS: &str = "\
    what how why when where who which can could do does did is are will would \
    should i my please thanks thank ok okay yes no hi hello";
const PRONOUNS: &str = "it they them those these";
const AUX_AFTER_THIS: &str = "is was does do will can one cost work";

/// Lower-cased word of a whitespace token, punctuation trimmed.
fn bare(token: &str) -> String {
    token
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
        .to_lowercase()
}

/// The customer's previous question: two turns back when the history alternates.
fn previous_question<'a>(history: &[&'a str]) -> &'a str {
    history[history.len().saturating_sub(2)]
}

/// Token range of the object of `q` and the index of its main verb, if any.
fn question_slot(tokens: &[&str]) -> Option<(Option<usize>, usize, usize)> {
    let words: Vec<String> = tokens.iter().map(|t| bare(t)).collect();
    let end = words
        .iter()
        .position(|w| listed(CLAUSE_END, w))
        .unwrap_or(words.len());
    let (verb, start) = match words[..end].iter().position(|w| listed(SUBJECTS, w)) {
        Some(s) => {
            let mut v = s + 1;
            while v < end && listed(VERB_LEAD, &words[v]) {
                v += 1;
            }
            let skip_prep = words.get(v + 1).is_some_and(|w| listed(PREPOSITIONS, w));
            (Some(v), v + 1 + usize::from(skip_prep))
        }
        None => {
            let p = words[..end].iter().rposition(|w| listed(PREPOSITIONS, w))?;
            (None, p + 1)
        }
    };
    (start < end).then_some((verb, start, end))
}

fn ends_with_question(text: &str) -> &'static str {
    if text.trim_end().ends_with('?') {
        "?"
    } else {
        ""
    }
}

/// `q` with its object replaced by `object`.
fn substitute(q: &str, object: &str) -> Option<String> {
    let tokens: Vec<&str> = q.split_whitespace().collect();
    let (_, start, end) = question_slot(&tokens)?;
    let mut out: Vec<&str> = tokens[..start].to_vec();
    out.push(object);
    out.extend(&tokens[end..]);
    let text = out.join(" ");
    let text = text.trim_end_matches(['?', '.', '!']).to_string();
    Some(text + "?")
}

/// The object of `q` as a definite noun phrase ("a pair of shoes" → "the pair of shoes").
fn topic_phrase(q: &str) -> Option<String> {
    let tokens: Vec<&str> = q.split_whitespace().collect();
    let (_, start, end) = question_slot(&tokens)?;
    let mut words: Vec<String> = tokens[start..end]
        .iter()
        .map(|t| t.trim_end_matches(['?', '.', '!', ',']).to_string())
        .collect();
    if matches!(words[0].to_lowercase().as_str(), "a" | "an") {
        words[0] = "the".to_string();
    }
    Some(words.join(" "))
}

/// The verb phrase of `q` ("I want to return my shoes" → "return my shoes").
fn verb_phrase(q: &str) -> Option<String> {
    let tokens: Vec<&str> = q.split_whitespace().collect();
    let (verb, _, end) = question_slot(&tokens)?;
    let text = tokens[verb?..end].join(" ");
    Some(text.trim_end_matches(['?', '.', '!', ',']).to_string())
}

fn rewrite_en(history: &[&str], utt: &str) -> Option<String> {
    let q = previous_question(history);
    if !q.chars().any(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let tokens: Vec<&str> = utt.split_whitespace().collect();
    let words: Vec<String> = tokens.iter().map(|t| bare(t)).collect();
    let lead = [
        "what about",
        "how about",
        "and what about",
        "and how about",
        "what if",
    ]
    .iter()
    .filter(|l| {
        let n = l.split(' ').count();
        words.len() > n && words[..n].join(" ") == **l
    })
    .map(|l| l.split(' ').count())
    .max();
    // "and Japan?", "Japan?": a bare noun phrase that swaps the object of the last question.
    let and = usize::from(words.first().is_some_and(|w| w == "and"));
    let short = words.len() > and
        && words.len() <= 3 + and
        && !words
            .iter()
            .any(|w| listed(STARTERS, w) || listed(PRONOUNS, w));
    if let Some(n) = lead.or(short.then_some(and)) {
        let object = tokens[n..].join(" ");
        let object = object.trim_end_matches(['?', '.', '!']).trim();
        if object.is_empty() || listed(PRONOUNS, &bare(object)) {
            return None;
        }
        return substitute(q, object);
    }
    let pronoun = words.iter().enumerate().position(|(i, w)| {
        listed(PRONOUNS, w)
            || (matches!(w.as_str(), "this" | "that")
                && words.get(i + 1).is_none_or(|n| listed(AUX_AFTER_THIS, n)))
    })?;
    // The turn names its own thing before the pronoun ("I bought a lamp, can I return it?").
    if words[..pronoun]
        .iter()
        .any(|w| matches!(w.as_str(), "a" | "an" | "the" | "my"))
    {
        return None;
    }
    let dummy_it = words[pronoun] == "it"
        && words
            .get(pronoun + 1)
            .is_some_and(|w| matches!(w.as_str(), "take" | "takes" | "cost" | "costs"));
    if dummy_it && let Some(vp) = verb_phrase(q) {
        let body = utt.trim_end_matches(['?', '.', '!']);
        return Some(format!("{body} to {vp}{}", ends_with_question(utt)));
    }
    let topic = topic_phrase(q)?;
    let mut out: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
    let token = tokens[pronoun];
    let word_start = token.find(|c: char| c.is_alphanumeric()).unwrap_or(0);
    let word_end = word_start + bare(token).len();
    let mut replaced = format!("{}{}{}", &token[..word_start], topic, &token[word_end..]);
    if words.get(pronoun + 1).is_some_and(|w| w == "one")
        && matches!(words[pronoun].as_str(), "this" | "that")
    {
        replaced = format!("{}{}", &token[..word_start], topic);
        out.remove(pronoun + 1);
        let tail = tokens[pronoun + 1].trim_start_matches(|c: char| c.is_alphanumeric());
        replaced.push_str(tail);
    }
    out[pronoun] = replaced;
    Some(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_questions_are_left_alone() {
        assert_eq!(
            rewrite(
                &["怎么申请退款", "在我的订单里点击申请退款即可"],
                "会员积分怎么兑换"
            ),
            None
        );
        let history = [
            "How do I return a pair of shoes?",
            "Start a return in My Orders.",
        ];
        assert_eq!(rewrite(&history, "How do I reset my password?"), None);
        assert_eq!(rewrite(&history, "how long does the refund take?"), None);
        assert_eq!(rewrite(&[], "他是谁"), None);
        let order = ["帮我查下订单 KF2026112002", "订单已签收。"];
        for social in ["谢谢", "好的", "谢谢啦", "Thanks!", "ok"] {
            assert_eq!(rewrite(&order, social), None, "{social}");
        }
    }

    #[test]
    fn chinese_pronoun_is_replaced_by_the_topic() {
        assert_eq!(
            rewrite(
                &["马云是谁", "做过中国首富也是有名的慈善家"],
                "他是共产党员吗"
            )
            .as_deref(),
            Some("马云是共产党员吗")
        );
    }

    #[test]
    fn chinese_ellipsis_gets_the_topic_back() {
        let out = rewrite(&["我想退货", "好的，请提供订单号"], "运费谁出").unwrap();
        assert!(out.contains("退货") && out.contains("运费谁出"), "{out}");
        // The whole product name, not the prefix the two turns share.
        let out = rewrite(&["iphonex 好不好", "iphone不好用"], "为什么不好用").unwrap();
        assert!(
            out.contains("iphonex") && out.contains("为什么不好用"),
            "{out}"
        );
    }

    #[test]
    fn english_what_about_swaps_the_object() {
        let shoes = [
            "How do I return a pair of shoes?",
            "Start a return in My Orders within 7 days.",
        ];
        assert_eq!(
            rewrite(&shoes, "what about a jacket?").as_deref(),
            Some("How do I return a jacket?")
        );
        let canada = ["Do you ship to Canada?", "Yes, 5-10 days."];
        assert_eq!(
            rewrite(&canada, "what about Japan?").as_deref(),
            Some("Do you ship to Japan?")
        );
        assert_eq!(
            rewrite(&canada, "and Japan?").as_deref(),
            Some("Do you ship to Japan?")
        );
    }

    #[test]
    fn english_pronouns_take_the_topic() {
        let shoes = [
            "I want to return my shoes",
            "Sure, start a return in My Orders.",
        ];
        assert_eq!(
            rewrite(&shoes, "how long does it take?").as_deref(),
            Some("how long does it take to return my shoes?")
        );
        let pair = [
            "How do I return a pair of shoes?",
            "Start a return in My Orders.",
        ];
        assert_eq!(
            rewrite(&pair, "Can I exchange it instead?").as_deref(),
            Some("Can I exchange the pair of shoes instead?")
        );
        assert_eq!(rewrite(&pair, "I bought a lamp, can I return it?"), None);
    }

    #[test]
    fn common_substrings_do_not_cut_ascii_words() {
        assert!(has_word("iphone不好用", "iphone"));
        assert!(!has_word("iphonex 好不好", "iphone"));
        assert_eq!(
            common_substrings("桃谷绘里香", "桃谷绘里香是谁啊"),
            ["桃谷绘里香"]
        );
    }
}
