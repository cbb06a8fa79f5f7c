//! A store's sequence as the model keeps it, and the status it predicts from it.

use inv_engine::limits::STORE_ANOMALIES_MAX;
use inv_engine::{StoreAnomaly, StoreStatus};
use std::collections::BTreeSet;

/// A store's sequence as the model keeps it: every number received, one by one, above a
/// floor that only an accepted jump raises (every number up to the floor is in the
/// sequence or given up on), and the anomalies in a plain list.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelStore {
    floor: u64,
    received: BTreeSet<u64>,
    pub(super) newest_seq: u64,
    newest_occurred_at_ms: u64,
    newest_recorded_at_ms: u64,
    pub(super) sales_recorded: u64,
    seq_reused: u64,
    gaps_abandoned: u64,
    pub(crate) anomalies: Vec<StoreAnomaly>,
    anomalies_dropped: u64,
    pub(crate) duplicates_absorbed: u64,
}

impl ModelStore {
    fn has(&self, seq: u64) -> bool {
        seq <= self.floor || self.received.contains(&seq)
    }

    fn contiguous(&self) -> u64 {
        let mut contiguous = self.floor;
        while contiguous < u64::MAX && self.received.contains(&(contiguous + 1)) {
            contiguous += 1;
        }
        contiguous
    }

    pub(super) fn receive(&mut self, seq: u64, occurred_at_ms: u64, recorded_at_ms: u64) {
        if self.has(seq) {
            self.seq_reused += 1;
            return;
        }
        self.received.insert(seq);
        if seq >= self.newest_seq {
            self.newest_seq = seq;
            self.newest_occurred_at_ms = occurred_at_ms;
            self.newest_recorded_at_ms = recorded_at_ms;
        }
    }

    pub(super) fn flag(&mut self, anomaly: StoreAnomaly) {
        if let Some(i) = self
            .anomalies
            .iter()
            .position(|a| a.txn_id == anomaly.txn_id)
        {
            self.anomalies.remove(i);
            self.anomalies_dropped += 1;
        }
        self.anomalies.push(anomaly);
        if self.anomalies.len() > STORE_ANOMALIES_MAX {
            self.anomalies.remove(0);
            self.anomalies_dropped += 1;
        }
    }

    /// How many missing numbers accepting `seq` gives up on.
    pub(super) fn abandoned_by(&self, seq: u64) -> u64 {
        if self.has(seq) {
            return 0;
        }
        let contiguous = self.contiguous();
        let received = self.received.range(contiguous + 1..seq).count() as u64;
        // Anomalies below it came too: an ACCEPT settles them.
        let doubted: BTreeSet<u64> = self
            .anomalies
            .iter()
            .map(|a| a.store_seq)
            .filter(|&n| n > contiguous && n < seq && !self.received.contains(&n))
            .collect();
        seq - contiguous - 1 - received - doubted.len() as u64
    }

    /// Applies a verdict; the missing numbers it gave up on.
    pub(super) fn acknowledge(&mut self, txn_id: &str, accept: bool) -> Option<u64> {
        let i = self
            .anomalies
            .iter()
            .position(|a| a.txn_id.as_str() == txn_id)?;
        let anomaly = self.anomalies.remove(i);
        if !accept {
            return Some(0);
        }
        let seq = anomaly.store_seq;
        if self.has(seq) {
            self.seq_reused += 1;
            return Some(0);
        }
        let abandoned = self.abandoned_by(seq);
        self.gaps_abandoned = self.gaps_abandoned.saturating_add(abandoned);
        self.anomalies.retain(|a| a.store_seq > seq);
        self.received.retain(|&n| n > seq);
        self.floor = seq;
        if seq >= self.newest_seq {
            self.newest_seq = seq;
            self.newest_occurred_at_ms = anomaly.occurred_at_ms;
            self.newest_recorded_at_ms = anomaly.recorded_at_ms;
        }
        Some(abandoned)
    }

    pub(crate) fn status(&self, store_id: &str) -> StoreStatus {
        let contiguous_seq = self.contiguous();
        let mut gaps = Vec::new();
        let mut seq = contiguous_seq.checked_add(1);
        while let Some(at) = seq.filter(|&n| n <= self.newest_seq) {
            if self.received.contains(&at) {
                seq = at.checked_add(1);
                continue;
            }
            let start = at;
            let mut end = at;
            while end < self.newest_seq && !self.received.contains(&(end + 1)) {
                end += 1;
            }
            gaps.push((start, end));
            seq = end.checked_add(1);
        }
        StoreStatus {
            store_id: store_id.to_owned(),
            contiguous_seq,
            newest_seq: self.newest_seq,
            missing_count: gaps.iter().map(|(s, e)| e - s + 1).sum(),
            gaps,
            sales_recorded: self.sales_recorded,
            seq_reused: self.seq_reused,
            gaps_abandoned: self.gaps_abandoned,
            duplicates_absorbed: self.duplicates_absorbed,
            newest_lag_ms: self
                .newest_recorded_at_ms
                .saturating_sub(self.newest_occurred_at_ms),
            newest_occurred_at_ms: self.newest_occurred_at_ms,
            anomalies: self.anomalies.clone(),
            anomalies_dropped: self.anomalies_dropped,
        }
    }
}
