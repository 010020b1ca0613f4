//! Sleeps to the tenth of a millisecond. tokio's timer wheel rounds every sleep up to its
//! millisecond ticks (a 50 ms `delay` added 51.9 ms). A timer thread of our own woke each
//! sleeper's task precisely, but the wake then crossed two idle threads (the timer's, then the
//! runtime worker's), each a fraction of a millisecond on a VM (51.2 ms added on one). Here
//! each sleep is a `timerfd` in the sleeping task's own runtime: the kernel's high-resolution
//! timer makes the worker's `epoll_wait` return, one wake-up in all.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A one-shot `timerfd` armed to fire `after` from now.
fn armed(after: Duration) -> std::io::Result<OwnedFd> {
    // SAFETY: timerfd_create returns a new descriptor we own, or -1.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            // A zero it_value disarms: 1 ns at least.
            tv_nsec: after.subsec_nanos().max(1) as libc::c_long,
        },
    };
    // SAFETY: fd is a timerfd; spec is a valid itimerspec; no old value is asked for.
    if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Waits until `deadline`.
pub async fn until(deadline: Instant) {
    let now = Instant::now();
    if deadline <= now {
        return;
    }
    let fd = match armed(deadline - now).and_then(|fd| {
        // SAFETY: the AsyncFd owns fd, which stays open and the same until it is dropped.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
    }) {
        Ok(fd) => fd,
        // No timerfd (out of descriptors): tokio's timer, a millisecond coarser.
        Err(_) => return tokio::time::sleep_until(deadline.into()).await,
    };
    // The timerfd fires once, at or after `deadline` on the same clock as `Instant`. Anything
    // left (a readiness error) is waited out on tokio's timer rather than on a second edge
    // that a one-shot timer would never give.
    if let Ok(mut ready) = fd.readable().await {
        ready.clear_ready();
    }
    if Instant::now() < deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
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
            .enable_all()
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
