//! The ERP's pushes: a snapshot streamed as a client would (header, chunks, summary), its
//! counts planned from the model's, the answer checked against the prediction, and the book
//! updated; and a staged snapshot pushed again, as it was or changed.

use super::Booked;
use crate::vopr::sim::{Check, Sim, fail};
use crate::vopr::workload::{AsOf, ErpCount, PlannedSnapshot, Repush};
use inv_engine::reconcile::snapshot::SNAPSHOT_AS_OF_SKEW_MS;
use inv_engine::reconcile::{
    PushError, Pushed, RowDigest, SnapshotHeader, SnapshotMode, SnapshotRow, SnapshotScope,
    SnapshotStatus, SnapshotStore, SnapshotSummary, StoredSnapshot,
};
use inv_engine::{Clock, Engine, Location, SnapshotId};
use std::sync::Arc;

fn scope_of(scope: &Option<Vec<String>>) -> SnapshotScope {
    match scope {
        None => SnapshotScope::All,
        Some(locations) => SnapshotScope::Locations(
            locations
                .iter()
                .map(|l| Location::from(l.as_str()))
                .collect(),
        ),
    }
}

fn summary_of(rows: &[SnapshotRow]) -> SnapshotSummary {
    let mut digest = RowDigest::default();
    rows.iter().for_each(|row| digest.add(row));
    digest.finish()
}

/// Pushes as a client streams: header, chunks of three rows, summary.
fn push(
    engine: &Engine,
    store: &dyn SnapshotStore,
    header: SnapshotHeader,
    rows: &[SnapshotRow],
    summary: &SnapshotSummary,
    now_ms: u64,
) -> Result<Pushed, PushError> {
    let history_start_ms = engine.history_start_ms(now_ms);
    let mut push = inv_engine::reconcile::Push::begin(store, header, now_ms, history_start_ms)?;
    for chunk in rows.chunks(3) {
        push.rows(chunk)?;
    }
    push.finish(summary, now_ms)
}

