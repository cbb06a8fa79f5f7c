//! The data folder: a new log, its marker, and files that must not open as an empty log.

use super::*;

// The data folder: a new log, the marker, and files that must not open as an empty log

/// The names in `dir`, sorted (upper case first).
fn folder_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// A folder holding a closed log with `events` adjustments.
fn folder_with_events(events: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let engine = engine_on(&log, &clock());
    for i in 0..events {
        engine
            .submit(adjust(&format!("a{i}"), "sku-1", "dc-1", 1))
            .expect("accepted")
            .expect("not refused");
    }
    close(engine, log).expect("clean close");
    dir
}

#[test]
fn a_new_folder_gets_a_log_file_and_its_marker() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("data");
    let log = open(&dir);
    assert_eq!(log.durable_lsn(), Lsn(0));
    assert_eq!(folder_entries(&dir), vec![MARKER_FILE_NAME, FILE_NAME]);
    let marker = std::fs::read_to_string(dir.join(MARKER_FILE_NAME)).expect("marker");
    for line in [
        format!("format_version = {LOG_FORMAT_VERSION}\n"),
        "log_id = \"".to_owned(),
        "created_at_ms = ".to_owned(),
    ] {
        assert!(marker.contains(&line), "{line:?} missing from:\n{marker}");
    }
    // The new file already holds the tables and the format version.
    drop(log);
    let (lsns, meta, chunks) = file_contents(&dir);
    assert_eq!((lsns, chunks), (vec![], 0));
    assert_eq!(
        meta_value(&meta, FORMAT_VERSION_KEY),
        Some(LOG_FORMAT_VERSION)
    );
    // Reopening keeps the marker as it was.
    let log = open(&dir);
    assert_eq!(log.durable_lsn(), Lsn(0));
    drop(log);
    assert_eq!(
        std::fs::read_to_string(dir.join(MARKER_FILE_NAME)).expect("marker"),
        marker
    );
}

#[test]
fn an_empty_log_file_is_refused_and_left_alone() {
    // Goal: the defect found by crashing a server from outside: a ledger.redb truncated to 0
    // bytes opened as a new, empty log (0 events recovered, LSNs reused). Method: truncate a
    // log's file; open must refuse, with or without the marker, and leave the file as it is.
    let dir = folder_with_events(3);
    let path = dir.path().join(FILE_NAME);
    std::fs::File::create(&path).expect("truncate");
    for marker in [true, false] {
        if !marker {
            std::fs::remove_file(dir.path().join(MARKER_FILE_NAME)).expect("remove marker");
        }
        let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
        assert!(matches!(error, OpenError::EmptyFile { .. }), "{error:?}");
        let message = error.to_string();
        for part in [
            format!("{} is empty (0 bytes)", path.display()),
            "cannot be trusted".to_owned(),
            format!("move the data folder {} away", dir.path().display()),
        ] {
            assert!(message.contains(&part), "{part:?} missing from: {message}");
        }
        assert_eq!(std::fs::metadata(&path).expect("file").len(), 0);
    }
    assert_eq!(folder_entries(dir.path()), vec![FILE_NAME]);
}

#[test]
fn a_missing_log_file_is_refused_where_the_marker_says_a_log_was() {
    let dir = folder_with_events(3);
    let path = dir.path().join(FILE_NAME);
    std::fs::remove_file(&path).expect("remove the log");
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
    assert!(matches!(error, OpenError::MissingFile { .. }), "{error:?}");
    let message = error.to_string();
    for part in [
        format!("{} is missing", path.display()),
        dir.path().join(MARKER_FILE_NAME).display().to_string(),
        format!("move the data folder {} away", dir.path().display()),
    ] {
        assert!(message.contains(&part), "{part:?} missing from: {message}");
    }
    assert!(!path.exists(), "a refused open creates nothing");

    // The documented way to start over: move the folder away.
    let moved = dir.path().with_extension("old");
    std::fs::rename(dir.path(), &moved).expect("move the folder away");
    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), Lsn(0));
    drop(log);
    std::fs::remove_dir_all(&moved).expect("clean up");
}

#[test]
fn a_truncated_log_file_is_refused() {
    for keep in [100, 4096, 0] {
        let dir = folder_with_events(200);
        let path = dir.path().join(FILE_NAME);
        let bytes = std::fs::read(&path).expect("read");
        // 0 here: half of the file.
        let keep = if keep == 0 { bytes.len() / 2 } else { keep };
        std::fs::write(&path, &bytes[..keep]).expect("truncate");
        let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
        let message = error.to_string();
        assert!(
            matches!(error, OpenError::Corrupt { .. }),
            "{keep} bytes: {error:?}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert_eq!(std::fs::read(&path).expect("read"), &bytes[..keep]);
    }
}

#[test]
fn a_redb_file_without_the_log_tables_is_refused() {
    // A valid redb database, but not a log: open never makes one of it.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    redb::Database::create(&path).expect("redb creates");
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("not an event log"), "{error}");
}

