//! Streaming statistics of one series (all transactions, or one custom timer): exact count, min,
//! max, mean and sample standard deviation (Welford); percentiles exact while the series fits a
//! bounded buffer (OCT's convention: pandas' linear interpolation), else from an HdrHistogram
//! (3 significant digits); per-interval aggregates; per-second counts; a bounded sample of raw
//! points for the scatter graph.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Percentiles the report shows.
pub const QUANTILES: [f64; 6] = [0.5, 0.8, 0.9, 0.95, 0.99, 0.999];

/// Exact values kept per series at most; past it percentiles come from the histogram.
pub const EXACT_CAP: usize = 1_000_000;
/// Raw points kept per series for the scatter graph.
pub const RAW_POINTS: usize = 2_000;

/// Summary of a series or of one interval of it. Seconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub avg: f64,
    pub p50: f64,
    pub p80: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// Sample standard deviation (n − 1); `None` below two values, where pandas says NaN.
    pub stdev: Option<f64>,
}

/// pandas' `quantile` (linear interpolation between closest ranks) on sorted values.
pub fn interpolated(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

/// Mean and variance by Welford's method: one pass, no catastrophic cancellation, mergeable.
pub use protocol::aggregate::Moments;

/// Histograms count whole nanoseconds, as turrets' aggregates do (protocol::aggregate).
use protocol::aggregate::nanos;

fn hist(sigfig: u8) -> Histogram<u64> {
    let mut h = Histogram::new(sigfig).expect("valid significant figures");
    h.auto(true);
    h
}

/// One turret's interval of a series, as an aggregate brings it (extension `aggregate`).
pub struct Delta<'a> {
    /// The interval's first second.
    pub start: i64,
    pub moments: Moments,
    /// Nanoseconds.
    pub hist: &'a Histogram<u64>,
    pub seconds: &'a [(i64, u64)],
    pub sample: &'a [(f64, f64)],
}

impl<'a> Delta<'a> {
    /// A series of an aggregate, its histogram decoded already.
    pub fn of(
        start: i64,
        s: &'a protocol::aggregate::SeriesDelta,
        hist: &'a Histogram<u64>,
    ) -> Self {
        Delta {
            start,
            moments: Moments {
                count: s.count,
                mean: s.mean,
                m2: s.m2,
                min: s.min,
                max: s.max,
            },
            hist,
            seconds: &s.seconds,
            sample: &s.sample,
        }
    }
}

/// One interval of a series.
#[derive(Debug, Clone)]
pub struct Interval {
    pub moments: Moments,
    hist: Histogram<u64>,
}

impl Interval {
    fn new() -> Self {
        Interval {
            moments: Moments::default(),
            // Two digits: ~1 % per interval keeps hundreds of intervals in a few MB.
            hist: hist(2),
        }
    }

    pub fn summary(&self) -> Summary {
        // A histogram bucket's top may lie past the largest value seen: never show more.
        let (lo, hi) = (self.moments.min, self.moments.max);
        let q = |q: f64| {
            (self.hist.value_at_quantile(q) as f64 / 1e9)
                .max(lo)
                .min(hi)
        };
        summary_from(
            &self.moments,
            [q(0.5), q(0.8), q(0.9), q(0.95), q(0.99), q(0.999)],
        )
    }
}

fn summary_from(m: &Moments, p: [f64; 6]) -> Summary {
    Summary {
        count: m.count,
        min: m.min,
        avg: m.mean(),
        p50: p[0],
        p80: p[1],
        p90: p[2],
        p95: p[3],
        p99: p[4],
        p999: p[5],
        max: m.max,
        stdev: m.stdev(),
    }
}

/// Everything the report needs of one series, built in one pass.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    moments: Moments,
    hist: Histogram<u64>,
    exact: Option<Vec<f64>>,
    interval_secs: u64,
    /// Interval start (Unix seconds, a multiple of the interval) → aggregate.
    pub intervals: BTreeMap<i64, Interval>,
    /// Whole Unix second → transactions that ended in it.
    pub per_second: BTreeMap<i64, u64>,
    /// (epoch, value) sample for the scatter graph.
    pub raw: Vec<(f64, f64)>,
    seen: u64,
    rng: u64,
}

