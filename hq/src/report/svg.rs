//! Small, dependency-free SVG charts: line charts and scatter plots with axes, ticks, titles and
//! a legend. The text is SVG `<text>`, drawn by whatever displays the file, so nothing here
//! needs a font or a graphics library at build or run time.

use std::fmt::Write;

const W: f64 = 860.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 52.0;

pub struct Line<'a> {
    pub label: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A "nice" tick step (1, 2 or 5 × 10^k) giving about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    if span.is_nan() || span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn new(points: impl Iterator<Item = (f64, f64)>) -> Frame {
        let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
        for (x, y) in points {
            if x.is_finite() && y.is_finite() {
                x0 = x0.min(x);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= 0.0 {
            y1 = 1.0;
        }
        let step = nice_step(y1, 5.0);
        Frame {
            x0,
            x1,
            y0: 0.0,
            y1: (y1 / step).ceil() * step,
        }
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)
    }
}

fn open(svg: &mut String, title: &str, x_label: &str, y_label: &str, f: &Frame) {
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="12" role="img"><title>{t}</title><rect width="{W}" height="{H}" fill="#fff"/><text x="{cx}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{t}</text>"##,
        t = escape(title),
        cx = W / 2.0,
    );
    let ystep = nice_step(f.y1 - f.y0, 5.0);
    let mut y = f.y0;
    while y <= f.y1 + ystep * 1e-9 {
        let py = f.py(y);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{x2}" y2="{py:.1}" stroke="#e3e6ea"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{l}</text>"##,
            x2 = W - RIGHT,
            tx = LEFT - 6.0,
            ty = py + 4.0,
            l = tick_label(y, ystep)
        );
        y += ystep;
    }
    let xstep = nice_step(f.x1 - f.x0, 8.0);
    let mut x = (f.x0 / xstep).ceil() * xstep;
    while x <= f.x1 + xstep * 1e-9 {
        let px = f.px(x);
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" y1="{y1}" x2="{px:.1}" y2="{y2}" stroke="#888"/><text x="{px:.1}" y="{ty}" text-anchor="middle">{l}</text>"##,
            y1 = H - BOTTOM,
            y2 = H - BOTTOM + 5.0,
            ty = H - BOTTOM + 18.0,
            l = tick_label(x, xstep)
        );
        x += xstep;
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="#333"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b}" stroke="#333"/><text x="{cx}" y="{xl}" text-anchor="middle">{xt}</text><text transform="translate(16 {cy}) rotate(-90)" text-anchor="middle">{yt}</text>"##,
        b = H - BOTTOM,
        r = W - RIGHT,
        cx = LEFT + (W - LEFT - RIGHT) / 2.0,
        xl = H - 12.0,
        cy = TOP + (H - TOP - BOTTOM) / 2.0,
        xt = escape(x_label),
        yt = escape(y_label),
    );
}

/// A line chart; an empty chart says "no data".
pub fn lines(title: &str, x_label: &str, y_label: &str, lines: &[Line]) -> String {
    let f = Frame::new(lines.iter().flat_map(|l| l.points.iter().copied()));
    let mut svg = String::with_capacity(4096);
    open(&mut svg, title, x_label, y_label, &f);
    if lines.iter().all(|l| l.points.is_empty()) {
        no_data(&mut svg);
    }
    for (i, l) in lines.iter().enumerate() {
        let pts: Vec<String> = l
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", f.px(*x), f.py(*y)))
            .collect();
        if pts.len() == 1 {
            let _ = write!(
                svg,
                r#"<circle cx="{}" r="3" fill="{}"/>"#,
                pts[0].replace(',', "\" cy=\""),
                l.color
            );
        } else if !pts.is_empty() {
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.6" points="{}"/>"#,
                l.color,
                pts.join(" ")
            );
        }
        let lx = LEFT + 10.0 + i as f64 * 150.0;
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="{ly}" width="14" height="4" fill="{c}"/><text x="{tx}" y="{ty}">{t}</text>"#,
            ly = TOP - 4.0,
            c = l.color,
            tx = lx + 18.0,
            ty = TOP + 1.0,
            t = escape(l.label)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A scatter plot of raw points.
pub fn scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64)],
    color: &str,
) -> String {
    let f = Frame::new(points.iter().copied());
    let mut svg = String::with_capacity(64 + points.len() * 40);
    open(&mut svg, title, x_label, y_label, &f);
    if points.is_empty() {
        no_data(&mut svg);
    }
    let _ = write!(svg, r#"<g fill="{color}" fill-opacity="0.55">"#);
    for (x, y) in points {
        if x.is_finite() && y.is_finite() {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="1.8"/>"#,
                f.px(*x),
                f.py(*y)
            );
        }
    }
    svg.push_str("</g></svg>");
    svg
}

fn no_data(svg: &mut String) {
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#888" font-size="16">no data</text>"##,
        W / 2.0,
        H / 2.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_nice() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(0.3, 5.0), 0.05);
        assert_eq!(nice_step(1000.0, 8.0), 100.0);
        assert_eq!(tick_label(0.15, 0.05), "0.15");
        assert_eq!(tick_label(200.0, 100.0), "200");
    }

    #[test]
    fn charts_escape_their_text_and_say_no_data() {
        let svg = lines(
            "a <b> & \"c\"",
            "x",
            "y",
            &[Line {
                label: "l'1",
                color: "#123",
                points: vec![],
            }],
        );
        assert!(svg.contains("a &lt;b&gt; &amp; &quot;c&quot;"));
        assert!(svg.contains("l&#39;1"));
        assert!(svg.contains("no data"));
        let svg = scatter("s", "x", "y", &[(0.0, 1.0), (2.0, 3.0)], "#f00");
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
