use super::*;

fn opts(pairs: &[(&str, &str, &str)]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut m: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (b, k, v) in pairs {
        m.entry(b.to_string())
            .or_default()
            .insert(k.to_string(), v.to_string());
    }
    m
}

#[test]
fn a_mix_draws_by_percentage_and_the_rest_is_dummy() {
    let m = Mix::parse("5:error,10:delay", &opts(&[("delay", "sleep", "0.25")])).unwrap();
    assert_eq!(m.pick(0).name(), "error");
    assert_eq!(m.pick(4).name(), "error");
    assert_eq!(
        m.pick(5),
        &Behavior::Delay {
            sleep: Duration::from_millis(250),
            before: true
        }
    );
    assert_eq!(m.pick(15).name(), "dummy");
    assert_eq!(m.name(), "5:error,10:delay");
    assert_eq!(
        Mix::parse("delay", &BTreeMap::new()).unwrap().name(),
        "delay"
    );
    for name in NAMES {
        let b = Behavior::build(name, &BTreeMap::new()).unwrap();
        assert_eq!(b.name(), name);
        assert_eq!(b.json()["name"], name);
    }
}

#[test]
fn error_counts_its_warmup_and_transient_its_agitation() {
    let m = Mix::parse("error", &opts(&[("error", "warmup", "2")])).unwrap();
    let fails: Vec<bool> = (0..4)
        .map(|_| matches!(m.draw(0), Drawn::Fail { .. }))
        .collect();
    assert_eq!(fails, [false, false, true, true]);
    let m = Mix::parse("transient", &opts(&[("transient", "agitate", "3")])).unwrap();
    let fails: Vec<bool> = (0..5)
        .map(|_| matches!(m.draw(0), Drawn::Fail { .. }))
        .collect();
    assert_eq!(fails, [true, true, true, false, false]);
}

#[test]
fn toxiproxy_faults_take_its_units_and_a_stream() {
    let b = Behavior::build(
        "latency",
        &[("latency", "100"), ("jitter", "10"), ("stream", "upstream")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .unwrap();
    assert_eq!(
        b,
        Behavior::Latency {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(10),
            stream: Stream::Up
        }
    );
    let m = Mix::parse("bandwidth", &opts(&[("bandwidth", "rate", "64")])).unwrap();
    assert_eq!(
        m.pick(0),
        &Behavior::Bandwidth {
            rate: 64_000,
            stream: Stream::Down
        }
    );
    let e = Mix::parse("limit_data", &opts(&[("limit_data", "stream", "sideways")])).unwrap_err();
    assert!(
        e.0.contains("`stream` must be upstream, downstream or both"),
        "{e}"
    );
}

#[test]
fn bad_specs_name_what_is_wrong() {
    for (spec, o, want) in [
        ("60:error,50:delay", opts(&[]), "add up to 110, over 100"),
        (
            "5:boom",
            opts(&[]),
            "unknown behavior \"boom\"; the behaviors are abort, bandwidth, blackout",
        ),
        ("x:error", opts(&[]), "\"x\" is not a whole percentage"),
        (
            "10:delay",
            opts(&[("delay", "slep", "1")]),
            "delay: no option \"slep\" (it has sleep, before)",
        ),
        (
            "10:delay",
            opts(&[("delay", "sleep", "soon")]),
            "delay: `sleep` must be seconds",
        ),
        (
            "10:delay",
            opts(&[("error", "warmup", "2")]),
            "\"error\" is not in --behavior",
        ),
    ] {
        let e = Mix::parse(spec, &o).unwrap_err().0;
        assert!(e.contains(want), "{spec}: {e}");
    }
}
