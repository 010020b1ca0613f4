//! Extension `aggregate` ([`crate::EXT_AGGREGATE`]): instead of one result per transaction, a
//! turret sends one [`Aggregate`] per `results_ts_interval` — per series (all transactions,
//! each custom timer, the open model's corrected latency) an HDR histogram delta in
//! HdrHistogram's V2 serialization, exact moments, first and last epoch, per-second counts and a
//! small sample of raw points for the scatter graph; the errors by message; checks and counters.
//!
//! [`Aggregator`] is what builds them, from the same [`TestResult`]s a raw turret would send:
//! the turret uses it, and so do the benches' simulated turrets and the tests. Everything in an
//! aggregate adds up: the HQ may receive several for one interval (a late result) and sums them.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::message::TestResult;

/// Raw points kept per series and interval for the scatter graph.
pub const SAMPLE_PER_INTERVAL: usize = 32;
/// Distinct error messages an aggregate carries at most; the rest are counted in `other_errors`.
pub const MAX_ERRORS_PER_INTERVAL: usize = 1000;
/// Significant digits of every histogram on the wire.
pub const SIGFIG: u8 = 3;

/// What a series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `scriptrun_time` of every transaction (its `name` is empty).
    Transaction,
    /// One custom timer (its `name`).
    Timer,
    /// Open model: `scriptrun_time + lag`, the latency from when the iteration was due.
    Corrected,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Transaction => "transaction",
            Kind::Timer => "timer",
            Kind::Corrected => "corrected",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "transaction" => Kind::Transaction,
            "timer" => Kind::Timer,
            "corrected" => Kind::Corrected,
            _ => return None,
        })
    }
}

/// One series over one interval. Values are seconds; the histogram counts nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesDelta {
    pub kind: Kind,
    #[serde(default)]
    pub name: String,
    pub count: u64,
    pub mean: f64,
    /// Sum of squared deviations from the mean (Welford's M2).
    pub m2: f64,
    pub min: f64,
    pub max: f64,
    /// Epochs of the first and last transaction.
    pub first: f64,
    pub last: f64,
    /// HdrHistogram V2 serialization (not deflated), base64: nanoseconds, 3 significant digits.
    pub hist: String,
    /// Whole Unix second → transactions that ended in it.
    pub seconds: Vec<(i64, u64)>,
    /// (epoch, seconds) of a few transactions, uniformly sampled.
    #[serde(default)]
    pub sample: Vec<(f64, f64)>,
}

impl SeriesDelta {
    /// The histogram (nanoseconds).
    pub fn histogram(&self) -> Result<Histogram<u64>, String> {
        decode_histogram(&self.histogram_bytes()?)
    }

    /// The histogram's V2 bytes.
    pub fn histogram_bytes(&self) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.hist)
            .map_err(|e| format!("histogram: not base64: {e}"))
    }
}

/// Longest value a histogram on the wire may track: 2^48 ns, some 78 hours. Its header is
/// checked before it is read, so a frame cannot make the HQ allocate more than ~0.3 MB for it.
pub const MAX_TRACKABLE_NANOS: u64 = 1 << 48;

/// An HdrHistogram V2 serialization (uncompressed) of [`SIGFIG`] digits at most, tracking at
/// most [`MAX_TRACKABLE_NANOS`].
pub fn decode_histogram(bytes: &[u8]) -> Result<Histogram<u64>, String> {
    // Header: cookie, payload length, normalizing offset, significant digits (u32 each, big
    // endian), lowest and highest trackable value (u64 each), conversion ratio (f64).
    let header = |at: usize, n: usize| -> Option<u64> {
        let b = bytes.get(at..at + n)?;
        Some(b.iter().fold(0u64, |v, x| v << 8 | u64::from(*x)))
    };
    let (Some(sigfig), Some(highest)) = (header(12, 4), header(24, 8)) else {
        return Err("histogram: shorter than an HdrHistogram V2 header".into());
    };
    if sigfig > u64::from(SIGFIG) || highest > MAX_TRACKABLE_NANOS {
        return Err(format!(
            "histogram: {sigfig} significant digits up to {highest} ns (at most {SIGFIG} digits up to {MAX_TRACKABLE_NANOS} ns)"
        ));
    }
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("histogram: not HdrHistogram V2: {e:?}"))
}

