//! Who is calling, and what they may do (docs/security.md).
//!
//! A principal is named in the principals file (`--auth-file`, TOML) with its roles and its
//! credentials: the SHA-256 of its bearer tokens (`authorization: Bearer ...`) and, under
//! mutual TLS, its certificate's subject. [`Authenticated`] wraps the `Inventory` service (not
//! health or reflection, which stay open): it resolves each call's principal before the body is
//! read, answers UNAUTHENTICATED when there is none, and puts the [`Caller`] in the request's
//! extensions. Each handler then asks the caller for the permission its RPC needs, scoped to a
//! channel or a store where the role is (`service`, `session`, `bulk`).
//!
//! # Why SHA-256 and not a slow hash
//! Tokens are 256 random bits made by `inventory token new`, not passwords: there is no
//! dictionary to try, so a fast hash loses nothing and a leaked file still does not give the
//! tokens away. Every known hash is compared with the presented one in constant time, with no
//! early exit, so timing tells nothing about how close a guess came.
//!
//! # Reload
//! [`Auth::reload`] (SIGHUP in `main`) reads the file again and swaps the whole set; a file
//! that fails to read or parse is refused and the set in use stays. Each unary call resolves
//! its principal afresh, so a token removed from the file fails on the very next call, even on
//! an open connection. A stream (Session, WatchAvailability, PushSnapshot) keeps the principal
//! it was opened with until it ends.
//!
//! # Quotas
//! A principal may have a call rate (`calls_per_second`, `burst`): its own, else the most
//! generous (highest rate, then burst) of its roles' in the file's `[quota]` table; none means
//! unlimited. [`Authenticated`] takes one call from the principal's [`Bucket`] right after
//! resolving it, before the body is read: a unary call costs one, opening a stream one, and
//! each request on a Session one more (`session`). An empty bucket answers RESOURCE_EXHAUSTED
//! QUOTA_EXCEEDED with a RetryInfo (on a Session, that request's item error says when to
//! retry). Each principal has its own bucket and lock, so a flooding principal never holds up
//! another's calls. A reload keeps the bucket (and its level) of a principal whose quota did
//! not change; an open stream keeps the quota it was opened with.

use crate::shared::Shared;
use crate::status::Failure;
use futures_util::future::Either;
use inv_engine::PrincipalName;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;
use subtle::ConstantTimeEq;
use tonic::codegen::{Bytes, http};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

mod quota;

use quota::{Bucket, Quota};

/// The SHA-256 of a token.
type TokenHash = [u8; 32];

/// Hashes a token as the principals file stores it: lowercase hex of SHA-256 of its bytes.
pub fn token_sha256_hex(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits, hex, with an `inv_` prefix so it is recognised in a leak).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    tokio_rustls::rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .expect("the system's random source works");
    format!("inv_{}", hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hash(text: &str) -> Option<TokenHash> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(hash)
}

/// What a call may need. Each name (`holds.write`) is what PERMISSION_DENIED reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Reserve, Commit, Release, Extend (scoped to channels for a connector).
    HoldsWrite,
    /// GetReservation (scoped to channels for a connector).
    HoldsRead,
    /// Check, CheckSku, CheckSellable, WatchAvailability.
    AvailabilityRead,
    /// RecordSales (scoped to stores for a store).
    SalesWrite,
    /// RecordReturns (scoped to the lines' locations for a store).
    ReturnsWrite,
    /// StoreStatus (scoped to stores for a store).
    StoresRead,
    /// AcknowledgeStoreAnomaly.
    StoresWrite,
    /// Adjust, SetSafetyStock, Disposition.
    StockWrite,
    /// PushSnapshot, Reconcile, ResolveDrift.
    ReconcileWrite,
    /// GetReconciliationReport, ListReconciliations, ListHeldDrifts.
    ReconcileRead,
    /// ListEvents.
    EventsRead,
}