impl Series {
    pub fn new(name: &str, interval_secs: u64) -> Self {
        Series {
            name: name.to_owned(),
            moments: Moments::default(),
            hist: hist(3),
            exact: Some(Vec::new()),
            interval_secs: interval_secs.max(1),
            intervals: BTreeMap::new(),
            per_second: BTreeMap::new(),
            raw: Vec::new(),
            seen: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// One value (seconds) of a transaction that ended at `epoch`.
    pub fn add(&mut self, value: f64, epoch: f64) {
        if !value.is_finite() {
            return;
        }
        self.moments.add(value);
        let ns = nanos(value);
        let _ = self.hist.record(ns);
        if let Some(exact) = &mut self.exact {
            if exact.len() < EXACT_CAP {
                exact.push(value);
            } else {
                self.exact = None;
            }
        }
        // OCT's convention: bins aligned to multiples of the interval, by the end second.
        let second = epoch.floor() as i64;
        let bin = second.div_euclid(self.interval_secs as i64) * self.interval_secs as i64;
        // Rows come mostly in time order: the last bin is the likely one.
        let interval = match self.intervals.last_entry() {
            Some(e) if *e.key() == bin => e.into_mut(),
            _ => self.intervals.entry(bin).or_insert_with(Interval::new),
        };
        interval.moments.add(value);
        let _ = interval.hist.record(ns);
        match self.per_second.last_entry() {
            Some(mut e) if *e.key() == second => *e.get_mut() += 1,
            _ => *self.per_second.entry(second).or_insert(0) += 1,
        }
        self.offer((epoch, value));
    }

    /// Reservoir sampling (algorithm R) with a fixed-seed xorshift: the same file gives the same
    /// graph.
    fn offer(&mut self, point: (f64, f64)) {
        self.seen += 1;
        if self.raw.len() < RAW_POINTS {
            self.raw.push(point);
        } else {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let j = self.rng % self.seen;
            if (j as usize) < RAW_POINTS {
                self.raw[j as usize] = point;
            }
        }
    }

    /// One turret's interval of this series (extension `aggregate`), as if its transactions
    /// had come one by one: count, moments, min, max and per-second counts exact; percentiles
    /// from the histogram from now on; its sample points offered to the scatter graph's.
    pub fn add_delta(&mut self, d: &Delta) {
        if d.moments.count == 0 {
            return;
        }
        self.moments.merge(&d.moments);
        let _ = self.hist.add(d.hist);
        self.exact = None;
        let secs = self.interval_secs as i64;
        // Its interval's start, in this series' intervals (the same unless asked otherwise).
        let bin = d.start.div_euclid(secs) * secs;
        let interval = self.intervals.entry(bin).or_insert_with(Interval::new);
        interval.moments.merge(&d.moments);
        let _ = interval.hist.add(d.hist);
        for (second, n) in d.seconds {
            *self.per_second.entry(*second).or_insert(0) += n;
        }
        for point in d.sample {
            self.offer(*point);
        }
    }

    pub fn count(&self) -> u64 {
        self.moments.count
    }

    /// Whether the percentiles are exact (the series fit the buffer).
    pub fn exact(&self) -> bool {
        self.exact.is_some()
    }

    /// The `q` quantile (0 to 1), exact while the series fits its buffer.
    pub fn quantile(&mut self, q: f64) -> f64 {
        match &mut self.exact {
            Some(values) => {
                values.sort_by(f64::total_cmp);
                interpolated(values, q)
            }
            None => self.hist.value_at_quantile(q) as f64 / 1e9,
        }
    }

    pub fn mean(&self) -> f64 {
        self.moments.mean()
    }

    pub fn min(&self) -> f64 {
        self.moments.min
    }

    pub fn max(&self) -> f64 {
        self.moments.max
    }

    pub fn summary(&mut self) -> Summary {
        let p = match &mut self.exact {
            Some(values) => {
                values.sort_by(f64::total_cmp);
                QUANTILES.map(|q| interpolated(values, q))
            }
            None => QUANTILES.map(|q| self.hist.value_at_quantile(q) as f64 / 1e9),
        };
        summary_from(&self.moments, p)
    }
}

/// A latency in seconds with 3 significant digits in a unit that fits: `45.2 µs`, `0.412 ms`,
/// `12.3 ms`, `1.20 s`.
pub fn latency(secs: f64) -> String {
    if !secs.is_finite() {
        return "-".to_owned();
    }
    if secs == 0.0 {
        return "0 ms".to_owned();
    }
    // Round to 3 significant digits first: 0.99996 s is `1.00 s`, not `1000 ms`.
    let mag = secs.abs().log10().floor();
    let step = 10f64.powf(mag - 2.0);
    let rounded = (secs / step).round() * step;
    let (value, unit) = if rounded.abs() < 1e-4 {
        (rounded * 1e6, "µs")
    } else if rounded.abs() < 1.0 {
        (rounded * 1e3, "ms")
    } else {
        (rounded, "s")
    };
    let digits = (2 - (value.abs().log10() + 1e-9).floor() as i32).clamp(0, 6) as usize;
    format!("{value:.digits$} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed with pandas' conventions: values 1..=10 (seconds).
    #[test]
    fn summary_matches_pandas_describe() {
        let mut s = Series::new("t", 10);
        for (i, v) in [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.0, 5.5, 3.5]
            .iter()
            .enumerate()
        {
            s.add(*v, 100.0 + i as f64);
        }
        let m = s.summary();
        assert_eq!(m.count, 10);
        assert_eq!((m.min, m.max), (1.0, 9.0));
        assert!((m.avg - 4.05).abs() < 1e-12);
        // sorted: 1 1.5 2 3 3.5 4 5 5.5 6 9
        // p80: pos 7.2 → 5.5 + 0.2 × (6 − 5.5) = 5.6; p90: pos 8.1 → 6 + 0.1 × 3 = 6.3;
        // p95: pos 8.55 → 6 + 0.55 × 3 = 7.65; p50: pos 4.5 → 3.75
        assert!((m.p80 - 5.6).abs() < 1e-12, "{}", m.p80);
        assert!((m.p90 - 6.3).abs() < 1e-12, "{}", m.p90);
        assert!((m.p95 - 7.65).abs() < 1e-12, "{}", m.p95);
        assert!((m.p50 - 3.75).abs() < 1e-12, "{}", m.p50);
        // sample stdev: sum of squared deviations 52.725 / 9
        let want = (52.725f64 / 9.0).sqrt();
        assert!((m.stdev.unwrap() - want).abs() < 1e-12, "{:?}", m.stdev);
        assert_eq!(latency(m.stdev.unwrap()), "2.42 s");
        assert_eq!(latency(m.p95), "7.65 s");
    }

    #[test]
    fn latencies_keep_three_significant_digits() {
        let shown: Vec<String> = [
            0.000_045_2,
            0.000_412,
            0.0123,
            0.412,
            1.2,
            12.34,
            0.0,
            0.099_99,
            0.999_96,
        ]
        .iter()
        .map(|s| latency(*s))
        .collect();
        assert_eq!(
            shown,
            [
                "45.2 µs", "0.412 ms", "12.3 ms", "412 ms", "1.20 s", "12.3 s", "0 ms", "100 ms",
                "1.00 s"
            ]
        );
    }

    #[test]
    fn interpolation_edges() {
        assert!(interpolated(&[], 0.5).is_nan());
        assert_eq!(interpolated(&[2.0], 0.9), 2.0);
        assert_eq!(interpolated(&[1.0, 2.0], 0.5), 1.5);
        assert_eq!(interpolated(&[1.0, 2.0], 1.0), 2.0);
        let mut s = Series::new("one", 1);
        s.add(0.25, 5.0);
        assert_eq!(s.summary().stdev, None);
    }

    #[test]
    fn intervals_align_to_multiples_of_the_interval_by_end_second() {
        let mut s = Series::new("t", 10);
        for (v, epoch) in [(0.1, 1000.2), (0.3, 1009.99), (0.2, 1010.0), (0.4, 1025.5)] {
            s.add(v, epoch);
        }
        let bins: Vec<(i64, u64)> = s
            .intervals
            .iter()
            .map(|(k, i)| (*k, i.moments.count))
            .collect();
        assert_eq!(bins, [(1000, 2), (1010, 1), (1020, 1)]);
        let first = s.intervals[&1000].summary();
        assert!((first.avg - 0.2).abs() < 1e-12);
        assert!((first.max - 0.3).abs() < 1e-12);
        // Histogram percentiles per interval: within 1 %.
        assert!((first.p90 - 0.3).abs() / 0.3 < 0.01, "{}", first.p90);
        let per_second: Vec<(i64, u64)> = s.per_second.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(per_second, [(1000, 1), (1009, 1), (1010, 1), (1025, 1)]);
    }

    #[test]
    fn past_the_exact_buffer_percentiles_come_from_the_histogram() {
        let mut s = Series::new("big", 1);
        let n = EXACT_CAP + 10;
        for i in 0..n {
            s.add(0.001 + (i % 1000) as f64 * 1e-3, i as f64 * 1e-3);
        }
        assert!(!s.exact());
        let m = s.summary();
        assert_eq!(m.count, n as u64);
        // Uniform over 0.001..1.0: p90 ≈ 0.9 within the histogram's 0.1 %.
        assert!((m.p90 - 0.9).abs() < 0.002, "{}", m.p90);
        assert!(s.raw.len() == RAW_POINTS);
    }
}
