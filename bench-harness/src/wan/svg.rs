//! The plot `swarm --wan` writes next to its JSON: peers connected over time and download rate
//! over time, one line per client (its first measured run), as a self-contained SVG.

use std::fmt::Write;

use super::Point;

const W: f64 = 760.0;
const H: f64 = 240.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
const COLOURS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// One client's line.
pub struct Line<'a> {
    pub client: &'a str,
    pub points: &'a [Point],
}

/// Two panels, one above the other: peers connected, and MB/s (from the delivered bytes of
/// consecutive samples). `title` heads the figure.
pub fn plot(title: &str, lines: &[Line<'_>]) -> String {
    let t_max = lines
        .iter()
        .filter_map(|l| l.points.last())
        .map(|p| p.t_s)
        .fold(1.0, f64::max);
    let peers: Vec<Vec<(f64, f64)>> = lines
        .iter()
        .map(|l| l.points.iter().map(|p| (p.t_s, p.open as f64)).collect())
        .collect();
    let rates: Vec<Vec<(f64, f64)>> = lines.iter().map(|l| rate_series(l.points)).collect();
    let mut s = String::new();
    let total_h = 2.0 * H + 30.0;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total_h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="18" font-size="14">{}</text>"#,
        escape(title)
    );
    panel(&mut s, 10.0, "peers connected", t_max, &peers);
    panel(&mut s, H + 20.0, "MB/s", t_max, &rates);
    for (i, l) in lines.iter().enumerate() {
        let y = TOP + 16.0 * i as f64 + 10.0;
        let x = W - RIGHT - 150.0;
        let c = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{c}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            x + 20.0,
            x + 26.0,
            y + 4.0,
            escape(l.client)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// MB/s between consecutive samples, at the later sample's time.
fn rate_series(points: &[Point]) -> Vec<(f64, f64)> {
    points
        .windows(2)
        .filter(|w| w[1].t_s > w[0].t_s)
        .map(|w| {
            let bytes = w[1].bytes.saturating_sub(w[0].bytes) as f64;
            (w[1].t_s, bytes / 1e6 / (w[1].t_s - w[0].t_s))
        })
        .collect()
}

/// One panel with axes, at vertical offset `y0`.
fn panel(s: &mut String, y0: f64, label: &str, t_max: f64, series: &[Vec<(f64, f64)>]) {
    let v_max = series.iter().flatten().map(|&(_, v)| v).fold(1.0, f64::max) * 1.05;
    let (x0, x1) = (LEFT, W - RIGHT);
    let (top, bottom) = (y0 + TOP, y0 + H - BOTTOM);
    let px = |t: f64| x0 + (x1 - x0) * t / t_max;
    let py = |v: f64| bottom - (bottom - top) * v / v_max;
    let _ = writeln!(
        s,
        r#"<line x1="{x0}" y1="{bottom}" x2="{x1}" y2="{bottom}" stroke="black"/><line x1="{x0}" y1="{top}" x2="{x0}" y2="{bottom}" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{x0}" y="{}">{}</text>"#,
        top - 6.0,
        escape(label)
    );
    for i in 0..=4 {
        let v = v_max * i as f64 / 4.0;
        let t = t_max * i as f64 / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{v:.0}</text><text x="{}" y="{}" text-anchor="middle">{t:.0} s</text>"#,
            x0 - 4.0,
            py(v) + 4.0,
            px(t),
            bottom + 16.0
        );
    }
    for (i, pts) in series.iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let path: Vec<String> = pts
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", px(t), py(v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            COLOURS[i % COLOURS.len()],
            path.join(" ")
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_a_line_per_client_with_its_rate() {
        let pts = [
            Point {
                t_s: 0.0,
                bytes: 0,
                open: 0,
            },
            Point {
                t_s: 1.0,
                bytes: 5_000_000,
                open: 10,
            },
            Point {
                t_s: 2.0,
                bytes: 15_000_000,
                open: 12,
            },
        ];
        assert_eq!(rate_series(&pts), vec![(1.0, 5.0), (2.0, 10.0)]);
        let svg = plot(
            "a <b>",
            &[
                Line {
                    client: "ringtorrent",
                    points: &pts,
                },
                Line {
                    client: "aria2",
                    points: &pts[..1],
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt;b&gt;"));
        // Two panels: peers (3 points) and rate (2 points) for the first client; the second
        // has one point of peers and no rate.
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains(">ringtorrent<") && svg.contains(">aria2<"));
    }
}