impl Permission {
    pub fn name(self) -> &'static str {
        match self {
            Permission::HoldsWrite => "holds.write",
            Permission::HoldsRead => "holds.read",
            Permission::AvailabilityRead => "availability.read",
            Permission::SalesWrite => "sales.write",
            Permission::ReturnsWrite => "returns.write",
            Permission::StoresRead => "stores.read",
            Permission::StoresWrite => "stores.write",
            Permission::StockWrite => "stock.write",
            Permission::ReconcileWrite => "reconcile.write",
            Permission::ReconcileRead => "reconcile.read",
            Permission::EventsRead => "events.read",
        }
    }

    fn is_read(self) -> bool {
        matches!(
            self,
            Permission::HoldsRead
                | Permission::AvailabilityRead
                | Permission::StoresRead
                | Permission::ReconcileRead
                | Permission::EventsRead
        )
    }
}

/// How far a principal holds a permission.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Grant<'a> {
    None,
    /// For these channels or stores only.
    Scoped(&'a BTreeSet<String>),
    All,
}

/// One caller named in the principals file.
pub struct Principal {
    pub name: String,
    tokens: Vec<TokenHash>,
    cert_subject: Option<String>,
    /// `connector:CHANNEL` roles.
    channels: BTreeSet<String>,
    /// `store:STORE` roles.
    stores: BTreeSet<String>,
    erp: bool,
    reader: bool,
    admin: bool,
    /// The call rate it is held to, if any, and its bucket.
    quota: Option<(Quota, Arc<Bucket>)>,
}

impl fmt::Debug for Principal {
    // Without the token hashes: nothing secret-adjacent in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("name", &self.name)
            .field("cert_subject", &self.cert_subject)
            .field("channels", &self.channels)
            .field("stores", &self.stores)
            .field("erp", &self.erp)
            .field("reader", &self.reader)
            .field("admin", &self.admin)
            .field("quota", &self.quota.as_ref().map(|(quota, _)| quota))
            .finish_non_exhaustive()
    }
}

impl Principal {
    /// Takes one call from the principal's quota; when it has none left, how long until it has
    /// one, and the failure to answer.
    pub(crate) fn take_call(&self, now: Instant) -> Result<(), Failure> {
        let Some((quota, bucket)) = &self.quota else {
            return Ok(());
        };
        bucket.take(*quota, now).map_err(|delay| {
            Failure::quota_exceeded(
                &self.name,
                quota.calls_per_second,
                delay,
                format!(
                    "principal {:?} is over its quota of {} calls per second (burst {}); \
                     retry in {} ms",
                    self.name,
                    quota.calls_per_second,
                    quota.burst,
                    delay.as_millis().max(1)
                ),
            )
        })
    }

    pub(crate) fn grant(&self, permission: Permission) -> Grant<'_> {
        if self.admin {
            return Grant::All;
        }
        if (self.reader || self.erp) && permission.is_read() {
            return Grant::All;
        }
        match permission {
            Permission::StockWrite | Permission::ReconcileWrite if self.erp => Grant::All,
            Permission::AvailabilityRead if !self.channels.is_empty() => Grant::All,
            Permission::HoldsWrite | Permission::HoldsRead if !self.channels.is_empty() => {
                Grant::Scoped(&self.channels)
            }
            Permission::SalesWrite | Permission::ReturnsWrite | Permission::StoresRead
                if !self.stores.is_empty() =>
            {
                Grant::Scoped(&self.stores)
            }
            _ => Grant::None,
        }
    }
}

/// The principals file, as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    #[serde(default)]
    metrics_token_sha256: Vec<String>,
    #[serde(default)]
    principal: Vec<PrincipalEntry>,
    /// Per role kind (`connector`, `store`, `erp`, `reader`, `admin`).
    #[serde(default)]
    quota: BTreeMap<String, QuotaEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaEntry {
    calls_per_second: i64,
    burst: Option<i64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    name: String,
    roles: Vec<String>,
    #[serde(default)]
    token_sha256: Vec<String>,
    cert_subject: Option<String>,
    calls_per_second: Option<i64>,
    burst: Option<i64>,
}

