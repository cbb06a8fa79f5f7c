//! The settings of `inventory serve`, through the real binary: what the unit tests in
//! `src/settings.rs` cannot do in process, setting `INVENTORY_*` environment variables (the
//! environment is the process's, shared by every test thread), and the help as a user sees it.
//!
//! Precedence is read from the error that names the value a setting resolved to: each layer
//! gives the setting a different invalid value, so the server refuses to start (before it
//! opens anything) and says which one won. Every child is killed if it runs past
//! [`support::CHILD_TIMEOUT`].

mod support;

use std::path::PathBuf;
use support::Run;

/// Runs `inventory ARGS...` with exactly the `INVENTORY_*` variables in `env`.
fn inventory(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = support::inventory();
    command.args(args).envs(env.iter().copied());
    support::run(command)
}

/// A temporary folder with `inventory.toml` holding `text`; removed when dropped.
struct ConfigFile {
    dir: PathBuf,
    path: String,
}

impl ConfigFile {
    fn new(name: &str, text: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("inv-settings-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let path = dir.join("inventory.toml");
        std::fs::write(&path, text).expect("written");
        let path = path.to_str().expect("a UTF-8 path").to_owned();
        ConfigFile { dir, path }
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Asserts that the server refused to start, naming `expected`.
fn refused(run: &Run, expected: &str) {
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(expected),
        "wanted {expected:?}: {run:?}"
    );
}

#[test]
fn flags_win_over_environment_over_the_file_over_the_defaults() {
    // Goal: the same setting from all three sources resolves by precedence, at the top level of
    // the file and in a table, and with the file named by flag or by environment.
    let file = ConfigFile::new("precedence", "shards = 3\n[server]\nbulk_nice = 30\n");
    let config = file.path.as_str();
    // A valid data folder and ports, so nothing but the values under test can stop the start.
    let safe = ["--listen", "127.0.0.1:0", "--metrics-listen", "off"];
    let serve = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["serve"];
        args.extend_from_slice(&safe);
        args.extend_from_slice(extra);
        inventory(&args, env)
    };

    let env = [("INVENTORY_SHARDS", "5")];
    refused(
        &serve(&["--config", config, "--shards", "6"], &env),
        "got 6",
    );
    refused(&serve(&["--config", config], &env), "got 5");
    refused(&serve(&["--config", config], &[]), "got 3");
    refused(&serve(&[], &[("INVENTORY_CONFIG", config)]), "got 3");

    let shards = ["--shards", "8"];
    let env = [("INVENTORY_BULK_NICE", "25"), ("INVENTORY_CONFIG", config)];
    let with_flag: Vec<&str> = shards
        .iter()
        .copied()
        .chain(["--bulk-nice", "21"])
        .collect();
    refused(
        &serve(&with_flag, &env),
        "bulk_nice must be in 0..=19, got 21",
    );
    refused(&serve(&shards, &env), "bulk_nice must be in 0..=19, got 25");
    refused(
        &serve(&shards, &env[1..]),
        "bulk_nice must be in 0..=19, got 30",
    );
}

#[test]
fn a_setting_that_was_file_only_has_a_flag_and_an_environment_variable() {
    // Goal: `expire_batch_max` could be set only in the file; now the flag and the variable
    // reach the same check (it must be at least 1).
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
    ];
    let flag: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--expire-batch-max", "0"])
        .collect();
    refused(
        &inventory(&flag, &[]),
        "expire_batch_max must be at least 1",
    );
    let env = [("INVENTORY_EXPIRE_BATCH_MAX", "0")];
    refused(
        &inventory(&args, &env),
        "expire_batch_max must be at least 1",
    );
}

#[test]
fn an_unknown_file_key_is_refused_by_name() {
    let file = ConfigFile::new("unknown", "[server]\nwrites_in_flight = 4\n");
    let run = inventory(&["serve", "--config", &file.path], &[]);
    refused(&run, "unknown key `server.writes_in_flight`");
}

#[test]
fn serve_help_shows_defaults_variables_and_what_async_can_lose() {
    let run = inventory(&["serve", "--help"], &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let help = &run.stdout;
    for expected in [
        "--writes-in-flight-max <N>",
        "[env: INVENTORY_WRITES_IN_FLIGHT_MAX=]",
        "[default: 8192]",
        "--expire-batch-max <N>",
        "[env: INVENTORY_EXPIRE_BATCH_MAX=]",
        "Server limits ([server] in the config file)",
        "Event log ([event_log] in the config file)",
        "[default: 127.0.0.1:50051]",
        "[default: sync]",
        "A crash of any kind, kill -9 included, or a power loss can lose the last \
         --flush-interval-ms (plus the batch in flight) of acknowledged writes",
    ] {
        assert!(help.contains(expected), "no {expected:?} in:\n{help}");
    }
    assert!(!help.contains("process crash loses nothing"), "{help}");
}
