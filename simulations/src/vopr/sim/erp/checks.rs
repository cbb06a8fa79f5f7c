//! The checks on the ERP's side: the snapshot store against the book, a finished run's
//! report against the model's prediction (exact) or the facts logged (within bounds), the
//! counts a run leaves, and the drifts held for review.

use super::{Predicted, Running};
use crate::vopr::sim::{Check, Sim, fail};
use inv_engine::reconcile::{ReconciliationCounts, Report, SnapshotStore};
use inv_engine::{Fact, Location, Lsn};
use std::collections::{BTreeMap, BTreeSet};

impl Sim {
    /// The store's record of `id` equals the book's.
    pub(super) fn check_stored(&self, id: &str) -> Check {
        let stored = self
            .store
            .get(id)
            .or_else(|e| fail("reconciliation", e.to_string()))?;
        let expected = self.book.get(id).map(|b| &b.stored);
        if stored.as_ref() != expected {
            return fail(
                "reconciliation",
                format!("snapshot {id}: stored {stored:?}\n  expected {expected:?}"),
            );
        }
        Ok(())
    }

    /// The report of `running` as the model predicts it from the state now.
    pub(super) fn predict_report(&self, running: &Running) -> Predicted {
        let mut counts = ReconciliationCounts::default();
        let mut lines = Vec::new();
        let compared = running
            .rows
            .iter()
            .map(|(p, (erp, safety))| (p, *erp, *safety))
            .chain(running.omitted_at_start.iter().map(|p| (p, 0, None)));
        for (p, erp, safety) in compared {
            let current = self.model.positions.get(p).map_or(0, |m| m.safety_stock);
            if safety.is_some_and(|q| q as i64 != current) {
                counts.safety_stock_set += 1;
            }
            let tolerance = running.policy.for_location(&Location::from(p.1.as_str()));
            let fact = self.model.reconcile_fact(
                &running.id,
                p,
                running.as_of_ms,
                erp,
                running.tap_from,
                tolerance,
            );
            counts.compared += 1;
            let Some(Fact::PositionReconciled {
                engine_on_hand_at,
                drift,
                held,
                superseded,
                ..
            }) = fact
            else {
                counts.matched += 1;
                continue;
            };
            if superseded.is_some_and(|s| s.as_str() != running.id) {
                counts.superseded += 1;
            }
            if drift == 0 {
                counts.matched += 1;
                continue;
            }
            counts.drifted += 1;
            counts.drift_abs_total += drift.unsigned_abs();
            if held {
                counts.held += 1;
            } else {
                counts.applied += 1;
            }
            lines.push((p.clone(), erp, engine_on_hand_at, drift, held));
        }
        counts.omitted = running.omitted_at_start.len() as u64;
        (counts, lines)
    }

    /// A dry run changed nothing, and reported what the model predicted.
    pub(super) fn check_dry_run(&self, running: &Running, report: &Report) -> Check {
        // With other ops between its steps (a window the shrinker, or a refused run around
        // it, left open), those ops change the ledger; the run's own steps logging nothing is
        // checked step by step (`accept_run_events`).
        if !running.interleaved
            && (self.engine.head_lsn().0 != running.head_before
                || self.engine.digest() != running.digest_before)
        {
            return fail(
                "reconciliation",
                format!(
                    "dry run of {}: head {} -> {}, digest {:#x} -> {:#x}, interleaved {}",
                    running.id,
                    running.head_before,
                    self.engine.head_lsn().0,
                    running.digest_before,
                    self.engine.digest(),
                    running.interleaved
                ),
            );
        }
        if !report.dry_run {
            return fail("reconciliation", "a dry run's report is not marked dry");
        }
        if !running.interleaved {
            self.check_predicted(running, report)?;
        }
        Ok(())
    }

    fn check_predicted(&self, running: &Running, report: &Report) -> Check {
        let (counts, mut lines) = running.predicted.clone();
        if report.counts != counts {
            return fail(
                "reconciliation",
                format!(
                    "{} report counts {:?}\n  the model predicts {counts:?}",
                    running.id, report.counts
                ),
            );
        }
        let mut listed: Vec<_> = report
            .largest
            .iter()
            .map(|l| {
                (
                    (l.sku.to_string(), l.location.to_string()),
                    l.erp_on_hand,
                    l.engine_on_hand_at,
                    l.drift,
                    l.held,
                )
            })
            .collect();
        listed.sort();
        lines.sort_by_key(|l| (std::cmp::Reverse(l.3.unsigned_abs()), l.0.clone()));
        lines.truncate(inv_engine::reconcile::report::REPORT_DRIFTS_LISTED);
        lines.sort();
        if listed != lines {
            return fail(
                "reconciliation",
                format!("{} lists {listed:?}\n  the model {lines:?}", running.id),
            );
        }
        Ok(())
    }