/// The role kinds a `[quota]` entry may name.
const ROLE_KINDS: [&str; 5] = ["connector", "store", "erp", "reader", "admin"];

/// Most token hashes per principal (or for the metrics endpoint): the one in use and the one
/// replacing it.
pub const TOKENS_PER_PRINCIPAL_MAX: usize = 2;

/// Why the principals file was refused.
#[derive(Debug, thiserror::Error)]
#[error("principals file {path}: {why}")]
pub struct AuthError {
    path: PathBuf,
    why: String,
}

/// Every principal and the metrics endpoint's token hashes, as of one read of the file.
#[derive(Debug, Default)]
pub struct Principals {
    principals: Vec<Arc<Principal>>,
    metrics_tokens: Vec<TokenHash>,
}

impl Principals {
    /// Parses and checks a principals file.
    pub fn parse(text: &str) -> Result<Principals, String> {
        // One line (toml's own text draws the line with a caret), so a log line holds it.
        let file: PrincipalsFile = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => format!("{} (at bytes {}..{})", e.message(), span.start, span.end),
            None => e.message().to_owned(),
        })?;
        let metrics_tokens = hashes("metrics_token_sha256", &file.metrics_token_sha256)?;
        let mut role_quotas = BTreeMap::new();
        for (role, entry) in &file.quota {
            if !ROLE_KINDS.contains(&role.as_str()) {
                return Err(format!(
                    "quota.{role}: unknown role (expected one of {})",
                    ROLE_KINDS.join(", ")
                ));
            }
            let quota = Quota::parse(
                &format!("quota.{role}."),
                entry.calls_per_second,
                entry.burst,
            )?;
            role_quotas.insert(role.as_str(), quota);
        }
        let now = Instant::now();
        let mut principals = Vec::with_capacity(file.principal.len());
        let mut names = BTreeSet::new();
        for entry in file.principal {
            let name = entry.name;
            if name.is_empty() || !names.insert(name.clone()) {
                return Err(format!("principal name {name:?} is empty or given twice"));
            }
            let tokens = hashes(
                &format!("principal {name:?} token_sha256"),
                &entry.token_sha256,
            )?;
            if tokens.is_empty() && entry.cert_subject.is_none() {
                return Err(format!(
                    "principal {name:?} has neither token_sha256 nor cert_subject"
                ));
            }
            if entry.roles.is_empty() {
                return Err(format!("principal {name:?} has no roles"));
            }
            let own_quota = match (entry.calls_per_second, entry.burst) {
                (Some(rate), burst) => {
                    Some(Quota::parse(&format!("principal {name:?}: "), rate, burst)?)
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "principal {name:?}: burst without calls_per_second"
                    ));
                }
                (None, None) => None,
            };
            let mut principal = Principal {
                name: name.clone(),
                tokens,
                cert_subject: entry.cert_subject,
                channels: BTreeSet::new(),
                stores: BTreeSet::new(),
                erp: false,
                reader: false,
                admin: false,
                quota: None,
            };
            // The most generous of its roles' quotas: by rate, then burst.
            let mut role_quota: Option<Quota> = None;
            for role in &entry.roles {
                match role.split_once(':') {
                    Some(("connector", channel)) if !channel.is_empty() => {
                        principal.channels.insert(channel.to_owned());
                    }
                    Some(("store", store)) if !store.is_empty() => {
                        principal.stores.insert(store.to_owned());
                    }
                    None if role == "erp" => principal.erp = true,
                    None if role == "reader" => principal.reader = true,
                    None if role == "admin" => principal.admin = true,
                    _ => {
                        return Err(format!(
                            "principal {name:?}: unknown role {role:?} (expected \
                             connector:CHANNEL, store:STORE_ID, erp, reader or admin)"
                        ));
                    }
                }
                let kind = role.split_once(':').map_or(role.as_str(), |(kind, _)| kind);
                if let Some(quota) = role_quotas.get(kind) {
                    let key = |q: &Quota| (q.calls_per_second, q.burst);
                    if role_quota.is_none_or(|q| key(quota) > key(&q)) {
                        role_quota = Some(*quota);
                    }
                }
            }
            principal.quota = own_quota
                .or(role_quota)
                .map(|quota| (quota, Arc::new(Bucket::new(quota, now))));
            principals.push(Arc::new(principal));
        }
        // One credential, one principal: otherwise which roles apply would depend on order.
        for (i, a) in principals.iter().enumerate() {
            for b in &principals[i + 1..] {
                if a.tokens.iter().any(|t| b.tokens.contains(t)) {
                    return Err(format!(
                        "principals {:?} and {:?} share a token hash",
                        a.name, b.name
                    ));
                }
                if a.cert_subject.is_some() && a.cert_subject == b.cert_subject {
                    return Err(format!(
                        "principals {:?} and {:?} share a cert_subject",
                        a.name, b.name
                    ));
                }
            }
        }
        Ok(Principals {
            principals,
            metrics_tokens,
        })
    }

    pub fn len(&self) -> usize {
        self.principals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
    }

    /// The principal holding `token`: every hash is compared, in constant time, with no early
    /// exit (no two principals share a hash, so at most one matches).
    fn by_token(&self, token: &str) -> Option<Arc<Principal>> {
        let presented: TokenHash = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for principal in &self.principals {
            for hash in &principal.tokens {
                if bool::from(hash.ct_eq(&presented)) {
                    found = Some(Arc::clone(principal));
                }
            }
        }
        found
    }

    fn by_subject(&self, subject: &str) -> Option<Arc<Principal>> {
        self.principals
            .iter()
            .find(|p| p.cert_subject.as_deref() == Some(subject))
            .cloned()
    }

    fn metrics_token_matches(&self, token: &str) -> bool {
        let presented: TokenHash = Sha256::digest(token.as_bytes()).into();
        let mut matched = false;
        for hash in &self.metrics_tokens {
            matched |= bool::from(hash.ct_eq(&presented));
        }
        matched
    }
}

