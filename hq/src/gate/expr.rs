//! One threshold expression, as k6 writes them: `p(95) < 200ms`, `avg < 80ms`,
//! `error_rate < 1%`, `rps > 1000`, `dropped_iterations == 0`. A latency takes a unit (`us`,
//! `ms`, `s`); an error rate a `%` (or a fraction); counts and rates none.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A percentile, 0 to 100.
    P(f64),
    Avg,
    Min,
    Max,
    Med,
    Count,
    /// Results per second over the run.
    Rps,
    /// Errors over results, 0 to 1 (`_run` only).
    ErrorRate,
    /// Open model: iterations dropped (`_run` only).
    DroppedIterations,
    /// The share of the scripts' `check()`s that passed, 0 to 1 (`_run` only).
    Checks,
}

impl Metric {
    pub fn is_latency(self) -> bool {
        matches!(
            self,
            Metric::P(_) | Metric::Avg | Metric::Min | Metric::Max | Metric::Med
        )
    }

    /// Whether it is a figure of the whole run, not of one series.
    pub fn run_only(self) -> bool {
        matches!(
            self,
            Metric::ErrorRate | Metric::DroppedIterations | Metric::Checks
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    pub fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Eq => observed == limit,
            Op::Ne => observed != limit,
        }
    }
}

/// A parsed expression; `limit` in seconds for latencies, a fraction for error rates.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub text: String,
    pub metric: Metric,
    pub op: Op,
    pub limit: f64,
}

/// Where and why an expression does not parse: `column` counts characters from 1.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub column: usize,
    pub why: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} at column {}", self.why, self.column)
    }
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn fail<T>(&self, why: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            column: self.text[..self.at].chars().count() + 1,
            why: why.into(),
        })
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.at += s.len();
            true
        } else {
            false
        }
    }

    fn number(&mut self) -> Result<f64, ParseError> {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        match rest[..len].parse::<f64>() {
            Ok(x) => {
                self.at += len;
                Ok(x)
            }
            Err(_) => self.fail("expected a number"),
        }
    }
}

pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut c = Cursor { text, at: 0 };
    c.skip_ws();
    let metric = if c.eat("p(") {
        c.skip_ws();
        let q = c.number()?;
        if !(0.0..=100.0).contains(&q) {
            return c.fail("a percentile is from 0 to 100");
        }
        c.skip_ws();
        if !c.eat(")") {
            return c.fail("expected `)`");
        }
        Metric::P(q)
    } else {
        let names = [
            ("avg", Metric::Avg),
            ("min", Metric::Min),
            ("max", Metric::Max),
            ("med", Metric::Med),
            ("count", Metric::Count),
            ("rps", Metric::Rps),
            ("error_rate", Metric::ErrorRate),
            ("dropped_iterations", Metric::DroppedIterations),
            ("checks", Metric::Checks),
        ];
        let word_len = c
            .rest()
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .unwrap_or(c.rest().len());
        let word = &c.rest()[..word_len];
        match names.iter().find(|(n, _)| *n == word) {
            Some((_, m)) => {
                c.at += word_len;
                *m
            }
            None => return c.fail(
                "expected a metric: p(N), avg, min, max, med, count, rps, error_rate, dropped_iterations or checks",
            ),
        }
    };
    c.skip_ws();
    let op = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ]
    .into_iter()
    .find(|(s, _)| c.eat(s))
    .map(|(_, op)| op);
    let Some(op) = op else {
        return c.fail("expected a comparison: <, <=, >, >=, == or !=");
    };
    c.skip_ws();
    let value = c.number()?;
    let unit_at = c.at;
    let unit_len = c.rest().find(char::is_whitespace).unwrap_or(c.rest().len());
    let unit = &c.rest()[..unit_len];
    let limit = match (metric, unit) {
        (m, "us" | "µs") if m.is_latency() => value / 1e6,
        (m, "ms") if m.is_latency() => value / 1e3,
        (m, "s") if m.is_latency() => value,
        (m, "") if m.is_latency() => return c.fail("a latency needs a unit: us, ms or s"),
        (m, _) if m.is_latency() => {
            return c.fail(format!("unknown unit `{unit}` (us, ms or s)"));
        }
        (Metric::ErrorRate | Metric::Checks, "%") => value / 100.0,
        (Metric::ErrorRate | Metric::Checks, "") if value <= 1.0 => value,
        (Metric::ErrorRate | Metric::Checks, "") => {
            return c.fail("a rate is a % or a fraction from 0 to 1")
        }
        (_, "") => value,
        _ => return c.fail(format!("`{unit}`: this metric takes no unit")),
    };
    c.at = unit_at + unit_len;
    c.skip_ws();
    if !c.rest().is_empty() {
        return c.fail("unexpected text after the expression");
    }
    Ok(Expr {
        text: text.trim().to_owned(),
        metric,
        op,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k6_style_expressions() {
        let e = parse("p(95) < 200ms").unwrap();
        assert_eq!((e.metric, e.op, e.limit), (Metric::P(95.0), Op::Lt, 0.2));
        assert_eq!(parse("p(99.9)<1s").unwrap().metric, Metric::P(99.9));
        assert_eq!(parse(" avg <= 80ms ").unwrap().limit, 0.08);
        assert_eq!(parse("max < 250us").unwrap().limit, 0.00025);
        assert_eq!(parse("error_rate < 1%").unwrap().limit, 0.01);
        assert_eq!(parse("error_rate < 0.05").unwrap().limit, 0.05);
        let rps = parse("rps > 1000").unwrap();
        assert_eq!(
            (rps.metric, rps.op, rps.limit),
            (Metric::Rps, Op::Gt, 1000.0)
        );
        assert_eq!(
            parse("dropped_iterations == 0").unwrap().metric,
            Metric::DroppedIterations
        );
        assert!(Op::Ne.holds(1.0, 0.0) && !Op::Ge.holds(1.0, 2.0));
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            ("p(95) < 200xs", "unknown unit `xs` (us, ms or s) at column 12"),
            ("p(95) < 200", "a latency needs a unit: us, ms or s at column 12"),
            ("p95 < 200ms", "expected a metric: p(N), avg, min, max, med, count, rps, error_rate, dropped_iterations or checks at column 1"),
            ("p(95 < 200ms", "expected `)` at column 6"),
            ("p(150) < 1s", "a percentile is from 0 to 100 at column 6"),
            ("avg ~ 80ms", "expected a comparison: <, <=, >, >=, == or != at column 5"),
            ("rps > many", "expected a number at column 7"),
            ("rps > 10ms", "`ms`: this metric takes no unit at column 9"),
            ("error_rate < 5", "a rate is a % or a fraction from 0 to 1 at column 15"),
            ("avg < 1s and more", "unexpected text after the expression at column 10"),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), want, "{text}");
        }
    }
}
