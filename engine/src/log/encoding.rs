//! The byte encoding of one [`Event`] as a durable log stores it.
//!
//! # Format (version 1)
//! ```text
//! +---------+--------------------------------------------+
//! | version | payload                                    |
//! | 1 byte  | postcard encoding of `Event`, to the end   |
//! +---------+--------------------------------------------+
//! ```
//! - `version` is [`FORMAT_VERSION`] (1). A reader refuses any other value instead of guessing:
//!   an event it cannot read is corruption, or a file from a newer build, and either way
//!   replaying past it would build the wrong ledger.
//! - `payload` is [postcard](https://docs.rs/postcard) 1.x applied to the serde derives of
//!   [`Event`], [`crate::Command`] and [`crate::Outcome`]: unsigned integers as LEB128 varints,
//!   signed ones zigzag-encoded, strings and sequences as a varint length then the bytes, enum
//!   variants as a varint index in declaration order, `Option` as a 0/1 byte. postcard's wire
//!   format is stable within its major version 1.
//! - The payload fills the rest of the value: trailing bytes are refused, so a torn or
//!   concatenated value cannot decode as a shorter valid event.
//! - The event's own `lsn` is inside the payload, and the store keeps the LSN as the key too;
//!   [`decode`] checks they agree (the pair of the writer's continuity assertion).
//!
//! # Batch records (log format 3)
//! A durable log stores one record per group-commit batch, under the batch's first LSN:
//! ```text
//! +---------+----------+---------------------------------------------------------+
//! | version | count    | count times: | length (varint) | event (version 1)    |
//! | 1 byte  | varint   |              |                 | `length` bytes        |
//! +---------+----------+---------------------------------------------------------+
//! ```
//! - `version` is [`BATCH_FORMAT_VERSION`] (2). The value 1 is not a batch but a record of
//!   log formats 1 and 2: one event alone, encoded as above, under its own LSN. A reader tells
//!   the two apart by this byte, so a file written by an older build reads without migration;
//!   batch versions therefore never use 1.
//! - `count` (at least 1) events follow, with LSNs `key, key + 1, ..`; each event's own LSN
//!   must match (the same check as for a lone event). Varints are LEB128, as in postcard.
//! - Each event carries a length so a reader starting in the middle of a batch skips the
//!   leading events without decoding them. The record must end exactly after the last event.
//! - No checksum of its own: a record is one redb value written in one commit, covered by
//!   redb's page checksums. (A checkpoint has one because it spans many values.)
//!
//! # Checkpoints (version 1)
//! A [`Checkpoint`] is encoded the same way: one version byte ([`CHECKPOINT_FORMAT_VERSION`],
//! 1), then postcard applied to the serde derives of [`Checkpoint`] and the types inside it, to
//! the end of the bytes (trailing bytes are refused). [`encode_checkpoint`] and
//! [`decode_checkpoint`]; how a log stores the bytes (`RedbLog` splits them into chunks) is the
//! log's business.
//!
//! # Evolving the format
//! Because the payload follows declaration order, renaming a field is free but reordering
//! fields, reordering enum variants or inserting a variant anywhere but the end changes the
//! meaning of old bytes. Such a change needs a new version number, and a decoder that keeps
//! reading version 1. The batch framing evolves the same way, with versions above 2.

use crate::error::LogError;
use crate::event::Event;
use crate::ledger::Checkpoint;
use crate::types::Lsn;
use std::sync::Arc;

/// The version byte this build writes, and the only one it reads.
pub const FORMAT_VERSION: u8 = 1;

/// The first byte of a batch record. 1 is taken: it starts a lone event (log formats 1 and 2).
pub const BATCH_FORMAT_VERSION: u8 = 2;

/// The version byte of an encoded checkpoint this build writes, and the only one it reads.
pub const CHECKPOINT_FORMAT_VERSION: u8 = 1;

/// Appends the encoding of `event` to `out` (which is not cleared first).
pub fn encode_into(event: &Event, out: &mut Vec<u8>) -> Result<(), LogError> {
    out.push(FORMAT_VERSION);
    let buffer = std::mem::take(out);
    match postcard::to_extend(event, buffer) {
        Ok(buffer) => {
            *out = buffer;
            Ok(())
        }
        // Serialization of these types cannot fail (no maps, no unsized sequences); if a future
        // field made it fail, refusing the event is the safe answer.
        Err(error) => Err(LogError::Corrupt(format!(
            "cannot encode event at lsn {}: {error}",
            event.lsn
        ))),
    }
}

