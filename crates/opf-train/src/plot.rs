//! A dependency-free SVG plot of the training loss and the dev metric against the step.

use std::fmt::Write;

/// One line of the plot.
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Stroke colour (SVG colour name or `#rrggbb`).
    pub color: &'a str,
    /// `(step, value)` points.
    pub points: &'a [(f64, f64)],
}

/// Renders stacked panels (one per series group) sharing the step axis, 640 px wide.
pub fn svg(title: &str, panels: &[(&str, Vec<Series<'_>>)]) -> String {
    const W: f64 = 640.0;
    const PH: f64 = 220.0;
    const L: f64 = 60.0;
    const R: f64 = 20.0;
    const T: f64 = 30.0;
    const B: f64 = 30.0;
    let height = T + panels.len() as f64 * (PH + B);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="13">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    let all = || {
        panels
            .iter()
            .flat_map(|(_, ss)| ss.iter().flat_map(|x| x.points))
    };
    let (x0, x1) = bounds(all().map(|p| p.0));
    for (k, (ylabel, series)) in panels.iter().enumerate() {
        let top = T + k as f64 * (PH + B);
        let (y0, y1) = bounds(series.iter().flat_map(|x| x.points).map(|p| p.1));
        let px = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - R);
        let py = |y: f64| top + PH - (y - y0) / (y1 - y0) * PH;
        let _ = writeln!(
            s,
            r##"<rect x="{L}" y="{top}" width="{}" height="{PH}" fill="none" stroke="#888"/>"##,
            W - L - R
        );
        for (v, anchor_y) in [(y0, top + PH), (y1, top + 10.0)] {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{anchor_y}" text-anchor="end">{v:.4}</text>"#,
                L - 4.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
            top + PH / 2.0,
            top + PH / 2.0,
            escape(ylabel)
        );
        for (i, line) in series.iter().enumerate() {
            let pts: Vec<String> = line
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
                line.color,
                pts.join(" ")
            );
            if line.points.len() == 1 {
                let (x, y) = line.points[0];
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                    px(x),
                    py(y),
                    line.color
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" fill="{}">{}</text>"#,
                L + 8.0,
                top + 14.0 + 13.0 * i as f64,
                line.color,
                escape(line.label)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{L}" y="{}">{x0}</text><text x="{}" y="{}" text-anchor="end">step {x1}</text>"#,
            top + PH + 14.0,
            W - R,
            top + PH + 14.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_and_escapes_labels() {
        let loss = [(0.0, 0.7), (10.0, 0.5), (20.0, 0.3)];
        let acc = [(20.0, 0.8)];
        let out = svg(
            "MRPC <dense>",
            &[
                (
                    "loss",
                    vec![Series {
                        label: "train loss",
                        color: "steelblue",
                        points: &loss,
                    }],
                ),
                (
                    "dev",
                    vec![Series {
                        label: "acc",
                        color: "darkorange",
                        points: &acc,
                    }],
                ),
            ],
        );
        assert!(out.starts_with("<svg"));
        assert!(out.trim_end().ends_with("</svg>"));
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(out.contains("MRPC &lt;dense&gt;"));
        // The first loss point sits on the left edge, the last on the right edge.
        assert!(out.contains("60.0,"));
        assert!(out.contains("620.0,"));
    }
}
