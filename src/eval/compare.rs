//! `kefu eval compare`: two models of one kind measured on the same data, side by side — the
//! report a data scientist attaches to a promotion. `compare.md` (tables), `compare.html` (the
//! same with bar charts of every measure and of the per-class changes, drawn as inline SVG, so
//! the page needs nothing else) and `compare.json`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

/// One of the two models.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// `A` or `B` unless named.
    pub label: String,
    pub path: String,
    pub version: String,
}

/// One measure on both models; `change` = B − A.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    pub name: String,
    pub a: f64,
    pub b: f64,
    pub change: f64,
}

/// One class (an intent, a customer segment): its size and the per-class measure on both.
#[derive(Debug, Clone, Serialize)]
pub struct Class {
    pub name: String,
    pub support: usize,
    pub a: f64,
    pub b: f64,
    pub change: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// `intent`, `recommend` or `embedding`.
    pub kind: String,
    /// What both were measured on.
    pub data: String,
    pub rows: usize,
    pub a: Side,
    pub b: Side,
    pub measures: Vec<Measure>,
    /// What the per-class numbers are (e.g. `F1 per intent`).
    pub class_measure: String,
    pub classes: Vec<Class>,
    pub notes: Vec<String>,
    pub created_at: String,
}

impl Comparison {
    #[allow(clippy::too_many_arguments)] // the report's parts, each named by the caller
    pub fn new(
        kind: &str,
        data: String,
        rows: usize,
        a: Side,
        b: Side,
        measures: Vec<(&str, f64, f64)>,
        class_measure: &str,
        classes: Vec<(String, usize, f64, f64)>,
    ) -> Self {
        let mut classes: Vec<Class> = classes
            .into_iter()
            .map(|(name, support, a, b)| Class {
                name,
                support,
                a,
                b,
                change: b - a,
            })
            .collect();
        // Largest changes first (down before up at equal size): what a reviewer looks at.
        classes.sort_by(|x, y| {
            y.change
                .abs()
                .total_cmp(&x.change.abs())
                .then(x.change.total_cmp(&y.change))
                .then(x.name.cmp(&y.name))
        });
        Self {
            kind: kind.into(),
            data,
            rows,
            a,
            b,
            measures: measures
                .into_iter()
                .map(|(n, a, b)| Measure {
                    name: n.into(),
                    a,
                    b,
                    change: b - a,
                })
                .collect(),
            class_measure: class_measure.into(),
            classes,
            notes: Vec::new(),
            created_at: jiff::Timestamp::now().to_string(),
        }
    }

