//! The HQ's console: diagnostics on stderr prefixed `oct:`, and a progress line that redraws in
//! place on a terminal and is a plain line every few seconds otherwise.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Console {
    enabled: bool,
    tty: bool,
    /// A progress line is on screen without its newline.
    drawn: Cell<bool>,
    last: Cell<Option<Instant>>,
}

impl Console {
    pub fn new(progress_bar: bool) -> Self {
        Console {
            enabled: progress_bar,
            tty: std::io::stderr().is_terminal(),
            drawn: Cell::new(false),
            last: Cell::new(None),
        }
    }

    pub fn info(&self, line: &str) {
        self.end_progress();
        eprintln!("oct: {line}");
    }

    pub fn warn(&self, line: &str) {
        self.end_progress();
        eprintln!("oct: warning: {line}");
    }

    pub fn waiting(&self, known: usize, wanted: usize) {
        self.info(&format!("turrets ready: {known}/{wanted}"));
    }

    pub fn end_progress(&self) {
        if self.drawn.replace(false) {
            eprintln!();
        }
    }

    /// The progress line; `load` is what the shapes say now (` · canons 4/5 · stage 2/3`).
    pub fn progress(
        &self,
        elapsed: Duration,
        total: Duration,
        turrets: usize,
        load: &str,
        (results, errors): (u64, u64),
    ) {
        if !self.enabled {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(250)
        } else {
            PLAIN_EVERY
        };
        let now = Instant::now();
        if self.last.get().is_some_and(|t| now - t < every) {
            return;
        }
        self.last.set(Some(now));
        let rate = results as f64 / elapsed.as_secs_f64().max(1e-3);
        let line = format!(
            "[{:>5.1}/{:.0}s] turrets {turrets}{load} · results {results} · {rate:.0}/s · errors {errors}",
            elapsed.as_secs_f64(),
            total.as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            self.drawn.set(true);
        } else {
            let _ = writeln!(err, "oct: {line}");
        }
    }
}