fn hashes(what: &str, texts: &[String]) -> Result<Vec<TokenHash>, String> {
    if texts.len() > TOKENS_PER_PRINCIPAL_MAX {
        return Err(format!(
            "{what}: at most {TOKENS_PER_PRINCIPAL_MAX} hashes (the current token and the next)"
        ));
    }
    texts
        .iter()
        .map(|t| {
            parse_hash(t).ok_or_else(|| {
                format!("{what}: {t:?} is not a SHA-256 in hex (64 characters 0-9, a-f)")
            })
        })
        .collect()
}

/// The principals in use, read from a file and swapped whole by [`Auth::reload`].
pub struct Auth {
    path: PathBuf,
    current: RwLock<Arc<Principals>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("path", &self.path)
            .field("principals", &self.principals().len())
            .finish()
    }
}

impl Auth {
    /// Reads the principals file; refuses one that names no principal (authentication on with
    /// nobody allowed in is a mistake, not a policy).
    pub fn load(path: &Path) -> Result<Arc<Auth>, AuthError> {
        let principals = read(path)?;
        Ok(Arc::new(Auth {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(principals)),
        }))
    }

    /// Reads the file again and swaps the set in; on error the set in use stays. Returns how
    /// many principals are now known.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let mut principals = read(&self.path)?;
        let count = principals.len();
        // A principal whose quota did not change keeps its bucket, and so its level.
        let old = self.principals();
        for principal in &mut principals.principals {
            let Some(kept) = old
                .principals
                .iter()
                .find(|p| p.name == principal.name)
                .and_then(|p| p.quota.as_ref())
            else {
                continue;
            };
            let fresh = Arc::get_mut(principal).expect("a principal just read is not shared");
            if let Some((quota, _)) = &fresh.quota
                && *quota == kept.0
            {
                fresh.quota = Some((kept.0, Arc::clone(&kept.1)));
            }
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(principals);
        Ok(count)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn principals(&self) -> Arc<Principals> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The caller of a request with these headers and connection facts: its bearer token's
    /// principal, else its client certificate's.
    fn authenticate(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<Arc<Principal>, Failure> {
        let principals = self.principals();
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let token = bearer(value).ok_or_else(|| {
                Failure::unauthenticated("the authorization metadata is not `Bearer <token>`")
            })?;
            return principals
                .by_token(token)
                .ok_or_else(|| Failure::unauthenticated("unknown bearer token"));
        }
        if let Some(subject) = peer_subject(extensions) {
            return principals.by_subject(&subject).ok_or_else(|| {
                Failure::unauthenticated(format!(
                    "no principal has the client certificate subject {subject:?}"
                ))
            });
        }
        Err(Failure::unauthenticated(
            "no credential: send `authorization: Bearer <token>` (docs/security.md)",
        ))
    }

    /// Whether an HTTP request to the metrics endpoint carries its token.
    pub(crate) fn metrics_allowed(&self, headers: &http::HeaderMap) -> bool {
        headers
            .get(http::header::AUTHORIZATION)
            .and_then(bearer)
            .is_some_and(|token| self.principals().metrics_token_matches(token))
    }
}