    /// Writes `compare.json`, `compare.md` and `compare.html` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        super::report::create_dir(dir)?;
        super::report::write_atomic(&dir.join("compare.json"), &serde_json::to_vec_pretty(self)?)?;
        super::report::write_atomic(&dir.join("compare.md"), self.markdown().as_bytes())?;
        super::report::write_atomic(&dir.join("compare.html"), self.html().as_bytes())
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {} models compared\n", self.kind);
        let _ = writeln!(
            s,
            "Measured on {} ({} rows), {}.\n",
            self.data, self.rows, self.created_at
        );
        let _ = writeln!(s, "| | version | directory |\n|---|---|---|");
        for side in [&self.a, &self.b] {
            let _ = writeln!(
                s,
                "| {} | `{}` | `{}` |",
                side.label, side.version, side.path
            );
        }
        let _ = writeln!(
            s,
            "\n## Measures\n\n| measure | {} | {} | change |\n|---|---:|---:|---:|",
            self.a.label, self.b.label
        );
        for m in &self.measures {
            let _ = writeln!(
                s,
                "| {} | {:.4} | {:.4} | {:+.4} |",
                m.name, m.a, m.b, m.change
            );
        }
        if !self.classes.is_empty() {
            let _ = writeln!(
                s,
                "\n## {} (largest changes first)\n\n| class | support | {} | {} | change |\n|---|---:|---:|---:|---:|",
                self.class_measure, self.a.label, self.b.label
            );
            for c in &self.classes {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.4} | {:.4} | {:+.4} |",
                    md_cell(&c.name),
                    c.support,
                    c.a,
                    c.b,
                    c.change
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "\n> {n}");
        }
        s
    }

    pub fn html(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{kind} models compared</title>\
             <style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:60em;color:#222}}\
             table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.25em .6em}}\
             td.n{{text-align:right;font-variant-numeric:tabular-nums}}.up{{color:#1a7f37}}.down{{color:#c62828}}\
             code{{font-size:90%}}</style></head><body>\n<h1>{kind} models compared</h1>\n<p>Measured on {data} ({rows} rows), {at}.</p>\n",
            kind = esc(&self.kind),
            data = esc(&self.data),
            rows = self.rows,
            at = esc(&self.created_at)
        );
        s.push_str("<table><tr><th></th><th>version</th><th>directory</th></tr>");
        for side in [&self.a, &self.b] {
            let _ = write!(
                s,
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                esc(&side.label),
                esc(&side.version),
                esc(&side.path)
            );
        }
        s.push_str("</table>\n<h2>Measures</h2>\n");
        let bars: Vec<(String, f64, f64)> = self
            .measures
            .iter()
            .map(|m| (m.name.clone(), m.a, m.b))
            .collect();
        s.push_str(&grouped_bars(&bars, &self.a.label, &self.b.label));
        let _ = write!(
            s,
            "<table><tr><th>measure</th><th>{}</th><th>{}</th><th>change</th></tr>",
            esc(&self.a.label),
            esc(&self.b.label)
        );
        for m in &self.measures {
            let _ = write!(
                s,
                "<tr><td>{}</td><td class=n>{:.4}</td><td class=n>{:.4}</td><td class=\"n {}\">{:+.4}</td></tr>",
                esc(&m.name),
                m.a,
                m.b,
                direction(m.change),
                m.change
            );
        }
        s.push_str("</table>\n");
        if !self.classes.is_empty() {
            let _ = writeln!(
                s,
                "<h2>{}: change from {} to {}</h2>",
                esc(&self.class_measure),
                esc(&self.a.label),
                esc(&self.b.label)
            );
            let deltas: Vec<(String, f64)> = self
                .classes
                .iter()
                .map(|c| (c.name.clone(), c.change))
                .collect();
            s.push_str(&delta_bars(&deltas));
            let _ = write!(
                s,
                "<table><tr><th>class</th><th>support</th><th>{}</th><th>{}</th><th>change</th></tr>",
                esc(&self.a.label),
                esc(&self.b.label)
            );
            for c in &self.classes {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td class=n>{}</td><td class=n>{:.4}</td><td class=n>{:.4}</td><td class=\"n {}\">{:+.4}</td></tr>",
                    esc(&c.name),
                    c.support,
                    c.a,
                    c.b,
                    direction(c.change),
                    c.change
                );
            }
            s.push_str("</table>\n");
        }
        for n in &self.notes {
            let _ = writeln!(s, "<p><em>{}</em></p>", esc(n));
        }
        s.push_str("</body></html>\n");
        s
    }
}