/// The encoding of `event`.
pub fn encode(event: &Event) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::with_capacity(128);
    encode_into(event, &mut out)?;
    Ok(out)
}

/// Decodes the value stored under `lsn`. Refuses an unknown version, a payload that does not
/// decode or does not end where the value ends, and an event whose own LSN is not `lsn`.
pub fn decode(lsn: Lsn, bytes: &[u8]) -> Result<Event, LogError> {
    let corrupt = |reason: String| LogError::Corrupt(format!("event at lsn {lsn}: {reason}"));
    let (&version, payload) = bytes
        .split_first()
        .ok_or_else(|| corrupt("empty value".to_owned()))?;
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "unknown format version {version} (this build reads {FORMAT_VERSION})"
        )));
    }
    let (event, rest): (Event, &[u8]) =
        postcard::take_from_bytes(payload).map_err(|error| corrupt(error.to_string()))?;
    if !rest.is_empty() {
        return Err(corrupt(format!("{} trailing bytes", rest.len())));
    }
    if event.lsn != lsn {
        return Err(corrupt(format!("the event says lsn {}", event.lsn)));
    }
    Ok(event)
}

/// Appends the batch record of `events`, whose LSNs must be consecutive, to `out`. An empty
/// batch is refused.
pub fn encode_batch_into<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    out: &mut Vec<u8>,
) -> Result<(), LogError> {
    let (mut framed, mut scratch, mut count) = (Vec::new(), Vec::new(), 0u64);
    for event in events {
        scratch.clear();
        encode_into(event, &mut scratch)?;
        push_framed(&mut framed, &scratch);
        count += 1;
    }
    if count == 0 {
        return Err(LogError::Corrupt("cannot encode an empty batch".to_owned()));
    }
    finish_batch(out, count, &framed);
    Ok(())
}

/// Appends one encoded event with its length to `framed`, the body of a batch being built.
pub fn push_framed(framed: &mut Vec<u8>, event: &[u8]) {
    write_varint(framed, event.len() as u64);
    framed.extend_from_slice(event);
}

/// Appends the record of a batch of `count` (at least 1) events to `out`, given the body
/// [`push_framed`] built.
pub fn finish_batch(out: &mut Vec<u8>, count: u64, framed: &[u8]) {
    debug_assert!(count > 0, "a batch holds at least one event");
    out.push(BATCH_FORMAT_VERSION);
    write_varint(out, count);
    out.extend_from_slice(framed);
}

/// One stored record: a batch, or a lone event of log formats 1 and 2.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    first: Lsn,
    count: u64,
    /// A batch's events with their lengths (after the count), or a lone event's whole bytes.
    body: &'a [u8],
    batch: bool,
}

/// Reads the header of the record stored under `first`. Refuses an unknown version and a
/// batch of zero events; the events themselves are checked when decoded.
pub fn parse_record(first: Lsn, bytes: &[u8]) -> Result<Record<'_>, LogError> {
    let corrupt = |reason: String| LogError::Corrupt(format!("record at lsn {first}: {reason}"));
    match bytes.first() {
        None => Err(corrupt("empty value".to_owned())),
        Some(&FORMAT_VERSION) => Ok(Record {
            first,
            count: 1,
            body: bytes,
            batch: false,
        }),
        Some(&BATCH_FORMAT_VERSION) => {
            let (count, body) = read_varint(&bytes[1..])
                .ok_or_else(|| corrupt("truncated event count".to_owned()))?;
            if count == 0 {
                return Err(corrupt("a batch of zero events".to_owned()));
            }
            if first.0.checked_add(count).is_none() {
                return Err(corrupt(format!("{count} events overflow the lsn")));
            }
            Ok(Record {
                first,
                count,
                body,
                batch: true,
            })
        }
        Some(&version) => Err(corrupt(format!(
            "unknown format version {version} (this build reads {FORMAT_VERSION} and \
             {BATCH_FORMAT_VERSION})"
        ))),
    }
}