fn read(path: &Path) -> Result<Principals, AuthError> {
    let fail = |why: String| AuthError {
        path: path.to_owned(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let principals = Principals::parse(&text).map_err(fail)?;
    if principals.is_empty() {
        return Err(fail("no [[principal]]: nobody could call the API".into()));
    }
    Ok(principals)
}

fn bearer(value: &http::HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The subject of the client's certificate under mutual TLS, as x509-parser writes it
/// (`CN=store-s-1, O=Example`: attributes in certificate order, joined by `, `).
fn peer_subject(extensions: &http::Extensions) -> Option<String> {
    let info = extensions.get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    let leaf = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.subject().to_string())
}

/// Who is calling, as the handlers see it.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// Authentication is off (loopback only, by default): every call is allowed.
    Anyone,
    Principal(Arc<Principal>),
}

impl Caller {
    /// The caller [`Authenticated`] resolved. A request that did not pass through it is
    /// refused: no extension means no check was made, and that must not mean "allowed".
    pub fn of(extensions: &http::Extensions) -> Result<Caller, Failure> {
        extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Failure::unauthenticated("the call was not authenticated"))
    }

    /// Who the engine records as having issued the caller's commands: the principal's name,
    /// or none with authentication off.
    pub fn by(&self) -> Option<PrincipalName> {
        match self {
            Caller::Anyone => None,
            Caller::Principal(principal) => Some(PrincipalName::from(principal.name.as_str())),
        }
    }

    pub fn grant(&self, permission: Permission) -> Grant<'_> {
        match self {
            Caller::Anyone => Grant::All,
            Caller::Principal(principal) => principal.grant(permission),
        }
    }

    /// Allowed whatever the scope.
    pub fn require(&self, permission: Permission) -> Result<(), Failure> {
        match self.grant(permission) {
            Grant::All => Ok(()),
            _ => Err(self.denied(permission, None)),
        }
    }

    /// Allowed for this channel or store (`kind` names which, for the message).
    pub fn require_in(
        &self,
        permission: Permission,
        kind: &str,
        scope: &str,
    ) -> Result<(), Failure> {
        if self.may_in(permission, scope) {
            Ok(())
        } else {
            Err(self.denied(permission, Some((kind, scope))))
        }
    }

    pub fn may_in(&self, permission: Permission, scope: &str) -> bool {
        match self.grant(permission) {
            Grant::All => true,
            Grant::Scoped(scopes) => scopes.contains(scope),
            Grant::None => false,
        }
    }

    pub fn denied(&self, permission: Permission, scope: Option<(&str, &str)>) -> Failure {
        let name = match self {
            Caller::Anyone => "anyone",
            Caller::Principal(principal) => principal.name.as_str(),
        };
        let scope = scope.map_or(String::new(), |(kind, id)| format!(" for {kind} {id:?}"));
        Failure::permission_denied(
            permission.name(),
            format!(
                "principal {name:?} lacks the permission `{}`{scope}",
                permission.name()
            ),
        )
    }
}

