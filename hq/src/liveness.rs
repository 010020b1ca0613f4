//! Whether each turret is alive (extension `heartbeat`): `running` while it is heard on time,
//! `late` after three missed heartbeats, `lost` after `turret_timeout` of silence, `recovered`
//! when a lost turret is heard again; `unmonitored` for turrets that send no heartbeats (OCT's).
//! Also the CPU flag: a turret whose CPU stays above 90 % has suspect latencies. Pure state: the
//! caller says what was heard and when, and prints what changed.

use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};

/// Heartbeats in a row whose CPU use (percent of the cores a turret's canons can use) must be
/// above `cpu_warning` (90 by default, as Locust warns) for the turret's latencies to be suspect.
pub const CPU_SUSPECT_BEATS: u32 = 3;
/// Heartbeats missed before a turret is `late`.
const LATE_AFTER_BEATS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Unmonitored,
    Running,
    Late,
    Lost,
    Recovered,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Unmonitored => "unmonitored",
            Liveness::Running => "running",
            Liveness::Late => "late",
            Liveness::Lost => "lost",
            Liveness::Recovered => "recovered",
        }
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the HQ's config says of liveness.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub heartbeat: Duration,
    pub turret_timeout: Duration,
    /// CPU use, in percent, above which a turret's latencies become suspect.
    pub cpu_warning_pct: f64,
}

/// One change of liveness, with the wall-clock time it was seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub at: DateTime<Local>,
    pub to: Liveness,
    /// How long the turret had been silent when it changed.
    pub silent_secs: f64,
}

#[derive(Debug, Clone)]
pub struct Health {
    pub liveness: Liveness,
    last_heard: Instant,
    ever_lost: bool,
    pub changes: Vec<Change>,
    pub heartbeats: u64,
    /// `results_sent` of the last heartbeat.
    pub results_sent: Option<u64>,
    pub cannons_active: u64,
    pub cpu_max: f64,
    high_cpu_beats: u32,
    pub cpu_suspect: bool,
}

impl Health {
    pub fn new(now: Instant) -> Health {
        Health {
            liveness: Liveness::Unmonitored,
            last_heard: now,
            ever_lost: false,
            changes: Vec::new(),
            heartbeats: 0,
            results_sent: None,
            cannons_active: 0,
            cpu_max: 0.0,
            high_cpu_beats: 0,
            cpu_suspect: false,
        }
    }

    fn change(&mut self, to: Liveness, now: Instant) -> Option<Change> {
        if self.liveness == to {
            return None;
        }
        let change = Change {
            at: Local::now(),
            to,
            silent_secs: now.saturating_duration_since(self.last_heard).as_secs_f64(),
        };
        self.liveness = to;
        self.changes.push(change.clone());
        Some(change)
    }

    /// Anything at all was heard from the turret.
    pub fn heard(&mut self, now: Instant) -> Option<Change> {
        let change = match self.liveness {
            Liveness::Unmonitored => None,
            Liveness::Lost => {
                self.ever_lost = true;
                self.change(Liveness::Recovered, now)
            }
            Liveness::Late if self.ever_lost => self.change(Liveness::Recovered, now),
            Liveness::Late => self.change(Liveness::Running, now),
            Liveness::Running | Liveness::Recovered => None,
        };
        self.last_heard = now;
        change
    }

    /// A heartbeat: the turret is monitored from now on. Returns the change of liveness, and
    /// whether the turret has just become CPU-suspect.
    pub fn heartbeat(
        &mut self,
        now: Instant,
        results_sent: u64,
        cannons_active: u64,
        cpu: f64,
        t: Timings,
    ) -> (Option<Change>, bool) {
        let change = if self.liveness == Liveness::Unmonitored {
            self.last_heard = now;
            self.change(Liveness::Running, now)
        } else {
            self.heard(now)
        };
        self.heartbeats += 1;
        self.results_sent = Some(results_sent);
        self.cannons_active = cannons_active;
        self.cpu_max = self.cpu_max.max(cpu);
        self.high_cpu_beats = if cpu > t.cpu_warning_pct {
            self.high_cpu_beats + 1
        } else {
            0
        };
        let flagged = !self.cpu_suspect && self.high_cpu_beats >= CPU_SUSPECT_BEATS;
        self.cpu_suspect |= flagged;
        (change, flagged)
    }