    /// The report of a run that applied: its counts are those of the corrections logged for
    /// the snapshot (in this attempt and any a crash cut short).
    pub(super) fn check_report(&self, running: &Running, report: &Report) -> Check {
        if report.dry_run || report.tap_from_lsn != Lsn(running.tap_from) {
            return fail(
                "reconciliation",
                format!("report {report:?}, tap from {}", running.tap_from),
            );
        }
        if !running.interleaved && !running.resumed {
            return self.check_predicted(running, report);
        }
        let mut facts = BTreeMap::new();
        for (_, fact) in &self.model.history {
            if let Fact::PositionReconciled {
                reconcile: r,
                drift,
                held,
                ..
            } = fact
                && r.snapshot_id.as_str() == running.id
            {
                facts.insert((r.sku.to_string(), r.location.to_string()), (*drift, *held));
            }
        }
        let c = &report.counts;
        let drifted: Vec<_> = facts.values().filter(|(d, _)| *d != 0).collect();
        let held = drifted.iter().filter(|(_, h)| *h).count() as u64;
        let superseded = running
            .facts
            .iter()
            .filter(|f| {
                matches!(f, Fact::PositionReconciled { superseded: Some(s), .. }
                    if s.as_str() != running.id)
            })
            .count() as u64;
        let omitted_now = self
            .model
            .positions
            .keys()
            .filter(|p| {
                running.full
                    && !running.rows.contains_key(*p)
                    && running.scope.contains(&Location::from(p.1.as_str()))
            })
            .count() as u64;
        let with_safety = running.rows.values().filter(|(_, s)| s.is_some()).count() as u64;
        let ok = c.compared == running.rows.len() as u64 + c.omitted
            && (running.omitted_at_start.len() as u64..=omitted_now).contains(&c.omitted)
            && c.drifted == drifted.len() as u64
            && c.held == held
            && c.applied == c.drifted - held
            && c.matched == c.compared - c.drifted
            && c.drift_abs_total == drifted.iter().map(|(d, _)| d.unsigned_abs()).sum::<u64>()
            && c.superseded == superseded
            && (running.safety_set..=with_safety).contains(&c.safety_stock_set)
            && report.largest.len()
                == (c.drifted as usize).min(inv_engine::reconcile::report::REPORT_DRIFTS_LISTED);
        if !ok {
            return fail(
                "reconciliation",
                format!(
                    "{} report counts {c:?}; corrections {facts:?}, {} rows, omitted {}..={}, \
                     superseded {superseded}, safety stock set {}..={with_safety}",
                    running.id,
                    running.rows.len(),
                    running.omitted_at_start.len(),
                    omitted_now,
                    running.safety_set
                ),
            );
        }
        Ok(())
    }

    /// After a run: every position it compared counts, as of the snapshot's time, what the
    /// ERP said (a held drift: once applied), unless a change dated at or before that time
    /// arrived after the run began, or a reviewer dismissed the drift.
    pub(super) fn check_counts_as_erp_said(&self, running: &Running) -> Check {
        let first_tap_from = self
            .book
            .get(&running.id)
            .and_then(|b| b.first_tap_from)
            .unwrap_or(running.tap_from);
        let compared = running
            .rows
            .iter()
            .map(|(p, (erp, _))| (p, *erp))
            .chain(running.omitted_at_start.iter().map(|p| (p, 0)));
        for (p, erp) in compared {
            if self
                .model
                .moved_at_or_before(p, running.as_of_ms, first_tap_from)
            {
                continue;
            }
            let counted = self.model.on_hand_at(p, running.as_of_ms).0;
            let pending = match self.model.held.get(p) {
                Some(held) if held.snapshot_id == running.id => held.drift,
                Some(_) => continue,
                None => 0,
            };
            let dismissed = self.model.history.iter().any(|(_, f)| {
                matches!(f, Fact::DriftResolved { resolve, .. }
                    if resolve.snapshot_id.as_str() == running.id
                        && resolve.sku.as_str() == p.0
                        && resolve.location.as_str() == p.1)
            });
            if counted + pending != erp && !dismissed {
                return fail(
                    "reconciliation",
                    format!(
                        "after reconciling {}: {p:?} counts {counted} as of {} (held {pending}), \
                         the ERP counted {erp}",
                        running.id, running.as_of_ms
                    ),
                );
            }
        }
        Ok(())
    }

    /// The drifts held for review are the model's.
    pub(in crate::vopr::sim) fn check_held_drifts(&self) -> Check {
        let engine: Vec<_> = self
            .engine
            .held_drifts(None)
            .into_iter()
            .map(|h| {
                (
                    (h.sku.to_string(), h.location.to_string()),
                    h.snapshot_id.to_string(),
                    h.as_of_ms,
                    h.erp_on_hand,
                    h.engine_on_hand_at,
                    h.drift,
                    h.lsn.0,
                )
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let model: Vec<_> = self
            .model
            .held
            .iter()
            .map(|(p, h)| {
                (
                    p.clone(),
                    h.snapshot_id.clone(),
                    h.as_of_ms,
                    h.erp_on_hand,
                    h.engine_on_hand_at,
                    h.drift,
                    h.lsn,
                )
            })
            .collect();
        if engine != model {
            return fail(
                "held_drifts",
                format!("engine {engine:?}\n  model {model:?}"),
            );
        }
        Ok(())
    }
}
