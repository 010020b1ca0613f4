//! Python canons in separate worker processes really run in parallel. In a test binary of its
//! own, so that no other test competes for the cores it measures.

mod util;

use serde_json::json;
use util::*;

/// A CPU-bound OCT script: throughput with 8 canons over 1 canon shows whether canons really
/// run in parallel (they do in worker processes; OCT's threads share one GIL).
#[test]
fn python_canons_run_in_parallel_processes() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let script = r#"
from oct_turrets.base import BaseTransaction
from oct_turrets.tools import CustomTimer


class Transaction(BaseTransaction):
    def run(self):
        with CustomTimer(self, 'spin'):
            sum(i * i for i in range(400000))
"#;
    let rate = |cannons: u64| -> f64 {
        let mut c = config(
            5.0,
            1,
            json!([{"name": "cpu", "cannons": cannons, "script": "test_scripts/cpu.py"}]),
        );
        c["progress_bar"] = json!(false);
        let p = Project::new(c);
        p.write("test_scripts/cpu.py", script);
        let (status, text) = p.run_local();
        assert!(status.success(), "{text}");
        let n = count_rows(
            &p.db(),
            "SELECT count(*) FROM result WHERE error = '' AND custom_timers LIKE '{\"spin\":%' AND elapsed > 1.0",
        );
        assert!(n > 0, "{text}");
        // The first second (8 interpreters starting) is left out.
        n as f64 / 4.0
    };
    let one = rate(1);
    let eight = rate(8);
    let speedup = eight / one;
    // With 2 cores a shared GIL gives ~1x; separate processes give close to the core count.
    // Measured here: 2 canons 1.6x, 8 canons 1.5x one canon on this 2-vCPU VM.
    let want = 1.0 + 0.3 * (cores.min(8) as f64 - 1.0);
    assert!(
        speedup >= want,
        "8 canons ran {speedup:.2}x one canon ({eight:.1}/s vs {one:.1}/s) on {cores} cores"
    );
}
