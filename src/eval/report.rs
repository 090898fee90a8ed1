//! Report files shared by the `kefu eval … --report DIR` commands: CSV tables and SVG charts.
//!
//! Every file is written to a temporary file in the target directory and renamed into place, so
//! an interrupted run leaves either the previous file or the complete new one, never half a file.
//! Charts are SVG drawn by `plotters` without system fonts: the viewer lays out the text, so
//! Chinese labels render wherever the viewer has a CJK font.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Font stack for every label; the viewer picks the first it has, CJK-capable ones first.
const FONT: &str = "Noto Sans CJK SC, Source Han Sans SC, Microsoft YaHei, PingFang SC, sans-serif";
/// The SVG backend divides font sizes by this factor; sizes here are in SVG pixels.
const PLOTTERS_FONT_SCALE: f64 = 1.24;
/// Tableau 10: distinguishable, and still readable in greyscale print.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];
const TEXT_COLOR: RGBColor = RGBColor(0x22, 0x22, 0x22);
const XML_HEADER: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Creates the report directory (and its parents) if it does not exist yet.
pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating report directory {}", dir.display()))
}

/// Writes `contents` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut tmp = temp_file_for(path)?;
    tmp.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))?;
    persist(tmp, path)
}

/// Writes `rows` as CSV with a header row taken from the field names of `S`, atomically.
///
/// `S` must be flat (scalars, strings, `Option`s); with no rows the file is empty, since the
/// header comes from the first row.
pub fn write_csv<S: serde::Serialize>(path: &Path, rows: &[S]) -> anyhow::Result<()> {
    let mut tmp = temp_file_for(path)?;
    {
        let mut w = csv::Writer::from_writer(&mut tmp);
        for (i, row) in rows.iter().enumerate() {
            w.serialize(row)
                .with_context(|| format!("{}: row {}", path.display(), i + 1))?;
        }
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    persist(tmp, path)
}

/// One curve of a line plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws `series` as a line chart over the given axis ranges and writes it as SVG.
///
/// Points outside the ranges are clipped and non-finite points leave a gap, so an undefined
/// metric (e.g. precision with no answers) shows as a missing stretch, not a fake value.
/// `marker` draws a dashed vertical line at `x` with its label (skipped when `x` is off-chart).
#[allow(clippy::too_many_arguments)] // one argument per part of the chart; callers name each
pub fn line_plot_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    x_range: (f64, f64),
    y_range: (f64, f64),
    marker: Option<(f64, &str)>,
) -> anyhow::Result<()> {
    let svg = render_line_plot(title, x_label, y_label, series, x_range, y_range, marker)
        .with_context(|| format!("drawing {}", path.display()))?;
    write_atomic(path, svg.as_bytes())
}

/// Draws a confusion matrix (rows = gold, columns = predicted) as an SVG heat map.
///
/// Cells are shaded by their share of the gold row, so rare and frequent labels read alike;
/// counts are written in the cells only up to 30 labels, where they still fit.
pub fn heatmap_svg(
    path: &Path,
    title: &str,
    labels: &[String],
    matrix: &[Vec<u64>],
) -> anyhow::Result<()> {
    let svg = render_heatmap(title, labels, matrix)
        .with_context(|| format!("drawing {}", path.display()))?;
    write_atomic(path, svg.as_bytes())
}

fn temp_file_for(path: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".kefu-report-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> anyhow::Result<()> {
    let f = tmp.as_file();
    f.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    // Temporary files are private (0600); a report is meant to be shared.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("setting permissions of {}", path.display()))?;
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A font of `px` SVG pixels.
fn font(px: f64) -> FontDesc<'static> {
    (FONT, px * PLOTTERS_FONT_SCALE).into_font()
}

fn text_style(px: f64, color: &'static RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle::from(font(px)).color(color).pos(Pos::new(h, v))
}

/// Rough rendered width: CJK and full-width characters take one em, others about 0.6 em.
fn text_width(s: &str, px: f64) -> f64 {
    s.chars()
        .map(|c| if is_wide(c) { 1.0 } else { 0.6 })
        .sum::<f64>()
        * px
}

fn is_wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x115f | 0x2e80..=0xa4cf | 0xac00..=0xd7a3 | 0xf900..=0xfaff
        | 0xfe30..=0xfe4f | 0xff00..=0xff60 | 0xffe0..=0xffe6 | 0x20000..=0x3fffd)
}

