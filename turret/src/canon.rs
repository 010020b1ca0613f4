//! Canons: virtual users. Each loops `setup()`, a timed `run(t)` and `tear_down()` until told to
//! stop, sending one result per iteration to its turret. With a shape (stages, cycles) canon `i`
//! runs only while the turret's target is above `i`: taken away, it finishes its iteration and
//! waits to be wanted again (with a fresh script instance); with `iterations`, it is done after
//! that many. In an open-model test (`arrival_rate`) canons are a pool instead: each waits for
//! its thread's dispatcher ([`crate::pace`]) to hand it an iteration. A few worker threads, each a
//! current-thread tokio runtime, host all the canons of a test as local tasks: a canon waiting
//! on the network costs a parked future, not an OS thread, and Lua states stay on one thread.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::TestResult;

use crate::engine::{self, CanonInfo, Engine, Iteration};
use crate::pace::{Pool, Slot};

/// What a canon tells its turret.
pub enum Event {
    Result(TestResult),
    /// The script could not be loaded for this canon; it never ran.
    Failed(String),
}

pub struct Canon {
    pub info: CanonInfo,
    /// Rampup: how long after `start` this canon begins.
    pub delay: Duration,
    /// The worker thread it runs on (set by [`spawn_workers`]).
    worker: usize,
}

impl Canon {
    pub fn new(info: CanonInfo, delay: Duration) -> Canon {
        Canon {
            info,
            delay,
            worker: 0,
        }
    }
}

/// What every canon of a test shares.
#[derive(Clone)]
pub struct Shared {
    pub engine: Arc<dyn Engine>,
    /// When the turret received `start`; `elapsed` counts from it.
    pub started: Instant,
    pub stop: Arc<AtomicBool>,
    pub events: Sender<Event>,
    /// Canons in their loop now (the heartbeat reports it).
    pub active: Arc<AtomicU64>,
    /// Canons the shape wants now: canon `i` runs while `i < target` (`u64::MAX`: all).
    pub target: Arc<AtomicU64>,
    /// Iterations each canon runs before it is done.
    pub iterations: Option<u64>,
    /// Set when a feeder with `on_exhausted: stop` ran out: every canon is done.
    pub data_stop: Arc<AtomicBool>,
    /// The open model: iterations start when this schedule says.
    pub pacer: Option<Arc<crate::pace::Pacer>>,
}

impl Shared {
    fn over(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.data_stop.load(Ordering::Relaxed)
    }
}

/// Starts `workers` threads hosting `canons` (dealt round-robin). Each thread ends when all of
/// its canons have finished their last iteration after `stop`.
pub fn spawn_workers(
    canons: Vec<Canon>,
    workers: usize,
    shared: &Shared,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let workers = workers.clamp(1, canons.len().max(1));
    let mut groups: Vec<Vec<Canon>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, mut c) in canons.into_iter().enumerate() {
        c.worker = i % workers;
        groups[i % workers].push(c);
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(w, group)| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("canons-{w}"))
                .spawn(move || host(group, shared))
        })
        .collect()
}

fn host(group: Vec<Canon>, shared: Shared) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = shared
                .events
                .send(Event::Failed(format!("starting a canon runtime: {e}")));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    let pool = shared.pacer.as_ref().map(|_| Rc::new(Pool::default()));
    let worker = group.first().map_or(0, |c| c.worker);
    let canons: Vec<_> = group
        .into_iter()
        .map(|canon| {
            let index = canon.info.index;
            let pool = pool.clone();
            (index, local.spawn_local(canon.run(shared.clone(), pool)))
        })
        .collect();
    // After the canons: they take their places in the pool before the first iteration is due.
    if let (Some(pacer), Some(pool)) = (&shared.pacer, &pool) {
        let over = shared.clone();
        local.spawn_local(crate::pace::dispatch(
            Arc::clone(pacer),
            Rc::clone(pool),
            worker,
            shared.started,
            move || over.over(),
        ));
    }
    // A canon that panics (a bug of ours, never a script's error) is reported, not silently
    // gone: its turret goes `Aborted` with the message.
    local.block_on(&rt, async {
        for (index, canon) in canons {
            if let Err(e) = canon.await {
                let why = match e.try_into_panic() {
                    Ok(p) => p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into()),
                    Err(e) => e.to_string(),
                };
                let _ = shared
                    .events
                    .send(Event::Failed(format!("canon {index} crashed: {why}")));
            }
        }
    });
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The engine's view of this canon: when to stop, and where results go.
struct Sink {
    shared: Shared,
    index: u64,
    /// Iterations this canon has run, across the script instances it had.
    done: Rc<std::cell::Cell<u64>>,
    /// The open model: the pool this canon waits in, its place there, and how late the
    /// iteration in flight began.
    pace: Option<(Rc<Pool>, Rc<Slot>)>,
    lag: std::cell::Cell<Option<f64>>,
}

impl Sink {
    fn wanted(&self) -> bool {
        self.index < self.shared.target.load(Ordering::Relaxed)
    }