fn direction(change: f64) -> &'static str {
    if change > 1e-9 {
        "up"
    } else if change < -1e-9 {
        "down"
    } else {
        ""
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const A_COLOUR: &str = "#90a4ae";
const B_COLOUR: &str = "#1e88e5";

/// Horizontal bars, two per measure (A grey, B blue), on a common 0..max scale.
fn grouped_bars(rows: &[(String, f64, f64)], a: &str, b: &str) -> String {
    let (label_w, bar_w, row_h) = (190.0, 420.0, 34.0);
    let max = rows
        .iter()
        .flat_map(|r| [r.1, r.2])
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let h = 30.0 + row_h * rows.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"measures of both models\">\
         <rect x=\"{label_w}\" y=\"4\" width=\"12\" height=\"12\" fill=\"{A_COLOUR}\"/><text x=\"{t1}\" y=\"15\" font-size=\"12\">{a}</text>\
         <rect x=\"{x2}\" y=\"4\" width=\"12\" height=\"12\" fill=\"{B_COLOUR}\"/><text x=\"{t2}\" y=\"15\" font-size=\"12\">{b}</text>",
        w = label_w + bar_w + 70.0,
        t1 = label_w + 16.0,
        x2 = label_w + 120.0,
        t2 = label_w + 136.0,
        a = esc(a),
        b = esc(b),
    );
    for (i, (name, va, vb)) in rows.iter().enumerate() {
        let y = 26.0 + row_h * i as f64;
        let _ = write!(
            s,
            "<text x=\"{x}\" y=\"{ty}\" font-size=\"12\" text-anchor=\"end\">{n}</text>",
            x = label_w - 8.0,
            ty = y + 18.0,
            n = esc(name)
        );
        for (j, (v, colour)) in [(*va, A_COLOUR), (*vb, B_COLOUR)].into_iter().enumerate() {
            let len = if v.is_finite() { bar_w * v / max } else { 0.0 };
            let by = y + 2.0 + 14.0 * j as f64;
            let _ = write!(
                s,
                "<rect x=\"{label_w}\" y=\"{by}\" width=\"{len:.1}\" height=\"12\" fill=\"{colour}\"/>\
                 <text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"11\">{v:.4}</text>",
                tx = label_w + len + 4.0,
                ty = by + 10.0,
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Diverging bars around zero: green where B is better, red where worse.
fn delta_bars(rows: &[(String, f64)]) -> String {
    let (label_w, half, row_h) = (190.0, 200.0, 18.0);
    let max = rows
        .iter()
        .map(|r| r.1.abs())
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let mid = label_w + half;
    let h = 10.0 + row_h * rows.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"per-class changes\">\
         <line x1=\"{mid}\" y1=\"0\" x2=\"{mid}\" y2=\"{h}\" stroke=\"#999\"/>",
        w = label_w + 2.0 * half + 70.0,
    );
    for (i, (name, d)) in rows.iter().enumerate() {
        let y = 5.0 + row_h * i as f64;
        let len = if d.is_finite() {
            half * d.abs() / max
        } else {
            0.0
        };
        let (x, colour) = if *d >= 0.0 {
            (mid, "#43a047")
        } else {
            (mid - len, "#e53935")
        };
        let _ = write!(
            s,
            "<text x=\"{lx}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{n}</text>\
             <rect x=\"{x:.1}\" y=\"{y}\" width=\"{len:.1}\" height=\"13\" fill=\"{colour}\"/>\
             <text x=\"{vx:.1}\" y=\"{ty}\" font-size=\"10\">{d:+.3}</text>",
            lx = label_w - 8.0,
            ty = y + 11.0,
            n = esc(name),
            vx = if *d >= 0.0 {
                mid + len + 3.0
            } else {
                mid + 3.0
            },
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(l: &str) -> Side {
        Side {
            label: l.into(),
            path: format!("/models/{l}"),
            version: format!("{l}@1"),
        }
    }

    #[test]
    fn report_shows_every_measure_and_class_with_its_change() {
        let c = Comparison::new(
            "intent",
            "test.jsonl".into(),
            10,
            side("A"),
            side("B"),
            vec![("accuracy", 0.8, 0.9), ("macro_f1", 0.7, 0.65)],
            "F1 per intent",
            vec![
                ("refund".into(), 4, 0.5, 0.9),
                ("a<b".into(), 3, 0.9, 0.8),
                ("same".into(), 3, 0.7, 0.7),
            ],
        );
        // Largest change first.
        assert_eq!(c.classes[0].name, "refund");
        assert!((c.classes[0].change - 0.4).abs() < 1e-9);
        let md = c.markdown();
        assert!(
            md.contains("| accuracy | 0.8000 | 0.9000 | +0.1000 |"),
            "{md}"
        );
        assert!(
            md.contains("| macro_f1 | 0.7000 | 0.6500 | -0.0500 |"),
            "{md}"
        );
        assert!(
            md.contains("| refund | 4 | 0.5000 | 0.9000 | +0.4000 |"),
            "{md}"
        );
        let html = c.html();
        // Two bars per measure, one per class, names escaped.
        assert_eq!(html.matches("fill=\"#1e88e5\"").count(), 1 + 2);
        assert!(html.contains("a&lt;b") && !html.contains("a<b"));
        assert!(html.contains("class=\"n down\">-0.0500"));
        let d = tempfile::tempdir().unwrap();
        c.write(d.path()).unwrap();
        for f in ["compare.json", "compare.md", "compare.html"] {
            assert!(d.path().join(f).is_file(), "{f}");
        }
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("compare.json")).unwrap()).unwrap();
        assert_eq!(v["measures"][1]["name"], "macro_f1");
    }
}
