//! The running shape: the global `load` sent to the turrets that follow it, and what the
//! progress line says of canons, stages and arrivals.
//!
//! Every [`EVERY`] the HQ computes the global target, splits it by weight over the turrets that
//! follow `load` (their heartbeats say so) and are neither lost nor out of the test, and sends
//! every part in one frame (by uuid, on the empty channel) with the next generation; turrets that do not follow
//! (OCT's) run their `cannons` all along, and the followers share the rest. A turret that joins late, or is
//! lost, changes the split at the next pass; a lost or reordered command is repaired by the
//! next one, and never adds to the load, since each says the whole target.

use std::time::{Duration, Instant};

use protocol::{Command, LoadTargets, TurretState};

use super::{Hq, Phase, RunError};
use crate::load::Share;

/// How often the global shape is sampled and sent (the issue asks for at least every 100 ms).
pub(super) const EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
pub(super) struct Steering {
    generation: u64,
    next: Option<Instant>,
    /// A total the dashboard set, in place of the shape's from then on.
    pub(super) manual: Option<Share>,
}

impl Hq<'_> {
    /// Sends each following turret its part of the global shape, every [`EVERY`].
    pub(super) fn steer(&mut self) -> Result<(), RunError> {
        let Some(load) = &self.opts.config.load else {
            return Ok(());
        };
        let now = Instant::now();
        if self.phase != Phase::Running || self.steering.next.is_some_and(|at| now < at) {
            return Ok(());
        }
        self.steering.next = Some(now + EVERY);
        let secs = self.run_started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let firing = |t: &super::Turret| {
            t.started
                && !t.health.is_lost()
                && !matches!(t.status.status, TurretState::Aborted | TurretState::Killed)
        };
        let followers: Vec<usize> = (0..self.turrets.len())
            .filter(|&i| firing(&self.turrets[i]) && self.turrets[i].follows_load)
            .collect();
        // OCT's turrets run their `cannons` whatever the shape says.
        let fixed: u64 = self
            .turrets
            .iter()
            .filter(|t| firing(t) && !t.follows_load)
            .map(|t| t.status.cannons)
            .sum();
        let weights: Vec<f64> = followers
            .iter()
            .map(|&i| {
                let name = &self.turrets[i].status.turret;
                let entries = &self.opts.config.turrets;
                entries
                    .iter()
                    .find(|e| &e.name == name)
                    .map_or(1.0, |e| e.weight)
            })
            .collect();
        let shares = match self.steering.manual {
            None => load.split(secs, &weights, fixed),
            Some(Share::Cannons(n)) => crate::load::split_whole(n.saturating_sub(fixed), &weights)
                .into_iter()
                .map(Share::Cannons)
                .collect(),
            Some(Share::Rate(r)) => {
                let total: f64 = weights.iter().sum();
                weights
                    .iter()
                    .map(|w| Share::Rate(if total > 0.0 { r * w / total } else { 0.0 }))
                    .collect()
            }
        };
        self.steering.generation += 1;
        let targets = followers
            .into_iter()
            .zip(shares)
            .map(|(i, share)| {
                let t = match share {
                    Share::Cannons(n) => n as f64,
                    Share::Rate(r) => r,
                };
                (self.turrets[i].status.uuid.clone(), t)
            })
            .collect();
        self.sockets.broadcast(&Command::Load(LoadTargets {
            generation: self.steering.generation,
            rates: load.open(),
            targets,
        }))?;
        Ok(())
    }

    /// ` · canons 8/10 · stage 2/3 · arrivals 200/s, dropped 4`: canons active against what the
    /// shapes ask for and the open model's rate and drops (from the last heartbeats), and the
    /// stage of the global shape (else of the first turret with stages).
    pub(super) fn load_line(&self, secs: f64) -> String {
        let mut line = String::new();
        let watched: Vec<_> = self
            .turrets
            .iter()
            .filter(|t| t.health.heartbeats > 0)
            .collect();
        if !watched.is_empty() {
            let active: u64 = watched.iter().map(|t| t.health.cannons_active).sum();
            let wanted: u64 = watched
                .iter()
                .map(|t| t.cannons_target.unwrap_or(t.health.cannons_active))
                .sum();
            line.push_str(&format!(" · canons {active}/{wanted}"));
        }
        let c = &self.opts.config;
        let shape = c.load.as_ref().map(|l| &l.plan.shape).or_else(|| {
            c.turrets
                .iter()
                .map(|t| &t.plan.shape)
                .find(|s| s.stage_at(0.0).is_some())
        });
        if let Some((stage, stages)) = shape.and_then(|s| s.stage_at(secs)) {
            line.push_str(&format!(" · stage {stage}/{stages}"));
        }
        let arrivals: Vec<_> = watched.iter().filter_map(|t| t.arrivals).collect();
        if !arrivals.is_empty() {
            let rate: f64 = arrivals.iter().map(|a| a.rate).sum();
            let dropped: u64 = arrivals.iter().map(|a| a.dropped).sum();
            line.push_str(&format!(" · arrivals {rate:.0}/s, dropped {dropped}"));
        }
        line
    }
}