/// One error message over one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDelta {
    pub message: String,
    pub count: u64,
    pub first: f64,
    pub last: f64,
}

/// One turret's transactions that ended in one interval (or the part of them it had not sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// 1, 2, 3… per turret and HQ session: the HQ sees which never came.
    pub aggregate: u64,
    pub turret: String,
    pub turret_uuid: String,
    /// The interval's first Unix second, a multiple of `secs`.
    pub start: i64,
    pub secs: u64,
    /// Transactions in every aggregate sent so far, this one included.
    pub results_sent: u64,
    pub series: Vec<SeriesDelta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorDelta>,
    /// Errors past [`MAX_ERRORS_PER_INTERVAL`] distinct messages.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other_errors: u64,
    /// The scripts' checks: (name, passed, failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<(String, u64, u64)>,
    /// The scripts' counters: (name, Unix second, amount).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<(String, i64, f64)>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Aggregate {
    /// The transactions in it.
    pub fn transactions(&self) -> u64 {
        self.transaction().map_or(0, |s| s.count)
    }

    /// Its failed transactions.
    pub fn failed(&self) -> u64 {
        self.errors.iter().map(|e| e.count).sum::<u64>() + self.other_errors
    }

    /// The series of every transaction.
    pub fn transaction(&self) -> Option<&SeriesDelta> {
        self.series.iter().find(|s| s.kind == Kind::Transaction)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an aggregate serializes")
    }

    /// Reads a frame whose JSON object has the key `aggregate`.
    pub fn decode(text: &str) -> Result<Aggregate, crate::DecodeError> {
        let a: Aggregate = serde_json::from_str(text).map_err(crate::message::json_error)?;
        for s in &a.series {
            let finite = [s.mean, s.m2, s.min, s.max, s.first, s.last]
                .iter()
                .all(|x| x.is_finite());
            if !finite || s.count == 0 {
                return Err(crate::DecodeError::WrongType {
                    field: "series".into(),
                    expected: "finite numbers and a count ≥ 1",
                    found: "a number",
                });
            }
            // Checked once here, so the HQ's store, live gate and report can trust it.
            if s.histogram().is_err() {
                return Err(crate::DecodeError::WrongType {
                    field: "series.hist".into(),
                    expected: "an HdrHistogram V2 serialization in base64 (3 digits, ≤ 2^48 ns)",
                    found: "something else",
                });
            }
        }
        if a.secs == 0 {
            return Err(crate::DecodeError::WrongType {
                field: "secs".into(),
                expected: "a whole number ≥ 1",
                found: "0",
            });
        }
        Ok(a)
    }
}

/// Exact moments of a stream of values (Welford), mergeable (Chan et al.).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub count: u64,
    pub mean: f64,
    pub m2: f64,
    pub min: f64,
    pub max: f64,
}

impl Moments {
    pub fn add(&mut self, x: f64) {
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        let d = x - self.mean;
        self.mean += d / self.count as f64;
        self.m2 += d * (x - self.mean);
    }

    /// The mean (`self.mean`, for readers that want a method).
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Sample standard deviation (n − 1); `None` below two values, where pandas says NaN.
    pub fn stdev(&self) -> Option<f64> {
        (self.count >= 2).then(|| (self.m2 / (self.count - 1) as f64).sqrt())
    }

    /// Both streams as one.
    pub fn merge(&mut self, o: &Moments) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        let n = self.count + o.count;
        let d = o.mean - self.mean;
        self.mean += d * o.count as f64 / n as f64;
        self.m2 += o.m2 + d * d * self.count as f64 * o.count as f64 / n as f64;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.count = n;
    }
}

/// Seconds as the histograms count them: whole nanoseconds, at least 1 and at most 2^47 (some
/// 39 hours; the moments keep a longer value exact), so a histogram stays within
/// [`MAX_TRACKABLE_NANOS`].
pub fn nanos(secs: f64) -> u64 {
    (secs * 1e9).round().clamp(1.0, (1u64 << 47) as f64) as u64
}

