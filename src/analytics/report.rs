//! The operations report as one self-contained HTML page: numbers, SVG charts drawn here (no
//! script, no external asset), tables, in Chinese or English. The report's data is embedded
//! as JSON (`<script type="application/json" id="report-data">`) for tools.

use std::fmt::Write;

use serde::Serialize;
use utoipa::ToSchema;

use super::sla::Attainment;
use super::stats::{Numbers, Stats, TopQuestions, Unanswered, WeakSpots, Window};

/// SLA attainment of the hand-offs created in one bucket.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SlaPoint {
    pub start_ms: i64,
    #[serde(flatten)]
    pub attainment: Attainment,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    pub lang: String,
    pub generated_ms: i64,
    #[serde(flatten)]
    pub window: Window,
    /// The window of the same length just before (for the change).
    pub previous: Window,
    pub stats: Stats,
    pub previous_totals: Numbers,
    pub sla_series: Vec<SlaPoint>,
    pub top: TopQuestions,
    pub weak_spots: WeakSpots,
    pub unanswered: Unanswered,
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

fn t(lang: &str, key: &str) -> &'static str {
    let zh = lang != "en";
    macro_rules! pick {
        ($($k:literal => $z:literal, $e:literal;)*) => {
            match key { $($k => if zh { $z } else { $e },)* _ => "" }
        };
    }
    pick! {
        "title" => "客服运营报告", "Support operations report";
        "window" => "统计区间", "Window";
        "previous" => "对比区间", "Compared with";
        "summary" => "概览", "Summary";
        "metric" => "指标", "Metric";
        "this" => "本期", "This period";
        "before" => "上期", "Previous";
        "change" => "变化", "Change";
        "volume" => "咨询量", "Volume";
        "conversations" => "会话数", "Conversations";
        "answer_rate" => "直接解答率", "Answer rate";
        "clarify_rate" => "澄清率", "Clarify rate";
        "no_answer_rate" => "未解答率", "No-answer rate";
        "handoff_rate" => "转人工率", "Hand-off rate";
        "containment" => "机器人闭环率", "Containment";
        "flow_success_rate" => "业务流程成功率", "Flow success rate";
        "p50" => "响应时间 p50 (ms)", "Latency p50 (ms)";
        "p95" => "响应时间 p95 (ms)", "Latency p95 (ms)";
        "helpful_share" => "有帮助占比", "Helpful share";
        "mean_rating" => "平均评分", "Mean rating";
        "csat" => "满意度 (CSAT)", "CSAT";
        "feedback_collection_rate" => "反馈收集率", "Feedback collection rate";
        "sla" => "人工服务 SLA", "SLA for people";
        "handoffs" => "转人工", "Hand-offs";
        "complaints" => "投诉", "Complaints";
        "breached" => "超时", "Breached";
        "pickup_attainment" => "接起达标率", "Pick-up attainment";
        "resolve_attainment" => "解决达标率", "Resolution attainment";
        "over_time" => "趋势", "Over time";
        "rates" => "解答、转人工与闭环", "Answers, hand-offs and containment";
        "satisfaction" => "满意度", "Satisfaction";
        "hot_topics" => "热点意图", "Hot topics";
        "top_questions" => "高频问题", "Top questions";
        "top_entries" => "最常用的知识条目", "Entries answered most";
        "count" => "次数", "Count";
        "share" => "占比", "Share";
        "gaps" => "知识缺口（未解答问题聚类）", "Knowledge gaps (unanswered questions, clustered)";
        "representative" => "代表问题", "Representative question";
        "examples" => "其他问法", "Other wordings";
        "nearest" => "最接近的已有条目", "Nearest existing entry";
        "weak" => "薄弱环节", "Weak spots";
        "entry" => "条目", "Entry";
        "category" => "分类", "Category";
        "answers" => "解答次数", "Answers";
        "negative" => "差评", "Negative";
        "reasks" => "重复追问", "Re-asks";
        "none" => "无", "None";
        "generated" => "生成于", "Generated";
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{:.1}%", v * 100.0))
}

fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |v| format!("{v:.digits$}"))
}

fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn day(ms: i64, hourly: bool) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.strftime(if hourly { "%H:00" } else { "%m-%d" })
                .to_string()
        })
        .unwrap_or_default()
}

const COLORS: [&str; 4] = ["#2f6fdf", "#e4572e", "#29a36a", "#a05fd6"];