    /// Time passed: a monitored turret that has been silent becomes late, then lost.
    pub fn check(&mut self, now: Instant, t: Timings) -> Option<Change> {
        if matches!(self.liveness, Liveness::Unmonitored | Liveness::Lost) {
            return None;
        }
        let silent = now.saturating_duration_since(self.last_heard);
        if silent > t.turret_timeout {
            self.change(Liveness::Lost, now)
        } else if silent > t.heartbeat * LATE_AFTER_BEATS && self.liveness != Liveness::Late {
            self.change(Liveness::Late, now)
        } else {
            None
        }
    }

    /// The HQ itself did not run for `gap` (it was stopped or starved): that was not the
    /// turret's silence.
    pub fn forgive(&mut self, gap: Duration) {
        self.last_heard += gap;
    }

    pub fn is_lost(&self) -> bool {
        self.liveness == Liveness::Lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timings = Timings {
        heartbeat: Duration::from_secs(1),
        turret_timeout: Duration::from_secs(10),
        cpu_warning_pct: 90.0,
    };

    fn at(start: Instant, secs: f64) -> Instant {
        start + Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_silent_turret_goes_late_then_lost_then_recovered() {
        let s = Instant::now();
        let mut h = Health::new(s);
        assert_eq!(h.check(at(s, 60.0), T), None, "unmonitored stays so");
        assert_eq!(h.liveness, Liveness::Unmonitored);
        let (c, _) = h.heartbeat(at(s, 1.0), 0, 2, 10.0, T);
        assert_eq!(c.map(|c| c.to), Some(Liveness::Running));
        assert_eq!(h.check(at(s, 3.9), T), None);
        assert_eq!(h.check(at(s, 4.1), T).map(|c| c.to), Some(Liveness::Late));
        assert_eq!(h.check(at(s, 5.0), T), None, "late once");
        let lost = h.check(at(s, 11.5), T).unwrap();
        assert_eq!((lost.to, lost.silent_secs), (Liveness::Lost, 10.5));
        assert_eq!(h.check(at(s, 30.0), T), None);
        let back = h.heard(at(s, 31.0)).unwrap();
        assert_eq!(back.to, Liveness::Recovered);
        assert_eq!(h.heartbeat(at(s, 32.0), 5, 2, 1.0, T).0, None);
        // Late again, then on time: still `recovered`, it was lost once.
        assert_eq!(h.check(at(s, 35.5), T).map(|c| c.to), Some(Liveness::Late));
        assert_eq!(
            h.heard(at(s, 36.0)).map(|c| c.to),
            Some(Liveness::Recovered)
        );
        let seen: Vec<Liveness> = h.changes.iter().map(|c| c.to).collect();
        use Liveness::*;
        assert_eq!(seen, [Running, Late, Lost, Recovered, Late, Recovered]);
        assert_eq!(h.results_sent, Some(5));
    }

    #[test]
    fn a_late_turret_heard_again_is_running() {
        let s = Instant::now();
        let mut h = Health::new(s);
        h.heartbeat(s, 0, 1, 1.0, T);
        assert_eq!(h.check(at(s, 3.5), T).map(|c| c.to), Some(Liveness::Late));
        assert_eq!(h.heard(at(s, 3.6)).map(|c| c.to), Some(Liveness::Running));
    }

    #[test]
    fn cpu_is_suspect_after_three_hot_heartbeats_in_a_row() {
        let s = Instant::now();
        let mut h = Health::new(s);
        let hot: Vec<bool> = [95.0, 99.0, 50.0, 91.0, 92.0, 97.0, 99.0]
            .into_iter()
            .enumerate()
            .map(|(i, cpu)| h.heartbeat(at(s, i as f64), 0, 1, cpu, T).1)
            .collect();
        assert_eq!(hot, [false, false, false, false, false, true, false]);
        assert!(h.cpu_suspect);
        assert_eq!(h.cpu_max, 99.0);
    }
}
