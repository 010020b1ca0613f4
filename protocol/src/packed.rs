//! Extension [`crate::EXT_PACKED`]: a batch of one turret's results in a compact binary frame,
//! between our turret and our HQ only (an OCT peer never announces it, so never sees one).
//!
//! A JSON batch spells every key and every float of every result and names the turret in each;
//! the HQ's decoding of it and the turret's encoding were a tenth of a shared core at 100k
//! results/s (bench/RESULTS.md). This frame says the turret once and each result in ~30 bytes.
//!
//! Layout (integers little-endian, `var` a LEB128 unsigned integer, `f64` IEEE 754 LE):
//!
//! ```text
//! frame   = MAGIC  uuid:str  name:str  count:var  result*count
//! result  = seq_delta:var  elapsed:f64  epoch:f64  scriptrun_time:f64  flags:u8
//!           [lag:f64 (flags & 1)]  error:str
//!           [n:var (name:str secs:f64)*n  timers   (flags & 2)]
//!           [n:var (name:str passed:var failed:var)*n  checks (flags & 4)]
//!           [n:var (name:str amount:f64)*n  counters (flags & 8)]
//! str     = var v: 0 the empty string; 2k+1 a new string of k bytes (UTF-8) that follow, which
//!           joins the frame's table; 2k+2 the table's k-th string
//! ```
//!
//! `seq_delta` is the result's `seq` minus the previous one's (the first's minus 0). A frame
//! is decoded whole or rejected whole: truncated, trailing bytes, bad UTF-8, a string index out
//! of the table, a number that is not finite, more than [`PACKED_MAX`] results.

use crate::{DecodeError, TestResult};

/// How a packed frame begins: a NUL byte, never the first byte of JSON text.
pub const PACKED_MAGIC: &[u8; 4] = b"\0PK1";

/// Results in one packed frame at most (a turret sends [`crate::BATCH_MAX`]).
pub const PACKED_MAX: usize = 65_536;

/// One turret's results, as a packed frame carries them: the turret once, the results without
/// `turret_uuid` and `turret_name` (each has its `seq`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Packed {
    pub turret_uuid: String,
    pub turret_name: Option<String>,
    pub results: Vec<TestResult>,
}

/// Whether `frame` is a packed frame (by its magic).
pub fn is_packed(frame: &[u8]) -> bool {
    frame.starts_with(PACKED_MAGIC)
}

/// Appends the packed frame of `results` sent by turret `uuid` named `name` to `out`. Each
/// result's own `turret_uuid` and `turret_name` are not written (the frame's are theirs); a
/// missing `seq` is written as the previous one's plus one.
pub fn encode_packed(uuid: &str, name: Option<&str>, results: &[TestResult], out: &mut Vec<u8>) {
    let mut w = Writer {
        out,
        table: Vec::new(),
    };
    w.out.extend_from_slice(PACKED_MAGIC);
    w.str(uuid);
    w.str(name.unwrap_or(""));
    w.var(results.len() as u64);
    let mut seq = 0u64;
    for r in results {
        let this = r.seq.unwrap_or(seq + 1);
        w.var(this.wrapping_sub(seq));
        seq = this;
        for x in [r.elapsed, r.epoch, r.scriptrun_time] {
            w.out.extend_from_slice(&x.to_le_bytes());
        }
        let flags = u8::from(r.lag.is_some())
            | u8::from(!r.custom_timers.is_empty()) << 1
            | u8::from(!r.checks.is_empty()) << 2
            | u8::from(!r.counters.is_empty()) << 3;
        w.out.push(flags);
        if let Some(lag) = r.lag {
            w.out.extend_from_slice(&lag.to_le_bytes());
        }
        w.str(&r.error);
        if flags & 2 != 0 {
            w.numbers(&r.custom_timers);
        }
        if flags & 4 != 0 {
            w.checks(&r.checks);
        }
        if flags & 8 != 0 {
            w.numbers(&r.counters);
        }
    }
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    table: Vec<&'a str>,
}

