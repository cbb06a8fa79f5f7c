//! Per-store sale sequencing: how far behind is each store?
//!
//! Stores post sales in delayed, sometimes reordered batches, each sale carrying the store's
//! own sequence number. For each store the ledger keeps the highest contiguous sequence
//! received, the ranges received above it (so the gaps are what lies between), and the
//! event-time lag of the newest sale. The gap table is bounded: past
//! `STORE_GAP_RANGES_MAX` ranges the oldest gap is given up on and counted as abandoned, which
//! is deterministic, so replay rebuilds the same numbers.
//!
//! # Anomalies
//! A sequence number far beyond the store's newest (more than
//! `LedgerConfig::store_seq_jump_max` ahead) is not believed: one sale numbered 2^64-1 would
//! otherwise leave its store "missing" 1.8e19 sales forever. The sale is still a fact (its
//! stock effect applies), but its number stays out of the received ranges and is kept as a
//! [`StoreAnomaly`] (at most `STORE_ANOMALIES_MAX` per store; past that the oldest is dropped
//! and counted) until an operator acknowledges it: ACCEPT when the store really renumbered
//! (the sequence goes on from the jump, every number missing below it is abandoned, and the
//! anomalies below it are settled with it, so a renumbered store is answered by accepting its
//! newest anomaly), DISMISS when the number was wrong. Whether a number jumped is decided
//! live and recorded in the fact (`Fact::SaleRecordedOutOfSequence`), never re-decided on
//! replay, so the state is a fold of the log whatever bound the replaying process was started
//! with.

use crate::command::AnomalyAction;
use crate::limits::{STORE_ANOMALIES_MAX, STORE_GAP_RANGES_MAX};
use crate::types::{Lsn, TxnId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A sale whose sequence number jumped too far ahead of its store's newest to be believed,
/// waiting for an operator's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreAnomaly {
    /// The sale's transaction id: what the operator acknowledges it by.
    pub txn_id: TxnId,
    /// The number that jumped.
    pub store_seq: u64,
    /// The store's newest in-sequence number when the sale came.
    pub newest_seq: u64,
    /// When the sale happened at the till (store clock).
    pub occurred_at_ms: u64,
    /// When the engine recorded it (engine clock).
    pub recorded_at_ms: u64,
    /// The event that recorded the sale.
    pub lsn: Lsn,
}

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
    /// Missing sequence numbers given up on: because the gap table was full, or below an
    /// accepted jump.
    pub gaps_abandoned: u64,
    /// Sales whose number jumped beyond the bound and await a verdict, oldest first; their
    /// numbers are not in `received`. At most `STORE_ANOMALIES_MAX`, txn ids distinct.
    pub anomalies: Vec<StoreAnomaly>,
    /// Anomalies dropped unacknowledged because the list was full (or because the same txn
    /// id jumped again after its key was forgotten). Their numbers stay out of the sequence.
    pub anomalies_dropped: u64,
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
    /// Sales whose number jumped, awaiting a verdict, oldest first.
    pub anomalies: Vec<StoreAnomaly>,
    pub anomalies_dropped: u64,
}

