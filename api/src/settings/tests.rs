//! The settings' declarations, layering and help, checked against clap itself.

use super::*;
use crate::{Cli, Cmd};
use inv_engine::Location;

/// The settings `argv` and a config file of `file` resolve to, parsed as `main` does.
/// (The environment of the test process applies too; see `tests/settings.rs` for tests
/// that set it.)
fn resolve(argv: &[&str], file: Option<&str>) -> Result<Settings> {
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let command = match file {
        Some(text) => with_file(crate::command(), &parse_file(text)?),
        None => crate::command(),
    };
    let cli = Cli::from_arg_matches(&command.try_get_matches_from(&argv)?)?;
    match cli.command {
        None => Settings::resolve(cli.serve),
        Some(Cmd::Serve(args)) => Settings::resolve(*args),
        Some(_) => bail!("not a serve command line"),
    }
}

fn arg<'a>(command: &'a Command, id: &str) -> &'a Arg {
    command
        .get_arguments()
        .find(|arg| arg.get_id() == id)
        .unwrap_or_else(|| panic!("no argument {id}"))
}

/// The file keys `inventory serve --config` took before each setting was declared once.
const FILE_KEYS_BEFORE: [&str; 27] = [
    "listen",
    "metrics_listen",
    "data_dir",
    "shards",
    "durability",
    "flush_interval_ms",
    "key_retention_ms",
    "log",
    "log_format",
    "worker_threads",
    "transparent_huge_pages",
    "server.request_bytes_max",
    "server.response_bytes_max",
    "server.writes_in_flight_max",
    "server.bulk_in_flight_max",
    "server.bulk_nice",
    "server.watch_streams_max",
    "server.expire_interval_ms",
    "server.expire_batch_max",
    "server.drain_timeout_ms",
    "server.checkpoint_every_events",
    "server.checkpoint_every_ms",
    "event_log.batch_events_max",
    "event_log.queue_events_max",
    "event_log.check_integrity_on_open",
    "event_log.cache_size_bytes",
    "store_seq_jump_max",
];

const FILE: &str = r#"
    listen = "0.0.0.0:7000"
    auth_file = "principals.toml"
    shards = 32
    durability = "async"
    transparent_huge_pages = true
    worker_threads = 3
    [server]
    bulk_in_flight_max = 2
    expire_interval_ms = 250
    [event_log]
    batch_events_max = 64
"#;

#[test]
fn flags_win_over_the_file_and_the_file_over_the_defaults() {
    for argv in [
        ["inventory", "--shards", "128", "--bulk-in-flight-max", "4"].as_slice(),
        [
            "inventory",
            "serve",
            "--shards",
            "128",
            "--bulk-in-flight-max",
            "4",
        ]
        .as_slice(),
    ] {
        let settings = resolve(argv, Some(FILE)).expect("valid settings");
        assert_eq!(settings.listen, "0.0.0.0:7000".parse().expect("an address"));
        assert_eq!(settings.ledger.shards, 128);
        assert_eq!(settings.server.bulk_in_flight_max, 4);
        assert_eq!(settings.server.expire_interval_ms, 250);
        assert_eq!(
            settings.server.writes_in_flight_max,
            ServerConfig::default().writes_in_flight_max
        );
        assert_eq!(settings.log_options.batch_events_max, 64);
        assert_eq!(
            settings.log_options.durability,
            Durability::Async {
                flush_interval_ms: FLUSH_INTERVAL_MS_DEFAULT
            }
        );
        assert_eq!(settings.data_dir, PathBuf::from(DATA_DIR_DEFAULT));
        assert!(settings.transparent_huge_pages);
        assert_eq!(settings.worker_threads, 3);
        // Beyond loopback, so authentication is on, with the file's principals.
        assert_eq!(settings.auth_file, Some(PathBuf::from("principals.toml")));
    }
}