impl Record<'_> {
    pub fn first(&self) -> Lsn {
        self.first
    }

    /// How many events the record holds (at least 1).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The LSN of its last event.
    pub fn last(&self) -> Lsn {
        Lsn(self.first.0 + self.count - 1)
    }

    /// Decodes its events from LSN `from` on (the leading ones are skipped undecoded) and
    /// pushes them onto `out` until `out` holds `max`. Reading to the end also checks the
    /// record ends right after its last event.
    pub fn decode_into(
        &self,
        from: Lsn,
        max: usize,
        out: &mut Vec<Arc<Event>>,
    ) -> Result<(), LogError> {
        if !self.batch {
            if from <= self.first && out.len() < max {
                out.push(Arc::new(decode(self.first, self.body)?));
            }
            return Ok(());
        }
        let corrupt =
            |reason: String| LogError::Corrupt(format!("record at lsn {}: {reason}", self.first));
        let mut rest = self.body;
        for i in 0..self.count {
            if out.len() >= max {
                return Ok(());
            }
            let (len, after) = read_varint(rest)
                .ok_or_else(|| corrupt(format!("truncated length of event {i}")))?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&len| len <= after.len())
                .ok_or_else(|| corrupt(format!("event {i} runs past the end")))?;
            let (bytes, after) = after.split_at(len);
            let lsn = Lsn(self.first.0 + i);
            if lsn >= from {
                out.push(Arc::new(decode(lsn, bytes)?));
            }
            rest = after;
        }
        if !rest.is_empty() {
            return Err(corrupt(format!("{} trailing bytes", rest.len())));
        }
        Ok(())
    }
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// LEB128; `None` if truncated or longer than a u64.
fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7F);
        if i == 9 && byte > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// The encoding of `checkpoint`: [`CHECKPOINT_FORMAT_VERSION`], then postcard.
pub fn encode_checkpoint(checkpoint: &Checkpoint) -> Result<Vec<u8>, LogError> {
    // Positions dominate; ~32 bytes each is a fair first guess that saves most regrowth.
    let mut out = Vec::with_capacity(1 + 32 * checkpoint.positions.len() + 64);
    out.push(CHECKPOINT_FORMAT_VERSION);
    postcard::to_extend(checkpoint, out).map_err(|error| {
        LogError::Corrupt(format!(
            "cannot encode the checkpoint at lsn {}: {error}",
            checkpoint.next_lsn
        ))
    })
}