impl<'a> Writer<'a> {
    fn var(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn str(&mut self, s: &'a str) {
        if s.is_empty() {
            return self.var(0);
        }
        // A batch holds a handful of distinct strings (the uuid, an error or two, timer
        // names): a linear look beats hashing.
        match self.table.iter().position(|t| *t == s) {
            Some(k) => self.var(2 * k as u64 + 2),
            None => {
                self.table.push(s);
                self.var(2 * s.len() as u64 + 1);
                self.out.extend_from_slice(s.as_bytes());
            }
        }
    }

    fn numbers(&mut self, list: &'a [(String, f64)]) {
        self.var(list.len() as u64);
        for (k, v) in list {
            self.str(k);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn checks(&mut self, checks: &'a [(String, u64, u64)]) {
        self.var(checks.len() as u64);
        for (k, passed, failed) in checks {
            self.str(k);
            self.var(*passed);
            self.var(*failed);
        }
    }
}

/// Decodes a packed frame; `None` when `frame` is not one (no magic).
pub fn decode_packed(frame: &[u8]) -> Option<Result<Packed, DecodeError>> {
    let body = frame.strip_prefix(PACKED_MAGIC)?;
    let mut r = Reader {
        rest: body,
        table: Vec::new(),
    };
    Some(r.packed())
}

struct Reader<'a> {
    rest: &'a [u8],
    table: Vec<&'a str>,
}

fn bad(what: &'static str) -> DecodeError {
    DecodeError::Packed(what)
}

impl<'a> Reader<'a> {
    fn packed(&mut self) -> Result<Packed, DecodeError> {
        let turret_uuid = self.str()?.to_owned();
        let name = self.str()?;
        let count = self.var()?;
        if count > PACKED_MAX as u64 {
            return Err(bad("more results than a frame may hold"));
        }
        // Each result takes 26 bytes at least: no count makes us reserve more than was sent.
        let mut results = Vec::with_capacity((count as usize).min(self.rest.len() / 26));
        let mut seq = 0u64;
        for _ in 0..count {
            seq = seq
                .checked_add(self.var()?)
                .ok_or(bad("seq out of range"))?;
            let elapsed = self.f64()?;
            let epoch = self.f64()?;
            let scriptrun_time = self.f64()?;
            let flags = self.byte()?;
            if flags & !0x0f != 0 {
                return Err(bad("unknown flags"));
            }
            let lag = if flags & 1 != 0 {
                Some(self.f64()?)
            } else {
                None
            };
            let error = self.str()?.to_owned();
            let custom_timers = if flags & 2 != 0 {
                self.numbers()?
            } else {
                Vec::new()
            };
            let checks = if flags & 4 != 0 {
                self.checks()?
            } else {
                Vec::new()
            };
            let counters = if flags & 8 != 0 {
                self.numbers()?
            } else {
                Vec::new()
            };
            results.push(TestResult {
                elapsed,
                epoch,
                scriptrun_time,
                error,
                custom_timers,
                turret_name: None,
                seq: Some(seq),
                turret_uuid: None,
                lag,
                checks,
                counters,
            });
        }
        if !self.rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Packed {
            turret_uuid,
            turret_name: (!name.is_empty()).then(|| name.to_owned()),
            results,
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(bad("truncated"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn var(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f)
                .checked_shl(shift)
                .filter(|x| x >> shift == u64::from(b & 0x7f))
                .ok_or(bad("integer out of range"))?;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("integer out of range"))
    }

    fn f64(&mut self) -> Result<f64, DecodeError> {
        let b = self.take(8)?;
        let x = f64::from_le_bytes(b.try_into().expect("8 bytes"));
        if x.is_finite() {
            Ok(x)
        } else {
            Err(bad("a number that is not finite"))
        }
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let v = self.var()?;
        if v == 0 {
            return Ok("");
        }
        if v % 2 == 0 {
            let k = (v / 2 - 1) as usize;
            return self
                .table
                .get(k)
                .copied()
                .ok_or(bad("string index out of the table"));
        }
        let len = usize::try_from(v / 2).map_err(|_| bad("truncated"))?;
        let s = std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::NotUtf8)?;
        self.table.push(s);
        Ok(s)
    }

    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.var()?;
        // Every entry takes 2 bytes at least.
        if n > (self.rest.len() / 2) as u64 {
            return Err(bad("truncated"));
        }
        Ok(n as usize)
    }

    fn numbers(&mut self) -> Result<Vec<(String, f64)>, DecodeError> {
        let n = self.count()?;
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.str()?.to_owned();
            list.push((k, self.f64()?));
        }
        Ok(list)
    }

    fn checks(&mut self) -> Result<Vec<(String, u64, u64)>, DecodeError> {
        let n = self.count()?;
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.str()?.to_owned();
            list.push((k, self.var()?, self.var()?));
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests;