/// Shortens `s` to at most `max` characters, marking the cut with an ellipsis.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Tick text without float noise: at most 3 decimals, trailing zeros dropped.
fn tick_label(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn valid_range((lo, hi): (f64, f64)) -> bool {
    lo.is_finite() && hi.is_finite() && lo < hi
}

fn render_line_plot(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    x_range: (f64, f64),
    y_range: (f64, f64),
    marker: Option<(f64, &str)>,
) -> anyhow::Result<String> {
    ensure!(
        valid_range(x_range) && valid_range(y_range),
        "axis ranges must be finite and increasing, got x {x_range:?}, y {y_range:?}"
    );
    const PLOT_W: u32 = 760;
    const H: u32 = 520;
    const LEGEND_PX: f64 = 13.0;
    let names: Vec<String> = series.iter().map(|s| truncate(&s.name, 40)).collect();
    let legend_w = (names
        .iter()
        .map(|n| text_width(n, LEGEND_PX))
        .fold(0.0, f64::max)
        + 60.0)
        .clamp(100.0, 400.0) as u32;
    let title_w = text_width(title, 18.0) as u32 + 40;
    let width = (PLOT_W + legend_w).max(title_w);

    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (width, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let body = root.titled(title, font(18.0).color(&TEXT_COLOR))?;
        let (plot, legend) = body.split_horizontally(width - legend_w);

        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)?;
        let fmt = |v: &f64| tick_label(*v);
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_labels(11)
            .y_labels(11)
            .max_light_lines(1)
            .x_label_formatter(&fmt)
            .y_label_formatter(&fmt)
            .label_style(font(12.0).color(&TEXT_COLOR))
            .axis_desc_style(font(14.0).color(&TEXT_COLOR))
            .draw()?;

        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            for run in clipped_runs(&s.points, x_range, y_range) {
                chart.draw_series(LineSeries::new(run, color.stroke_width(2)))?;
            }
        }

        if let Some((x, label)) = marker
            && x.is_finite()
            && (x_range.0..=x_range.1).contains(&x)
        {
            let line_color = RGBColor(0x55, 0x55, 0x55);
            chart.draw_series(DashedLineSeries::new(
                [(x, y_range.0), (x, y_range.1)],
                6,
                4,
                line_color.stroke_width(1),
            ))?;
            // Label on the side with more room, just under the top edge.
            let right_half = x > (x_range.0 + x_range.1) / 2.0;
            let (dx, h) = if right_half {
                (-5, HPos::Right)
            } else {
                (5, HPos::Left)
            };
            chart.plotting_area().draw(
                &(EmptyElement::at((x, y_range.1))
                    + Text::new(
                        label.to_string(),
                        (dx, 5),
                        text_style(12.0, &TEXT_COLOR, h, VPos::Top),
                    )),
            )?;
        }

        // Legend in its own column, so it never hides a curve.
        for (i, name) in names.iter().enumerate() {
            let y = 24 + 22 * i as i32;
            let color = PALETTE[i % PALETTE.len()];
            legend.draw(&Rectangle::new([(8, y - 2), (32, y + 2)], color.filled()))?;
            legend.draw(&Text::new(
                name.as_str(),
                (40, y),
                text_style(LEGEND_PX, &TEXT_COLOR, HPos::Left, VPos::Center),
            ))?;
        }
        root.present()?;
    }
    Ok(format!("{XML_HEADER}{buf}"))
}

/// Splits a polyline into the runs that lie inside the ranges, clipping segments at the edges
/// and breaking at non-finite points.
fn clipped_runs(
    points: &[(f64, f64)],
    x_range: (f64, f64),
    y_range: (f64, f64),
) -> Vec<Vec<(f64, f64)>> {
    let finite = |p: (f64, f64)| p.0.is_finite() && p.1.is_finite();
    let mut runs = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    let mut flush = |cur: &mut Vec<(f64, f64)>| {
        if cur.len() >= 2 {
            runs.push(std::mem::take(cur));
        } else {
            cur.clear();
        }
    };
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        if !finite(a) || !finite(b) {
            flush(&mut cur);
            continue;
        }
        match clip_segment(a, b, x_range, y_range) {
            None => flush(&mut cur),
            Some((ca, cb, a_cut, b_cut)) => {
                if a_cut || cur.is_empty() {
                    flush(&mut cur);
                    cur.push(ca);
                }
                cur.push(cb);
                if b_cut {
                    flush(&mut cur);
                }
            }
        }
    }
    flush(&mut cur);
    runs
}

type Point = (f64, f64);

