//! The report's charts — line charts and scatter plots with axes, ticks, a title and a legend —
//! drawn with plotters through its SVG backend. Text is laid out with DejaVu Sans, embedded in
//! the binary (`hq/fonts/`, its licence beside it): nothing is read from the machine's fonts,
//! so a report renders the same wherever it is built; the SVG's `<text>` is drawn by whatever
//! displays the file.

use std::cell::RefCell;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

const W: u32 = 860;
const H: u32 = 320;
const FONT: &str = "sans-serif";

thread_local! {
    /// Spans of the x axis (seconds) every time chart drawn meanwhile shades: the chaos
    /// schedule's fault windows.
    static BANDS: RefCell<Vec<(f64, f64, String)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `bands` shaded on every chart it draws.
pub fn with_bands<T>(bands: Vec<(f64, f64, String)>, f: impl FnOnce() -> T) -> T {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            BANDS.with(|b| b.borrow_mut().clear());
        }
    }
    BANDS.with(|b| *b.borrow_mut() = bands);
    let _clear = Clear;
    f()
}

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
}

fn color(hex: &str) -> RGBColor {
    let h = hex.trim_start_matches('#');
    let digit =
        |i: usize, n: usize| u8::from_str_radix(h.get(i..i + n).unwrap_or("0"), 16).unwrap_or(0);
    match h.len() {
        3 => RGBColor(digit(0, 1) * 17, digit(1, 1) * 17, digit(2, 1) * 17),
        _ => RGBColor(digit(0, 2), digit(2, 2), digit(4, 2)),
    }
}

fn register_font() {
    static FONT_ONCE: Once = Once::new();
    FONT_ONCE.call_once(|| {
        // The bytes are a valid TrueType font, checked by a test.
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../../fonts/DejaVuSans.ttf"),
        );
    });
}

/// What a chart shows.
enum Body<'a> {
    Lines(&'a [Line<'a>]),
    Scatter(&'a [(f64, f64)], RGBColor),
}

/// Draws a chart with plotters into an SVG string. The SVG gets a `<title>` (what screen
/// readers and the report's tests read).
fn chart(title: &str, x_label: &str, y_label: &str, f: &Frame, body: Body) -> String {
    register_font();
    let empty = match &body {
        Body::Lines(lines) => lines.iter().all(|l| l.points.is_empty()),
        Body::Scatter(points, _) => points.is_empty(),
    };
    let mut svg = String::with_capacity(16 << 10);
    let drawn = (|| -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut c = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(38)
            .y_label_area_size(62)
            .build_cartesian_2d(f.x0..f.x1, f.y0..f.y1)?;
        let (xstep, ystep) = (nice_step(f.x1 - f.x0, 8.0), nice_step(f.y1 - f.y0, 5.0));
        c.configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(0xe3, 0xe6, 0xea))
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|v| tick_label(*v, xstep))
            .y_label_formatter(&|v| tick_label(*v, ystep))
            .label_style((FONT, 14))
            .draw()?;
        let bands = BANDS.with(|b| b.borrow().clone());
        for (from, to, label) in &bands {
            let (a, b) = (from.max(f.x0), to.min(f.x1));
            if a < b {
                let red = RGBColor(0xd9, 0x48, 0x3b);
                c.draw_series(std::iter::once(Rectangle::new(
                    [(a, f.y0), (b, f.y1)],
                    red.mix(0.12).filled(),
                )))?;
                c.draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (a, f.y1),
                    (FONT, 11).into_font().color(&red),
                )))?;
            }
        }
        if empty {
            root.draw(&Text::new(
                "no data",
                (W as i32 / 2 - 30, H as i32 / 2),
                (FONT, 16).into_font().color(&RGBColor(0x88, 0x88, 0x88)),
            ))?;
        }
        match body {
            Body::Lines(lines) => {
                for l in lines {
                    let rgb = color(l.color);
                    let points = finite(&l.points);
                    let series = if points.len() == 1 {
                        c.draw_series(std::iter::once(Circle::new(points[0], 3, rgb.filled())))?
                    } else {
                        c.draw_series(LineSeries::new(
                            points,
                            ShapeStyle::from(&rgb).stroke_width(2),
                        ))?
                    };
                    series.label(l.label).legend(move |(x, y)| {
                        Rectangle::new([(x, y - 2), (x + 14, y + 2)], rgb.filled())
                    });
                }
                c.configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(0xcc, 0xcc, 0xcc))
                    .label_font((FONT, 14))
                    .draw()?;
            }
            Body::Scatter(points, rgb) => {
                c.draw_series(
                    finite(points)
                        .into_iter()
                        .map(|p| Circle::new(p, 2, rgb.mix(0.55).filled())),
                )?;
            }
        }
        root.present()?;
        Ok(())
    })();
    if drawn.is_err() {
        // Plotters draws into a string: it cannot fail on I/O, only on a degenerate range,
        // which `Frame` rules out. Say so rather than hand out half a chart.
        svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}"><text x="20" y="40">chart failed</text></svg>"#
        );
    }
    if let Some(i) = svg.find('>') {
        svg.insert_str(i + 1, &format!("<title>{}</title>", escape(title)));
    }
    svg.truncate(svg.trim_end().len());
    svg
}

fn finite(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

/// A line chart; an empty chart says "no data".
pub fn lines(title: &str, x_label: &str, y_label: &str, lines: &[Line]) -> String {
    let f = Frame::new(lines.iter().flat_map(|l| l.points.iter().copied()));
    chart(title, x_label, y_label, &f, Body::Lines(lines))
}

/// A scatter plot of raw points.
pub fn scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64)],
    color_hex: &str,
) -> String {
    let f = Frame::new(points.iter().copied());
    chart(
        title,
        x_label,
        y_label,
        &f,
        Body::Scatter(points, color(color_hex)),
    )
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
    fn the_embedded_font_is_a_font() {
        let bytes = include_bytes!("../../fonts/DejaVuSans.ttf");
        assert!(plotters::style::register_font("oct-test", FontStyle::Normal, bytes).is_ok());
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
        assert!(
            svg.contains("<title>a &lt;b&gt; &amp; &quot;c&quot;</title>"),
            "{svg}"
        );
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(svg.contains("no data"));
        let svg = scatter("s", "x", "y", &[(0.0, 1.0), (2.0, 3.0)], "#f00");
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(color("#2b6cb0"), RGBColor(0x2b, 0x6c, 0xb0));
        assert_eq!(color("#123"), RGBColor(0x11, 0x22, 0x33));
    }
}
