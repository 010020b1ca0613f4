use proptest::prelude::*;

use super::*;

fn result(seq: u64) -> TestResult {
    TestResult {
        elapsed: 1.25 + seq as f64,
        epoch: 1_764_000_000.5 + seq as f64,
        scriptrun_time: 0.000_123,
        seq: Some(seq),
        ..TestResult::default()
    }
}

fn packed(results: &[TestResult]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_packed("5a1e-uuid", Some("nav"), results, &mut out);
    out
}

#[test]
fn a_batch_reads_back_as_it_was_sent() {
    let mut rich = result(3);
    rich.error = "GET http://x/: refused".into();
    rich.lag = Some(0.002);
    rich.custom_timers = vec![("login".into(), 0.1), ("search".into(), 0.2)];
    rich.checks = vec![("status is 200".into(), 1, 2)];
    rich.counters = vec![("bytes".into(), 512.0)];
    let mut again = rich.clone();
    again.seq = Some(4);
    let results = vec![result(1), result(2), rich, again, result(9)];
    let frame = packed(&results);
    assert!(is_packed(&frame));
    let back = decode_packed(&frame).unwrap().unwrap();
    assert_eq!(back.turret_uuid, "5a1e-uuid");
    assert_eq!(back.turret_name.as_deref(), Some("nav"));
    assert_eq!(back.results, results);
    // The repeated error and timer names are written once: the second rich result is small.
    let alone = packed(&results[..3]).len();
    assert!(frame.len() - alone < 120, "{} bytes", frame.len() - alone);
}

#[test]
fn a_plain_result_takes_a_few_dozen_bytes() {
    let results: Vec<_> = (1..=256).map(result).collect();
    let frame = packed(&results);
    // 1 byte of seq, 3 floats, flags, an empty error.
    assert!(frame.len() < 27 * 256 + 40, "{} bytes", frame.len());
}

#[test]
fn json_is_not_packed() {
    assert!(decode_packed(br#"[{"elapsed": 1}]"#).is_none());
    assert!(decode_packed(b"").is_none());
}

#[test]
fn bad_frames_say_what_is_wrong() {
    let frame = packed(&[result(1)]);
    let err = |f: &[u8]| decode_packed(f).unwrap().unwrap_err();
    assert_eq!(
        err(&frame[..frame.len() - 1]),
        DecodeError::Packed("truncated")
    );
    let mut longer = frame.clone();
    longer.push(0);
    assert_eq!(err(&longer), DecodeError::Packed("trailing bytes"));
    let mut nan = Vec::new();
    let mut r = result(1);
    r.elapsed = f64::NAN;
    encode_packed("u", None, &[r], &mut nan);
    assert_eq!(
        err(&nan),
        DecodeError::Packed("a number that is not finite")
    );
    // A string index that no string defined.
    let mut f = PACKED_MAGIC.to_vec();
    f.push(4);
    assert_eq!(
        err(&f),
        DecodeError::Packed("string index out of the table")
    );
    // A count far beyond the bytes sent reserves nothing and fails as truncated.
    let mut f = PACKED_MAGIC.to_vec();
    f.extend_from_slice(&[0, 0, 0xff, 0xff, 0x03]);
    assert_eq!(err(&f), DecodeError::Packed("truncated"));
    let mut f = PACKED_MAGIC.to_vec();
    f.extend_from_slice(&[0, 0, 0xff, 0xff, 0xff, 0x0f]);
    assert_eq!(
        err(&f),
        DecodeError::Packed("more results than a frame may hold")
    );
    assert_eq!(err(&f).kind(), "bad_packed");
}

proptest! {
    /// Whatever bytes follow the magic, decoding answers (never panics, never allocates more
    /// than the frame's size suggests).
    #[test]
    fn mangled_frames_never_panic(
        keep in 0usize..400,
        flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..8),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut r = result(7);
        r.custom_timers = vec![("a".into(), 1.0)];
        r.checks = vec![("c".into(), 1, 0)];
        r.counters = vec![("n".into(), 2.0)];
        r.error = "boom".into();
        let mut frame = packed(&[result(1), r.clone(), r]);
        frame.truncate(keep.max(4));
        for (at, b) in flips {
            if at >= 4 && at < frame.len() {
                frame[at] = b;
            }
        }
        frame.extend_from_slice(&noise);
        let _ = decode_packed(&frame);
    }

    #[test]
    fn any_results_round_trip(
        seqs in proptest::collection::vec(1u64..1_000_000, 0..40),
        error in "[a-z é]{0,12}",
        timer in proptest::option::of(-1e9f64..1e9),
    ) {
        let mut seq = 0;
        let results: Vec<_> = seqs
            .iter()
            .map(|d| {
                seq += d;
                let mut r = result(seq);
                r.error = error.clone();
                if let Some(t) = timer {
                    r.custom_timers = vec![(error.clone() + "t", t)];
                }
                r
            })
            .collect();
        let back = decode_packed(&packed(&results)).unwrap().unwrap();
        prop_assert_eq!(back.results, results);
    }
}
