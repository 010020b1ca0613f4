//! A global shape: `load` at the top level of config.json holds one shape (`cannons`,
//! `stages`, cycles or `arrival_rate`) for the whole test, and the HQ splits it across the
//! turrets that follow it, by their `weight` (default 1). Pure arithmetic: `run::load` sends
//! what it computes.
//!
//! Each turret's packed config gets `follow_load` (`{"model": "closed" | "open", "pool": n}`):
//! our turrets then run what the HQ's `load` commands say. It also gets `cannons`, its share of
//! the most the shape asks for, which is all an OCT turret (no extension `load`) reads: it runs
//! that many for the whole test, and in a closed-model shape the followers share what the
//! target asks beyond them.

use serde_json::{json, Map, Value};

use protocol::{Plan, Shape, ShapeError};

/// Keys of a turret entry that state a shape of its own.
pub const SHAPE_KEYS: &[&str] = &[
    "cannons",
    "canons",
    "stages",
    "cycle_time",
    "iterations",
    "arrival_rate",
];

#[derive(Debug, Clone, PartialEq)]
pub struct GlobalLoad {
    pub plan: Plan,
}

/// What one following turret is told now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Share {
    Cannons(u64),
    Rate(f64),
}

impl GlobalLoad {
    /// Reads the `load` object; cycles without `cycle_time` split `run_time_secs`.
    pub fn parse(v: &Value, run_time_secs: Option<f64>) -> Result<GlobalLoad, ShapeError> {
        let Value::Object(obj) = v else {
            return Err(ShapeError {
                key: "load".into(),
                why: "must be an object holding one shape (cannons, stages or arrival_rate)".into(),
            });
        };
        if obj.contains_key("iterations") {
            return Err(ShapeError {
                key: "load.iterations".into(),
                why: "belongs to turret entries: a global shape is split in canons or rate, not iterations".into(),
            });
        }
        Ok(GlobalLoad {
            plan: Plan::from_entry(obj, "load", run_time_secs)?,
        })
    }

    pub fn open(&self) -> bool {
        matches!(self.plan.shape, Shape::Arrival(_))
    }

    pub fn duration_secs(&self) -> Option<f64> {
        self.plan.shape.duration_secs()
    }

    /// The keys a turret with `share` (0 to 1) of the weight gets in its packed config.
    pub fn entry_keys(&self, share: f64) -> Map<String, Value> {
        let (cannons, follow) = match &self.plan.shape {
            Shape::Arrival(a) => {
                let pool = a.scaled(share).max_cannons;
                (pool, json!({"model": "open", "pool": pool}))
            }
            shape => {
                // Our turrets keep a pool of the whole: the HQ may give one all of it when the
                // others are lost.
                let most = shape.pool();
                let static_share = ((most as f64 * share).round() as u64).max(1);
                (static_share, json!({"model": "closed", "pool": most}))
            }
        };
        let mut out = Map::new();
        out.insert("cannons".into(), cannons.into());
        out.insert("follow_load".into(), follow);
        out
    }

    /// What each following turret (by its weight) gets `secs` after the start; `fixed`
    /// canons run in turrets that do not follow (OCT's: their `cannons`, all along), and the
    /// followers share what the closed-model target asks beyond them.
    pub fn split(&self, secs: f64, weights: &[f64], fixed: u64) -> Vec<Share> {
        match &self.plan.shape {
            Shape::Arrival(a) => {
                let rate = a.schedule().rate_at(secs);
                let total: f64 = weights.iter().sum();
                weights
                    .iter()
                    .map(|w| Share::Rate(if total > 0.0 { rate * w / total } else { 0.0 }))
                    .collect()
            }
            shape => split_whole(shape.target_at(secs).saturating_sub(fixed), weights)
                .into_iter()
                .map(Share::Cannons)
                .collect(),
        }
    }
}

/// `total` split by `weights` in whole parts that sum to it exactly (largest remainder; ties
/// to the earlier turret).
pub fn split_whole(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty() || sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut parts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let mut left = total.saturating_sub(parts.iter().sum());
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for i in order {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_splits_sum_to_the_total() {
        assert_eq!(split_whole(10, &[1.0, 1.0]), [5, 5]);
        assert_eq!(split_whole(7, &[1.0, 1.0]), [4, 3]);
        assert_eq!(split_whole(10, &[3.0, 1.0]), [8, 2]);
        assert_eq!(split_whole(1, &[1.0, 1.0, 1.0]), [1, 0, 0]);
        assert_eq!(split_whole(5, &[]), Vec::<u64>::new());
        for total in 0..50 {
            let parts = split_whole(total, &[1.0, 2.5, 0.5]);
            assert_eq!(parts.iter().sum::<u64>(), total);
        }
    }

    #[test]
    fn a_global_shape_splits_by_weight_and_says_what_turrets_pack() {
        let g = GlobalLoad::parse(
            &json!({"stages": [{"duration": 4, "target": 20}, {"duration": 4, "target": 0}]}),
            None,
        )
        .unwrap();
        assert_eq!(g.duration_secs(), Some(8.0));
        assert_eq!(
            g.split(2.0, &[1.0, 1.0], 0),
            [Share::Cannons(5), Share::Cannons(5)]
        );
        // An OCT turret running 4 canons of its own: the followers share the other 6.
        assert_eq!(
            g.split(2.0, &[1.0, 1.0], 4),
            [Share::Cannons(3), Share::Cannons(3)]
        );
        assert_eq!(g.split(0.3, &[1.0], 4), [Share::Cannons(0)]);
        let keys = g.entry_keys(0.5);
        assert_eq!(keys["cannons"], 10);
        assert_eq!(keys["follow_load"], json!({"model": "closed", "pool": 20}));
        let open = GlobalLoad::parse(
            &json!({"arrival_rate": {"rate": 300, "max_cannons": 30}}),
            None,
        )
        .unwrap();
        assert_eq!(
            open.split(1.0, &[2.0, 1.0], 0),
            [Share::Rate(200.0), Share::Rate(100.0)]
        );
        assert_eq!(
            open.entry_keys(1.0 / 3.0)["follow_load"],
            json!({"model": "open", "pool": 10})
        );
        let e = GlobalLoad::parse(&json!({"cannons": 4, "iterations": 3}), None).unwrap_err();
        assert_eq!(e.key, "load.iterations");
    }
}