/// A histogram as every series keeps it: nanoseconds, [`SIGFIG`] digits, growing as needed.
pub fn histogram() -> Histogram<u64> {
    let mut h = Histogram::new(SIGFIG).expect("valid significant figures");
    h.auto(true);
    h
}

/// One series being gathered.
struct Acc {
    moments: Moments,
    first: f64,
    last: f64,
    hist: Histogram<u64>,
    seconds: BTreeMap<i64, u64>,
    sample: Vec<(f64, f64)>,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            moments: Moments::default(),
            first: f64::INFINITY,
            last: f64::NEG_INFINITY,
            hist: histogram(),
            seconds: BTreeMap::new(),
            sample: Vec::new(),
        }
    }

    fn add(&mut self, value: f64, epoch: f64, rng: &mut u64) {
        self.moments.add(value);
        self.first = self.first.min(epoch);
        self.last = self.last.max(epoch);
        let _ = self.hist.record(nanos(value));
        *self.seconds.entry(epoch.floor() as i64).or_insert(0) += 1;
        // Reservoir sampling (algorithm R), xorshift: no allocation, no global state.
        if self.sample.len() < SAMPLE_PER_INTERVAL {
            self.sample.push((epoch, value));
        } else {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            let j = (*rng % self.moments.count) as usize;
            if j < SAMPLE_PER_INTERVAL {
                self.sample[j] = (epoch, value);
            }
        }
    }

    fn delta(
        self,
        kind: Kind,
        name: String,
        ser: &mut V2Serializer,
        buf: &mut Vec<u8>,
    ) -> SeriesDelta {
        buf.clear();
        let _ = ser.serialize(&self.hist, buf);
        SeriesDelta {
            kind,
            name,
            count: self.moments.count,
            mean: self.moments.mean,
            m2: self.moments.m2,
            min: self.moments.min,
            max: self.moments.max,
            first: self.first,
            last: self.last,
            hist: base64::engine::general_purpose::STANDARD.encode(buf.as_slice()),
            seconds: self.seconds.into_iter().collect(),
            sample: self.sample,
        }
    }
}

/// One interval being gathered.
struct Bin {
    all: Acc,
    timers: Vec<(String, Acc)>,
    corrected: Option<Acc>,
    errors: Vec<ErrorDelta>,
    other_errors: u64,
    checks: BTreeMap<String, (u64, u64)>,
    counters: BTreeMap<(String, i64), f64>,
}

/// Folds a turret's results into one [`Aggregate`] per interval.
pub struct Aggregator {
    secs: u64,
    turret: String,
    uuid: String,
    bins: BTreeMap<i64, Bin>,
    seq: u64,
    results_sent: u64,
    rng: u64,
    ser: V2Serializer,
    buf: Vec<u8>,
}

impl Aggregator {
    /// Intervals of `secs` seconds (aligned to multiples of it, by each transaction's end
    /// second, as the report bins raw results).
    pub fn new(secs: u64, turret: &str, uuid: &str) -> Aggregator {
        Aggregator {
            secs: secs.max(1),
            turret: turret.to_owned(),
            uuid: uuid.to_owned(),
            bins: BTreeMap::new(),
            seq: 0,
            results_sent: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            ser: V2Serializer::new(),
            buf: Vec::new(),
        }
    }

    /// The interval, in seconds.
    pub fn secs(&self) -> u64 {
        self.secs
    }

    /// Aggregates sent so far.
    pub fn intervals_sent(&self) -> u64 {
        self.seq
    }

    /// Transactions in the aggregates sent so far.
    pub fn results_sent(&self) -> u64 {
        self.results_sent
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.bins.is_empty()
    }