    fn finished(&self) -> bool {
        self.shared.over() || self.shared.iterations.is_some_and(|n| self.done.get() >= n)
    }
}

impl engine::Canon for Sink {
    fn keep_going(&self) -> bool {
        !self.finished() && self.wanted()
    }

    fn paced(&self) -> bool {
        self.pace.is_some()
    }

    fn pace(&self) -> engine::LocalFuture<'_, bool> {
        Box::pin(async move {
            let Some((pool, slot)) = &self.pace else {
                return true;
            };
            if self.finished() {
                return false;
            }
            match pool.next(slot, false).await {
                Some(due) => {
                    self.lag.set(Some(due.elapsed().as_secs_f64()));
                    true
                }
                None => false,
            }
        })
    }

    fn report(&self, it: Iteration) {
        self.done.set(self.done.get() + 1);
        let _ = self.shared.events.send(Event::Result(TestResult {
            elapsed: self.shared.started.elapsed().as_secs_f64(),
            epoch: epoch_now(),
            scriptrun_time: it.scriptrun_time,
            error: it.error,
            custom_timers: it.timers,
            // The turret's main loop names the sender (once a batch when packed).
            turret_name: None,
            lag: self.lag.take(),
            checks: it.checks,
            counters: it.counters,
            ..Default::default()
        }));
    }
}

impl Canon {
    async fn run(self, shared: Shared, pool: Option<Rc<Pool>>) {
        let begin = tokio::time::Instant::from_std(shared.started + self.delay);
        // Wait out the rampup, but notice a stop meanwhile.
        while tokio::time::Instant::now() < begin {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            let slice = tokio::time::Instant::now() + Duration::from_millis(20);
            tokio::time::sleep_until(begin.min(slice)).await;
        }
        let events = shared.events.clone();
        let active = Arc::clone(&shared.active);
        let pace = pool.map(|pool| (pool, Rc::new(Slot::default())));
        if let Some((pool, slot)) = &pace {
            // A canon of the pool loads its script only when first needed.
            match pool.next(slot, true).await {
                Some(due) => Pool::keep(slot, due),
                None => return,
            }
        }
        let sink = Rc::new(Sink {
            shared,
            index: self.info.index,
            done: Rc::default(),
            pace,
            lag: Default::default(),
        });
        loop {
            // Wait until the shape wants this canon.
            while !sink.wanted() {
                if sink.finished() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if sink.finished() {
                return;
            }
            let script = match sink.shared.engine.load(&self.info) {
                Ok(s) => s,
                Err(e) => {
                    let _ = events.send(Event::Failed(e.0));
                    return;
                }
            };
            // Let the canons beside this one load too before anyone starts timing: a
            // transaction must not include the time its neighbours spent loading their scripts.
            tokio::task::yield_now().await;
            active.fetch_add(1, Ordering::Relaxed);
            let outcome = script
                .run_loop(Rc::clone(&sink) as Rc<dyn engine::Canon>)
                .await;
            active.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = outcome {
                let _ = events.send(Event::Failed(format!("canon {}: {}", self.info.index, e.0)));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{LocalFuture, Script, ScriptError};

    /// An engine whose script panics: what a bug of ours in a canon would do.
    struct Panics;

    struct PanickingScript;

    impl Script for PanickingScript {
        fn run_loop(
            self: Box<Self>,
            _canon: Rc<dyn engine::Canon>,
        ) -> LocalFuture<'static, Result<(), ScriptError>> {
            Box::pin(async { panic!("boom") })
        }
    }

    impl Engine for Panics {
        fn check(&self) -> Result<(), ScriptError> {
            Ok(())
        }
        fn load(&self, _canon: &CanonInfo) -> Result<Box<dyn Script>, ScriptError> {
            Ok(Box::new(PanickingScript))
        }
    }

    #[test]
    fn a_canon_that_panics_is_reported_not_silently_gone() {
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Shared {
            engine: Arc::new(Panics),
            started: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            events: tx,
            active: Arc::new(AtomicU64::new(0)),
            target: Arc::new(AtomicU64::new(u64::MAX)),
            iterations: None,
            data_stop: Arc::default(),
            pacer: None,
        };
        let canon = |index| Canon {
            worker: 0,
            info: CanonInfo {
                index,
                canons: 2,
                turret: "t".into(),
                context: serde_json::json!({}),
                config: serde_json::json!({}),
                data: Default::default(),
            },
            delay: Duration::ZERO,
        };
        for w in spawn_workers(vec![canon(0), canon(1)], 1, &shared).unwrap() {
            w.join().unwrap();
        }
        drop(shared);
        let failures: Vec<String> = rx
            .iter()
            .map(|e| match e {
                Event::Failed(m) => m,
                Event::Result(_) => panic!("no results expected"),
            })
            .collect();
        assert_eq!(failures, ["canon 0 crashed: boom", "canon 1 crashed: boom"]);
    }
}
