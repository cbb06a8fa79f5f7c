//! Per-store sale sequencing: how far behind is each store?
//!
//! Stores post sales in delayed, sometimes reordered batches, each sale carrying the store's
//! own sequence number. For each store the ledger keeps the highest contiguous sequence
//! received, the ranges received above it (so the gaps are what lies between), and the
//! event-time lag of the newest sale. The gap table is bounded: past
//! `STORE_GAP_RANGES_MAX` ranges the oldest gap is given up on and counted as abandoned, which
//! is deterministic, so replay rebuilds the same numbers.

use crate::limits::STORE_GAP_RANGES_MAX;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSequence {
    /// Every sequence number up to this one has been received (0: none yet).
    pub contiguous_seq: u64,
    /// Received ranges above `contiguous_seq + 1`, start -> end (inclusive), never adjacent.
    pub received: BTreeMap<u64, u64>,
    pub newest_seq: u64,
    pub newest_occurred_at_ms: u64,
    pub newest_recorded_at_ms: u64,
    pub sales_recorded: u64,
    /// Sales that arrived with a new txn id but a sequence number already received.
    pub seq_reused: u64,
    /// Missing sequence numbers given up on because the gap table was full.
    pub gaps_abandoned: u64,
    /// Retries of sales already recorded (same store and txn id), absorbed without effect.
    /// A process-local counter, counted since the process started: retries are not events,
    /// so it is not replayed, not checkpointed (`serde(skip)`, and zeroed in the in-memory
    /// checkpoint too, see [`StoreSequence::checkpointed`]) and not in the digest. Every
    /// restart starts it at 0, whichever log kept the checkpoint.
    #[serde(skip)]
    pub duplicates_absorbed: u64,
}

/// What an operator sees for one store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub store_id: String,
    pub contiguous_seq: u64,
    pub newest_seq: u64,
    /// Missing sequence ranges (inclusive) between `contiguous_seq` and `newest_seq`.
    pub gaps: Vec<(u64, u64)>,
    pub missing_count: u64,
    pub sales_recorded: u64,
    pub seq_reused: u64,
    pub gaps_abandoned: u64,
    pub duplicates_absorbed: u64,
    /// Engine time minus store time of the newest sale when it was recorded.
    pub newest_lag_ms: u64,
    pub newest_occurred_at_ms: u64,
}

impl StoreSequence {
    /// The sequence as a checkpoint keeps it: without the process-local
    /// `duplicates_absorbed`.
    ///
    /// Why zero it here and not carry it in the checkpoint: the state must be a pure fold of
    /// the log, the same whichever log recovers it. The encoded checkpoint (redb) never held
    /// the counter (`serde(skip)`), but a log that keeps checkpoints as in-memory copies
    /// (`MemLog`) handed it back after a restart, so the same history recovered to two
    /// different statuses. Carrying it in the encoding instead would need a format bump, and
    /// would still not be a fold of the log: retries answered after the checkpoint are in no
    /// event, so a restart would restore a stale count. Zeroing it at the cut (and again when
    /// a checkpoint is loaded) makes it a process-local counter on every log.
    pub fn checkpointed(&self) -> StoreSequence {
        StoreSequence {
            duplicates_absorbed: 0,
            ..self.clone()
        }
    }

