//! The OCT wire protocol: every message that crosses a ZeroMQ socket between the HQ and its
//! turrets, with its exact encoding and a lenient-but-typed decoder. No sockets live here.
//!
//! # Layout
//!
//! `command` owns the HQ → turret commands (`status_request`, `set_transaction_context`, `start`,
//! `stop`, `kill`): one frame, an empty channel, one space, compact JSON with the keys `command`
//! then `msg` — byte-exact with OCT 0.4.12. It also owns [`Announce`], the `msg` of a
//! `status_request` in which our HQ announces the extensions it speaks (OCT turrets ignore it).
//!
//! `message` owns what turrets push to the HQ: [`Status`] and [`TestResult`], classified by their
//! keys (never by substring), decoded leniently where OCT peers vary (JSON whitespace, numbers as
//! ints, floats or numeric strings, a missing `turret_name`, the case of a status) and strictly
//! elsewhere, with a [`DecodeError`] that says what was wrong. Encoding follows Python's
//! `json.dumps` separators so that our turret's frames look like oct-turrets' frames.
//!
//! `seal` owns secure mode (DESIGN §8, docs/security.md): the shared [`Secret`], the HQ's
//! [`Session`], and the [`Sealer`]/[`Opener`] pair that wraps any frame in ChaCha20-Poly1305
//! with HKDF keys per direction, session and sender and counter nonces, and tells unsealed,
//! tampered, replayed and stale frames apart. It knows bytes, not messages.
//!
//! `shape` owns the load shape a turret entry states (constant `cannons` and `rampup`, `stages`,
//! cycles `"10:20:30"`, `iterations`), parsed the same by the HQ, which checks it and times the
//! run by it, and by the turret, which runs it.
//!
//! `arrival` owns the open model: the `arrival_rate` a turret entry (or the global `load`)
//! states, and the [`Schedule`] arithmetic of when each iteration is due.
//!
//! `data` owns the test data (feeders) a turret entry states and the CSV files they name, read
//! the same by the HQ (which checks them) and the turret (which serves them to canons).
//!
//! `aggregate` owns extension `aggregate`: one [`Aggregate`] per turret and interval (HDR
//! histogram deltas in V2 serialization, exact moments, per-second counts, errors by message)
//! and the [`Aggregator`] that folds a turret's results into them.
//!
//! `packed` owns extension `packed`: a batch of one turret's results as a compact binary frame
//! ([`Packed`]), spoken only between our turret and our HQ.
//!
//! `pyjson` owns that Python-style JSON formatter. `light` owns the borrowed, allocation-light
//! JSON value the decoder reads into before it checks types field by field.

pub mod aggregate;
pub mod arrival;
mod command;
pub mod data;
mod light;
mod message;
pub mod packed;
mod pyjson;
mod seal;
mod shape;

pub use aggregate::{Aggregate, Aggregator};
pub use arrival::{Arrival, Schedule};
pub use command::{Announce, Command, CommandFrame, LoadTargets};
pub use message::{
    split_batch, DecodeError, Heartbeat, Message, Status, TestResult, Timers, TurretState,
};
pub use packed::{decode_packed, encode_packed, is_packed, Packed};
pub use seal::{Opener, Sealer, Secret, SecretError, Session, SEAL_OVERHEAD};
pub use shape::{Plan, Shape, ShapeError, Stage};

/// The version of our extensions to the OCT protocol, announced by the HQ in `status_request`.
///
/// NOTE: a turret uses an extension only after the HQ announced it (DESIGN §3), so that the real
/// OCT HQ, which announces nothing, only ever sees OCT's own messages.
pub const PROTOCOL_VERSION: u32 = 1;

/// Extension: results carry a per-turret sequence number `seq` and the final `ready` status
/// carries `results_sent`, so the HQ can count lost results.
pub const EXT_SEQ: &str = "seq";

/// Extension: a turret may send many results in one frame, a JSON array of result frames
/// (`[{…}, {…}]`), so that a fast turret pays one ZeroMQ message per batch, not per result.
pub const EXT_BATCH: &str = "batch";

/// Extension: turrets send a [`Heartbeat`] every `heartbeat_ms` (announced with it), and stop
/// firing when their HQ has been silent for `hq_timeout_ms`.
pub const EXT_HEARTBEAT: &str = "heartbeat";

/// Extension: the HQ splits a global `load` shape across turrets and sends their parts as
/// absolute, generation-numbered [`LoadTargets`] (command `load`, one frame for all, by uuid);
/// a turret that follows them says `load_generation` in its heartbeats. In open-model tests,
/// results carry their schedule `lag`, heartbeats the rate and the iterations started and
/// dropped, and the final `ready` the exact counts.
pub const EXT_LOAD: &str = "load";

/// Extension: results carry the script's `checks` (name → `{"passed": n, "failed": n}`) and `counters`
/// (name → amount) of the iteration; the HQ totals them in our own tables.
pub const EXT_CHECKS: &str = "checks";

/// The largest frame either side accepts (`ZMQ_MAXMSGSIZE`): a hostile peer cannot make the
/// HQ or a turret buffer more than this per message. Our turrets keep their batches far below.
pub const MAX_FRAME_BYTES: i64 = 4 << 20;

/// Extension: with [`EXT_BATCH`], a turret sends its batches as [`Packed`] binary frames
/// instead of JSON arrays: the turret named once, each result in a few dozen bytes, for the
/// HQ's decoding and the turret's encoding to cost a fraction of JSON's.
pub const EXT_PACKED: &str = "packed";

/// Results a turret puts in one batch frame at most.
pub const BATCH_MAX: usize = 256;

/// The turret name the HQ stores when a result has none (what oct-turrets 0.2.8 sends).
pub const NONAME: &str = "Noname";

/// Extension: with `"results": "aggregate"` in config.json the HQ announces it with
/// `aggregate_secs`; turrets then send one [`Aggregate`] per interval instead of one result per
/// transaction (and both with `aggregate_raw`, `"results": "both"`).
pub const EXT_AGGREGATE: &str = "aggregate";
