//! The operator files of `deploy/` against the server they describe.
//!
//! - `deploy/prometheus/rules.yml` passes `promtool check rules`, and its unit tests
//!   (`rules_test.yml`) pass `promtool test rules`; every PromQL query of the Grafana dashboard
//!   (`deploy/grafana/inventory.json`) parses, checked the same way.
//! - Every metric a rule or a dashboard query names is one a live server exports, or a
//!   recording rule of `rules.yml`: a real server (with a `RedbLog`, as `inventory serve`
//!   runs) serves a reserve, a store's sales and a rejected call, is scraped, and each
//!   `inventory_*` name in the expressions must be a sample name of that scrape (a histogram's
//!   `_bucket`, `_sum` and `_count`, a counter's `_total`, exactly as written) and each
//!   `inventory:*` name a `record:` of `rules.yml`. A query naming a series that does not
//!   exist fails here instead of drawing an empty panel.
//!
//! `deploy/inventory.toml` is checked by `api/tests/deploy_config.rs`, next to the binary whose
//! settings parser reads it.
//!
//! Without `promtool` on PATH the promtool checks are skipped with a warning printed past the
//! test harness's capture, as in `tests/metrics.rs` (`INVENTORY_SKIP_PROMTOOL=1` acknowledges
//! the skip; CI sets `INVENTORY_REQUIRE_PROMTOOL=1`, which makes a missing promtool a failure).

use anyhow::{Context, Result, bail, ensure};
use inv_tests::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const TTL_MS: u64 = 60_000;

/// Series only a server with a key archive (`keys.redb`) exports. `inventory serve` always
/// opens one, the test server here does not, so `api/tests/deploy_config.rs` checks these
/// against the real binary instead (keep the two lists in step).
const ONLY_WITH_KEY_ARCHIVE: [&str; 1] = ["inventory_key_archive_file_bytes"];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(relative: &str) -> Result<String> {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Reading the files without a YAML or JSON parser (the crate has neither): only what the checks
// need, and each reader fails loudly on what it does not expect.

/// The PromQL of every `expr:` in a rules file: the inline value, or the block (`|`, `>`)
/// of lines indented deeper than the key.
fn rule_exprs(yaml: &str) -> Result<Vec<String>> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        i += 1;
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if !value.starts_with(['|', '>']) {
            ensure!(!value.is_empty(), "an empty `expr:` in a rules file");
            exprs.push(value.to_owned());
            continue;
        }
        let mut block = String::new();
        while i < lines.len() {
            let next = lines[i];
            let deeper = next.len() - next.trim_start().len() > indent;
            if !(deeper || next.trim().is_empty()) {
                break;
            }
            block.push_str(next.trim());
            block.push('\n');
            i += 1;
        }
        ensure!(!block.trim().is_empty(), "an empty `expr:` block");
        exprs.push(block);
    }
    Ok(exprs)
}

/// The names the rules file records (`- record: NAME`).
fn recorded_names(yaml: &str) -> BTreeSet<String> {
    yaml.lines()
        .filter_map(|line| {
            line.trim_start()
                .trim_start_matches("- ")
                .strip_prefix("record:")
        })
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Every string value of `key` in a JSON text (`"key": "..."`), unescaped.
fn json_strings(json: &str, key: &str) -> Result<Vec<String>> {
    let quoted = format!("\"{key}\"");
    let mut values = Vec::new();
    let mut rest = json;
    while let Some(at) = rest.find(&quoted) {
        rest = rest[at + quoted.len()..].trim_start();
        let Some(after_colon) = rest.strip_prefix(':') else {
            continue; // the key's name as a value, not a key
        };
        let value = after_colon.trim_start();
        let Some(body) = value.strip_prefix('"') else {
            continue; // an object or a number, not a string
        };
        let mut text = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            let Some((i, c)) = chars.next() else {
                bail!("an unterminated JSON string after {quoted}");
            };
            match c {
                '"' => break i,
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('"') => text.push('"'),
                    Some('\\') => text.push('\\'),
                    Some('/') => text.push('/'),
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    other => bail!("an unexpected JSON escape \\{other:?} in {quoted}"),
                },
                c => text.push(c),
            }
        };
        values.push(text);
        rest = &body[end + 1..];
    }
    Ok(values)
}

/// The PromQL of the dashboard: each panel target's `expr` and each template variable's query.
fn dashboard_queries(json: &str) -> Result<Vec<String>> {
    let mut queries = json_strings(json, "expr")?;
    ensure!(queries.len() >= 20, "only {} panel queries", queries.len());
    // Template variables: `label_values(...)` (the datasource variable's query is `prometheus`).
    queries.extend(
        json_strings(json, "query")?
            .into_iter()
            .chain(json_strings(json, "definition")?)
            .filter(|q| q.contains('(')),
    );
    Ok(queries)
}