/// Checks `permission` on hold `reservation_id`. A caller scoped to channels may only touch
/// holds of its channels; a hold of another channel gets exactly the NOT_FOUND an unknown id
/// gets, so whether it exists is never revealed. An unknown or malformed id passes: the
/// handler answers it as it answers anyone.
pub(crate) fn hold_in_scope(
    shared: &Shared,
    caller: &Caller,
    permission: Permission,
    reservation_id: &str,
) -> Result<(), Failure> {
    let channels = match caller.grant(permission) {
        Grant::All => return Ok(()),
        Grant::None => return Err(caller.denied(permission, None)),
        Grant::Scoped(channels) => channels,
    };
    let mut errors = crate::convert::FieldErrors::default();
    crate::convert::check_id(&mut errors, "reservation_id", reservation_id);
    if errors.finish(()).is_err() {
        return Ok(());
    }
    match shared.engine.reservation(reservation_id) {
        Ok(Some(hold)) if !channels.contains(&hold.channel) => {
            Err(Failure::reservation_not_found(reservation_id))
        }
        Ok(_) => Ok(()),
        Err(error) => Err(crate::status::submit_error(
            &inv_engine::SubmitError::Archive(error),
        )),
    }
}

/// RecordSales: the store must be one of the caller's. The whole call is refused otherwise.
pub(crate) fn check_sales(
    caller: &Caller,
    request: &inv_proto::v1::RecordSalesRequest,
) -> Result<(), Failure> {
    caller.require_in(Permission::SalesWrite, "store", &request.store_id)
}

/// RecordReturns: a return has no store, so a store principal may post only returns whose
/// every line arrives at one of its stores (a store's id is its location's). One line
/// elsewhere refuses the whole call, before anything is applied.
pub(crate) fn check_returns(
    caller: &Caller,
    request: &inv_proto::v1::RecordReturnsRequest,
) -> Result<(), Failure> {
    let permission = Permission::ReturnsWrite;
    match caller.grant(permission) {
        Grant::All => Ok(()),
        Grant::None => Err(caller.denied(permission, None)),
        Grant::Scoped(_) => {
            for line in request.returns.iter().flat_map(|r| &r.lines) {
                caller.require_in(permission, "location", &line.location)?;
            }
            Ok(())
        }
    }
}

/// Resolves each `Inventory` call's [`Caller`] before its body is read; UNAUTHENTICATED when
/// authentication is on and the call carries no known credential.
#[derive(Clone)]
pub(crate) struct Authenticated<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Authenticated<S> {
    pub fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

type Refused =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl<S, B> tonic::codegen::Service<http::Request<B>> for Authenticated<S>
where
    S: tonic::codegen::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Either<S::Future, Refused>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let caller = match &self.shared.auth {
            None => Caller::Anyone,
            Some(auth) => match auth
                .authenticate(request.headers(), request.extensions())
                .and_then(|principal| {
                    principal.take_call(Instant::now()).inspect_err(|_| {
                        self.shared.metrics.observe_quota_refusal(&principal.name);
                    })?;
                    Ok(principal)
                }) {
                Ok(principal) => Caller::Principal(principal),
                Err(failure) => {
                    let response = tonic::Status::from(failure).into_http();
                    return Either::Right(Box::pin(async move { Ok(response) }));
                }
            },
        };
        request.extensions_mut().insert(caller);
        Either::Left(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests;
