//! Sleeps to the tenth of a millisecond. tokio's timer wheel rounds every sleep up to its
//! millisecond ticks (a 50 ms `delay` added 51.9 ms); here one thread waits on a condition
//! variable for the earliest deadline (futex precision) and wakes each sleeper's task.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

struct Timer {
    due: Mutex<BinaryHeap<Reverse<(Instant, u64, Waiter)>>>,
    changed: Condvar,
}

struct Waiter(oneshot::Sender<()>);

impl PartialEq for Waiter {
    fn eq(&self, _: &Waiter) -> bool {
        true
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, o: &Waiter) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Waiter {
    fn cmp(&self, _: &Waiter) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

fn timer() -> &'static Timer {
    static T: OnceLock<&'static Timer> = OnceLock::new();
    T.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::new(Timer {
            due: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("oct-proxy-timer".into())
            .spawn(move || {
                let mut due = t.due.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    let now = Instant::now();
                    while due.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
                        let Reverse((_, _, w)) = due.pop().expect("peeked");
                        let _ = w.0.send(());
                    }
                    due = match due.peek() {
                        None => t.changed.wait(due).unwrap_or_else(|e| e.into_inner()),
                        Some(Reverse((at, _, _))) => {
                            let wait = at.saturating_duration_since(now);
                            t.changed
                                .wait_timeout(due, wait)
                                .unwrap_or_else(|e| e.into_inner())
                                .0
                        }
                    };
                }
            })
            .expect("a thread for the proxy's timer");
        t
    })
}

/// Waits until `deadline`.
pub async fn until(deadline: Instant) {
    if deadline <= Instant::now() {
        return;
    }
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let (tx, rx) = oneshot::channel();
    let t = timer();
    {
        let mut due = t.due.lock().unwrap_or_else(|e| e.into_inner());
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let earliest = due.peek().is_none_or(|Reverse((at, _, _))| deadline < *at);
        due.push(Reverse((deadline, seq, Waiter(tx))));
        if earliest {
            t.changed.notify_one();
        }
    }
    let _ = rx.await;
}

/// Waits `d`.
pub async fn sleep(d: Duration) {
    if !d.is_zero() {
        until(Instant::now() + d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_end_within_a_millisecond_in_order() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut over = Vec::new();
            for ms in [5u64, 20, 1, 12] {
                let t0 = Instant::now();
                sleep(Duration::from_millis(ms)).await;
                over.push(t0.elapsed().as_secs_f64() * 1000.0 - ms as f64);
            }
            assert!(over.iter().all(|o| (0.0..1.0).contains(o)), "{over:?}");
        });
    }
}