/// Identifiers in PromQL that start with `inventory_` or `inventory:` (metric names and
/// recording rules), outside string literals (label values such as `"$instance"`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_string = None;
    let mut word = String::new();
    let mut flush = |word: &mut String| {
        if word.starts_with("inventory_") || word.starts_with("inventory:") {
            names.insert(word.clone());
        }
        word.clear();
    };
    for c in expr.chars() {
        match in_string {
            Some(quote) => {
                if c == quote {
                    in_string = None;
                }
            }
            None if c == '"' || c == '\'' || c == '`' => {
                flush(&mut word);
                in_string = Some(c);
            }
            None if c.is_ascii_alphanumeric() || c == '_' || c == ':' => word.push(c),
            None => flush(&mut word),
        }
    }
    flush(&mut word);
    names
}

// ---------------------------------------------------------------------------------------------
// promtool

/// Runs promtool with `args`; `Ok(None)` if it is not installed, else its output.
fn promtool(args: &[&str]) -> Result<Option<String>> {
    let output = match Command::new("promtool").args(args).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).context("starting promtool"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("promtool {args:?} failed ({}):\n{text}", output.status);
    }
    Ok(Some(text))
}

/// Says the promtool checks did not run: loudly, past the harness's capture (see
/// `tests/metrics.rs`), unless `INVENTORY_SKIP_PROMTOOL=1`; an error under
/// `INVENTORY_REQUIRE_PROMTOOL` (CI).
fn promtool_skipped() -> Result<()> {
    if std::env::var_os("INVENTORY_REQUIRE_PROMTOOL").is_some() {
        bail!("promtool is not on PATH but INVENTORY_REQUIRE_PROMTOOL is set");
    }
    if std::env::var_os("INVENTORY_SKIP_PROMTOOL").is_some_and(|v| v == "1") {
        eprintln!("note: INVENTORY_SKIP_PROMTOOL=1; skipped the promtool checks of deploy/");
        return Ok(());
    }
    let warning = "\n\
        warning: SKIPPED `promtool check rules` and `promtool test rules` of deploy/prometheus\n\
        warning: and the dashboard's PromQL: promtool is not on PATH, so the alerting rules were\n\
        warning: NOT checked (the metric names were). Install it (Debian/Ubuntu: `apt-get install\n\
        warning: prometheus`), or set INVENTORY_SKIP_PROMTOOL=1 to acknowledge the skip.\n\n";
    // Not `eprintln!`: the harness would capture it, and a passing test's output is dropped.
    let _ = std::io::stderr().write_all(warning.as_bytes());
    Ok(())
}

/// A rules file with one recording rule per dashboard query, template variables replaced by
/// a regex, for `promtool check rules` to parse. JSON string escapes are valid YAML ones.
fn dashboard_as_rules(queries: &[String]) -> String {
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries.iter().enumerate() {
        // `label_values(SELECTOR, LABEL)` is Grafana's, not PromQL: check its selector.
        let query = match query.strip_prefix("label_values(") {
            Some(args) => args.rsplit_once(',').map_or(args, |(selector, _)| selector),
            None => query,
        };
        let query = query.replace("$job", ".*").replace("$instance", ".*");
        let escaped = query
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', " ");
        yaml.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: \"{escaped}\"\n"
        ));
    }
    yaml
}

#[test]
fn rules_and_dashboard_pass_promtool() -> Result<()> {
    // Goal: the rules load into Prometheus, their unit tests pass, and the dashboard's PromQL
    // parses. Method: promtool, on the files as shipped.
    let rules = deploy_dir().join("prometheus/rules.yml");
    let tests = deploy_dir().join("prometheus/rules_test.yml");
    let dir = tempfile::tempdir()?;
    let dashboard = dir.path().join("dashboard_rules.yml");
    std::fs::write(
        &dashboard,
        dashboard_as_rules(&dashboard_queries(&read("grafana/inventory.json")?)?),
    )?;
    let path = |p: &Path| p.to_str().map(str::to_owned).context("a UTF-8 path");
    let Some(checked) = promtool(&["check", "rules", &path(&rules)?])? else {
        return promtool_skipped();
    };
    eprintln!("{checked}");
    let tested = promtool(&["test", "rules", &path(&tests)?])?.context("promtool vanished")?;
    ensure!(tested.contains("SUCCESS"), "promtool test rules:\n{tested}");
    eprintln!("{tested}");
    promtool(&["check", "rules", &path(&dashboard)?])?.context("promtool vanished")?;
    Ok(())
}

#[test]
fn every_alert_has_for_a_severity_and_what_to_do() -> Result<()> {
    // Goal: the conventions the README promises, without promtool. Method: each `- alert:`
    // block of rules.yml has `for:`, a `severity:` label, a summary and a description.
    let rules = read("prometheus/rules.yml")?;
    let blocks: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    ensure!(blocks.len() >= 10, "only {} alerts", blocks.len());
    for block in blocks {
        let name = block.lines().next().unwrap_or_default();
        // The block ends at the next rule or group.
        let block = block.split("\n      - ").next().unwrap_or(block);
        for part in ["for: ", "severity: ", "summary: ", "description: "] {
            ensure!(block.contains(part), "alert {name} has no `{part}`");
        }
    }
    Ok(())
}

