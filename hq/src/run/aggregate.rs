//! Extension `aggregate`: what one turret's interval changes at the HQ — the run's counts, the
//! turret's, the checks and counters, the live gate and the dashboard — and the store's rows.

use protocol::aggregate::Kind;
use protocol::Aggregate;

use super::{Hq, RunError};
use crate::store::Op;

impl Hq<'_> {
    pub(super) fn on_aggregate(&mut self, a: Aggregate) -> Result<(), RunError> {
        // `"results": "both"`: the raw results count the run; the aggregates are stored beside
        // them, to be checked against them.
        let counts = self.opts.config.results != crate::config::ResultsMode::Both;
        let web = self.opts.web.is_some();
        if counts && (self.live.is_some() || web) {
            // Decoded once for the live gate and the dashboard; a histogram that does not
            // decode leaves their percentiles to the others, its counts still count.
            let hists: Vec<_> = a
                .series
                .iter()
                .map(|s| {
                    s.histogram()
                        .unwrap_or_else(|_| protocol::aggregate::histogram())
                })
                .collect();
            if let Some(live) = &mut self.live {
                live.add_aggregate(&a, &hists);
            }
            if web {
                self.web.add_aggregate(&a, &hists);
            }
        }
        if let Some(i) = self.index.uuid(&a.turret_uuid) {
            let t = &mut self.turrets[i];
            t.intervals_received += 1;
            if counts {
                t.received += a.transactions();
            }
            self.heard(i);
        }
        if counts {
            self.summary.transactions += a.transactions();
            self.summary.errors += a.failed();
            for s in a.series.iter().filter(|s| s.kind == Kind::Timer) {
                *self.timer_counts.entry(s.name.clone()).or_default() += s.count;
            }
            for (name, passed, failed) in &a.checks {
                let c = self.checks.entry(name.clone()).or_default();
                c.0 += passed;
                c.1 += failed;
            }
            for (name, second, x) in &a.counters {
                *self.counters.entry((name.clone(), *second)).or_default() += x;
            }
        }
        self.writer.send(Op::Aggregate(Box::new(a)))?;
        Ok(())
    }
}
