use super::*;
use std::time::Duration;

fn principal(roles: &str) -> Arc<Principal> {
    let text = format!(
        "[[principal]]\nname = \"p\"\nroles = {roles}\ntoken_sha256 = [\"{}\"]\n",
        token_sha256_hex("t")
    );
    Principals::parse(&text).expect("parses").principals[0].clone()
}

#[test]
fn roles_grant_what_docs_security_lists() {
    let connector = principal(r#"["connector:web"]"#);
    assert!(
        matches!(connector.grant(Permission::HoldsWrite), Grant::Scoped(c) if c.contains("web"))
    );
    assert_eq!(connector.grant(Permission::AvailabilityRead), Grant::All);
    assert_eq!(connector.grant(Permission::SalesWrite), Grant::None);
    assert_eq!(connector.grant(Permission::EventsRead), Grant::None);
    let reader = principal(r#"["reader"]"#);
    assert_eq!(reader.grant(Permission::HoldsRead), Grant::All);
    assert_eq!(reader.grant(Permission::StockWrite), Grant::None);
    let erp = principal(r#"["erp"]"#);
    assert_eq!(erp.grant(Permission::StockWrite), Grant::All);
    assert_eq!(erp.grant(Permission::HoldsWrite), Grant::None);
    assert_eq!(erp.grant(Permission::StoresWrite), Grant::None);
    let admin = principal(r#"["admin"]"#);
    assert_eq!(admin.grant(Permission::StoresWrite), Grant::All);
}

#[test]
fn a_bad_file_names_what_is_wrong() {
    for (text, why) in [
        (
            "[[principal]]\nname = \"p\"\nroles = [\"boss\"]\ntoken_sha256 = [\"00\"]",
            "not a SHA-256",
        ),
        (
            "[[principal]]\nname = \"p\"\nroles = [\"boss\"]\ncert_subject = \"CN=p\"",
            "unknown role",
        ),
        (
            "[[principal]]\nname = \"p\"\nroles = [\"admin\"]",
            "neither token_sha256 nor cert_subject",
        ),
        ("colour = 1", "unknown field"),
    ] {
        let error = Principals::parse(text).expect_err("refused");
        assert!(error.contains(why), "{text}: {error}");
    }
}

const RATE: Quota = Quota {
    calls_per_second: 5,
    burst: 5,
};

#[test]
fn a_bucket_gives_its_burst_then_one_call_per_interval() {
    let t0 = Instant::now();
    let bucket = Bucket::new(RATE, t0);
    for _ in 0..5 {
        bucket.take(RATE, t0).expect("within the burst");
    }
    let delay = bucket.take(RATE, t0).expect_err("the burst is spent");
    assert_eq!(delay, Duration::from_millis(200));
    // Halfway through the interval: still refused, and only the rest is to wait.
    let delay = bucket
        .take(RATE, t0 + Duration::from_millis(100))
        .expect_err("half a call is not a call");
    assert_eq!(delay, Duration::from_millis(100));
    bucket
        .take(RATE, t0 + Duration::from_millis(200))
        .expect("one call refilled");
    bucket
        .take(RATE, t0 + Duration::from_millis(200))
        .expect_err("only one");
    // A long pause refills no more than the burst.
    let later = t0 + Duration::from_secs(60);
    for _ in 0..5 {
        bucket.take(RATE, later).expect("refilled to the burst");
    }
    bucket
        .take(RATE, later)
        .expect_err("no more than the burst");
    // A clock read earlier than the last one adds nothing.
    bucket
        .take(RATE, t0)
        .expect_err("time does not run backwards");
}

fn quota_of(text: &str, name: &str) -> Option<Quota> {
    let principals = Principals::parse(text).expect("parses");
    let principal = principals
        .principals
        .iter()
        .find(|p| p.name == name)
        .expect("named");
    principal.quota.as_ref().map(|(quota, _)| *quota)
}

fn entry(name: &str, roles: &str, extra: &str) -> String {
    format!(
        "[[principal]]\nname = \"{name}\"\nroles = {roles}\ncert_subject = \"CN={name}\"\n{extra}\n"
    )
}

#[test]
fn a_quota_is_the_principals_own_else_its_most_generous_roles_else_none() {
    let text = format!(
        "[quota]\nconnector = {{ calls_per_second = 100, burst = 200 }}\n\
         reader = {{ calls_per_second = 50 }}\n{}{}{}{}",
        entry("shop", r#"["connector:web", "reader"]"#, ""),
        entry("dash", r#"["reader"]"#, ""),
        entry("own", r#"["connector:web"]"#, "calls_per_second = 7"),
        entry("ops", r#"["admin"]"#, ""),
    );
    let quota = |calls_per_second, burst| {
        Some(Quota {
            calls_per_second,
            burst,
        })
    };
    assert_eq!(quota_of(&text, "shop"), quota(100, 200));
    assert_eq!(quota_of(&text, "dash"), quota(50, 50));
    assert_eq!(quota_of(&text, "own"), quota(7, 7));
    assert_eq!(quota_of(&text, "ops"), None);
}

#[test]
fn a_bad_quota_names_its_key() {
    let p = entry("p", r#"["reader"]"#, "");
    for (text, why) in [
        (
            format!("[quota]\nboss = {{ calls_per_second = 1 }}\n{p}"),
            "quota.boss: unknown role",
        ),
        (
            format!("[quota]\nreader = {{ calls_per_second = 0 }}\n{p}"),
            "quota.reader.calls_per_second: 0 is not",
        ),
        (
            format!("[quota]\nreader = {{ calls_per_second = 5, burst = -1 }}\n{p}"),
            "quota.reader.burst: -1 is not",
        ),
        (
            entry("p", r#"["reader"]"#, "calls_per_second = -3"),
            "principal \"p\": calls_per_second: -3 is not",
        ),
        (
            entry("p", r#"["reader"]"#, "burst = 3"),
            "burst without calls_per_second",
        ),
    ] {
        let error = Principals::parse(&text).expect_err("refused");
        assert!(error.contains(why), "{text}: {error}");
    }
}

#[test]
fn a_principal_over_its_quota_is_refused_with_a_retry_delay() {
    let text = entry("p", r#"["reader"]"#, "calls_per_second = 1");
    let principals = Principals::parse(&text).expect("parses");
    let principal = &principals.principals[0];
    let now = Instant::now();
    principal.take_call(now).expect("the burst of one");
    let failure = principal.take_call(now).expect_err("over");
    assert_eq!(failure.reason, inv_proto::v1::ErrorReason::QuotaExceeded);
    assert_eq!(failure.retry_delay, Some(Duration::from_secs(1)));
    assert!(
        failure.metadata.contains(&("principal", "p".to_owned()))
            && failure
                .metadata
                .contains(&("calls_per_second", "1".to_owned())),
        "{:?}",
        failure.metadata
    );
    assert!(failure.message.contains("\"p\""), "{}", failure.message);
}

#[test]
fn a_reload_keeps_the_bucket_of_an_unchanged_quota_only() {
    let dir = tempfile::TempDir::new().expect("a temporary directory");
    let path = dir.path().join("principals.toml");
    let file = |kept: u32, changed: u32| {
        format!(
            "{}{}",
            entry(
                "kept",
                r#"["reader"]"#,
                &format!("calls_per_second = {kept}")
            ),
            entry(
                "changed",
                r#"["reader"]"#,
                &format!("calls_per_second = {changed}")
            )
        )
    };
    let bucket = |auth: &Auth, name: &str| {
        let principals = auth.principals();
        let principal = principals.principals.iter().find(|p| p.name == name);
        Arc::clone(&principal.and_then(|p| p.quota.as_ref()).expect("a quota").1)
    };
    std::fs::write(&path, file(5, 5)).expect("written");
    let auth = Auth::load(&path).expect("loads");
    let (kept, changed) = (bucket(&auth, "kept"), bucket(&auth, "changed"));
    std::fs::write(&path, file(5, 6)).expect("written");
    auth.reload().expect("reloads");
    assert!(Arc::ptr_eq(&kept, &bucket(&auth, "kept")));
    assert!(!Arc::ptr_eq(&changed, &bucket(&auth, "changed")));
}

#[test]
fn a_token_finds_its_principal_by_either_hash() {
    let text = format!(
        "[[principal]]\nname = \"p\"\nroles = [\"reader\"]\ntoken_sha256 = [\"{}\", \"{}\"]\n",
        token_sha256_hex("old"),
        token_sha256_hex("new")
    );
    let principals = Principals::parse(&text).expect("parses");
    assert!(principals.by_token("old").is_some());
    assert!(principals.by_token("new").is_some());
    assert!(principals.by_token("other").is_none());
    assert!(parse_hash(&token_sha256_hex("x")).is_some());
    assert!(new_token().starts_with("inv_") && new_token() != new_token());
}
