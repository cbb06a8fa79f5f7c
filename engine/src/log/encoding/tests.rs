//! Round trips and refusals of the encodings (the exact bytes are pinned by `golden.rs`).

use super::golden::every_kind_of_fact;
use super::*;
use crate::command::*;
use crate::outcome::Outcome;
use crate::types::*;

#[test]
fn encode_into_appends() {
    let events = every_kind_of_fact();
    let mut buffer = vec![0xAA];
    encode_into(&events[0], &mut buffer).expect("encodes");
    assert_eq!(buffer[0], 0xAA);
    assert_eq!(buffer[1], FORMAT_VERSION);
    assert_eq!(decode(Lsn(1), &buffer[1..]), Ok(events[0].clone()));
}

#[test]
fn unknown_version_is_refused() {
    let original = &every_kind_of_fact()[0];
    for version in [0u8, 1, 2, 3, 5, 255] {
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
    for original in every_kind_of_fact() {
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
    let original = &every_kind_of_fact()[4];
    let mut bytes = encode(original).expect("encodes");
    bytes.push(0);
    assert!(matches!(
        decode(original.lsn, &bytes),
        Err(LogError::Corrupt(m)) if m.contains("trailing")
    ));
}

#[test]
fn lsn_mismatch_is_refused() {
    let original = &every_kind_of_fact()[2];
    let bytes = encode(original).expect("encodes");
    assert!(matches!(
        decode(Lsn(99), &bytes),
        Err(LogError::Corrupt(m)) if m.contains("lsn 99") && m.contains("says lsn 3")
    ));
}

#[test]
fn a_checkpoint_of_a_real_ledger_roundtrips_and_damage_is_refused() {
    use crate::clock::ManualClock;
    use crate::engine::Engine;
    use crate::ledger::LedgerConfig;
    use crate::log::MemLog;
    use std::sync::Arc;

    // A checkpoint with every part filled: positions, open and ended holds, keys, a return
    // with units in quarantine, and a store with a gap and an anomaly (the fixture's sale
    // numbered u64::MAX).
    let engine = Engine::recover(
        LedgerConfig::default(),
        Arc::new(MemLog::new()),
        Arc::new(ManualClock::new(1_700_000_000_000)),
    )
    .expect("empty log");
    let submit = |command: Command| {
        engine
            .submit(command)
            .expect("accepted")
            .expect("not refused")
    };
    submit(Command::Adjust(Adjust {
        adjustment_id: AdjustmentId::from("stock"),
        sku: Sku::from("sku-1"),
        location: Location::from("dc-1"),
        delta: 1_000,
        reason: "receipt".into(),
    }));
    for event in every_kind_of_fact() {
        // The others refer to holds the fixture does not place, or would empty the stock.
        if let command @ (Command::RecordSale(_)
        | Command::RecordReturn(_)
        | Command::Dispose(_)
        | Command::SetSafetyStock(_)) = event.fact.to_decision().0
        {
            submit(command);
        }
    }
    for id in ["ended", "open"] {
        let receipt = submit(Command::Reserve(Reserve {
            reservation_id: ReservationId::from(id),
            channel: Channel::from("web"),
            lines: vec![Line::new("sku-1", "dc-1", 3)],
            ttl_ms: 60_000,
        }));
        assert!(matches!(receipt.outcome, Outcome::Granted { .. }));
    }
    submit(Command::Release(Release {
        reservation_id: ReservationId::from("ended"),
    }));
    let checkpoint = engine.ledger().checkpoint();
    assert!(!checkpoint.positions.is_empty());
    assert!(!checkpoint.holds.is_empty());
    assert!(!checkpoint.keys.is_empty());
    assert!(!checkpoint.returns.is_empty());
    assert!(!checkpoint.stores.is_empty());
    assert!(
        checkpoint
            .stores
            .iter()
            .any(|(_, s)| !s.anomalies.is_empty())
    );

    let bytes = encode_checkpoint(&checkpoint).expect("encodes");
    assert_eq!(bytes[0], CHECKPOINT_FORMAT_VERSION);
    assert_eq!(decode_checkpoint(&bytes), Ok(checkpoint.clone()));

    let mut wrong_version = bytes.clone();
    wrong_version[0] = CHECKPOINT_FORMAT_VERSION + 1;
    let wrong = format!("version {}", CHECKPOINT_FORMAT_VERSION + 1);
    assert!(matches!(
        decode_checkpoint(&wrong_version),
        Err(LogError::Corrupt(m)) if m.contains(&wrong)
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
    let events = every_kind_of_fact();
    let n = events.len() as u64;
    let mut bytes = Vec::new();
    encode_batch_into(&events, &mut bytes).expect("encodes");
    assert_eq!(bytes[0], BATCH_FORMAT_VERSION);
    let record = parse_record(Lsn(1), &bytes).expect("parses");
    assert_eq!((record.count(), record.last()), (n, Lsn(n)));
    for from in 0..=n + 1 {
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
fn a_lone_event_is_not_a_record() {
    // Log formats 1 and 2 stored lone events; this build reads only batch records.
    let bytes = encode(&every_kind_of_fact()[0]).expect("encodes");
    let mut lone_v1 = bytes.clone();
    lone_v1[0] = 1;
    assert!(matches!(
        parse_record(Lsn(1), &lone_v1),
        Err(LogError::Corrupt(m)) if m.contains("version 1")
    ));
}

#[test]
fn damaged_batch_records_are_refused() {
    let events = every_kind_of_fact();
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