impl Sim {
    /// The ERP pushes a snapshot: its counts are the model's count at `as_of` (plus the
    /// planned drift); the answer is checked against the prediction.
    pub(in crate::vopr::sim) fn push_snapshot(&mut self, plan: &PlannedSnapshot) -> Check {
        let now_ms = self.clock.now_ms();
        let history_ms = self.config.history_ms;
        let as_of_ms = match plan.as_of {
            AsOf::Back(ms) => now_ms.saturating_sub(ms).max(1),
            AsOf::TooOld => now_ms.saturating_sub(history_ms + 600_000).max(1),
            AsOf::Ahead => now_ms + SNAPSHOT_AS_OF_SKEW_MS + 1_000,
        };
        let rows: Vec<SnapshotRow> = plan
            .rows
            .iter()
            .map(|r| {
                let p = (r.sku.clone(), r.location.clone());
                let counted = self.model.on_hand_at(&p, as_of_ms).0;
                let on_hand = match r.count {
                    ErpCount::Exact => counted,
                    ErpCount::Drift(d) => counted + d,
                };
                SnapshotRow {
                    sku: r.sku.as_str().into(),
                    location: r.location.as_str().into(),
                    on_hand: on_hand.max(0),
                    safety_stock: r.safety_stock,
                }
            })
            .collect();
        let header = SnapshotHeader {
            snapshot_id: SnapshotId::from(plan.id.as_str()),
            as_of_ms,
            scope: scope_of(&plan.scope),
            mode: if plan.full {
                SnapshotMode::Full
            } else {
                SnapshotMode::Delta
            },
            source: "vopr".into(),
        };
        let summary = summary_of(&rows);
        let refusal = if as_of_ms > now_ms + SNAPSHOT_AS_OF_SKEW_MS {
            Some("clock skew")
        } else if as_of_ms < now_ms.saturating_sub(history_ms) {
            Some("history window the engine keeps (24 h back from now")
        } else {
            None
        };
        let (engine, store) = (Arc::clone(&self.engine), Arc::clone(&self.store));
        if plan.broken_first && refusal.is_none() {
            // The stream's summary counts a row that never came: nothing is staged.
            let miscounted = SnapshotSummary {
                rows: summary.rows + 1,
                ..summary.clone()
            };
            let got = push(
                &engine,
                store.as_ref(),
                header.clone(),
                &rows,
                &miscounted,
                now_ms,
            );
            if !matches!(got, Err(PushError::Incomplete(_))) {
                return fail(
                    "reconciliation",
                    format!("a miscounted push of {}: {got:?}", plan.id),
                );
            }
            if let Ok(Some(stored)) = store.get(&plan.id) {
                return fail(
                    "reconciliation",
                    format!("an incomplete push staged {stored:?}"),
                );
            }
            self.count("snapshot_incomplete");
        }
        let got = push(
            &engine,
            store.as_ref(),
            header.clone(),
            &rows,
            &summary,
            now_ms,
        );
        match (refusal, got) {
            (None, Ok(pushed)) => {
                let expected = StoredSnapshot {
                    header,
                    summary,
                    staged_at_ms: now_ms,
                    status: SnapshotStatus::Staged,
                    report: None,
                };
                if pushed.duplicate || pushed.snapshot != expected {
                    return fail(
                        "reconciliation",
                        format!("pushed {pushed:?}\n  expected {expected:?}"),
                    );
                }
                self.book.insert(
                    plan.id.clone(),
                    Booked {
                        stored: expected,
                        rows,
                        first_tap_from: None,
                    },
                );
                self.count("snapshot_staged");
            }
            (Some(reason), Err(PushError::Invalid(invalid)))
                if invalid.first().is_some_and(|first| {
                    first.field == "as_of_ms" && first.reason.contains(reason)
                }) =>
            {
                self.count("snapshot_refused");
            }
            (expected, got) => {
                return fail(
                    "reconciliation",
                    format!(
                        "push of {} as of {as_of_ms} at {now_ms}: expected refusal {expected:?}, \
                         got {got:?}",
                        plan.id
                    ),
                );
            }
        }
        self.check_stored(&plan.id)
    }

    /// The ERP pushes a staged snapshot again: the same content gets the original answer;
    /// other content is refused naming the field.
    pub(in crate::vopr::sim) fn repush(&mut self, id: &str, change: Repush) -> Check {
        let Some(booked) = self.book.get(id).cloned() else {
            // Never staged (refused, or dropped by the shrinker): nothing to push again.
            return Ok(());
        };
        let now_ms = self.clock.now_ms();
        let mut header = booked.stored.header.clone();
        let mut rows = booked.rows.clone();
        match change {
            Repush::Same => {}
            Repush::OtherRows => rows[0].on_hand += 1,
            Repush::OtherAsOf => header.as_of_ms += 1,
        }
        let summary = summary_of(&rows);
        let (engine, store) = (Arc::clone(&self.engine), Arc::clone(&self.store));
        let got = push(&engine, store.as_ref(), header, &rows, &summary, now_ms);
        let same = match (change, &got) {
            (Repush::Same, Ok(pushed)) => pushed.duplicate && pushed.snapshot == booked.stored,
            (Repush::OtherRows, Err(PushError::Conflict { field, .. })) => field == "rows",
            (Repush::OtherAsOf, Err(PushError::Conflict { field, .. })) => {
                field == "header.as_of_ms"
            }
            _ => false,
        };
        if !same {
            return fail(
                "idempotency",
                format!(
                    "snapshot {id} pushed again ({change:?}): got {got:?}\n  stored {:?}",
                    booked.stored
                ),
            );
        }
        self.count(match change {
            Repush::Same => "snapshot_duplicate",
            _ => "snapshot_conflict",
        });
        self.check_stored(id)
    }
}