/// Bars of `values` with `labels` under them.
fn bars(values: &[f64], labels: &[String]) -> String {
    let (w, h, pad) = (720.0, 200.0, 30.0);
    let max = values.iter().cloned().fold(0.0, f64::max).max(1.0);
    let n = values.len().max(1) as f64;
    let bw = (w - 2.0 * pad) / n;
    let mut s = format!(
        r#"<svg viewBox="0 0 {w} {}" class="chart" role="img">"#,
        h + 20.0
    );
    for (i, v) in values.iter().enumerate() {
        let bh = (h - 2.0 * pad) * v / max;
        let x = pad + i as f64 * bw;
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{}"><title>{}: {v}</title></rect>"#,
            x + 1.0,
            h - pad - bh,
            (bw - 2.0).max(1.0),
            COLORS[0],
            esc(&labels[i])
        );
        if values.len() <= 31 || i % (values.len() / 12 + 1) == 0 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                x + bw / 2.0,
                h - pad + 14.0,
                esc(&labels[i])
            );
        }
    }
    let _ = write!(
        s,
        r#"<text x="{pad}" y="14" font-size="10">max {max}</text></svg>"#
    );
    s
}

/// Lines of shares (0–1) over `labels`; gaps where a value is missing.
fn lines(series: &[(&str, Vec<Option<f64>>)], labels: &[String]) -> String {
    let (w, h, pad) = (720.0, 200.0, 30.0);
    let n = labels.len().max(2) as f64;
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (n - 1.0);
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v.clamp(0.0, 1.0);
    let mut s = format!(
        r#"<svg viewBox="0 0 {w} {}" class="chart" role="img">"#,
        h + 30.0
    );
    for g in [0.0, 0.5, 1.0] {
        let _ = write!(
            s,
            r##"<line x1="{pad}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="2" y="{:.1}" font-size="10">{:.0}%</text>"##,
            w - pad,
            y(g),
            y(g),
            y(g) + 3.0,
            g * 100.0
        );
    }
    for (k, (name, values)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let mut d = String::new();
        let mut pen = false;
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen { "L" } else { "M" },
                        x(i),
                        y(*v)
                    );
                    pen = true;
                    let _ = write!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"><title>{} {}: {:.1}%</title></circle>"#,
                        x(i),
                        y(*v),
                        esc(name),
                        esc(&labels[i]),
                        v * 100.0
                    );
                }
                None => pen = false,
            }
        }
        let _ = write!(
            s,
            r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="11" fill="{color}">■ {}</text>"#,
            pad + 150.0 * k as f64,
            h + 20.0,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

fn change(now: Option<f64>, before: Option<f64>, share: bool) -> String {
    match (now, before) {
        (Some(a), Some(b)) if share => format!("{:+.1} pp", (a - b) * 100.0),
        (Some(a), Some(b)) if b != 0.0 => format!("{:+.1}%", (a - b) / b * 100.0),
        _ => "–".into(),
    }
}

/// The page.
pub fn html(r: &Report) -> String {
    let l = r.lang.as_str();
    let hourly = r
        .stats
        .series
        .get(1)
        .zip(r.stats.series.first())
        .is_some_and(|(b, a)| b.start_ms - a.start_ms < 86_400_000);
    let labels: Vec<String> = r
        .stats
        .series
        .iter()
        .map(|p| day(p.start_ms, hourly))
        .collect();
    let n = &r.stats.totals;
    let p = &r.previous_totals;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<!doctype html><html lang="{l}"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;max-width:880px;margin:2em auto;color:#222;padding:0 1em}}
table{{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}}td,th{{border-bottom:1px solid #e5e5e5;padding:4px 8px;text-align:left;font-size:14px}}
th{{background:#f6f7f9}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}.chart{{width:100%;height:auto;margin-bottom:1em}}
h1{{font-size:24px}}h2{{font-size:18px;margin-top:1.6em;border-left:4px solid #2f6fdf;padding-left:8px}}.muted{{color:#777;font-size:13px}}</style></head><body>
<h1>{title}</h1><p class="muted">{wl}: {from} – {to} · {pl}: {pfrom} – {pto} · {gl} {gen}</p>"#,
        title = t(l, "title"),
        wl = t(l, "window"),
        from = time(r.window.from_ms),
        to = time(r.window.to_ms),
        pl = t(l, "previous"),
        pfrom = time(r.previous.from_ms),
        pto = time(r.previous.to_ms),
        gl = t(l, "generated"),
        gen = time(r.generated_ms),
    );
    // Summary with the change.
    let _ = write!(
        o,
        "<h2>{}</h2><table id=\"summary\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(l, "summary"),
        t(l, "metric"),
        t(l, "this"),
        t(l, "before"),
        t(l, "change")
    );
    let count = |x: u64| Some(x as f64);
    let rows: Vec<(&str, String, String, String)> = vec![
        (
            "volume",
            n.volume.to_string(),
            p.volume.to_string(),
            change(count(n.volume), count(p.volume), false),
        ),
        (
            "conversations",
            n.conversations.to_string(),
            p.conversations.to_string(),
            change(count(n.conversations), count(p.conversations), false),
        ),
        (
            "answer_rate",
            pct(n.answer_rate),
            pct(p.answer_rate),
            change(n.answer_rate, p.answer_rate, true),
        ),
        (
            "clarify_rate",
            pct(n.clarify_rate),
            pct(p.clarify_rate),
            change(n.clarify_rate, p.clarify_rate, true),
        ),
        (
            "no_answer_rate",
            pct(n.no_answer_rate),
            pct(p.no_answer_rate),
            change(n.no_answer_rate, p.no_answer_rate, true),
        ),
        (
            "handoff_rate",
            pct(n.handoff_rate),
            pct(p.handoff_rate),
            change(n.handoff_rate, p.handoff_rate, true),
        ),
        (
            "containment",
            pct(n.containment),
            pct(p.containment),
            change(n.containment, p.containment, true),
        ),
        (
            "flow_success_rate",
            pct(n.flow_success_rate),
            pct(p.flow_success_rate),
            change(n.flow_success_rate, p.flow_success_rate, true),
        ),
        (
            "p50",
            num(n.latency.p50_ms, 1),
            num(p.latency.p50_ms, 1),
            change(n.latency.p50_ms, p.latency.p50_ms, false),
        ),
        (
            "p95",
            num(n.latency.p95_ms, 1),
            num(p.latency.p95_ms, 1),
            change(n.latency.p95_ms, p.latency.p95_ms, false),
        ),
        (
            "helpful_share",
            pct(n.satisfaction.helpful_share),
            pct(p.satisfaction.helpful_share),
            change(
                n.satisfaction.helpful_share,
                p.satisfaction.helpful_share,
                true,
            ),
        ),
        (
            "mean_rating",
            num(n.satisfaction.mean_rating, 2),
            num(p.satisfaction.mean_rating, 2),
            change(
                n.satisfaction.mean_rating,
                p.satisfaction.mean_rating,
                false,
            ),
        ),
        (
            "csat",
            pct(n.satisfaction.csat),
            pct(p.satisfaction.csat),
            change(n.satisfaction.csat, p.satisfaction.csat, true),
        ),
        (
            "feedback_collection_rate",
            pct(n.feedback_collection_rate),
            pct(p.feedback_collection_rate),
            change(n.feedback_collection_rate, p.feedback_collection_rate, true),
        ),
    ];
    for (k, a, b, c) in rows {
        let _ = write!(
            o,
            r#"<tr data-metric="{k}"><td>{}</td><td class="n">{a}</td><td class="n">{b}</td><td class="n">{c}</td></tr>"#,
            t(l, k)
        );
    }
    o.push_str("</table>");
    // SLA.
    let s = &r.stats.sla;
    let _ = write!(
        o,
        r#"<h2>{}</h2><table id="sla"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr><tr><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr></table>"#,
        t(l, "sla"),
        t(l, "handoffs"),
        t(l, "complaints"),
        t(l, "breached"),
        t(l, "pickup_attainment"),
        t(l, "resolve_attainment"),
        s.handoffs,
        s.complaints,
        s.breached,
        pct(s.pickup_attainment),
        pct(s.resolve_attainment)
    );
    // Charts.
    let series = &r.stats.series;
    let _ = write!(o, "<h2>{} · {}</h2>", t(l, "volume"), t(l, "over_time"));
    o.push_str(&bars(
        &series
            .iter()
            .map(|p| p.numbers.volume as f64)
            .collect::<Vec<_>>(),
        &labels,
    ));
    let _ = write!(o, "<h2>{}</h2>", t(l, "rates"));
    o.push_str(&lines(
        &[
            (
                t(l, "answer_rate"),
                series.iter().map(|p| p.numbers.answer_rate).collect(),
            ),
            (
                t(l, "handoff_rate"),
                series.iter().map(|p| p.numbers.handoff_rate).collect(),
            ),
            (
                t(l, "containment"),
                series.iter().map(|p| p.numbers.containment).collect(),
            ),
        ],
        &labels,
    ));
    let _ = write!(o, "<h2>{}</h2>", t(l, "satisfaction"));
    o.push_str(&lines(
        &[
            (
                t(l, "csat"),
                series.iter().map(|p| p.numbers.satisfaction.csat).collect(),
            ),
            (
                t(l, "helpful_share"),
                series
                    .iter()
                    .map(|p| p.numbers.satisfaction.helpful_share)
                    .collect(),
            ),
            (
                t(l, "feedback_collection_rate"),
                series
                    .iter()
                    .map(|p| p.numbers.feedback_collection_rate)
                    .collect(),
            ),
        ],
        &labels,
    ));
    let _ = write!(o, "<h2>{} · {}</h2>", t(l, "sla"), t(l, "over_time"));
    o.push_str(&lines(
        &[
            (
                t(l, "pickup_attainment"),
                r.sla_series
                    .iter()
                    .map(|p| p.attainment.pickup_attainment)
                    .collect(),
            ),
            (
                t(l, "resolve_attainment"),
                r.sla_series
                    .iter()
                    .map(|p| p.attainment.resolve_attainment)
                    .collect(),
            ),
        ],
        &labels,
    ));
    // Tables.
    let counted =
        |o: &mut String, id: &str, title: &str, rows: &[crate::analytics::stats::Counted]| {
            let _ = write!(
                o,
                "<h2>{title}</h2><table id=\"{id}\"><tr><th></th><th>{}</th><th>{}</th></tr>",
                t(l, "count"),
                t(l, "share")
            );
            if rows.is_empty() {
                let _ = write!(o, "<tr><td colspan=3>{}</td></tr>", t(l, "none"));
            }
            for c in rows {
                let name = c.label.as_deref().unwrap_or(&c.key);
                let _ = write!(
                    o,
                    r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
                    esc(name),
                    c.count,
                    pct(Some(c.share))
                );
            }
            o.push_str("</table>");
        };
    counted(&mut o, "hot-topics", t(l, "hot_topics"), &r.top.intents);
    counted(
        &mut o,
        "top-questions",
        t(l, "top_questions"),
        &r.top.questions,
    );
    counted(&mut o, "top-entries", t(l, "top_entries"), &r.top.entries);
    let _ = write!(
        o,
        "<h2>{}</h2><table id=\"gaps\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(l, "gaps"),
        t(l, "representative"),
        t(l, "count"),
        t(l, "examples"),
        t(l, "nearest")
    );
    if r.unanswered.clusters.is_empty() {
        let _ = write!(o, "<tr><td colspan=4>{}</td></tr>", t(l, "none"));
    }
    for c in &r.unanswered.clusters {
        let others: Vec<String> = c
            .examples
            .iter()
            .filter(|e| **e != c.representative)
            .map(|e| esc(e))
            .collect();
        let nearest = c.nearest.as_ref().map_or("–".to_string(), |n| {
            format!("{} ({:.2})", esc(&n.question), n.score)
        });
        let _ = write!(
            o,
            r#"<tr><td>{}</td><td class="n">{}</td><td>{}</td><td>{nearest}</td></tr>"#,
            esc(&c.representative),
            c.count,
            others.join("<br>")
        );
    }
    o.push_str("</table>");
    let spots = |o: &mut String, id: &str, title: &str, rows: &[crate::analytics::stats::Spot]| {
        let _ = write!(
            o,
            "<h3>{title}</h3><table id=\"{id}\"><tr><th></th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            t(l, "answers"),
            t(l, "negative"),
            t(l, "mean_rating"),
            t(l, "reasks")
        );
        if rows.is_empty() {
            let _ = write!(o, "<tr><td colspan=5>{}</td></tr>", t(l, "none"));
        }
        for s in rows {
            let _ = write!(
                o,
                r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{} ({})</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
                esc(s.label.as_deref().unwrap_or(&s.key)),
                s.answers,
                s.negative,
                pct(s.negative_rate),
                num(s.mean_rating, 2),
                s.reasks
            );
        }
        o.push_str("</table>");
    };
    let _ = write!(o, "<h2>{}</h2>", t(l, "weak"));
    spots(&mut o, "weak-entries", t(l, "entry"), &r.weak_spots.entries);
    spots(
        &mut o,
        "weak-categories",
        t(l, "category"),
        &r.weak_spots.categories,
    );
    // The data, for tools (`</` cannot end the script early).
    let data = serde_json::to_string(r)
        .unwrap_or_default()
        .replace("</", "<\\/");
    let _ = write!(
        o,
        r#"<script type="application/json" id="report-data">{data}</script></body></html>"#
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn charts_draw_what_they_are_given() {
        let labels: Vec<String> = (1..=3).map(|d| format!("12-0{d}")).collect();
        let b = bars(&[1.0, 0.0, 4.0], &labels);
        assert_eq!(b.matches("<rect").count(), 3);
        assert!(b.contains("12-03: 4"));
        let l = lines(&[("a", vec![Some(0.5), None, Some(1.0)])], &labels);
        // The missing point breaks the line: two moves, no draw between them.
        assert_eq!(l.matches('M').count(), 2);
        assert_eq!(l.matches("<circle").count(), 2);
    }
}