/// Decodes a checkpoint. Refuses an unknown version, a payload that does not decode, and
/// trailing bytes.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, LogError> {
    let corrupt = |reason: String| LogError::Corrupt(format!("checkpoint: {reason}"));
    let (&version, payload) = bytes
        .split_first()
        .ok_or_else(|| corrupt("empty value".to_owned()))?;
    if version != CHECKPOINT_FORMAT_VERSION {
        return Err(corrupt(format!(
            "unknown format version {version} (this build reads {CHECKPOINT_FORMAT_VERSION})"
        )));
    }
    let (checkpoint, rest): (Checkpoint, &[u8]) =
        postcard::take_from_bytes(payload).map_err(|error| corrupt(error.to_string()))?;
    if !rest.is_empty() {
        return Err(corrupt(format!("{} trailing bytes", rest.len())));
    }
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::*;
    use crate::hold::HoldState;
    use crate::outcome::{Outcome, ShortLine};
    use crate::types::*;

    fn event(lsn: u64, command: Command, outcome: Outcome) -> Event {
        Event {
            lsn: Lsn(lsn),
            at_ms: 1_700_000_000_000 + lsn,
            command,
            outcome,
        }
    }

    /// One event of every command kind, with outcomes that exercise every outcome shape.
    fn every_kind() -> Vec<Event> {
        vec![
            event(
                1,
                Command::Reserve(Reserve {
                    reservation_id: ReservationId::from("r-1"),
                    channel: Channel::from("web"),
                    lines: vec![Line::new("sku-1", "dc-1", 2), Line::new("sku-2", "dc-1", 1)],
                    ttl_ms: 60_000,
                }),
                Outcome::Granted {
                    expires_at_ms: 1_700_000_060_001,
                },
            ),
            event(
                2,
                Command::Reserve(Reserve {
                    reservation_id: ReservationId::from("r-2"),
                    channel: Channel::from("amazon-us"),
                    lines: vec![Line::new("sku-1", "dc-1", 500)],
                    ttl_ms: 1_000,
                }),
                Outcome::Insufficient {
                    short: vec![ShortLine {
                        line_index: 0,
                        requested: 500,
                        available: -3,
                    }],
                },
            ),
            event(
                3,
                Command::Commit(Commit {
                    reservation_id: ReservationId::from("r-1"),
                    lines: Some(vec![Line::new("sku-1", "dc-1", 1)]),
                }),
                Outcome::Committed {
                    committed: vec![1, 0],
                },
            ),
            event(
                4,
                Command::Commit(Commit {
                    reservation_id: ReservationId::from("r-3"),
                    lines: None,
                }),
                Outcome::HoldAlreadyEnded(HoldState::Released),
            ),
            event(
                5,
                Command::Release(Release {
                    reservation_id: ReservationId::from("r-4"),
                }),
                Outcome::Released,
            ),
            event(
                6,
                Command::Extend(Extend {
                    reservation_id: ReservationId::from("r-5"),
                    request_id: RequestId::from("x-1"),
                    ttl_ms: 120_000,
                }),
                Outcome::Extended {
                    expires_at_ms: 1_700_000_120_006,
                },
            ),
            event(
                7,
                Command::Expire(Expire {
                    reservation_id: ReservationId::from("r-6"),
                }),
                Outcome::Expired,
            ),
            event(
                8,
                Command::RecordSale(RecordSale {
                    store_id: StoreId::from("store-0042"),
                    txn_id: TxnId::from("t-99"),
                    store_seq: 17,
                    occurred_at_ms: 1_699_999_999_000,
                    lines: vec![Line::new("sku-1", "store-0042", 3)],
                }),
                Outcome::Recorded,
            ),
            event(
                9,
                Command::RecordReturn(RecordReturn {
                    return_id: ReturnId::from("ret-1"),
                    lines: vec![
                        ReturnLine {
                            sku: Sku::from("sku-1"),
                            location: Location::from("dc-1"),
                            qty: 1,
                            disposition: ReturnDisposition::Restock,
                        },
                        ReturnLine {
                            sku: Sku::from("sku-2"),
                            location: Location::from("dc-1"),
                            qty: 2,
                            disposition: ReturnDisposition::Inspect,
                        },
                    ],
                }),
                Outcome::Recorded,
            ),
            event(
                10,
                Command::Dispose(Dispose {
                    disposition_id: DispositionId::from("d-1"),
                    return_id: ReturnId::from("ret-1"),
                    sku: Sku::from("sku-2"),
                    location: Location::from("dc-1"),
                    qty: 2,
                    action: DispositionAction::Scrap,
                }),
                Outcome::Recorded,
            ),
            event(
                11,
                Command::Adjust(Adjust {
                    adjustment_id: AdjustmentId::from("adj-1"),
                    sku: Sku::from("sku-1"),
                    location: Location::from("dc-1"),
                    delta: -1_000_000_000,
                    reason: "cycle count: a reason longer than twenty-four bytes".into(),
                }),
                Outcome::Recorded,
            ),
            event(
                12,
                Command::SetSafetyStock(SetSafetyStock {
                    request_id: RequestId::from("ss-1"),
                    sku: Sku::from("sku-1"),
                    location: Location::from("dc-1"),
                    qty: 5,
                }),
                Outcome::Recorded,
            ),
        ]
    }

    #[test]
    fn every_command_kind_roundtrips() {
        let events = every_kind();
        let mut kinds: Vec<CommandKind> = events.iter().map(|e| e.command.kind()).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), 10, "the fixture covers every command kind");
        for original in events {
            let bytes = encode(&original).expect("encodes");
            assert_eq!(bytes[0], FORMAT_VERSION);
            let decoded = decode(original.lsn, &bytes).expect("decodes");
            assert_eq!(decoded, original);
        }
    }

    #[test]
    fn encode_into_appends() {
        let events = every_kind();
        let mut buffer = vec![0xAA];
        encode_into(&events[0], &mut buffer).expect("encodes");
        assert_eq!(buffer[0], 0xAA);
        assert_eq!(decode(Lsn(1), &buffer[1..]), Ok(events[0].clone()));
    }

    #[test]
    fn unknown_version_is_refused() {
        let original = &every_kind()[0];
        for version in [0u8, 2, 255] {
            let mut bytes = encode(original).expect("encodes");
            bytes[0] = version;
            let error = decode(original.lsn, &bytes).expect_err("refused");
            let LogError::Corrupt(message) = error else {
                panic!("expected Corrupt, got {error:?}");
            };
            assert!(message.contains("lsn 1"), "{message}");
            assert!(message.contains(&format!("version {version}")), "{message}");
        }
    }

    #[test]
    fn truncated_bytes_are_refused() {
        // Every strict prefix of every event must fail to decode: none may pass as a shorter
        // valid event.
        for original in every_kind() {
            let bytes = encode(&original).expect("encodes");
            for len in 0..bytes.len() {
                let error = decode(original.lsn, &bytes[..len]).expect_err("prefix refused");
                let LogError::Corrupt(message) = error else {
                    panic!("expected Corrupt, got {error:?}");
                };
                assert!(
                    message.contains(&format!("lsn {}", original.lsn)),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let original = &every_kind()[4];
        let mut bytes = encode(original).expect("encodes");
        bytes.push(0);
        assert!(matches!(
            decode(original.lsn, &bytes),
            Err(LogError::Corrupt(m)) if m.contains("trailing")
        ));
    }

    #[test]
    fn checkpoints_roundtrip_and_damage_is_refused() {
        use crate::clock::ManualClock;
        use crate::engine::Engine;
        use crate::ledger::LedgerConfig;
        use crate::log::MemLog;
        use std::sync::Arc;

        // A checkpoint with every part filled: positions, open and ended holds, keys, a return
        // with units in quarantine, and a store with a gap.
        let engine = Engine::recover(
            LedgerConfig::default(),
            Arc::new(MemLog::new()),
            Arc::new(ManualClock::new(1_700_000_000_000)),
        )
        .expect("empty log");
        let stock = Command::Adjust(Adjust {
            adjustment_id: AdjustmentId::from("stock"),
            sku: Sku::from("sku-1"),
            location: Location::from("dc-1"),
            delta: 1_000,
            reason: "receipt".into(),
        });
        engine.submit(stock).expect("stocked");
        for event in every_kind() {
            match event.command {
                // These refer to holds the fixture does not place, or would empty the stock.
                Command::Commit(_)
                | Command::Release(_)
                | Command::Extend(_)
                | Command::Expire(_)
                | Command::Adjust(_) => {}
                command => {
                    engine.submit(command).expect("accepted");
                }
            }
        }
        for id in ["ended", "open"] {
            let reserve = Command::Reserve(Reserve {
                reservation_id: ReservationId::from(id),
                channel: Channel::from("web"),
                lines: vec![Line::new("sku-1", "dc-1", 3)],
                ttl_ms: 60_000,
            });
            assert!(matches!(
                engine.submit(reserve).expect("accepted").outcome,
                Outcome::Granted { .. }
            ));
        }
        engine
            .submit(Command::Release(Release {
                reservation_id: ReservationId::from("ended"),
            }))
            .expect("released");
        let checkpoint = engine.ledger().checkpoint();
        assert!(!checkpoint.positions.is_empty());
        assert!(!checkpoint.holds.is_empty());
        assert!(!checkpoint.keys.is_empty());
        assert!(!checkpoint.returns.is_empty());
        assert!(!checkpoint.stores.is_empty());

        let bytes = encode_checkpoint(&checkpoint).expect("encodes");
        assert_eq!(bytes[0], CHECKPOINT_FORMAT_VERSION);
        assert_eq!(decode_checkpoint(&bytes), Ok(checkpoint.clone()));

        let mut wrong_version = bytes.clone();
        wrong_version[0] = 2;
        assert!(matches!(
            decode_checkpoint(&wrong_version),
            Err(LogError::Corrupt(m)) if m.contains("version 2")
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            decode_checkpoint(&trailing),
            Err(LogError::Corrupt(m)) if m.contains("trailing")
        ));
        for len in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                matches!(decode_checkpoint(&bytes[..len]), Err(LogError::Corrupt(_))),
                "a {len}-byte prefix must not decode"
            );
        }
    }

    #[test]
    fn batch_records_roundtrip_from_any_start() {
        let events = every_kind();
        let mut bytes = Vec::new();
        encode_batch_into(&events, &mut bytes).expect("encodes");
        assert_eq!(bytes[0], BATCH_FORMAT_VERSION);
        let record = parse_record(Lsn(1), &bytes).expect("parses");
        assert_eq!((record.count(), record.last()), (12, Lsn(12)));
        for from in 0..=13u64 {
            for max in [0, 1, 5, 100] {
                let mut out = Vec::new();
                record
                    .decode_into(Lsn(from), max, &mut out)
                    .expect("decodes");
                let want: Vec<Event> = events
                    .iter()
                    .filter(|e| e.lsn.0 >= from)
                    .take(max)
                    .cloned()
                    .collect();
                let got: Vec<Event> = out.iter().map(|e| (**e).clone()).collect();
                assert_eq!(got, want, "from {from}, max {max}");
            }
        }
        // Under another key, the events' own LSNs disagree.
        let mut out = Vec::new();
        let wrong = parse_record(Lsn(2), &bytes).expect("parses");
        assert!(matches!(
            wrong.decode_into(Lsn(2), 1, &mut out),
            Err(LogError::Corrupt(m)) if m.contains("says lsn 1")
        ));
    }

    #[test]
    fn a_lone_event_reads_as_a_record_of_one() {
        let event = &every_kind()[0];
        let bytes = encode(event).expect("encodes");
        let record = parse_record(Lsn(1), &bytes).expect("parses");
        assert_eq!((record.count(), record.last()), (1, Lsn(1)));
        let mut out = Vec::new();
        record.decode_into(Lsn(1), 10, &mut out).expect("decodes");
        assert_eq!(out.len(), 1);
        assert_eq!(*out[0], *event);
        out.clear();
        record.decode_into(Lsn(2), 10, &mut out).expect("skips");
        assert!(out.is_empty());
    }

    #[test]
    fn damaged_batch_records_are_refused() {
        let events = every_kind();
        let mut bytes = Vec::new();
        encode_batch_into(&events[..3], &mut bytes).expect("encodes");
        let decode_all = |bytes: &[u8]| -> Result<usize, LogError> {
            let mut out = Vec::new();
            parse_record(Lsn(1), bytes)?.decode_into(Lsn(1), usize::MAX, &mut out)?;
            Ok(out.len())
        };
        assert_eq!(decode_all(&bytes), Ok(3));
        for len in 0..bytes.len() {
            assert!(
                matches!(decode_all(&bytes[..len]), Err(LogError::Corrupt(m)) if m.contains("lsn")),
                "a {len}-byte prefix must not decode"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            decode_all(&trailing),
            Err(LogError::Corrupt(m)) if m.contains("trailing")
        ));
        assert!(matches!(
            parse_record(Lsn(1), &[BATCH_FORMAT_VERSION, 0]),
            Err(LogError::Corrupt(m)) if m.contains("zero events")
        ));
        assert!(matches!(
            parse_record(Lsn(7), &[3, 1, 0]),
            Err(LogError::Corrupt(m)) if m.contains("lsn 7") && m.contains("version 3")
        ));
        assert!(encode_batch_into(&[], &mut Vec::new()).is_err());
    }

    #[test]
    fn varints_roundtrip_and_refuse_overlong_input() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut bytes = Vec::new();
            write_varint(&mut bytes, value);
            bytes.push(0xEE);
            assert_eq!(read_varint(&bytes), Some((value, &[0xEE][..])));
        }
        assert_eq!(read_varint(&[0x80; 11]), None);
        assert_eq!(
            read_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]),
            None
        );
        assert_eq!(read_varint(&[]), None);
    }

    #[test]
    fn lsn_mismatch_is_refused() {
        let original = &every_kind()[2];
        let bytes = encode(original).expect("encodes");
        assert!(matches!(
            decode(Lsn(99), &bytes),
            Err(LogError::Corrupt(m)) if m.contains("lsn 99") && m.contains("says lsn 3")
        ));
    }
}