    fn is_received(&self, seq: u64) -> bool {
        if seq <= self.contiguous_seq {
            return true;
        }
        self.received
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &end)| seq <= end)
    }

    pub fn record(&mut self, seq: u64, occurred_at_ms: u64, recorded_at_ms: u64) {
        assert!(seq > 0, "store_seq is validated to be at least 1");
        self.sales_recorded += 1;
        if self.is_received(seq) {
            self.seq_reused += 1;
            return;
        }
        if seq >= self.newest_seq {
            self.newest_seq = seq;
            self.newest_occurred_at_ms = occurred_at_ms;
            self.newest_recorded_at_ms = recorded_at_ms;
        }
        if seq == self.contiguous_seq + 1 {
            self.contiguous_seq = seq;
        } else {
            self.insert_range(seq);
        }
        self.absorb_front();
        while self.received.len() > STORE_GAP_RANGES_MAX {
            let (&start, &end) = self.received.iter().next().expect("not empty");
            self.gaps_abandoned += start - self.contiguous_seq - 1;
            self.received.remove(&start);
            self.contiguous_seq = end;
            self.absorb_front();
        }
    }

    fn insert_range(&mut self, seq: u64) {
        let mut start = seq;
        let mut end = seq;
        if let Some((&prev_start, &prev_end)) = self.received.range(..seq).next_back()
            && prev_end + 1 == seq
        {
            start = prev_start;
            self.received.remove(&prev_start);
        }
        if let Some(&next_end) = self.received.get(&(seq + 1)) {
            end = next_end;
            self.received.remove(&(seq + 1));
        }
        self.received.insert(start, end);
    }

    /// Folds received ranges that now touch the contiguous prefix into it.
    fn absorb_front(&mut self) {
        while let Some((&start, &end)) = self.received.iter().next() {
            if start != self.contiguous_seq + 1 {
                break;
            }
            self.contiguous_seq = end;
            self.received.remove(&start);
        }
    }

    pub fn status(&self, store_id: &str) -> StoreStatus {
        let mut gaps = Vec::new();
        let mut next_missing = self.contiguous_seq + 1;
        for (&start, &end) in &self.received {
            gaps.push((next_missing, start - 1));
            next_missing = end + 1;
        }
        let missing_count = gaps.iter().map(|(s, e)| e - s + 1).sum();
        StoreStatus {
            store_id: store_id.to_owned(),
            contiguous_seq: self.contiguous_seq,
            newest_seq: self.newest_seq,
            gaps,
            missing_count,
            sales_recorded: self.sales_recorded,
            seq_reused: self.seq_reused,
            gaps_abandoned: self.gaps_abandoned,
            duplicates_absorbed: self.duplicates_absorbed,
            newest_lag_ms: self
                .newest_recorded_at_ms
                .saturating_sub(self.newest_occurred_at_ms),
            newest_occurred_at_ms: self.newest_occurred_at_ms,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn feed(seqs: &[u64]) -> StoreSequence {
        let mut s = StoreSequence::default();
        for &seq in seqs {
            s.record(seq, 1_000 + seq, 5_000);
        }
        s
    }

    #[test]
    fn in_order_sales_are_contiguous_without_gaps() {
        let s = feed(&[1, 2, 3]);
        let status = s.status("s1");
        assert_eq!(status.contiguous_seq, 3);
        assert!(status.gaps.is_empty());
        assert_eq!(status.newest_lag_ms, 5_000 - 1_003);
    }

    #[test]
    fn out_of_order_sales_show_gaps_until_filled() {
        let s = feed(&[1, 4, 5, 8]);
        let status = s.status("s1");
        assert_eq!(status.contiguous_seq, 1);
        assert_eq!(status.gaps, vec![(2, 3), (6, 7)]);
        assert_eq!(status.missing_count, 4);
        let s = feed(&[1, 4, 5, 8, 3, 2, 7, 6]);
        let status = s.status("s1");
        assert_eq!(status.contiguous_seq, 8);
        assert!(status.gaps.is_empty());
        assert_eq!(status.seq_reused, 0);
    }

    #[test]
    fn a_checkpoint_keeps_no_process_local_count() {
        let mut s = feed(&[1, 2]);
        s.duplicates_absorbed = 3;
        let kept = s.checkpointed();
        assert_eq!(kept.duplicates_absorbed, 0);
        assert_eq!(
            StoreSequence {
                duplicates_absorbed: 3,
                ..kept
            },
            s
        );
    }

    /// The inconsistency the simulator found: on a `MemLog` (checkpoints kept as in-memory
    /// copies) the count survived a checkpoint and restart, on redb (encoded) it did not.
    #[test]
    fn a_restart_from_an_in_memory_checkpoint_starts_the_retry_count_at_zero() {
        use crate::{Command, Engine, LedgerConfig, Line, ManualClock, MemLog, RecordSale};
        use std::sync::Arc;
        let log = Arc::new(MemLog::new());
        let clock = Arc::new(ManualClock::new(1_000_000));
        let open = || {
            Engine::recover(LedgerConfig::default(), log.clone(), clock.clone()).expect("recovers")
        };
        let engine = open();
        let sale = Command::RecordSale(RecordSale {
            store_id: "s1".into(),
            txn_id: "t1".into(),
            store_seq: 1,
            occurred_at_ms: 1_000_000,
            lines: vec![Line::new("sku-1", "s1", 1)],
        });
        for _ in 0..2 {
            engine
                .submit(sale.clone())
                .expect("submits")
                .expect("recorded");
        }
        let absorbed = |e: &Engine| e.store_status("s1").expect("known").duplicates_absorbed;
        assert_eq!(absorbed(&engine), 1);
        engine.checkpoint().expect("checkpoints");
        let digest = engine.digest();
        drop(engine);
        let engine = open();
        assert_eq!(
            absorbed(&engine),
            0,
            "process-local: not carried by a checkpoint"
        );
        assert_eq!(engine.digest(), digest);
    }

    #[test]
    fn a_reused_sequence_number_is_counted() {
        let s = feed(&[1, 2, 2, 5, 5]);
        assert_eq!(s.status("s1").seq_reused, 2);
    }

    #[test]
    fn the_gap_table_is_bounded_and_abandons_the_oldest_gap() {
        let mut s = StoreSequence::default();
        // Every other sequence number: each received one is its own range.
        for i in 0..(STORE_GAP_RANGES_MAX as u64 + 10) {
            s.record(2 + 2 * i, 0, 0);
        }
        assert!(s.received.len() <= STORE_GAP_RANGES_MAX);
        assert!(s.gaps_abandoned > 0);
        let status = s.status("s1");
        assert_eq!(
            status.missing_count + s.gaps_abandoned + s.sales_recorded,
            status.newest_seq
        );
    }
}
