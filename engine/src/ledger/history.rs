//! The time index of the log: where in LSN order the engine's clock crossed each second, kept
//! for the history window (`LedgerConfig::history_ms`), so a reconciliation finds in the log
//! every event that can have happened after a snapshot's time without reading the whole log.
//!
//! Decision times are not quite monotonic along LSN order (two commands on unrelated
//! positions may take their LSNs in the other order than their clock readings), so the index
//! keeps the *running maximum* of decision times, which is: every event up to an entry's LSN
//! was decided no later than its time. The first LSN a scan for events after `as_of` must read
//! is then one past the last entry whose time is not after `as_of`, exactly, whatever the
//! interleaving. One entry per second of engine time is at most 86,400 a day.

use crate::types::Lsn;
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    /// `(lsn, t)`: every event up to `lsn` was decided at or before `t` ms. Rising in both.
    /// The first entry is the boundary of the retained history: `(0, 0)` while the history
    /// reaches back to the first event.
    entries: VecDeque<(Lsn, u64)>,
}

impl Default for TimeIndex {
    fn default() -> Self {
        Self {
            entries: VecDeque::from([(Lsn::ZERO, 0)]),
        }
    }
}

impl TimeIndex {
    /// The index as a checkpoint listed it.
    pub fn from_entries(entries: Vec<(Lsn, u64)>) -> Result<Self, String> {
        if entries.is_empty() {
            return Err("a time index needs at least its boundary entry".into());
        }
        if entries
            .windows(2)
            .any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1)
        {
            return Err("time index entries do not rise".into());
        }
        Ok(Self {
            entries: entries.into(),
        })
    }

    pub fn entries(&self) -> Vec<(Lsn, u64)> {
        self.entries.iter().copied().collect()
    }

    /// Notes event `lsn`, after which every event so far was decided by `max_at_ms`: a new
    /// entry once the running maximum enters a new second, and the history kept to `keep_ms`.
    pub fn note(&mut self, lsn: Lsn, max_at_ms: u64, keep_ms: u64) {
        let last = *self.entries.back().expect("the index keeps its boundary");
        if max_at_ms / 1_000 > last.1 / 1_000 {
            self.entries.push_back((lsn, max_at_ms));
            // Entries at or before the cutoff are needed only as the boundary: keep the newest.
            let cutoff = max_at_ms.saturating_sub(keep_ms);
            while self.entries.len() > 1 && self.entries[1].1 <= cutoff {
                self.entries.pop_front();
            }
        } else if let Some(back) = self.entries.back_mut()
            && back.0 != Lsn::ZERO
        {
            // Same second: move the entry forward, so it names the newest LSN of its second.
            *back = (lsn, max_at_ms);
        }
    }

    /// The first LSN from which every event decided after `as_of_ms` lies, or `None` if the
    /// history kept does not reach back that far.
    pub fn scan_from(&self, as_of_ms: u64) -> Option<Lsn> {
        let boundary = self.entries[0];
        if as_of_ms < boundary.1 {
            return None;
        }
        // The last entry whose time is not after `as_of_ms`: events up to it are not after.
        let i = self.entries.partition_point(|&(_, t)| t <= as_of_ms);
        Some(self.entries[i - 1].0.next())
    }

    /// The oldest snapshot time the history can reconcile.
    pub fn start_ms(&self) -> u64 {
        self.entries[0].1
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The scan starts exactly after the last event that cannot be after `as_of`, even when
    /// decision times interleave out of LSN order.
    #[test]
    fn a_scan_starts_after_every_event_not_after_as_of() {
        let mut index = TimeIndex::default();
        let mut max = 0;
        // Decision times along LSN order, slightly out of order within and across seconds.
        let times = [
            1_000, 1_500, 1_400, 2_100, 2_050, 2_999, 3_000, 2_990, 4_500,
        ];
        for (i, &t) in times.iter().enumerate() {
            max = u64::max(max, t);
            index.note(Lsn(i as u64 + 1), max, 60_000);
        }
        for as_of in [0, 999, 1_000, 1_999, 2_100, 2_999, 3_000, 4_499, 10_000] {
            let from = index.scan_from(as_of).expect("whole history kept");
            // Every event after `as_of` is at or after `from`.
            for (i, &t) in times.iter().enumerate() {
                if t > as_of {
                    assert!(
                        Lsn(i as u64 + 1) >= from,
                        "as_of {as_of}: lsn {} missed",
                        i + 1
                    );
                }
            }
        }
        assert_eq!(index.scan_from(0), Some(Lsn(1)));
    }

    #[test]
    fn history_is_kept_for_the_window_only() {
        let mut index = TimeIndex::default();
        for s in 1..=100u64 {
            index.note(Lsn(s), s * 1_000, 10_000);
        }
        assert!(index.entries().len() <= 12, "{:?}", index.entries());
        assert_eq!(index.scan_from(50_000), None, "older than the window");
        let from = index.scan_from(95_000).expect("within the window");
        assert_eq!(from, Lsn(96));
        assert!(
            index.entries()[0].0 < Lsn(91),
            "the window's events are kept"
        );
        assert_eq!(
            TimeIndex::from_entries(index.entries()).expect("valid"),
            index
        );
    }
}
