//! `oct compare BASE NEW`: the two runs side by side per series (rps, p50, p95, p99, error
//! rate, each with its change), a regression marked where NEW is worse than BASE by more than
//! the tolerance; as text, and as an HTML page with both runs' graphs overlaid.

use crate::history::{columns, Digest, SeriesDigest};
use crate::report::svg;
use crate::stats::latency;

/// One figure of one series in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub series: String,
    pub figure: &'static str,
    pub base: Option<f64>,
    pub new: Option<f64>,
    /// NEW against BASE, in percent.
    pub change_pct: Option<f64>,
    pub regression: bool,
}

impl Row {
    fn shown(&self, x: Option<f64>) -> String {
        match x {
            None => "-".into(),
            Some(x) if self.figure == "rps" => format!("{x:.1}"),
            Some(x) if self.figure == "error rate" => format!("{:.2} %", x * 100.0),
            Some(x) => latency(x),
        }
    }
}

/// Higher is worse for latencies and error rates, lower for rps.
fn row(
    series: &str,
    figure: &'static str,
    base: Option<f64>,
    new: Option<f64>,
    tolerance: f64,
) -> Row {
    let change_pct = match (base, new) {
        (Some(b), Some(n)) if b != 0.0 => Some((n - b) / b * 100.0),
        _ => None,
    };
    let worse = |b: f64, n: f64| {
        if figure == "rps" {
            n < b * (1.0 - tolerance)
        } else {
            n > b * (1.0 + tolerance) && !(figure == "error rate" && n - b < 1e-12)
        }
    };
    let regression = match (base, new) {
        (Some(b), Some(n)) => worse(b, n),
        // A series that vanished from NEW is a regression too: nobody measured it.
        (Some(_), None) => figure == "rps",
        _ => false,
    };
    Row {
        series: series.to_owned(),
        figure,
        base,
        new,
        change_pct,
        regression,
    }
}

/// Every series of BASE (and those new in NEW), figure by figure.
pub fn compare(base: &Digest, new: &Digest, tolerance: f64) -> Vec<Row> {
    let mut names: Vec<&str> = base.series.iter().map(|s| s.name.as_str()).collect();
    for s in &new.series {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    let find = |d: &'_ Digest, name: &str| -> Option<SeriesDigest> {
        d.series
            .iter()
            .find(|s| s.name == name && s.count > 0)
            .cloned()
    };
    let mut rows = Vec::new();
    for name in names {
        let (b, n) = (find(base, name), find(new, name));
        let pick =
            |s: &Option<SeriesDigest>, f: fn(&SeriesDigest) -> Option<f64>| s.as_ref().and_then(f);
        rows.push(row(
            name,
            "rps",
            pick(&b, |s| s.rps),
            pick(&n, |s| s.rps),
            tolerance,
        ));
        for (figure, f) in [
            (
                "p50",
                (|s: &SeriesDigest| Some(s.p50)) as fn(&SeriesDigest) -> Option<f64>,
            ),
            ("p95", |s| Some(s.p95)),
            ("p99", |s| Some(s.p99)),
        ] {
            rows.push(row(name, figure, pick(&b, f), pick(&n, f), tolerance));
        }
        if name == crate::gate::ALL {
            rows.push(row(
                name,
                "error rate",
                Some(base.error_rate()),
                Some(new.error_rate()),
                tolerance,
            ));
        }
    }
    rows
}

pub fn table(rows: &[Row], tolerance: f64) -> String {
    let mut cells = vec![[
        "series".to_owned(),
        "figure".to_owned(),
        "base".to_owned(),
        "new".to_owned(),
        "change".to_owned(),
        String::new(),
    ]];
    for r in rows {
        cells.push([
            r.series.clone(),
            r.figure.to_owned(),
            r.shown(r.base),
            r.shown(r.new),
            r.change_pct
                .map_or_else(|| "-".into(), |c| format!("{c:+.1} %")),
            if r.regression {
                "✗ regression".into()
            } else {
                String::new()
            },
        ]);
    }
    let n = rows.iter().filter(|r| r.regression).count();
    format!(
        "{}{n} regression(s) beyond {:.0} %",
        columns(&cells),
        tolerance * 100.0
    )
}

/// The same table as a page, with each series' average response time per interval of both
/// runs overlaid.
pub fn html(rows: &[Row], base: &Digest, new: &Digest, tolerance: f64) -> String {
    let e = svg::escape;
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>oct compare</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}\
         .text{text-align:left}.bad{color:#c53030;font-weight:bold}</style></head><body>\n",
    );
    out.push_str(&format!(
        "<h1>oct compare</h1>\n<p>base: {}<br>new: {}<br>tolerance: {:.0} %</p>\n<table id=\"compare\">\n\
         <tr><th class=\"text\">Series</th><th class=\"text\">Figure</th><th>Base</th><th>New</th><th>Change</th><th></th></tr>\n",
        e(&base.database.display().to_string()),
        e(&new.database.display().to_string()),
        tolerance * 100.0
    ));
    for r in rows {
        out.push_str(&format!(
            "<tr{}><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            if r.regression { " class=\"bad\"" } else { "" },
            e(&r.series),
            r.figure,
            e(&r.shown(r.base)),
            e(&r.shown(r.new)),
            r.change_pct.map_or_else(|| "-".into(), |c| format!("{c:+.1} %")),
            if r.regression { "✗ regression" } else { "" }
        ));
    }
    out.push_str("</table>\n");
    for s in &base.series {
        let other = new.series.iter().find(|n| n.name == s.name);
        let lines = [
            svg::Line {
                label: "base: average",
                color: "#a0aec0",
                points: s.intervals.clone(),
            },
            svg::Line {
                label: "new: average",
                color: "#2b6cb0",
                points: other.map(|o| o.intervals.clone()).unwrap_or_default(),
            },
        ];
        out.push_str(&format!(
            "<h2>{}</h2>\n<div class=\"graph\">{}</div>\n",
            e(&s.name),
            svg::lines(
                &format!("{}: response time per interval", s.name),
                "elapsed time (s)",
                "seconds",
                &lines
            )
        ));
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regressions_are_what_got_worse_beyond_the_tolerance() {
        assert!(row("a", "p95", Some(0.1), Some(0.12), 0.1).regression);
        assert!(!row("a", "p95", Some(0.1), Some(0.105), 0.1).regression);
        assert!(!row("a", "p95", Some(0.1), Some(0.05), 0.1).regression);
        assert!(row("a", "rps", Some(100.0), Some(80.0), 0.1).regression);
        assert!(!row("a", "rps", Some(100.0), Some(180.0), 0.1).regression);
        assert!(row("a", "error rate", Some(0.0), Some(0.02), 0.1).regression);
        assert!(!row("a", "error rate", Some(0.0), Some(0.0), 0.1).regression);
        assert!(row("a", "rps", Some(100.0), None, 0.1).regression);
        let r = row("a", "p50", Some(0.2), Some(0.3), 0.1);
        assert_eq!(r.change_pct.map(|c| c.round()), Some(50.0));
    }
}