/// Whether a sale numbered `store_seq` jumps more than `jump_max` beyond its store's newest
/// number `newest_seq`: an anomaly (see the module doc). Decided live only; the fact records
/// the answer.
pub fn jumps(newest_seq: u64, store_seq: u64, jump_max: u64) -> bool {
    store_seq > newest_seq.saturating_add(jump_max)
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

    /// Records a sale numbered `seq` into the sequence.
    pub fn record(&mut self, seq: u64, occurred_at_ms: u64, recorded_at_ms: u64) {
        assert!(seq > 0, "store_seq is validated to be at least 1");
        self.sales_recorded += 1;
        self.receive(seq, occurred_at_ms, recorded_at_ms);
    }

    /// Puts `seq` into the sequence (a reuse if it is there already).
    fn receive(&mut self, seq: u64, occurred_at_ms: u64, recorded_at_ms: u64) {
        if self.is_received(seq) {
            self.seq_reused += 1;
            return;
        }
        self.take_as_newest(seq, occurred_at_ms, recorded_at_ms);
        if seq == self.contiguous_seq + 1 {
            self.contiguous_seq = seq;
        } else {
            self.insert_range(seq);
        }
        self.absorb_front();
        while self.received.len() > STORE_GAP_RANGES_MAX {
            let (&start, &end) = self.received.iter().next().expect("not empty");
            self.gaps_abandoned = self
                .gaps_abandoned
                .saturating_add(start - self.contiguous_seq - 1);
            self.received.remove(&start);
            self.contiguous_seq = end;
            self.absorb_front();
        }
    }

    fn take_as_newest(&mut self, seq: u64, occurred_at_ms: u64, recorded_at_ms: u64) {
        if seq >= self.newest_seq {
            self.newest_seq = seq;
            self.newest_occurred_at_ms = occurred_at_ms;
            self.newest_recorded_at_ms = recorded_at_ms;
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
        // `seq` may be u64::MAX when the jump bound is set that high.
        if let Some(next) = seq.checked_add(1)
            && let Some(next_end) = self.received.remove(&next)
        {
            end = next_end;
        }
        self.received.insert(start, end);
    }

    /// Records a sale whose number jumped (see [`jumps`]) as an anomaly, its
    /// number kept out of the sequence. `newest_seq` is the store's newest number as the fact
    /// recorded it when decided; `Err` if this sequence disagrees (the log does not fit).
    pub fn flag(&mut self, anomaly: StoreAnomaly) -> Result<(), String> {
        if anomaly.newest_seq != self.newest_seq {
            return Err(format!(
                "a sale out of sequence decided at newest seq {}, but the store's is {}",
                anomaly.newest_seq, self.newest_seq
            ));
        }
        if anomaly.store_seq <= anomaly.newest_seq {
            return Err(format!(
                "a sale out of sequence at seq {}, not beyond the newest {}",
                anomaly.store_seq, anomaly.newest_seq
            ));
        }
        self.sales_recorded += 1;
        // Txn ids are unique in the list, so an acknowledgement names one anomaly. The same
        // txn jumping again (its key forgotten since) replaces its older anomaly.
        if let Some(i) = self.anomaly_index(&anomaly.txn_id) {
            self.anomalies.remove(i);
            self.anomalies_dropped += 1;
        }
        self.anomalies.push(anomaly);
        if self.anomalies.len() > STORE_ANOMALIES_MAX {
            self.anomalies.remove(0);
            self.anomalies_dropped += 1;
        }
        debug_assert!(self.anomalies.len() <= STORE_ANOMALIES_MAX);
        Ok(())
    }

    fn anomaly_index(&self, txn_id: &TxnId) -> Option<usize> {
        self.anomalies.iter().position(|a| a.txn_id == *txn_id)
    }

    /// The anomaly of the sale `txn_id`, if one awaits a verdict.
    pub fn anomaly(&self, txn_id: &TxnId) -> Option<&StoreAnomaly> {
        self.anomaly_index(txn_id).map(|i| &self.anomalies[i])
    }

    /// Missing numbers an ACCEPT of `seq` would give up on: those between the contiguous
    /// prefix and `seq` that no sale brought, in sequence or as an anomaly. 0 if `seq` is
    /// already in the sequence.
    pub fn missing_below(&self, seq: u64) -> u64 {
        if self.is_received(seq) {
            return 0;
        }
        let received: u64 = self
            .received
            .range(..seq)
            .map(|(&start, &end)| end - start + 1)
            .sum();
        // Anomalies below `seq` are sales that came: the ACCEPT settles them (see
        // `acknowledge`), so their numbers are not given up on. At most
        // `STORE_ANOMALIES_MAX` of them.
        let mut doubted: Vec<u64> = self
            .anomalies
            .iter()
            .map(|a| a.store_seq)
            .filter(|&n| n > self.contiguous_seq && n < seq && !self.is_received(n))
            .collect();
        doubted.sort_unstable();
        doubted.dedup();
        seq - self.contiguous_seq - 1 - received - doubted.len() as u64
    }

    /// Applies an operator's verdict on the anomaly of `txn_id` and returns how many missing
    /// numbers it gave up on (0 for DISMISS); `None` if there is no such anomaly.
    ///
    /// ACCEPT puts the number into the sequence as if it had always belonged there, with
    /// everything missing below it abandoned: the contiguous prefix reaches it, and it becomes
    /// the newest number if it is beyond the newest. The other anomalies at or below it are
    /// settled with it (their numbers are inside the prefix now, so there is nothing left to
    /// decide about them): a store that renumbered is answered by accepting its newest
    /// anomaly. (A number already received since, below an earlier ACCEPT, is counted as
    /// reused, as a sale would be, and settles nothing.) DISMISS forgets the anomaly; the
    /// number stays out.
    pub fn acknowledge(&mut self, txn_id: &TxnId, action: AnomalyAction) -> Option<u64> {
        let anomaly = self.anomalies.remove(self.anomaly_index(txn_id)?);
        if action == AnomalyAction::Dismiss {
            return Some(0);
        }
        let seq = anomaly.store_seq;
        if self.is_received(seq) {
            self.seq_reused += 1;
            return Some(0);
        }
        let abandoned = self.missing_below(seq);
        self.gaps_abandoned = self.gaps_abandoned.saturating_add(abandoned);
        self.anomalies.retain(|a| a.store_seq > seq);
        // Every range below `seq` is inside the new prefix.
        let below: Vec<u64> = self
            .received
            .range(..seq)
            .map(|(&start, _)| start)
            .collect();
        for start in below {
            self.received.remove(&start);
        }
        self.contiguous_seq = seq;
        self.absorb_front();
        self.take_as_newest(seq, anomaly.occurred_at_ms, anomaly.recorded_at_ms);
        Some(abandoned)
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
        // Saturating: an accepted jump may take the prefix to u64::MAX (nothing is above it).
        let mut next_missing = self.contiguous_seq.saturating_add(1);
        for (&start, &end) in &self.received {
            gaps.push((next_missing, start - 1));
            next_missing = end.saturating_add(1);
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
            anomalies: self.anomalies.clone(),
            anomalies_dropped: self.anomalies_dropped,
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

    fn anomaly(txn: &str, store_seq: u64, newest_seq: u64) -> StoreAnomaly {
        StoreAnomaly {
            txn_id: TxnId::from(txn),
            store_seq,
            newest_seq,
            occurred_at_ms: 2_000,
            recorded_at_ms: 9_000,
            lsn: Lsn(7),
        }
    }

    /// The story: one sale numbered 2^64-1 after 1..3. Flagged, it leaves the missing
    /// count at 0 and the sequence going on from 3.
    #[test]
    fn a_jump_beyond_the_bound_is_an_anomaly_and_misses_nothing() {
        let mut s = feed(&[1, 2, 3]);
        assert!(
            !jumps(s.newest_seq, 3 + 100_000, 100_000),
            "the bound is inclusive"
        );
        assert!(jumps(s.newest_seq, 3 + 100_001, 100_000));
        assert!(jumps(s.newest_seq, u64::MAX, 100_000));
        assert!(
            !jumps(u64::MAX - 5, u64::MAX, 100_000),
            "no overflow near the top"
        );
        s.flag(anomaly("t-max", u64::MAX, 3)).expect("fits");
        s.record(4, 1_004, 5_000);
        let status = s.status("s1");
        assert_eq!((status.contiguous_seq, status.newest_seq), (4, 4));
        assert_eq!(status.missing_count, 0);
        assert!(status.gaps.is_empty());
        assert_eq!(status.sales_recorded, 5, "the flagged sale is a sale");
        assert_eq!(status.anomalies, vec![anomaly("t-max", u64::MAX, 3)]);
        // A fact decided on another state does not fit this one.
        let mut other = feed(&[1]);
        assert!(other.flag(anomaly("t-max", u64::MAX, 3)).is_err());
    }

    #[test]
    fn accept_continues_the_sequence_from_the_jump_and_abandons_what_was_missing() {
        let mut s = feed(&[1, 2, 3, 5]);
        s.flag(anomaly("t-jump", 1_000_000, 5)).expect("fits");
        // 4 and 6..=999_999 are missing below the jump.
        assert_eq!(s.missing_below(1_000_000), 1 + (999_999 - 6 + 1));
        let abandoned = s.acknowledge(&TxnId::from("t-jump"), AnomalyAction::Accept);
        assert_eq!(abandoned, Some(999_995));
        let status = s.status("s1");
        assert_eq!(
            (status.contiguous_seq, status.newest_seq),
            (1_000_000, 1_000_000)
        );
        assert_eq!((status.missing_count, status.gaps_abandoned), (0, 999_995));
        assert_eq!(
            status.newest_occurred_at_ms, 2_000,
            "the accepted sale is the newest"
        );
        assert_eq!(status.newest_lag_ms, 9_000 - 2_000);
        assert!(status.anomalies.is_empty());
        s.record(1_000_002, 0, 0);
        assert_eq!(s.status("s1").gaps, vec![(1_000_001, 1_000_001)]);
        // Answered once: a second verdict finds nothing.
        assert_eq!(
            s.acknowledge(&TxnId::from("t-jump"), AnomalyAction::Accept),
            None
        );
    }

    #[test]
    fn accepting_the_top_number_leaves_every_later_number_a_reuse() {
        let mut s = feed(&[1, 2, 3]);
        s.flag(anomaly("t-max", u64::MAX, 3)).expect("fits");
        let abandoned = s.acknowledge(&TxnId::from("t-max"), AnomalyAction::Accept);
        assert_eq!(abandoned, Some(u64::MAX - 4));
        s.record(4, 0, 0);
        let status = s.status("s1");
        assert_eq!(status.contiguous_seq, u64::MAX);
        assert_eq!(status.missing_count, 0);
        assert_eq!(status.seq_reused, 1);
        s.flag(anomaly("t-again", u64::MAX, u64::MAX))
            .expect_err("nothing jumps past the top");
        // The abandoned count saturates rather than wrapping.
        let mut s = feed(&[1]);
        s.gaps_abandoned = u64::MAX - 1;
        s.flag(anomaly("t-max", u64::MAX, 1)).expect("fits");
        s.acknowledge(&TxnId::from("t-max"), AnomalyAction::Accept);
        assert_eq!(s.gaps_abandoned, u64::MAX);
    }

    #[test]
    fn dismiss_forgets_the_anomaly_and_leaves_the_sequence_as_it_was() {
        let mut s = feed(&[1, 2, 3, 5]);
        s.flag(anomaly("t-jump", 1_000_000, 5)).expect("fits");
        let before = s.status("s1");
        assert_eq!(
            s.acknowledge(&TxnId::from("t-jump"), AnomalyAction::Dismiss),
            Some(0)
        );
        let after = s.status("s1");
        assert!(after.anomalies.is_empty());
        assert_eq!(
            StoreStatus {
                anomalies: before.anomalies.clone(),
                ..after
            },
            before
        );
        assert_eq!(
            s.acknowledge(&TxnId::from("t-jump"), AnomalyAction::Dismiss),
            None
        );
    }

    #[test]
    fn the_anomaly_list_is_bounded_and_drops_the_oldest() {
        let mut s = feed(&[1]);
        let extra = 3;
        for i in 0..(STORE_ANOMALIES_MAX as u64 + extra) {
            s.flag(anomaly(&format!("t{i}"), 1_000_000 + i, 1))
                .expect("fits");
        }
        assert_eq!(s.anomalies.len(), STORE_ANOMALIES_MAX);
        assert_eq!(s.anomalies_dropped, extra);
        assert_eq!(
            s.anomalies[0].txn_id,
            TxnId::from("t3"),
            "the oldest went first"
        );
        assert_eq!(
            s.acknowledge(&TxnId::from("t0"), AnomalyAction::Accept),
            None
        );
        // The same txn jumping again replaces its older anomaly, so a verdict names one.
        s.flag(anomaly("t5", 7_000_000, 1)).expect("fits");
        assert_eq!(s.anomalies.len(), STORE_ANOMALIES_MAX);
        assert_eq!(s.anomalies_dropped, extra + 1);
        assert_eq!(
            s.anomaly(&TxnId::from("t5")).map(|a| a.store_seq),
            Some(7_000_000)
        );
    }

    /// Goal: anomalies are part of the state the log determines. Method: an engine with a
    /// small bound records jumps, acknowledges them (with a retry and a conflicting retry),
    /// then the log is replayed under another bound, and the state goes through an encoded
    /// checkpoint and a restart: the store status and the digest agree every time.
    #[test]
    fn anomalies_replay_and_checkpoint_to_the_same_state_under_any_bound() {
        use crate::log::encoding::{decode_checkpoint, encode_checkpoint};
        use crate::outcome::{Outcome, Refusal};
        use crate::testing::commands::{acknowledge_anomaly, sale};
        use crate::{Engine, EventLog, Ledger, LedgerConfig, Line, ManualClock, MemLog};
        use std::sync::Arc;
        let config = LedgerConfig {
            shards: 2,
            store_seq_jump_max: 100,
            ..LedgerConfig::default()
        };
        let log = Arc::new(MemLog::new());
        let clock = Arc::new(ManualClock::new(1_000_000));
        let open = || Engine::recover(config, log.clone(), clock.clone()).expect("recovers");
        let engine = open();
        let submit = |e: &Engine, c| e.submit(c).expect("well-formed");
        let line = || vec![Line::new("sku-1", "s1", 1)];
        for (txn, seq) in [
            ("t1", 1),
            ("t2", 2),
            ("t3", 3),
            ("t-max", u64::MAX),
            ("t150", 150),
            ("t4", 4),
        ] {
            let receipt = submit(&engine, sale("s1", txn, seq, 999_000, line())).expect("recorded");
            assert_eq!(
                receipt.outcome,
                Outcome::Recorded,
                "a sale is recorded either way"
            );
        }
        let status = engine.store_status("s1").expect("known");
        assert_eq!((status.contiguous_seq, status.missing_count), (4, 0));
        let flagged: Vec<(&str, u64)> = status
            .anomalies
            .iter()
            .map(|a| (a.txn_id.as_str(), a.store_seq))
            .collect();
        assert_eq!(flagged, vec![("t-max", u64::MAX), ("t150", 150)]);
        assert_eq!(engine.check("sku-1", "s1").expect("sold").on_hand, -6);

        let dismiss = acknowledge_anomaly("s1", "t-max", AnomalyAction::Dismiss);
        let dismissed = submit(&engine, dismiss.clone()).expect("acknowledged");
        assert_eq!(
            dismissed.outcome,
            Outcome::StoreAnomalyAcknowledged {
                store_seq: u64::MAX,
                accepted: false,
                gaps_abandoned: 0
            }
        );
        let retry = submit(&engine, dismiss).expect("a retry");
        assert!(retry.duplicate);
        assert_eq!(
            (retry.lsn, &retry.outcome),
            (dismissed.lsn, &dismissed.outcome)
        );
        let other = submit(
            &engine,
            acknowledge_anomaly("s1", "t-max", AnomalyAction::Accept),
        );
        assert!(
            matches!(&other, Err(Refusal::KeyConflict { field, .. }) if field == "action"),
            "{other:?}"
        );
        let accepted = submit(
            &engine,
            acknowledge_anomaly("s1", "t150", AnomalyAction::Accept),
        )
        .expect("acknowledged");
        assert_eq!(
            accepted.outcome,
            Outcome::StoreAnomalyAcknowledged {
                store_seq: 150,
                accepted: true,
                gaps_abandoned: 145
            }
        );
        assert_eq!(
            submit(
                &engine,
                acknowledge_anomaly("s1", "t1", AnomalyAction::Accept)
            ),
            Err(Refusal::StoreAnomalyNotFound {
                store_id: "s1".into(),
                txn_id: "t1".into()
            })
        );
        assert_eq!(
            submit(
                &engine,
                acknowledge_anomaly("s9", "t1", AnomalyAction::Accept)
            ),
            Err(Refusal::StoreNotFound("s9".into()))
        );
        // Another jump, left unacknowledged, for the checkpoint to carry.
        submit(&engine, sale("s1", "t-far", 10_000, 999_000, line())).expect("recorded");
        let status = engine.store_status("s1").expect("known");
        assert_eq!((status.contiguous_seq, status.newest_seq), (150, 150));
        assert_eq!((status.missing_count, status.gaps_abandoned), (0, 145));
        assert_eq!(status.anomalies.len(), 1);
        engine.check_invariants().expect("invariants");
        let digest = engine.digest();

        // Replayed from LSN 1 under another bound: the facts decide, not the setting.
        let replayed = Ledger::new(
            LedgerConfig {
                store_seq_jump_max: u64::MAX,
                ..config
            },
            Arc::new(MemLog::new()),
        );
        replayed.replay_log(log.as_ref()).expect("replays");
        assert_eq!(replayed.digest(), digest);
        assert_eq!(replayed.store_status("s1"), Some(status.clone()));

        // Through the checkpoint's encoding and back.
        let checkpoint = engine.ledger().checkpoint();
        let decoded =
            decode_checkpoint(&encode_checkpoint(&checkpoint).expect("encodes")).expect("decodes");
        let loaded =
            Ledger::from_checkpoint(config, Arc::new(MemLog::new()), &decoded).expect("loads");
        assert_eq!(loaded.digest(), digest);
        assert_eq!(loaded.store_status("s1"), Some(status.clone()));

        // And a restart from a checkpoint, then more writes on both sides of it.
        engine.checkpoint().expect("checkpoints");
        drop(engine);
        let engine = open();
        assert_eq!(engine.digest(), digest);
        assert_eq!(engine.store_status("s1"), Some(status));
        let accept = acknowledge_anomaly("s1", "t-far", AnomalyAction::Accept);
        let receipt = submit(&engine, accept).expect("acknowledged");
        assert!(!receipt.duplicate);
        assert_eq!(log.durable_lsn(), receipt.lsn);
        let status = engine.store_status("s1").expect("known");
        assert_eq!(status.contiguous_seq, 10_000);
        assert_eq!(status.gaps_abandoned, 145 + (10_000 - 151));
        engine.check_invariants().expect("invariants");
    }

    /// A store that renumbered keeps selling before anyone answers: every sale is an anomaly
    /// (the newest in-sequence number has not moved). Accepting the newest settles them all,
    /// and only the numbers no sale brought are abandoned.
    #[test]
    fn accepting_the_newest_anomaly_settles_the_ones_below_it() {
        let mut s = feed(&[1, 2, 3]);
        for (i, seq) in [1_000_000, 1_000_001, 1_000_003].into_iter().enumerate() {
            s.flag(anomaly(&format!("t{i}"), seq, 3)).expect("fits");
        }
        s.flag(anomaly("t-max", u64::MAX, 3)).expect("fits");
        // 4..=999_999 and 1_000_002 are missing below the newest of the renumbered ones.
        assert_eq!(s.missing_below(1_000_003), 999_996 + 1);
        let abandoned = s.acknowledge(&TxnId::from("t2"), AnomalyAction::Accept);
        assert_eq!(abandoned, Some(999_997));
        let status = s.status("s1");
        assert_eq!(
            (
                status.contiguous_seq,
                status.newest_seq,
                status.missing_count
            ),
            (1_000_003, 1_000_003, 0)
        );
        let left: Vec<&str> = status.anomalies.iter().map(|a| a.txn_id.as_str()).collect();
        assert_eq!(left, ["t-max"], "the wild number above is still doubted");
        assert_eq!(
            s.acknowledge(&TxnId::from("t0"), AnomalyAction::Dismiss),
            None
        );
    }
}