#[test]
fn defaults_listen_on_loopback_with_sync_durability() {
    let settings = resolve(&["inventory"], None).expect("valid defaults");
    assert_eq!(settings.listen.to_string(), LISTEN_DEFAULT);
    assert_eq!(settings.log_options.durability, Durability::Sync);
    assert!(
        !settings.transparent_huge_pages,
        "small pages unless asked (see inv_api::host)"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(settings.worker_threads, (cores / 2).max(1));
    assert_eq!(
        settings.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some(METRICS_LISTEN_DEFAULT)
    );
    assert_eq!(settings.server, ServerConfig::default());
    assert_eq!(settings.ledger, LedgerConfig::default());
    assert_eq!(settings.log_options, RedbLogOptions::default());
}

#[test]
fn metrics_listen_takes_an_address_or_off() {
    let settings = resolve(&["inventory", "--metrics-listen", "off"], None).expect("valid");
    assert_eq!(settings.metrics_listen, None);
    let settings = resolve(
        &["inventory", "--auth", "off"],
        Some(r#"metrics_listen = "0.0.0.0:9100""#),
    )
    .expect("valid");
    assert_eq!(
        settings.metrics_listen,
        Some("0.0.0.0:9100".parse().expect("an address"))
    );
    assert!(resolve(&["inventory", "--metrics-listen", "nine"], None).is_err());
    assert!(parse_file(r#"metrics_listen = "nine""#).is_err());
}

#[test]
fn bad_settings_are_refused() {
    assert!(resolve(&["inventory", "--shards", "3"], None).is_err());
    assert!(resolve(&["inventory", "--bulk-in-flight-max", "0"], None).is_err());
    assert!(resolve(&["inventory", "--worker-threads", "0"], None).is_err());
    assert!(resolve(&["inventory"], Some("[server]\nbulk_nice = 20")).is_err());
    let zero_jump = resolve(&["inventory", "--store-seq-jump-max", "0"], None);
    assert!(
        format!("{:#}", zero_jump.expect_err("refused")).contains("store_seq_jump_max"),
        "the error names the setting"
    );
    let jump = resolve(&["inventory"], Some("store_seq_jump_max = 500")).expect("valid");
    assert_eq!(jump.ledger.store_seq_jump_max, 500);
}

#[test]
fn reconciliation_settings_resolve_to_the_tolerance_policy() {
    let settings = resolve(&["inventory"], None).expect("valid defaults");
    assert_eq!(settings.reconcile, ReconcileConfig::default());
    let settings = resolve(
        &[
            "inventory",
            "--reconcile-every",
            "off",
            "--drift-tolerance-percent",
            "0.5",
            "--drift-beyond",
            "apply",
            "--drift-tolerance-location",
            "dc-1=10,2.25",
            "--drift-tolerance-location",
            "store-7=0,0,hold;store-8=1,1",
        ],
        None,
    )
    .expect("valid");
    let reconcile = &settings.reconcile;
    assert_eq!(reconcile.every_ms, 0);
    assert_eq!(reconcile.policy.default.percent_bp, 50);
    assert_eq!(reconcile.policy.default.beyond, BeyondTolerance::Apply);
    let dc = reconcile.policy.for_location(&Location::from("dc-1"));
    assert_eq!(
        (dc.units, dc.percent_bp, dc.beyond),
        (10, 225, BeyondTolerance::Apply)
    );
    let store = reconcile.policy.for_location(&Location::from("store-7"));
    assert_eq!(store.beyond, BeyondTolerance::Hold);
    assert_eq!(reconcile.policy.by_location.len(), 3);
    let every = |text: &str| text.parse::<Every>().map(|e| e.0);
    assert_eq!(every("15m"), Ok(900_000));
    assert_eq!(every("90s"), Ok(90_000));
    assert_eq!(every("1h"), Ok(3_600_000));
    assert!(every("15").is_err());
    assert!("101".parse::<Percent>().is_err());
    assert!("0.125".parse::<Percent>().is_err());
    assert!(resolve(&["inventory", "--drift-tolerance-location", "dc-1=1"], None).is_err());
    // A location no command could name (the engine's id rule) is refused, saying why.
    let long = format!("{}=1,1", "d".repeat(200));
    let refused = long
        .parse::<LocationTolerances>()
        .expect_err("over the id limit");
    assert!(refused.contains("the location longer than"), "{refused}");
    assert!("dc\u{7}=1,1".parse::<LocationTolerances>().is_err());
    assert!("dc-1=1,1".parse::<LocationTolerances>().is_ok());
    assert!(
        resolve(
            &["inventory", "--drift-tolerance-location", "a=1,1;a=2,2"],
            None
        )
        .is_err()
    );
    let file = "[reconcile]\nreconcile_every = \"1h\"\ndrift_tolerance_location = \"dc-9=3,0\"";
    let settings = resolve(&["inventory"], Some(file)).expect("valid");
    assert_eq!(settings.reconcile.every_ms, 3_600_000);
    assert_eq!(settings.reconcile.policy.by_location.len(), 1);
}

#[test]
fn file_errors_name_the_key() {
    let error = |text: &str| format!("{:#}", parse_file(text).expect_err(text));
    assert!(error("shardz = 4").contains("unknown key `shardz`"));
    assert!(error("[server]\nwrites_in_flight = 4").contains("`server.writes_in_flight`"));
    assert!(error("[ledger]\nshards = 4").contains("`ledger`"));
    assert!(error("config = \"other.toml\"").contains("`config`"));
    assert!(error("writes_in_flight_max = 4").contains("belongs in [server]"));
    assert!(error("[server]\nshards = 4").contains("belongs at the top level"));
    assert!(error("server = 4").contains("must be a table"));
    assert!(error("[server]\nbulk_nice = \"x\"").contains("`server.bulk_nice` = \"x\""));
    assert!(error("durability = \"asnyc\"").contains("expected one of sync, async"));
    assert!(error("shards = 1.5").contains("`shards` must be"));
    assert!(error("transparent_huge_pages = \"yes\"").contains("`transparent_huge_pages`"));
}

#[test]
fn every_setting_is_a_flag_an_environment_variable_and_a_file_key() {
    let command = crate::command();
    let serve = command
        .find_subcommand("serve")
        .expect("a serve subcommand");
    let mut file_keys = Vec::new();
    for (table, group) in tables() {
        for setting in group.get_arguments() {
            let id = setting.get_id().as_str();
            file_keys.push(table.map_or(id.to_owned(), |t| format!("{t}.{id}")));
            for command in [&command, serve] {
                let arg = arg(command, id);
                assert_eq!(arg.get_long(), Some(id.replace('_', "-").as_str()), "{id}");
                assert_eq!(
                    arg.get_env().and_then(|e| e.to_str()),
                    Some(format!("INVENTORY_{}", id.to_uppercase()).as_str()),
                    "{id}"
                );
            }
            // The file takes the key, with any value its flag takes.
            let default = setting.get_default_values()[0].to_str().expect("UTF-8");
            let text = match table {
                None => format!("{id} = {default:?}"),
                Some(t) => format!("[{t}]\n{id} = {default:?}"),
            };
            parse_file(&text).unwrap_or_else(|e| panic!("{text}: {e:#}"));
        }
    }
    // Every setting has a table, and `--config` is the only flag that is not a setting.
    let flags: Vec<&str> = serve
        .get_arguments()
        .map(|arg| arg.get_id().as_str())
        .filter(|id| !["config", "help"].contains(id))
        .collect();
    assert_eq!(flags.len(), file_keys.len());
    assert_eq!(
        arg(serve, "config").get_env().and_then(|e| e.to_str()),
        Some("INVENTORY_CONFIG")
    );
    // Nothing that could be set before is gone, or has moved.
    for key in FILE_KEYS_BEFORE {
        assert!(file_keys.iter().any(|k| k == key), "{key}");
    }
}

#[test]
fn a_file_of_every_default_changes_nothing() {
    let mut text = String::new();
    for (table, group) in tables() {
        if let Some(table) = table {
            text.push_str(&format!("[{table}]\n"));
        }
        for setting in group.get_arguments() {
            let default = setting.get_default_values()[0].to_str().expect("UTF-8");
            text.push_str(&format!("{} = {default:?}\n", setting.get_id()));
        }
    }
    let from_file = resolve(&["inventory"], Some(&text)).expect("valid");
    let defaults = resolve(&["inventory"], None).expect("valid");
    assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
}

#[test]
fn help_shows_every_default_from_its_declaration() {
    let mut command = crate::command();
    let serve = command
        .find_subcommand_mut("serve")
        .expect("a serve subcommand");
    let help = serve.render_long_help().to_string();
    let mut defaults = 0;
    for arg in serve.get_arguments() {
        let text = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        assert!(!text.contains("default:"), "hand-written default in {text}");
        if let Some(default) = arg.get_default_values().first() {
            let shown = format!("[default: {}]", default.to_string_lossy());
            assert!(help.contains(&shown), "{} shows {shown}", arg.get_id());
            defaults += 1;
        }
    }
    assert_eq!(defaults, 48, "every setting has a default");
    assert!(help.contains("[default: 8192]"), "{help}");
    assert!(help.contains("kill -9 included"), "{help}");
}

#[test]
fn parse_reads_the_config_file_when_serving() {
    let dir = std::env::temp_dir().join(format!("inv-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join("inventory.toml");
    std::fs::write(&path, FILE).expect("written");
    let path = path.to_str().expect("a UTF-8 path");
    for argv in [
        vec!["inventory", "--config", path, "--shards", "8"],
        vec!["inventory", "serve", "--config", path, "--shards", "8"],
    ] {
        let argv: Vec<OsString> = argv.into_iter().map(OsString::from).collect();
        let cli: Cli = parse(crate::command(), &argv).expect("parses");
        let args = match cli.command {
            Some(Cmd::Serve(args)) => *args,
            _ => cli.serve,
        };
        assert_eq!(args.process.shards, 8);
        assert_eq!(args.process.worker_threads, 3);
        assert_eq!(args.server.expire_interval_ms, 250);
        assert_eq!(args.event_log.batch_events_max, 64);
    }
    let missing = dir.join("missing.toml");
    let argv: Vec<OsString> = ["inventory", "--config", missing.to_str().expect("UTF-8")]
        .into_iter()
        .map(OsString::from)
        .collect();
    let Err(error) = parse::<Cli>(crate::command(), &argv) else {
        panic!("a missing file is an error");
    };
    assert!(format!("{error:#}").contains("missing.toml"), "{error:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn authentication_is_on_beyond_loopback_unless_turned_off() {
    let local = resolve(&["inventory"], None).expect("valid");
    assert_eq!(local.auth_file, None);
    let error = |argv: &[&str]| format!("{:#}", resolve(argv, None).expect_err("refused"));
    let wide = [
        "inventory",
        "--listen",
        "0.0.0.0:50051",
        "--insecure-plaintext",
    ];
    assert!(error(&wide).contains("no auth_file"));
    assert!(error(&["inventory", "--auth", "required"]).contains("no auth_file"));
    let on = resolve(&wide, Some("auth_file = \"p.toml\"")).expect("valid");
    assert_eq!(on.auth_file, Some(PathBuf::from("p.toml")));
    let off = resolve(&[&wide[..], &["--auth", "off"]].concat(), None).expect("valid");
    assert_eq!(off.auth_file, None);
    // A file alone does not turn it on for a loopback server.
    let local = resolve(&["inventory", "--auth-file", "p.toml"], None).expect("valid");
    assert_eq!(local.auth_file, None);
}

#[test]
fn tls_takes_a_certificate_with_its_key() {
    let plain = resolve(&["inventory"], None).expect("valid");
    assert_eq!(plain.tls, None);
    assert!(!plain.insecure_plaintext);
    let tls = resolve(
        &["inventory", "--tls-cert", "s.pem", "--tls-key", "s.key"],
        Some("tls_client_ca = \"ca.pem\""),
    )
    .expect("valid");
    assert_eq!(
        tls.tls,
        Some(TlsFiles {
            cert: PathBuf::from("s.pem"),
            key: PathBuf::from("s.key"),
            client_ca: Some(PathBuf::from("ca.pem")),
        })
    );
    let error = |argv: &[&str]| format!("{:#}", resolve(argv, None).expect_err("refused"));
    assert!(error(&["inventory", "--tls-cert", "s.pem"]).contains("tls_cert needs tls_key"));
    assert!(error(&["inventory", "--tls-key", "s.key"]).contains("tls_key needs tls_cert"));
    assert!(error(&["inventory", "--tls-client-ca", "ca.pem"]).contains("needs tls_cert"));
    // `--insecure-plaintext` alone is `true`, as is the file's boolean.
    let insecure = resolve(&["inventory", "--insecure-plaintext"], None).expect("valid");
    assert!(insecure.insecure_plaintext);
    let insecure = resolve(&["inventory"], Some("insecure_plaintext = true")).expect("valid");
    assert!(insecure.insecure_plaintext);
}
