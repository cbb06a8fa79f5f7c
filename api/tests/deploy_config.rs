//! `deploy/inventory.toml`, the sample config file operators start from, checked against the
//! real binary: it must name every setting of `inventory serve` in the table its help heading
//! gives, each at the default the help shows, and a server must start with it.
//!
//! The settings parser lives in the binary (`src/settings.rs` is a module of `main.rs`), so the
//! test reads the settings from `inventory serve --help`, which clap builds from the same
//! declarations, and starts the binary for the rest. A setting added to `settings.rs` without
//! a line in the sample file fails here.
//!
//! The started server's `/metrics` is also scraped for the series only a server with a key
//! archive exports, as `inventory serve` always has and the in-process test server of
//! `tests/tests/deploy.rs` (which checks every other name the dashboard and rules use) has not.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod support;

use support::{CHILD_TIMEOUT, inventory};

/// Settings the sample leaves commented out, because their default is computed at startup
/// (`worker_threads`: half the cores).
const UNSET_IN_SAMPLE: [&str; 1] = ["worker_threads"];

/// Series of deploy/ that only a server with a key archive exports (kept in step with
/// `ONLY_WITH_KEY_ARCHIVE` in tests/tests/deploy.rs).
const ONLY_WITH_KEY_ARCHIVE: [&str; 1] = ["inventory_key_archive_file_bytes"];

fn sample_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/inventory.toml")
}

/// One setting as `serve --help` lists it.
#[derive(Debug)]
struct Setting {
    /// `None`: the top level of the file.
    table: Option<String>,
    key: String,
    default: String,
}

/// The settings of `inventory serve --help`: each flag under a heading with its `[default: ]`.
fn settings_from_help() -> Vec<Setting> {
    let output = inventory()
        .args(["serve", "--help"])
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "serve --help failed: {output:?}");
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    let mut settings: Vec<Setting> = Vec::new();
    let mut table: Option<String> = None;
    let mut current: Option<(Option<String>, String)> = None;
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            // A heading: `Options:` (the top level) or `... ([server] in the config file):`.
            table = line
                .split_once('[')
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(name, _)| name.to_owned());
            continue;
        }
        let trimmed = line.trim();
        if let Some(flag) = trimmed.strip_prefix("--") {
            let name = flag.split_whitespace().next().unwrap_or(flag);
            current = (!["config", "help"].contains(&name))
                .then(|| (table.clone(), name.replace('-', "_")));
        } else if let Some(default) = trimmed.strip_prefix("[default: ")
            && let Some((table, key)) = current.take()
        {
            let default = default.strip_suffix(']').expect("`[default: ...]`");
            settings.push(Setting {
                table,
                key,
                default: default.to_owned(),
            });
        }
    }
    assert!(
        settings.len() > 30,
        "read too few settings from the help: {settings:#?}\n{help}"
    );
    settings
}

#[test]
fn the_sample_config_names_every_setting_at_its_default() {
    // Goal: deploy/inventory.toml is complete and changes nothing. Method: every setting of the
    // help is set in the sample, in its table, to the help's default (or, for the few whose
    // default is computed, present as a commented-out line), and the sample has no other key.
    let text = std::fs::read_to_string(sample_path()).expect("deploy/inventory.toml");
    let file: toml::Table = toml::from_str(&text).expect("the sample is TOML");
    let settings = settings_from_help();
    let mut known = 0;
    for setting in &settings {
        let table = match &setting.table {
            None => &file,
            Some(name) => match file.get(name) {
                Some(toml::Value::Table(table)) => table,
                other => panic!("[{name}] is not a table in the sample: {other:?}"),
            },
        };
        let place = setting
            .table
            .as_ref()
            .map_or("at the top level".to_owned(), |t| format!("in [{t}]"));
        match table.get(&setting.key) {
            Some(value) => {
                let value = match value {
                    toml::Value::String(text) => text.clone(),
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => panic!(
                        "`{}` is neither a string, integer nor boolean: {other}",
                        setting.key
                    ),
                };
                assert_eq!(
                    value, setting.default,
                    "`{}` {place} is not at its default",
                    setting.key
                );
                known += 1;
            }
            None => {
                assert!(
                    UNSET_IN_SAMPLE.contains(&setting.key.as_str()),
                    "the sample lacks `{}` {place} (default {})",
                    setting.key,
                    setting.default
                );
                let commented = format!("# {} = ", setting.key);
                assert!(
                    text.lines().any(|line| line.starts_with(&commented)),
                    "`{}` is left unset in the sample without a commented-out line",
                    setting.key
                );
            }
        }
    }
    // No key the help does not list (the server would refuse it, naming it).
    let mut in_file = 0;
    for (key, value) in &file {
        match value {
            toml::Value::Table(entries) => in_file += entries.len(),
            _ => {
                in_file += 1;
                assert!(
                    settings.iter().any(|s| s.table.is_none() && s.key == *key),
                    "`{key}` in the sample is not a setting"
                );
            }
        }
    }
    assert_eq!(in_file, known, "the sample has keys the help does not list");
}

/// Kills the child when dropped, so a failed assertion leaves no server running.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /metrics` from `addr` (HTTP/1.1, `Connection: close`), bounded; the whole answer.
fn scrape(addr: &str) -> String {
    use std::io::Write;
    let addr: std::net::SocketAddr = addr.parse().expect("an address");
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

#[test]
fn a_server_starts_with_the_sample_config() {
    // Goal: the file loads as the server reads it (every value through its setting's parser,
    // then the checks of `Settings::resolve`), and the server serves, its metrics included.
    // Method: start the binary with it, on ephemeral loopback ports and a fresh data folder,
    // wait for the lines that say it serves, and scrape the metrics endpoint once.
    let data_dir = std::env::temp_dir().join(format!("inv-deploy-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let sample = sample_path();
    let mut server = Server(
        inventory()
            .arg("serve")
            .arg("--config")
            .arg(&sample)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts"),
    );
    let (lines, seen) = mpsc::channel::<String>();
    for stream in [
        Box::new(server.0.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(server.0.stderr.take().expect("piped")),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(lines);
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let mut output = Vec::new();
    let mut serving = false;
    let mut metrics_addr: Option<String> = None;
    while !(serving && metrics_addr.is_some()) {
        let left = deadline.saturating_duration_since(Instant::now());
        // An error: timed out, or the server exited (both streams closed).
        let Ok(line) = seen.recv_timeout(left) else {
            break;
        };
        serving |= line.contains("serving inventory.v1");
        if line.contains("serving metrics") {
            metrics_addr = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("addr="))
                .map(str::to_owned);
        }
        output.push(line);
    }
    let scraped = metrics_addr.as_deref().filter(|_| serving).map(scrape);
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    let Some(scraped) = scraped else {
        panic!(
            "no `serving inventory.v1` and `serving metrics ... addr=` within {CHILD_TIMEOUT:?} \
             with {}:\n{}",
            sample.display(),
            output.join("\n")
        );
    };
    for name in ONLY_WITH_KEY_ARCHIVE {
        assert!(
            scraped
                .lines()
                .any(|line| line.starts_with(&format!("{name} "))),
            "{name} is not exported by `inventory serve`:\n{scraped}"
        );
    }
}
