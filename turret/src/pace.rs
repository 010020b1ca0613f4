//! The open model on a turret (`arrival_rate`): iterations start when the schedule says, not
//! when a canon is free. Worker thread `w` of `W` dispatches iterations `w`, `w + W`, … of the
//! turret's [`Schedule`]: at each one's due time it hands it to an idle canon of its own
//! [`Pool`], else wakes a canon that never ran (the pool grows up to `max_cannons`), else counts
//! it dropped. Dispatcher and canons share a thread, so handing an iteration over is a cell and
//! a wake-up, never a lock; the schedule is behind a mutex only because the HQ may change it
//! (a global `load`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::Schedule;

/// The longest the dispatcher sleeps without looking at its stop flag and the schedule again.
const RECHECK: Duration = Duration::from_millis(10);
/// Iterations handed out in one go before the dispatcher lets its canons run.
const BURST: u64 = 64;

/// What every worker thread of an open-model test shares.
pub struct Pacer {
    schedule: Mutex<Schedule>,
    workers: u64,
    pub started: AtomicU64,
    pub dropped: AtomicU64,
}

impl Pacer {
    pub fn new(schedule: Schedule, workers: usize) -> Pacer {
        Pacer {
            schedule: Mutex::new(schedule),
            workers: workers.max(1) as u64,
            started: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        // A panic elsewhere cannot leave a schedule half-changed: its methods do not panic.
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From `secs` after the start on, `rate` iterations per second (the HQ's `load`).
    pub fn set_rate(&self, secs: f64, rate: f64) {
        self.schedule().set_rate(secs, rate);
    }

    pub fn rate_at(&self, secs: f64) -> f64 {
        self.schedule().rate_at(secs)
    }

    /// The worker threads to deal canons to: the pacer splits the schedule between that many.
    pub fn workers(&self) -> usize {
        self.workers as usize
    }
}

/// A canon's place in its pool: where the dispatcher leaves its next due time.
#[derive(Default)]
pub struct Slot {
    due: Cell<Option<Instant>>,
    bell: tokio::sync::Notify,
}

/// One worker thread's canons waiting for an iteration.
#[derive(Default)]
pub struct Pool {
    /// Canons that ran and wait for their next iteration (taken first: their script is loaded).
    idle: RefCell<Vec<Rc<Slot>>>,
    /// Canons that never ran.
    fresh: RefCell<Vec<Rc<Slot>>>,
    closed: Cell<bool>,
}

impl Pool {
    /// Waits for this canon's next iteration; `None` once the test is over. A canon that never
    /// ran waits as `fresh`, to be woken only when no loaded canon is free.
    pub async fn next(&self, slot: &Rc<Slot>, fresh: bool) -> Option<Instant> {
        if let Some(due) = slot.due.take() {
            return Some(due);
        }
        if self.closed.get() {
            return None;
        }
        let list = if fresh { &self.fresh } else { &self.idle };
        list.borrow_mut().push(Rc::clone(slot));
        slot.bell.notified().await;
        slot.due.take()
    }

    /// Hands a due iteration back to `slot` unopened: its canon takes it first next time.
    pub fn keep(slot: &Slot, due: Instant) {
        slot.due.set(Some(due));
    }

    fn take(&self) -> Option<Rc<Slot>> {
        let idle = self.idle.borrow_mut().pop();
        idle.or_else(|| self.fresh.borrow_mut().pop())
    }

    /// The test is over: every waiting canon wakes to `None`, and none waits again.
    fn close(&self) {
        self.closed.set(true);
        let waiting: Vec<_> = self
            .idle
            .borrow_mut()
            .drain(..)
            .chain(self.fresh.borrow_mut().drain(..))
            .collect();
        for slot in waiting {
            slot.due.set(None);
            slot.bell.notify_one();
        }
    }
}

/// Worker `worker`'s dispatcher: hands out its share of the schedule until `over()` says the
/// test is over, then closes the pool.
pub async fn dispatch(
    pacer: std::sync::Arc<Pacer>,
    pool: Rc<Pool>,
    worker: usize,
    origin: Instant,
    over: impl Fn() -> bool,
) {
    let step = pacer.workers;
    let mut k = worker as u64;
    let mut burst = 0;
    loop {
        if over() {
            pool.close();
            return;
        }
        let now = Instant::now();
        let due = pacer.schedule().due(k);
        let Some(secs) = due else {
            // Nothing more is due (yet: the HQ may raise the rate).
            tokio::time::sleep(RECHECK).await;
            continue;
        };
        let due = origin + Duration::from_secs_f64(secs);
        if due > now {
            burst = 0;
            tokio::time::sleep_until(due.min(now + RECHECK).into()).await;
            continue;
        }
        match pool.take() {
            Some(slot) => {
                slot.due.set(Some(due));
                slot.bell.notify_one();
                pacer.started.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                pacer.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        k += step;
        burst += 1;
        if burst == BURST {
            burst = 0;
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// Canons that take 30 ms an iteration, at 200 iterations/s: 2 canons carry ~66/s, so
    /// the rest is dropped, and started + dropped is what was due.
    #[test]
    fn started_plus_dropped_is_what_was_due() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pacer = Arc::new(Pacer::new(Schedule::constant(200.0), 1));
        let pool = Rc::new(Pool::default());
        let stop = Arc::new(AtomicBool::new(false));
        let origin = Instant::now();
        let local = tokio::task::LocalSet::new();
        let ran = Rc::new(Cell::new(0u64));
        let lags = Rc::new(RefCell::new(Vec::new()));
        let mut canons = Vec::new();
        for _ in 0..2 {
            let (pool, ran, lags) = (Rc::clone(&pool), Rc::clone(&ran), Rc::clone(&lags));
            canons.push(local.spawn_local(async move {
                let slot = Rc::new(Slot::default());
                let mut fresh = true;
                while let Some(due) = pool.next(&slot, fresh).await {
                    fresh = false;
                    lags.borrow_mut().push(due.elapsed().as_secs_f64());
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    ran.set(ran.get() + 1);
                }
            }));
        }
        let s = Arc::clone(&stop);
        local.spawn_local(dispatch(
            Arc::clone(&pacer),
            Rc::clone(&pool),
            0,
            origin,
            move || s.load(Ordering::Relaxed),
        ));
        let due = |p: &Pacer| p.started.load(Ordering::Relaxed) + p.dropped.load(Ordering::Relaxed);
        local.block_on(&rt, async {
            // Run until 100 iterations have fallen due (half a second at 200/s), polled with a
            // deadline.
            let deadline = Instant::now() + Duration::from_secs(10);
            while due(&pacer) < 100 {
                assert!(
                    Instant::now() < deadline,
                    "only {} due in 10 s",
                    due(&pacer)
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stop.store(true, Ordering::Relaxed);
            // The dispatcher closes the pool: each canon ends after its iteration.
            for c in canons {
                tokio::time::timeout(Duration::from_secs(5), c)
                    .await
                    .expect("canons end after the stop")
                    .unwrap();
            }
        });
        let started = pacer.started.load(Ordering::Relaxed);
        let dropped = pacer.dropped.load(Ordering::Relaxed);
        let elapsed = origin.elapsed().as_secs_f64();
        // Every iteration due before the stop was either started or dropped.
        assert!(
            (95..=(elapsed * 200.0) as u64 + 1).contains(&(started + dropped)),
            "{started} + {dropped}"
        );
        assert!(dropped > 50, "dropped {dropped}");
        assert_eq!(ran.get(), started, "every started iteration ran");
        assert!(
            lags.borrow().iter().all(|l| *l < 0.05),
            "{:?}",
            lags.borrow()
        );
    }
}