    pub fn add(&mut self, r: &TestResult) {
        if !r.scriptrun_time.is_finite() || !r.epoch.is_finite() {
            return;
        }
        let secs = self.secs as i64;
        let start = (r.epoch.floor() as i64).div_euclid(secs) * secs;
        let bin = self.bins.entry(start).or_insert_with(|| Bin {
            all: Acc::new(),
            timers: Vec::new(),
            corrected: None,
            errors: Vec::new(),
            other_errors: 0,
            checks: BTreeMap::new(),
            counters: BTreeMap::new(),
        });
        let rng = &mut self.rng;
        bin.all.add(r.scriptrun_time, r.epoch, rng);
        if !r.error.is_empty() {
            let room = bin.errors.len() < MAX_ERRORS_PER_INTERVAL;
            match bin.errors.iter_mut().find(|e| e.message == r.error) {
                Some(e) => {
                    e.count += 1;
                    e.first = e.first.min(r.epoch);
                    e.last = e.last.max(r.epoch);
                }
                None if room => bin.errors.push(ErrorDelta {
                    message: r.error.clone(),
                    count: 1,
                    first: r.epoch,
                    last: r.epoch,
                }),
                None => bin.other_errors += 1,
            }
        }
        for (name, x) in &r.custom_timers {
            if !x.is_finite() {
                continue;
            }
            match bin.timers.iter_mut().find(|(n, _)| n == name) {
                Some((_, acc)) => acc.add(*x, r.epoch, rng),
                None => {
                    let mut acc = Acc::new();
                    acc.add(*x, r.epoch, rng);
                    bin.timers.push((name.clone(), acc));
                }
            }
        }
        if let Some(lag) = r.lag.filter(|l| l.is_finite()) {
            bin.corrected
                .get_or_insert_with(Acc::new)
                .add(r.scriptrun_time + lag, r.epoch, rng);
        }
        for (name, passed, failed) in &r.checks {
            let c = bin.checks.entry(name.clone()).or_default();
            c.0 += passed;
            c.1 += failed;
        }
        for (name, x) in &r.counters {
            *bin.counters
                .entry((name.clone(), r.epoch.floor() as i64))
                .or_default() += x;
        }
    }

    /// The aggregates of every interval that ended at least `grace` seconds before `now` (Unix
    /// seconds): a result handed over late still finds its interval open.
    pub fn due(&mut self, now: f64, grace: f64) -> Vec<Aggregate> {
        let mut out = Vec::new();
        while let Some(entry) = self.bins.first_entry() {
            if (*entry.key() + self.secs as i64) as f64 + grace > now {
                break;
            }
            let (start, bin) = entry.remove_entry();
            out.push(self.seal(start, bin));
        }
        out
    }

    /// The aggregates of every interval, ended or not (the test is over).
    pub fn drain(&mut self) -> Vec<Aggregate> {
        self.due(f64::INFINITY, 0.0)
    }