/// Liang–Barsky: the part of segment a→b inside the box, and whether each end was cut.
fn clip_segment(
    a: (f64, f64),
    b: (f64, f64),
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> Option<(Point, Point, bool, bool)> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - x0),
        (dx, x1 - a.0),
        (-dy, a.1 - y0),
        (dy, y1 - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                if r > t1 {
                    return None;
                }
                t0 = t0.max(r);
            } else {
                if r < t0 {
                    return None;
                }
                t1 = t1.min(r);
            }
        }
    }
    Some((
        (a.0 + t0 * dx, a.1 + t0 * dy),
        (a.0 + t1 * dx, a.1 + t1 * dy),
        t0 > 0.0,
        t1 < 1.0,
    ))
}

/// White to dark blue ("Blues"); `v` in 0..=1.
fn shade(v: f64) -> RGBColor {
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * v).round() as u8;
    RGBColor(lerp(247, 8), lerp(251, 48), lerp(255, 107))
}

fn render_heatmap(title: &str, labels: &[String], matrix: &[Vec<u64>]) -> anyhow::Result<String> {
    let n = labels.len();
    ensure!(n > 0, "confusion matrix has no labels");
    if matrix.len() != n || matrix.iter().any(|r| r.len() != n) {
        bail!(
            "confusion matrix must be {n}×{n} to match its labels, got {} rows of lengths {:?}",
            matrix.len(),
            matrix.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
    const PAD: i32 = 16;
    const AXIS_BAND: i32 = 26;
    const TITLE_H: i32 = 44;
    let show_counts = n <= 30;
    // Cells shrink with more labels, down to a size that stays legible when zoomed.
    let cell = (900 / n as i32).clamp(8, 56);
    let label_px = (cell as f64 * 0.75).clamp(7.0, 13.0);
    let short: Vec<String> = labels.iter().map(|l| truncate(l, 24)).collect();
    let label_w = short
        .iter()
        .map(|l| text_width(l, label_px))
        .fold(0.0, f64::max)
        .ceil() as i32
        + 6;

    let gx0 = PAD + AXIS_BAND + label_w;
    let gy0 = TITLE_H;
    let grid = cell * n as i32;
    let (gx1, gy1) = (gx0 + grid, gy0 + grid);
    let bar_x = gx1 + 20;
    let bar_h = grid.min(240);
    let width = (bar_x + 14 + 6 + 40 + PAD).max(text_width(title, 18.0) as i32 + 2 * PAD);
    let height = gy1 + 6 + label_w + AXIS_BAND + PAD;

    let mut buf = String::new();
    {
        let root =
            SVGBackend::with_string(&mut buf, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            title,
            (width / 2, 14),
            text_style(18.0, &TEXT_COLOR, HPos::Center, VPos::Top),
        ))?;

        // Only non-zero cells are drawn: a 150-label matrix is mostly zeros.
        for (i, row) in matrix.iter().enumerate() {
            let total: u64 = row.iter().sum();
            for (j, &count) in row.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                // Any non-zero cell gets a visible tint, however small its share.
                let v = 0.06 + 0.94 * count as f64 / total as f64;
                let (x, y) = (gx0 + j as i32 * cell, gy0 + i as i32 * cell);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    shade(v).filled(),
                ))?;
                if show_counts {
                    let text = count.to_string();
                    let fit = cell as f64 * 0.9 / (0.6 * text.len() as f64);
                    let px = (cell as f64 * 0.4).clamp(7.0, 14.0).min(fit);
                    let color = if v > 0.5 { &WHITE } else { &TEXT_COLOR };
                    root.draw(&Text::new(
                        text,
                        (x + cell / 2, y + cell / 2),
                        text_style(px, color, HPos::Center, VPos::Center),
                    ))?;
                }
            }
        }
        let grid_color = RGBColor(0xdd, 0xdd, 0xdd);
        if n <= 60 {
            for k in 1..n as i32 {
                let o = k * cell;
                root.draw(&PathElement::new(
                    [(gx0 + o, gy0), (gx0 + o, gy1)],
                    grid_color,
                ))?;
                root.draw(&PathElement::new(
                    [(gx0, gy0 + o), (gx1, gy0 + o)],
                    grid_color,
                ))?;
            }
        }
        root.draw(&Rectangle::new(
            [(gx0, gy0), (gx1, gy1)],
            RGBColor(0x88, 0x88, 0x88).stroke_width(1),
        ))?;

        let row_style = text_style(label_px, &TEXT_COLOR, HPos::Right, VPos::Center);
        let col_style = TextStyle::from(font(label_px).transform(FontTransform::Rotate90))
            .color(&TEXT_COLOR)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (k, l) in short.iter().enumerate() {
            let mid = k as i32 * cell + cell / 2;
            root.draw(&Text::new(
                l.as_str(),
                (gx0 - 4, gy0 + mid),
                row_style.clone(),
            ))?;
            root.draw(&Text::new(
                l.as_str(),
                (gx0 + mid, gy1 + 4),
                col_style.clone(),
            ))?;
        }
        let axis_style = TextStyle::from(font(14.0).transform(FontTransform::Rotate270))
            .color(&TEXT_COLOR)
            .pos(Pos::new(HPos::Center, VPos::Center));
        root.draw(&Text::new(
            "gold",
            (PAD + AXIS_BAND / 2, gy0 + grid / 2),
            axis_style,
        ))?;
        root.draw(&Text::new(
            "predicted",
            (gx0 + grid / 2, gy1 + 6 + label_w + AXIS_BAND / 2),
            text_style(14.0, &TEXT_COLOR, HPos::Center, VPos::Center),
        ))?;

        // Colour bar: share of the gold row, 100% at the top.
        const STEPS: i32 = 20;
        for s in 0..STEPS {
            let (y0, y1) = (gy0 + bar_h * s / STEPS, gy0 + bar_h * (s + 1) / STEPS);
            let v = 1.0 - (s as f64 + 0.5) / STEPS as f64;
            root.draw(&Rectangle::new(
                [(bar_x, y0), (bar_x + 14, y1)],
                shade(v).filled(),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(bar_x, gy0), (bar_x + 14, gy0 + bar_h)],
            RGBColor(0x88, 0x88, 0x88).stroke_width(1),
        ))?;
        for (text, y, v) in [("100%", gy0, VPos::Top), ("0%", gy0 + bar_h, VPos::Bottom)] {
            root.draw(&Text::new(
                text,
                (bar_x + 20, y),
                text_style(11.0, &TEXT_COLOR, HPos::Left, v),
            ))?;
        }
        root.present()?;
    }
    Ok(format!("{XML_HEADER}{buf}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed contents of every `<text>` element.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .map(|t| {
                let body = &t[t.find('>').unwrap() + 1..];
                body[..body.find("</text>").unwrap()].trim().to_string()
            })
            .collect()
    }

    fn assert_svg_shape(svg: &str) {
        assert!(svg.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    fn only_file_names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Row {
        threshold: f64,
        label: String,
        precision: Option<f64>,
    }

    #[test]
    fn csv_round_trips_with_headers_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/report");
        create_dir(&out).unwrap();
        let path = out.join("curve.csv");
        let rows = vec![
            Row {
                threshold: 0.5,
                label: "退款, \"quoted\"".into(),
                precision: Some(0.75),
            },
            Row {
                threshold: 0.9,
                label: "plain".into(),
                precision: None,
            },
        ];
        write_csv(&path, &rows).unwrap();
        // Rewriting replaces the file whole.
        write_csv(&path, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("threshold,label,precision\n"), "{text}");
        let back: Vec<Row> = csv::Reader::from_path(&path)
            .unwrap()
            .deserialize()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, rows);
        assert_eq!(only_file_names(&out), ["curve.csv"]);
    }

    #[test]
    fn create_dir_over_a_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("taken");
        std::fs::write(&file, "x").unwrap();
        let err = format!("{:#}", create_dir(&file).unwrap_err());
        assert!(
            err.contains("report directory") && err.contains("taken"),
            "{err}"
        );
    }

    #[test]
    fn line_plot_has_title_series_marker_and_one_polyline_per_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("threshold.svg");
        let xs: Vec<f64> = (0..=100).map(|i| i as f64 / 100.0).collect();
        let series = vec![
            Series {
                name: "answer precision".into(),
                points: xs.iter().map(|&x| (x, 0.5 + 0.5 * x)).collect(),
            },
            Series {
                name: "答复率 answer rate".into(),
                points: xs.iter().map(|&x| (x, 1.0 - x)).collect(),
            },
            Series {
                name: "no-answer recall".into(),
                points: xs.iter().map(|&x| (x, x * x)).collect(),
            },
        ];
        line_plot_svg(
            &path,
            "FAQ threshold <sweep> & 阈值",
            "similarity threshold",
            "rate",
            &series,
            (0.0, 1.0),
            (0.0, 1.0),
            Some((0.62, "chosen 0.62")),
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert_svg_shape(&svg);
        let t = texts(&svg);
        assert!(
            t.contains(&"FAQ threshold &lt;sweep&gt; &amp; 阈值".to_string()),
            "{t:?}"
        );
        for s in &series {
            assert!(t.contains(&s.name), "{} missing from {t:?}", s.name);
        }
        for want in ["chosen 0.62", "similarity threshold", "rate", "0.5", "1"] {
            assert!(t.iter().any(|x| x == want), "{want} missing from {t:?}");
        }
        for (i, _) in series.iter().enumerate() {
            let c = PALETTE[i];
            let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
            let n = svg
                .split("<polyline")
                .skip(1)
                .filter(|p| p[..p.find("/>").unwrap()].contains(&stroke))
                .count();
            assert_eq!(n, 1, "series {i} ({stroke})");
        }
        assert_eq!(only_file_names(dir.path()), ["threshold.svg"]);
    }

    #[test]
    fn line_plot_clips_and_breaks_at_gaps() {
        let runs = clipped_runs(
            &[
                (0.0, 0.5),
                (0.5, 0.5),
                (0.6, f64::NAN),
                (0.7, 0.5),
                (0.8, 0.5),
                (1.0, 1.5),
            ],
            (0.0, 1.0),
            (0.0, 1.0),
        );
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert_eq!(runs[0], [(0.0, 0.5), (0.5, 0.5)]);
        assert_eq!(runs[1][..2], [(0.7, 0.5), (0.8, 0.5)]);
        let last = runs[1][2];
        assert!(
            (last.0 - 0.9).abs() < 1e-9 && (last.1 - 1.0).abs() < 1e-9,
            "{last:?}"
        );
        assert!(clipped_runs(&[(2.0, 2.0), (3.0, 3.0)], (0.0, 1.0), (0.0, 1.0)).is_empty());

        let dir = tempfile::tempdir().unwrap();
        let err = line_plot_svg(
            &dir.path().join("bad.svg"),
            "t",
            "x",
            "y",
            &[],
            (1.0, 1.0),
            (0.0, 1.0),
            None,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("axis ranges"), "{err:#}");
    }

    #[test]
    fn small_heatmap_shows_labels_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confusion.svg");
        let labels: Vec<String> = ["退款", "shipping", "a<b"].map(String::from).to_vec();
        let matrix = vec![vec![17, 2, 0], vec![3, 41, 5], vec![0, 0, 9]];
        heatmap_svg(&path, "Intent confusion", &labels, &matrix).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert_svg_shape(&svg);
        let t = texts(&svg);
        for want in [
            "Intent confusion",
            "退款",
            "shipping",
            "a&lt;b",
            "gold",
            "predicted",
        ] {
            assert_eq!(
                t.iter().filter(|x| *x == want).count(),
                want_count(want),
                "{want}"
            );
        }
        for count in ["17", "2", "3", "41", "5", "9"] {
            assert!(t.iter().any(|x| x == count), "{count} missing from {t:?}");
        }
        assert!(!t.iter().any(|x| x == "0"), "zero cells stay blank: {t:?}");
        assert!(svg.contains("rotate(90"), "column labels are rotated");
    }

    /// Labels appear once per axis; the rest once.
    fn want_count(text: &str) -> usize {
        match text {
            "Intent confusion" | "gold" | "predicted" => 1,
            _ => 2,
        }
    }

    #[test]
    fn large_heatmap_drops_cell_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confusion.svg");
        let n = 150;
        let labels: Vec<String> = (0..n).map(|i| format!("意图_{i}")).collect();
        let matrix: Vec<Vec<u64>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        if i == j {
                            20
                        } else {
                            ((i * j) % 7 == 0) as u64
                        }
                    })
                    .collect()
            })
            .collect();
        heatmap_svg(&path, "150 intents", &labels, &matrix).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert_svg_shape(&svg);
        let t = texts(&svg);
        assert!(t.contains(&"意图_149".to_string()));
        let numeric: Vec<&String> = t.iter().filter(|x| x.parse::<u64>().is_ok()).collect();
        assert!(
            numeric.is_empty(),
            "cell counts drawn: {:?}",
            &numeric[..numeric.len().min(5)]
        );
    }

    #[test]
    fn heatmap_rejects_a_matrix_that_does_not_match_its_labels() {
        let dir = tempfile::tempdir().unwrap();
        let labels: Vec<String> = vec!["a".into(), "b".into()];
        let err = heatmap_svg(&dir.path().join("x.svg"), "t", &labels, &[vec![1, 2]]).unwrap_err();
        assert!(format!("{err:#}").contains("2×2"), "{err:#}");
        assert!(only_file_names(dir.path()).is_empty());
    }
}