#[test]
fn the_dashboard_uses_the_datasource_variable() -> Result<()> {
    let json = read("grafana/inventory.json")?;
    ensure!(
        json.contains(r#""name": "datasource""#),
        "no datasource variable"
    );
    for uid in json_strings(&json, "uid")? {
        ensure!(
            uid == "${datasource}" || uid == "inventory-engine",
            "a datasource not through ${{datasource}}: {uid}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn every_metric_the_rules_and_dashboard_name_is_exported() -> Result<()> {
    // Goal: no rule or panel names a series the server does not export. Method: a real server
    // with its metrics endpoint; calls that make the labelled series appear (a call, a Reserve by
    // channel, a store's sales); one scrape; each name in the expressions looked up in it.
    let rules = read("prometheus/rules.yml")?;
    let dashboard = read("grafana/inventory.json")?;
    let recorded = recorded_names(&rules);
    ensure!(
        recorded.len() >= 10,
        "only {} recording rules",
        recorded.len()
    );
    let mut referenced: BTreeSet<(String, &str)> = BTreeSet::new();
    for (file, exprs) in [
        ("rules.yml", rule_exprs(&rules)?),
        ("inventory.json", dashboard_queries(&dashboard)?),
    ] {
        for expr in exprs {
            referenced.extend(metric_names(&expr).into_iter().map(|name| (name, file)));
        }
    }
    ensure!(referenced.len() >= 30, "only {} names", referenced.len());

    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with_metrics(dir.path()).await?;
    let text = bounded(async {
        let mut client = server.client.clone();
        client
            .adjust(adjust("receipt-1", "sneaker-42", "web-dc", 5))
            .await?;
        client
            .reserve(reserve(
                "order-1",
                vec![line("sneaker-42", "web-dc", 1)],
                TTL_MS,
            ))
            .await?;
        client
            .record_sales(pb::RecordSalesRequest {
                store_id: "store-7".into(),
                sales: vec![sale("t-1", 1, vec![line("sock", "store-7", 1)])],
            })
            .await?;
        server.scrape().await
    })
    .await?;
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    for name in [
        "inventory_store_sale_lag_seconds",
        "inventory_reserve_requests_total",
        "inventory_grpc_request_duration_seconds_bucket",
    ] {
        ensure!(
            exported.contains(name),
            "the calls did not make {name} appear"
        );
    }

    let missing: Vec<String> = referenced
        .iter()
        .filter(|(name, _)| {
            if name.starts_with("inventory:") {
                !recorded.contains(name)
            } else if ONLY_WITH_KEY_ARCHIVE.contains(&name.as_str()) {
                false
            } else {
                !exported.contains(name.as_str())
            }
        })
        .map(|(name, file)| format!("{name} (in {file})"))
        .collect();
    ensure!(
        missing.is_empty(),
        "named in deploy/ but neither exported by the server nor recorded by rules.yml:\n  {}\n\
         exported: {exported:?}\nrecorded: {recorded:?}",
        missing.join("\n  ")
    );
    server.join().await?;
    Ok(())
}

#[test]
fn the_readers_find_what_they_should() {
    // The hand-written readers above, on small inputs (a reader that finds nothing would make
    // the name check pass vacuously).
    let yaml = "      - record: inventory:x:rate5m\n        expr: |\n          sum(rate(inventory_a_total[5m]))\n          / 2\n      - alert: A\n        expr: inventory_b > 0\n        for: 1m\n";
    let exprs = rule_exprs(yaml).expect("parses");
    assert_eq!(
        exprs,
        ["sum(rate(inventory_a_total[5m]))\n/ 2\n", "inventory_b > 0"]
    );
    assert_eq!(
        recorded_names(yaml),
        BTreeSet::from(["inventory:x:rate5m".to_owned()])
    );
    let json = r#"{"expr": "sum(inventory_c{job=~\"$job\"})", "query": {"query": "label_values(inventory_d, job)"}}"#;
    assert_eq!(
        dashboard_queries_unchecked(json),
        [
            "sum(inventory_c{job=~\"$job\"})",
            "label_values(inventory_d, job)"
        ]
    );
    assert_eq!(
        metric_names(r#"rate(inventory_e_total{x="inventory_not_a_name"}[5m]) / inventory:f"#),
        BTreeSet::from(["inventory:f".to_owned(), "inventory_e_total".to_owned()])
    );
}

/// [`dashboard_queries`] without its minimum count, for the reader's own test.
fn dashboard_queries_unchecked(json: &str) -> Vec<String> {
    let mut queries = json_strings(json, "expr").expect("parses");
    queries.extend(
        json_strings(json, "query")
            .expect("parses")
            .into_iter()
            .filter(|q| q.contains('(')),
    );
    queries
}