    fn seal(&mut self, start: i64, bin: Bin) -> Aggregate {
        self.seq += 1;
        self.results_sent += bin.all.moments.count;
        let (ser, buf) = (&mut self.ser, &mut self.buf);
        let mut series = vec![bin.all.delta(Kind::Transaction, String::new(), ser, buf)];
        for (name, acc) in bin.timers {
            series.push(acc.delta(Kind::Timer, name, ser, buf));
        }
        if let Some(acc) = bin.corrected {
            series.push(acc.delta(Kind::Corrected, String::new(), ser, buf));
        }
        Aggregate {
            aggregate: self.seq,
            turret: self.turret.clone(),
            turret_uuid: self.uuid.clone(),
            start,
            secs: self.secs,
            results_sent: self.results_sent,
            series,
            errors: bin.errors,
            other_errors: bin.other_errors,
            checks: bin
                .checks
                .into_iter()
                .map(|(n, (p, f))| (n, p, f))
                .collect(),
            counters: bin
                .counters
                .into_iter()
                .map(|((n, s), x)| (n, s, x))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(epoch: f64, secs: f64, error: &str, timer: Option<f64>) -> TestResult {
        TestResult {
            elapsed: 0.0,
            epoch,
            scriptrun_time: secs,
            error: error.into(),
            custom_timers: timer.map(|t| ("login".to_owned(), t)).into_iter().collect(),
            turret_name: Some("nav".into()),
            seq: None,
            turret_uuid: None,
            lag: None,
            checks: vec![("ok".into(), 1, 0)],
            counters: vec![("bytes".into(), 10.0)],
        }
    }

    #[test]
    fn intervals_close_by_end_second_and_add_up() {
        let mut agg = Aggregator::new(10, "nav", "u1");
        for (i, e) in [1000.2, 1009.9, 1010.0, 1025.5].iter().enumerate() {
            let err = if i == 1 { "boom" } else { "" };
            agg.add(&result(
                *e,
                0.1 * (i + 1) as f64,
                err,
                (i == 0).then_some(0.05),
            ));
        }
        // Only 1000..1010 has ended a second before 1011.5.
        let first = agg.due(1011.5, 1.0);
        assert_eq!(first.len(), 1);
        let a = &first[0];
        assert_eq!(
            (a.aggregate, a.start, a.secs, a.results_sent),
            (1, 1000, 10, 2)
        );
        assert_eq!(a.transactions(), 2);
        assert_eq!(a.failed(), 1);
        let t = a.transaction().unwrap();
        assert_eq!((t.min, t.max, t.first, t.last), (0.1, 0.2, 1000.2, 1009.9));
        assert!((t.mean - 0.15).abs() < 1e-12);
        assert!((t.m2 - 0.005).abs() < 1e-12);
        assert_eq!(t.seconds, [(1000, 1), (1009, 1)]);
        let h = t.histogram().unwrap();
        assert_eq!(h.len(), 2);
        assert!(h.equivalent(h.max(), 200_000_000));
        assert_eq!(a.series[1].kind, Kind::Timer);
        assert_eq!(a.checks, [("ok".to_owned(), 2, 0)]);
        assert_eq!(
            a.counters,
            [
                ("bytes".to_owned(), 1000, 10.0),
                ("bytes".to_owned(), 1009, 10.0)
            ]
        );
        // The wire round trip is exact.
        let text = String::from_utf8(a.encode()).unwrap();
        assert_eq!(&Aggregate::decode(&text).unwrap(), a);
        let rest = agg.drain();
        assert_eq!(
            rest.iter().map(|a| a.start).collect::<Vec<_>>(),
            [1010, 1020]
        );
        assert_eq!((agg.intervals_sent(), agg.results_sent()), (3, 4));
        assert!(agg.is_empty());
    }

    #[test]
    fn merged_moments_equal_one_pass() {
        let xs: Vec<f64> = (0..100).map(|i| ((i * 37) % 101) as f64 / 7.0).collect();
        let mut one = Moments::default();
        xs.iter().for_each(|x| one.add(*x));
        let (mut a, mut b) = (Moments::default(), Moments::default());
        xs[..30].iter().for_each(|x| a.add(*x));
        xs[30..].iter().for_each(|x| b.add(*x));
        a.merge(&b);
        assert_eq!((a.count, a.min, a.max), (one.count, one.min, one.max));
        assert!((a.mean - one.mean).abs() < 1e-12 && (a.m2 - one.m2).abs() < 1e-9);
    }

    #[test]
    fn a_transaction_of_days_still_makes_a_valid_aggregate() {
        let mut agg = Aggregator::new(1, "nav", "u1");
        agg.add(&result(5.5, 1e7, "", None));
        let a = agg.drain().remove(0);
        let text = String::from_utf8(a.encode()).unwrap();
        let back = Aggregate::decode(&text).unwrap();
        assert_eq!(back.transaction().unwrap().max, 1e7);
    }

    #[test]
    fn bad_aggregates_are_refused() {
        assert!(Aggregate::decode(r#"{"aggregate":1}"#).is_err());
        let mut agg = Aggregator::new(1, "nav", "u1");
        agg.add(&result(5.5, 0.1, "", None));
        let a = agg.drain().remove(0);
        let text = String::from_utf8(a.encode()).unwrap();
        let zero = text.replace("\"secs\":1", "\"secs\":0");
        assert!(Aggregate::decode(&zero).is_err());
        let extra = text.replacen('{', "{\"x\":1,", 1);
        assert!(Aggregate::decode(&extra).is_err());
    }
}