#[test]
fn a_log_without_the_marker_gets_it_and_opens() {
    // A folder from a build before the marker, or a creation cut short after the file was
    // linked into place.
    let dir = folder_with_events(3);
    std::fs::remove_file(dir.path().join(MARKER_FILE_NAME)).expect("remove marker");
    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), Lsn(3));
    assert_eq!(
        folder_entries(dir.path()),
        vec![MARKER_FILE_NAME, FILE_NAME]
    );
}

#[test]
fn leftovers_of_a_creation_cut_short_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leftovers = [
        format!("{FILE_NAME}.creating-0123"),
        format!("{MARKER_FILE_NAME}.writing-4567"),
    ];
    for name in &leftovers {
        std::fs::write(dir.path().join(name), b"half written").expect("write");
    }
    let unrelated = dir.path().join("notes.txt");
    std::fs::write(&unrelated, b"kept").expect("write");
    let log = open(dir.path());
    drop(log);
    assert_eq!(
        folder_entries(dir.path()),
        vec![MARKER_FILE_NAME, FILE_NAME, "notes.txt"]
    );
}

#[test]
fn opens_racing_to_create_a_log_make_one() {
    // Goal: several opens of one new folder at once create one log, and every other open is
    // refused as in use (never a second log over the first). Method: threads open together
    // and keep what they got until all are done.
    for _ in 0..5 {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("data");
        let start = Arc::new(std::sync::Barrier::new(4));
        let opened: Vec<Result<RedbLog, OpenError>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (dir, start) = (&dir, Arc::clone(&start));
                    s.spawn(move || {
                        start.wait();
                        RedbLog::open(dir, RedbLogOptions::default())
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| thread.join().expect("opener"))
                .collect()
        });
        let logs = opened.iter().filter(|result| result.is_ok()).count();
        assert_eq!(logs, 1, "{opened:?}");
        for result in &opened {
            if let Err(error) = result {
                assert!(matches!(error, OpenError::InUse { .. }), "{error:?}");
            }
        }
        drop(opened);
        assert_eq!(folder_entries(&dir), vec![MARKER_FILE_NAME, FILE_NAME]);
        let log = open(&dir);
        assert_eq!(log.durable_lsn(), Lsn(0));
    }
}

// Goal: a checkpoint keeps the events of the history window that reconciliation reads, and
// trims only what is older. Method: events over two minutes of a manual clock with a one-minute
// window, a checkpoint, a restart; reads from the window's first event work and end at the
// head, reads before it are refused as trimmed, and recovery still starts at the checkpoint.
#[test]
fn a_checkpoint_keeps_the_history_window_and_trims_what_is_older() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = clock();
    let config = LedgerConfig {
        history_ms: 60_000,
        ..LedgerConfig::default()
    };
    let log = open(dir.path());
    let engine = Engine::recover(
        config,
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("recovers");
    for i in 0..120u64 {
        let command = adjust(&format!("a{i}"), "sku-1", "dc-1", 1);
        engine
            .submit(command)
            .expect("accepted")
            .expect("not refused");
        clock.advance_ms(1_000);
    }
    let next_lsn = engine.checkpoint().expect("written");
    assert_eq!(next_lsn, Lsn(121));
    let kept_from = log
        .latest_checkpoint()
        .expect("reads")
        .expect("a checkpoint")
        .history_start_lsn();
    // The window reaches back a minute from the last event: about the last 60 of 120.
    assert!((Lsn(55)..=Lsn(62)).contains(&kept_from), "{kept_from}");
    close(engine, log).expect("closes");

    let log = open(dir.path());
    assert_eq!(
        log.read_from(Lsn(kept_from.0 - 1), 1),
        Err(LogError::Trimmed {
            first_retained: kept_from
        })
    );
    let kept = log.read_from(kept_from, usize::MAX).expect("reads");
    assert_eq!(kept.first().map(|e| e.lsn), Some(kept_from));
    assert_eq!(kept.last().map(|e| e.lsn), Some(Lsn(120)));
    let engine = Engine::recover(
        config,
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("recovers");
    assert_eq!(engine.check("sku-1", "dc-1").map(|a| a.on_hand), Some(120));
    // The window is what reconciliation can reach.
    assert_eq!(engine.ledger().history_scan_from(T0), None, "too old");
    assert!(engine.ledger().history_scan_from(T0 + 100_000).is_some());
}
