//! A canon: one virtual user, on its own thread, looping `setup()`, a timed `run(t)` and
//! `tear_down()` until told to stop, sending one result per iteration to its turret.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::{TestResult, Timers};

use crate::engine::{CanonInfo, Engine};

/// What a canon tells its turret.
pub enum Event {
    Result(TestResult),
    /// The script could not be loaded for this canon; it never ran.
    Failed(String),
}

pub struct Canon {
    pub info: CanonInfo,
    pub engine: Arc<dyn Engine>,
    /// When the turret received `start`; `elapsed` counts from it.
    pub started: Instant,
    /// Rampup: when this canon begins.
    pub delay: Duration,
    pub stop: Arc<AtomicBool>,
    pub events: Sender<Event>,
}

impl Canon {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("canon-{}", self.info.index))
            .spawn(move || self.run())
    }

    fn run(self) {
        let begin = self.started + self.delay;
        while Instant::now() < begin {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let left = begin.saturating_duration_since(Instant::now());
            std::thread::park_timeout(left.min(Duration::from_millis(20)));
        }
        let mut script = match self.engine.load(&self.info) {
            Ok(s) => s,
            Err(e) => {
                let _ = self.events.send(Event::Failed(e.0));
                return;
            }
        };
        while !self.stop.load(Ordering::Relaxed) {
            let mut timers = Timers::new();
            let mut scriptrun_time = 0.0;
            let mut error = match script.setup() {
                Err(e) => format!("setup: {}", e.0),
                Ok(()) => {
                    let t0 = Instant::now();
                    let outcome = script.run(&mut timers);
                    scriptrun_time = t0.elapsed().as_secs_f64();
                    outcome.err().map(|e| e.0).unwrap_or_default()
                }
            };
            if let Err(e) = script.tear_down() {
                if error.is_empty() {
                    error = format!("tear_down: {}", e.0);
                }
            }
            let result = TestResult {
                elapsed: self.started.elapsed().as_secs_f64(),
                epoch: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
                scriptrun_time,
                error,
                custom_timers: timers,
                turret_name: Some(self.info.turret.clone()),
                seq: None,
                turret_uuid: None,
            };
            if self.events.send(Event::Result(result)).is_err() {
                return;
            }
        }
    }
}
