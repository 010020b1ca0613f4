//! What a turret's heartbeat says of its own health: the process's CPU use, measured with
//! `getrusage` between two heartbeats.

use std::time::Instant;

/// The turret process's CPU time between two samples, as a percentage of the cores its canons
/// can use (`min(workers, cores)`): 100 means those cores were busy all the time, and latencies
/// measured meanwhile include time spent waiting for a CPU.
pub(crate) struct CpuMeter {
    cores: f64,
    last: Option<(Instant, f64)>,
}

fn cpu_secs() -> f64 {
    // SAFETY: getrusage writes one plain struct that we own; RUSAGE_SELF is always valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

impl CpuMeter {
    pub fn new(workers: usize) -> CpuMeter {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        CpuMeter {
            cores: workers.clamp(1, cores) as f64,
            last: None,
        }
    }

    /// CPU use since the previous call (since the first call, for the first one: 0).
    pub fn sample(&mut self) -> f64 {
        let now = (Instant::now(), cpu_secs());
        let pct = match self.last {
            Some((t, cpu)) => {
                let wall = now.0.duration_since(t).as_secs_f64();
                if wall > 0.0 {
                    (now.1 - cpu) / wall / self.cores * 100.0
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some(now);
        (pct.max(0.0) * 10.0).round() / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_reads_as_cpu_use() {
        let mut m = CpuMeter::new(1);
        m.sample();
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        // Other tests share this process and the machine: only a floor is certain.
        let busy = m.sample();
        assert!(busy > 30.0, "busy loop read {busy} %");
    }
}
