//! Signing-key material: the key directory on disk, key generation, and the immutable
//! [`KeySet`] snapshot that signs and verifies tokens.
//!
//! The key directory holds one PKCS#8 PEM file per key (`<kid>.pem`, mode 0600) and a metadata
//! file `keys.json` that records each key's algorithm and lifecycle state. Every instance that
//! mounts the same directory therefore agrees on which key signs and which keys are published.
//!
//! Permissions are part of the directory's integrity: whoever can write the directory (or
//! `keys.json`) can add or activate a signing key, and whoever can read a private key can sign
//! as the service. So every load and reload first judges the modes ([`permission_findings`]):
//! the directory, `keys.json` and the real directory of each key file must belong to this
//! process's user or to root and be writable by nobody else, unless they sit on a read-only
//! mount (a Kubernetes Secret volume's directory is world-writable but mounted read-only); a
//! private key must belong to this user with no group or other bits (0600, 0400), or to root
//! and be readable at most by its group (0640, 0440: a Secret mounted for an `fsGroup`). The
//! rule is PostgreSQL's for its server key. Under [`PermissionPolicy::Refuse`] a finding
//! refuses the load; under [`PermissionPolicy::Warn`] it is only reported.
//!
//! A [`KeySet`] is built once per (re)load and then shared behind an `Arc`: signing uses
//! aws-lc-rs key pairs parsed once at load time, so no request pays for PEM/DER parsing, and
//! verification uses `jsonwebtoken` decoding keys built from the same public components that the
//! JWKS publishes.

use std::any::Any;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as lc_sig, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::cache::{BoundedCache, CacheCounters};

/// The file beside the keys that records their lifecycle.
pub const METADATA_FILE: &str = "keys.json";

/// Signing algorithms this service issues and accepts. Nothing else is ever accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyAlg {
    RS256,
    ES256,
}

impl KeyAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::RS256 => "RS256",
            KeyAlg::ES256 => "ES256",
        }
    }

    pub fn jwt_algorithm(self) -> Algorithm {
        match self {
            KeyAlg::RS256 => Algorithm::RS256,
            KeyAlg::ES256 => Algorithm::ES256,
        }
    }
}

impl std::str::FromStr for KeyAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "RS256" => Ok(KeyAlg::RS256),
            "ES256" => Ok(KeyAlg::ES256),
            other => Err(format!("unsupported algorithm {other:?} (use RS256 or ES256)")),
        }
    }
}

/// Lifecycle of a key: `next` (published, not signing) → `active` (signing) → `retired`
/// (published until every token it signed has expired) → `removed` (gone from the JWKS).
/// `revoked` is the emergency exit: unpublished and untrusted at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Next,
    Active,
    Retired,
    Removed,
    Revoked,
}

impl KeyState {
    /// Whether the key appears in the JWKS and verifies tokens.
    pub fn is_published(self) -> bool {
        matches!(self, KeyState::Next | KeyState::Active | KeyState::Retired)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Removed => "removed",
            KeyState::Revoked => "revoked",
        }
    }
}

/// One key's entry in `keys.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyMeta {
    pub kid: String,
    pub alg: KeyAlg,
    pub state: KeyState,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the key first appeared in the JWKS; activation waits at least the JWKS max-age
    /// after this so that no verifier with a cached JWKS meets an unknown `kid`.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub published_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub activated_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub retired_at: Option<OffsetDateTime>,
}

/// The whole `keys.json` document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyMetadata {
    pub keys: Vec<KeyMeta>,
}

/// What can go wrong with key material; every message names the file or kid concerned.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key directory {path} is missing or unreadable: {source}")]
    DirUnreadable { path: PathBuf, source: std::io::Error },
    #[error("key metadata {path} is unreadable: {source}")]
    MetadataUnreadable { path: PathBuf, source: std::io::Error },
    #[error("key metadata {path} is malformed: {source}")]
    MetadataMalformed { path: PathBuf, source: serde_json::Error },
    #[error("key directory {0} holds no keys (run `auth-service keys generate`)")]
    Empty(PathBuf),
    #[error("key file {path} is unreadable: {source}")]
    KeyUnreadable { path: PathBuf, source: std::io::Error },
    #[error("key file {path} is malformed: {reason}")]
    KeyMalformed { path: PathBuf, reason: String },
    #[error("active kid {0:?} is not a published key in the key directory")]
    ActiveKidMissing(String),
    #[error("no active key in the key directory (activate one with `auth-service keys rotate`)")]
    NoActiveKey,
    #[error("more than one key is marked active: {0}")]
    SeveralActive(String),
    #[error("unknown kid {0:?}")]
    UnknownKid(String),
    #[error("{0}")]
    Lifecycle(String),
    #[error("could not write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error(
        "key directory {dir} is not safe: {findings} (fix the modes, or set \
         JWT_KEYS_ALLOW_INSECURE_PERMISSIONS=true to load it anyway with a warning)"
    )]
    InsecurePermissions { dir: PathBuf, findings: String },
}

/// What a load does with a key directory whose permissions let others in
/// (`JWT_KEYS_ALLOW_INSECURE_PERMISSIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionPolicy {
    /// Refuse the directory: startup fails, a reload keeps the previous keys.
    Refuse,
    /// Load it; the findings are kept in [`KeySet::warnings`] for the caller to log loudly.
    Warn,
}

/// What a path is to the key directory, for the rule its mode is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPath {
    /// The key directory, the real directory of a key file, or `keys.json`: nobody else may
    /// write it.
    Writable,
    /// A private key: nobody else may read it.
    PrivateKey,
}

/// The ownership and mode of one path, as [`judge_permissions`] needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub uid: u32,
    pub mode: u32,
    /// The filesystem holding it is mounted read-only.
    pub read_only: bool,
}

/// Why `stat` of a `kind` path lets someone other than `euid` (or root) in, if it does.
pub fn judge_permissions(kind: KeyPath, stat: Stat, euid: u32) -> Option<String> {
    let mode = stat.mode & 0o7777;
    let owner_is_us = stat.uid == euid;
    match kind {
        KeyPath::Writable if stat.read_only => None,
        KeyPath::Writable | KeyPath::PrivateKey if !owner_is_us && stat.uid != 0 => {
            Some(format!("owned by uid {}, neither this process's user ({euid}) nor root", stat.uid))
        }
        KeyPath::Writable if mode & 0o022 != 0 => {
            Some(format!("writable by its group or by others (mode {mode:04o}; at most 0755)"))
        }
        KeyPath::PrivateKey if owner_is_us && mode & 0o077 != 0 => {
            Some(format!("a private key open to its group or to others (mode {mode:04o}; 0600 or 0400)"))
        }
        KeyPath::PrivateKey if !owner_is_us && mode & 0o037 != 0 => Some(format!(
            "a root-owned private key open to more than reading by its group (mode {mode:04o}; at most 0640)"
        )),
        _ => None,
    }
}

/// This process's effective user id.
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether `path` sits on a filesystem mounted read-only (false when that cannot be told).
fn on_read_only_mount(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stats` is a valid place for
    // statvfs to write its answer, read only when it reports success.
    let ok = unsafe { libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) } == 0;
    // SAFETY: statvfs succeeded, so it filled `stats` in.
    ok && unsafe { stats.assume_init() }.f_flag & libc::ST_RDONLY != 0
}

/// The findings of [`judge_permissions`] for the key directory, `keys.json`, and each key file
/// `keys.json` publishes (through symbolic links, with the real directory of each); each names
/// its path. Paths that cannot be read are left to the load, which reports them.
pub fn permission_findings(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt as _;
    let euid = effective_uid();
    let mut findings = Vec::new();
    let mut judge = |path: &Path, kind: KeyPath| {
        let Ok(md) = fs::metadata(path) else { return };
        let stat = Stat { uid: md.uid(), mode: md.mode(), read_only: on_read_only_mount(path) };
        if let Some(finding) = judge_permissions(kind, stat, euid) {
            findings.push(format!("{} is {finding}", path.display()));
        }
    };
    judge(dir, KeyPath::Writable);
    judge(&dir.join(METADATA_FILE), KeyPath::Writable);
    let published = read_metadata(dir).map(|m| m.keys).unwrap_or_default();
    let mut real_dirs = std::collections::BTreeSet::new();
    for key in published.iter().filter(|k| k.state.is_published()) {
        let path = dir.join(format!("{}.pem", key.kid));
        judge(&path, KeyPath::PrivateKey);
        if let Some(parent) = fs::canonicalize(&path).ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
            real_dirs.insert(parent);
        }
    }
    real_dirs.remove(&fs::canonicalize(dir).unwrap_or_default());
    for real_dir in &real_dirs {
        judge(real_dir, KeyPath::Writable);
    }
    findings
}

/// Applies `policy` to the directory's [`permission_findings`]: an error under `Refuse`, else
/// the findings as warnings.
pub fn check_permissions(dir: &Path, policy: PermissionPolicy) -> Result<Vec<String>, KeyError> {
    let findings = permission_findings(dir);
    if findings.is_empty() || policy == PermissionPolicy::Warn {
        return Ok(findings);
    }
    Err(KeyError::InsecurePermissions { dir: dir.to_path_buf(), findings: findings.join("; ") })
}

/// Reads `keys.json` from `dir` (the source of truth: PEM files it does not list are ignored).
/// A directory without it has no keys; a directory that does not exist is reported as such.
pub fn read_metadata(dir: &Path) -> Result<KeyMetadata, KeyError> {
    fs::read_dir(dir).map_err(|source| KeyError::DirUnreadable { path: dir.to_path_buf(), source })?;
    let path = dir.join(METADATA_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeyMetadata::default()),
        Err(source) => return Err(KeyError::MetadataUnreadable { path, source }),
    };
    serde_json::from_slice(&bytes).map_err(|source| KeyError::MetadataMalformed { path, source })
}

/// Writes `keys.json` atomically (write to a temporary file, then rename) so that an instance
/// reloading at the same moment never reads half a file.
pub fn write_metadata(dir: &Path, meta: &KeyMetadata) -> Result<(), KeyError> {
    let path = dir.join(METADATA_FILE);
    let tmp = dir.join(format!(".{METADATA_FILE}.{}", std::process::id()));
    let body = serde_json::to_vec_pretty(meta).map_err(|e| KeyError::Generate(e.to_string()))?;
    let write = |p: &Path| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o644).open(p)?;
        f.write_all(&body)?;
        f.sync_all()
    };
    write(&tmp).map_err(|source| KeyError::Write { path: tmp.clone(), source })?;
    fs::rename(&tmp, &path).map_err(|source| KeyError::Write { path, source })
}

/// A freshly generated key, as returned by [`generate_key`].
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    pub kid: String,
    pub alg: KeyAlg,
    pub state: KeyState,
    pub path: PathBuf,
}

/// Generates a key into `dir` (created with mode 0700 if absent). The key file is written with
/// mode 0600. The first key of an empty directory becomes `active` at once, so a fresh install
/// needs one command; any later key starts as `next` and is activated by rotation.
pub fn generate_key(dir: &Path, alg: KeyAlg, rsa_bits: usize) -> Result<GeneratedKey, KeyError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|source| KeyError::Write { path: dir.to_path_buf(), source })?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|source| KeyError::Write { path: dir.to_path_buf(), source })?;
    }
    let mut meta = read_metadata(dir)?;
    let (pem, jwk) = match alg {
        KeyAlg::RS256 => generate_rsa(rsa_bits)?,
        KeyAlg::ES256 => generate_ec()?,
    };
    let kid = jwk_thumbprint(&jwk);
    let path = dir.join(format!("{kid}.pem"));
    let mut file = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| KeyError::Write { path: path.clone(), source })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Write { path: path.clone(), source })?;

    let now = OffsetDateTime::now_utc();
    let first = !meta.keys.iter().any(|k| k.state.is_published());
    let state = if first { KeyState::Active } else { KeyState::Next };
    meta.keys.push(KeyMeta {
        kid: kid.clone(),
        alg,
        state,
        created_at: now,
        published_at: Some(now),
        activated_at: first.then_some(now),
        retired_at: None,
    });
    write_metadata(dir, &meta)?;
    Ok(GeneratedKey { kid, alg, state, path })
}

fn generate_rsa(bits: usize) -> Result<(String, serde_json::Value), KeyError> {
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    if bits < 2048 {
        return Err(KeyError::Generate(format!("RSA keys must have at least 2048 bits, not {bits}")));
    }
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits).map_err(|e| KeyError::Generate(e.to_string()))?;
    let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).map_err(|e| KeyError::Generate(e.to_string()))?;
    let jwk = rsa_jwk(&key.n_bytes(), &key.e_bytes());
    Ok((pem.to_string(), jwk))
}

fn generate_ec() -> Result<(String, serde_json::Value), KeyError> {
    use p256::elliptic_curve::Generate;
    use p256::pkcs8::EncodePrivateKey;
    let key = p256::SecretKey::try_generate_from_rng(&mut getrandom::SysRng)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let pem = key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).map_err(|e| KeyError::Generate(e.to_string()))?;
    let point = key.public_key().to_sec1_bytes();
    let jwk = ec_jwk(&point).ok_or_else(|| KeyError::Generate("bad P-256 point".into()))?;
    Ok((pem.to_string(), jwk))
}

fn rsa_jwk(n: &[u8], e: &[u8]) -> serde_json::Value {
    serde_json::json!({ "kty": "RSA", "n": B64.encode(n), "e": B64.encode(e) })
}

/// Builds the JWK of an uncompressed SEC1 P-256 point (0x04 || x || y).
fn ec_jwk(point: &[u8]) -> Option<serde_json::Value> {
    if point.len() != 65 || point[0] != 4 {
        return None;
    }
    Some(serde_json::json!({
        "kty": "EC", "crv": "P-256",
        "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..]),
    }))
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexical order.
fn jwk_thumbprint(jwk: &serde_json::Value) -> String {
    let canonical = match jwk["kty"].as_str() {
        Some("RSA") => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            jwk["e"].as_str().unwrap_or(""),
            jwk["n"].as_str().unwrap_or("")
        ),
        _ => format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap_or(""),
            jwk["y"].as_str().unwrap_or("")
        ),
    };
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

/// The timings the lifecycle rules depend on.
#[derive(Debug, Clone, Copy)]
pub struct Lifecycle {
    /// `JWKS_MAX_AGE`: how long a verifier may cache the JWKS.
    pub jwks_max_age: Duration,
    /// `KEYS_POLL_INTERVAL`: how long a running instance may take to notice a change.
    pub poll_interval: Duration,
    /// `ACCESS_TOKEN_TTL`: the longest life of a token a retired key signed.
    pub access_ttl: Duration,
    /// `CLOCK_SKEW`: extra margin on both rules.
    pub clock_skew: Duration,
}

impl Lifecycle {
    /// How long a key must have been published before it may sign: every verifier's cached
    /// JWKS must already contain it.
    pub fn publish_delay(&self) -> Duration {
        self.jwks_max_age + self.poll_interval + self.clock_skew
    }

    /// How long a retired key stays published: every token it signed must have expired.
    pub fn retire_delay(&self) -> Duration {
        self.access_ttl + self.clock_skew + self.poll_interval
    }
}

/// What a lifecycle command changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LifecycleReport {
    pub activated: Option<String>,
    pub retired: Option<String>,
    pub removed: Vec<String>,
    pub revoked: Option<String>,
}

fn remove_key_file(dir: &Path, kid: &str) -> Result<(), KeyError> {
    let path = dir.join(format!("{kid}.pem"));
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(KeyError::Write { path, source }),
    }
}

fn seconds_until(t: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (t - now).whole_seconds().max(1)
}

/// Marks retired keys whose tokens have all expired as removed (deleting their private key).
fn prune(dir: &Path, meta: &mut KeyMetadata, rules: &Lifecycle, now: OffsetDateTime) -> Result<Vec<String>, KeyError> {
    let mut removed = Vec::new();
    for key in meta.keys.iter_mut().filter(|k| k.state == KeyState::Retired) {
        let retired_at = key.retired_at.unwrap_or(key.created_at);
        if now >= retired_at + rules.retire_delay() {
            key.state = KeyState::Removed;
            remove_key_file(dir, &key.kid)?;
            removed.push(key.kid.clone());
        }
    }
    Ok(removed)
}

/// Scheduled rotation: activates the oldest `next` key (refused until it has been published
/// for the publish delay), retires the active key, and removes retired keys whose tokens have
/// all expired.
pub fn rotate(dir: &Path, rules: &Lifecycle, now: OffsetDateTime) -> Result<LifecycleReport, KeyError> {
    let mut meta = read_metadata(dir)?;
    let mut report = LifecycleReport { removed: prune(dir, &mut meta, rules, now)?, ..Default::default() };
    let candidate = meta
        .keys
        .iter()
        .enumerate()
        .filter(|(_, k)| k.state == KeyState::Next)
        .min_by_key(|(_, k)| k.published_at.unwrap_or(k.created_at))
        .map(|(i, k)| (i, k.kid.clone(), k.published_at.unwrap_or(k.created_at)));
    let Some((index, kid, published_at)) = candidate else {
        if !report.removed.is_empty() {
            write_metadata(dir, &meta)?;
            return Ok(report);
        }
        return Err(KeyError::Lifecycle(
            "no key in state next to activate; run `auth-service keys generate` first".into(),
        ));
    };
    let ready_at = published_at + rules.publish_delay();
    if now < ready_at {
        if !report.removed.is_empty() {
            write_metadata(dir, &meta)?;
        }
        return Err(KeyError::Lifecycle(format!(
            "key {kid} cannot be activated before it has been published for {:.1}s (JWKS max-age {:.1}s + reload interval {:.1}s + clock skew {:.1}s); try again in {}s",
            rules.publish_delay().as_secs_f64(),
            rules.jwks_max_age.as_secs_f64(),
            rules.poll_interval.as_secs_f64(),
            rules.clock_skew.as_secs_f64(),
            seconds_until(ready_at, now)
        )));
    }
    for key in meta.keys.iter_mut().filter(|k| k.state == KeyState::Active) {
        key.state = KeyState::Retired;
        key.retired_at = Some(now);
        report.retired = Some(key.kid.clone());
    }
    let key = &mut meta.keys[index];
    key.state = KeyState::Active;
    key.activated_at = Some(now);
    report.activated = Some(kid);
    write_metadata(dir, &meta)?;
    Ok(report)
}

/// Removes a retired key from the JWKS; refused while tokens it signed may still be live.
pub fn remove(dir: &Path, kid: &str, rules: &Lifecycle, now: OffsetDateTime) -> Result<LifecycleReport, KeyError> {
    let mut meta = read_metadata(dir)?;
    let key = meta.keys.iter_mut().find(|k| k.kid == kid).ok_or_else(|| KeyError::UnknownKid(kid.to_string()))?;
    if key.state != KeyState::Retired {
        return Err(KeyError::Lifecycle(format!(
            "key {kid} is {}; only a retired key can be removed (use `keys revoke` in an emergency)",
            key.state.as_str()
        )));
    }
    let until = key.retired_at.unwrap_or(key.created_at) + rules.retire_delay();
    if now < until {
        return Err(KeyError::Lifecycle(format!(
            "key {kid} may still have live tokens (access-token TTL {:.1}s + clock skew {:.1}s + reload interval {:.1}s after retirement); try again in {}s",
            rules.access_ttl.as_secs_f64(),
            rules.clock_skew.as_secs_f64(),
            rules.poll_interval.as_secs_f64(),
            seconds_until(until, now)
        )));
    }
    key.state = KeyState::Removed;
    remove_key_file(dir, kid)?;
    write_metadata(dir, &meta)?;
    Ok(LifecycleReport { removed: vec![kid.to_string()], ..Default::default() })
}

/// Emergency revoke: the key leaves the JWKS at once and its tokens stop verifying. Revoking
/// the active key activates the newest `next` key immediately (there must be one).
pub fn revoke(dir: &Path, kid: &str, now: OffsetDateTime) -> Result<LifecycleReport, KeyError> {
    let mut meta = read_metadata(dir)?;
    let index = meta.keys.iter().position(|k| k.kid == kid).ok_or_else(|| KeyError::UnknownKid(kid.to_string()))?;
    let was_active = meta.keys[index].state == KeyState::Active;
    let mut report = LifecycleReport { revoked: Some(kid.to_string()), ..Default::default() };
    if was_active {
        let replacement = meta
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.state == KeyState::Next)
            .max_by_key(|(_, k)| k.created_at)
            .map(|(i, _)| i)
            .ok_or_else(|| {
                KeyError::Lifecycle(format!(
                    "{kid} is the active key and there is no next key to replace it; run `auth-service keys generate` first"
                ))
            })?;
        let next = &mut meta.keys[replacement];
        next.state = KeyState::Active;
        next.activated_at = Some(now);
        report.activated = Some(next.kid.clone());
    }
    meta.keys[index].state = KeyState::Revoked;
    meta.keys[index].retired_at = Some(now);
    remove_key_file(dir, kid)?;
    write_metadata(dir, &meta)?;
    Ok(report)
}

/// A cheap fingerprint of `keys.json` (modification time and length), to notice changes.
pub fn metadata_stamp(dir: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = fs::metadata(dir.join(METADATA_FILE)).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// A private key parsed once, ready to sign.
enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// One published key: its entry in `keys.json` and what was parsed from its file.
struct LoadedKey {
    meta: KeyMeta,
    material: Arc<Material>,
}

/// What a key file yields: the public half for verification and JWKS, and the signer. Shared
/// between snapshots, so that a reload can keep a key it loaded before when its file has
/// since become unreadable.
struct Material {
    jwk: serde_json::Value,
    decoding: DecodingKey,
    signer: Signer,
}

/// The JWKS document as served: the exact bytes and their strong ETag.
#[derive(Debug, Clone)]
pub struct JwksDocument {
    pub body: bytes::Bytes,
    pub etag: String,
}

/// An immutable snapshot of the key directory. Built by the KeyManager on (re)load and shared
/// with request handlers, which sign and verify without going through a mailbox.
pub struct KeySet {
    keys: BTreeMap<String, LoadedKey>,
    /// The key that signs; `None` when a reload found no loadable active key (signing then
    /// fails and readiness says so).
    active_kid: Option<String>,
    /// What a reload could not load or decide, for readiness; empty when the directory is whole.
    problems: Vec<String>,
    /// Permission findings loaded past under [`PermissionPolicy::Warn`], for the log.
    warnings: Vec<String>,
    jwks: JwksDocument,
    rng: SystemRandom,
    /// Tokens this snapshot has already verified, so a client reusing its token costs one RSA
    /// verification per snapshot, not one per request. Keyed by the SHA-256 of the exact token
    /// text (32 bytes instead of the token's kilobyte, so many more fit in the same memory); the
    /// rules and the claims type must match, and the time check is redone on every hit; a key
    /// change makes a new snapshot and so an empty cache. Bounded, with real eviction (see
    /// [`crate::cache`]).
    verified: BoundedCache<[u8; 32], Arc<Verified>>,
}

/// A cached verification: the claims (of whichever type they were decoded into), and what must
/// be re-checked against the clock.
struct Verified {
    rules: u64,
    exp: i64,
    nbf: i64,
    claims: Arc<dyn Any + Send + Sync>,
}

/// Tokens remembered by one snapshot when the KeyManager does not say otherwise.
pub const DEFAULT_VERIFIED_CACHE: usize = 16_384;

/// The cache key of a token: the digest of its exact text.
fn token_key(token: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref());
    key
}

/// What a verified token decodes into: its own type, with the registered claims the verifier
/// re-checks against the clock on every cache hit. A verification whose `exp` or `nbf` is not
/// a whole number of seconds is not cached.
pub trait Claims: DeserializeOwned + Send + Sync + 'static {
    fn exp(&self) -> Option<i64>;
    fn nbf(&self) -> Option<i64>;
    /// `iat`, which must be present (jsonwebtoken does not enforce it).
    fn iat(&self) -> Option<i64>;
}

/// Any JSON claims set (tools and fuzzing).
impl Claims for serde_json::Value {
    fn exp(&self) -> Option<i64> {
        self.get("exp").and_then(serde_json::Value::as_i64)
    }
    fn nbf(&self) -> Option<i64> {
        self.get("nbf").and_then(serde_json::Value::as_i64)
    }
    fn iat(&self) -> Option<i64> {
        self.get("iat").and_then(serde_json::Value::as_i64)
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("active_kid", &self.active_kid)
            .finish_non_exhaustive()
    }
}

/// Errors while signing or verifying a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unknown kid")]
    UnknownKid,
    #[error("algorithm not allowed for this key")]
    AlgorithmMismatch,
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("wrong token type")]
    WrongType,
    #[error("signing failed")]
    Signing,
}

/// What a verifier checks besides the signature.
#[derive(Debug, Clone, Hash)]
pub struct VerifyRules {
    /// The required `typ` header (`at+jwt` for access tokens).
    pub typ: &'static str,
    pub issuer: String,
    /// The required `aud`; `None` accepts any (introspection, which answers for tokens issued
    /// to every audience of this issuer).
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

impl VerifyRules {
    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}

impl KeySet {
    /// Loads every published key of `dir`, refusing a directory that is not whole or that
    /// others could write or read (startup fails fast on it). `active_override` (from
    /// `JWT_ACTIVE_KID`) wins over the metadata's active key, and must name a published key.
    pub fn load(dir: &Path, active_override: Option<&str>) -> Result<KeySet, KeyError> {
        KeySet::load_with(dir, active_override, PermissionPolicy::Refuse)
    }

    /// [`KeySet::load`], with the permissions held to `policy`.
    pub fn load_with(dir: &Path, active_override: Option<&str>, policy: PermissionPolicy) -> Result<KeySet, KeyError> {
        let warnings = check_permissions(dir, policy)?;
        let meta = read_metadata(dir)?;
        let published: Vec<&KeyMeta> = meta.keys.iter().filter(|k| k.state.is_published()).collect();
        if published.is_empty() {
            return Err(KeyError::Empty(dir.to_path_buf()));
        }
        let mut keys = BTreeMap::new();
        for m in published {
            let key = load_key(dir, m)?;
            keys.insert(m.kid.clone(), key);
        }
        let active_kid = choose_active(&keys, active_override)?;
        Ok(KeySet::new(keys, Some(active_kid), Vec::new(), warnings))
    }

    /// Reloads `dir` while serving: exactly the keys `keys.json` publishes now, so that a
    /// revoked or removed key goes at once even when another key's file is broken. A published
    /// key whose file cannot be loaded keeps the material `previous` had for it, if any, and is
    /// left out otherwise; each such failure is listed in [`KeySet::problems`]. Fails only when
    /// `keys.json` itself cannot be read, or when the permissions break the rule under
    /// [`PermissionPolicy::Refuse`] (nothing is then known to change, or to be ours).
    pub fn reload(
        dir: &Path,
        active_override: Option<&str>,
        previous: Option<&KeySet>,
        policy: PermissionPolicy,
    ) -> Result<KeySet, KeyError> {
        let warnings = check_permissions(dir, policy)?;
        let meta = read_metadata(dir)?;
        let mut keys = BTreeMap::new();
        let mut problems = Vec::new();
        for m in meta.keys.iter().filter(|k| k.state.is_published()) {
            match load_key(dir, m) {
                Ok(key) => {
                    keys.insert(m.kid.clone(), key);
                }
                Err(e) => {
                    let kept = previous.and_then(|p| p.keys.get(&m.kid)).filter(|k| k.meta.alg == m.alg);
                    match kept {
                        Some(k) => {
                            problems.push(format!("{e} (the copy loaded earlier stays in use)"));
                            keys.insert(m.kid.clone(), LoadedKey { meta: m.clone(), material: k.material.clone() });
                        }
                        None => problems.push(format!("{e} (left out)")),
                    }
                }
            }
        }
        let active_kid = match choose_active(&keys, active_override) {
            Ok(kid) => Some(kid),
            Err(e) => {
                problems.push(format!("{e}; nothing can be signed"));
                None
            }
        };
        Ok(KeySet::new(keys, active_kid, problems, warnings))
    }

    fn new(
        keys: BTreeMap<String, LoadedKey>,
        active_kid: Option<String>,
        problems: Vec<String>,
        warnings: Vec<String>,
    ) -> KeySet {
        let jwks = build_jwks(&keys);
        let verified = BoundedCache::new(DEFAULT_VERIFIED_CACHE, CacheCounters::default());
        KeySet { keys, active_kid, problems, warnings, jwks, rng: SystemRandom::new(), verified }
    }

    /// The permission findings this snapshot was loaded past ([`PermissionPolicy::Warn`]).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The same snapshot with a verification cache of `capacity` tokens counted in `counters`.
    pub fn with_cache(mut self, capacity: usize, counters: CacheCounters) -> KeySet {
        self.verified = BoundedCache::new(capacity, counters);
        self
    }

    /// The key that signs, if there is one.
    pub fn active_kid(&self) -> Option<&str> {
        self.active_kid.as_deref()
    }

    /// What the last reload could not load or decide; empty when the key directory is whole.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    fn active(&self) -> Option<&LoadedKey> {
        self.keys.get(self.active_kid.as_deref()?)
    }

    pub fn active_alg(&self) -> KeyAlg {
        self.active().map(|k| k.meta.alg).unwrap_or(KeyAlg::RS256)
    }

    /// When the active key started signing (for the key-age metric).
    pub fn active_since(&self) -> Option<OffsetDateTime> {
        self.active().and_then(|k| k.meta.activated_at.or(Some(k.meta.created_at)))
    }

    pub fn jwks(&self) -> &JwksDocument {
        &self.jwks
    }

    pub fn kids(&self) -> impl Iterator<Item = (&str, KeyAlg, KeyState)> {
        self.keys.values().map(|k| (k.meta.kid.as_str(), k.meta.alg, k.meta.state))
    }

    /// Signs `claims` with the active key as a compact JWS with header
    /// `{alg, kid, typ}`. CPU-bound for RSA: call it off the async runtime.
    pub fn sign<C: Serialize>(&self, typ: &str, claims: &C) -> Result<String, TokenError> {
        let key = self.active().ok_or(TokenError::UnknownKid)?;
        let header = serde_json::json!({ "alg": key.meta.alg.as_str(), "kid": key.meta.kid, "typ": typ });
        let header = serde_json::to_vec(&header).map_err(|_| TokenError::Signing)?;
        let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Signing)?;
        let mut out = String::with_capacity(512);
        B64.encode_string(&header, &mut out);
        out.push('.');
        B64.encode_string(&payload, &mut out);
        let signature = match &key.material.signer {
            Signer::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&lc_sig::RSA_PKCS1_SHA256, &self.rng, out.as_bytes(), &mut sig)
                    .map_err(|_| TokenError::Signing)?;
                sig
            }
            Signer::Ec(pair) => {
                pair.sign(&self.rng, out.as_bytes()).map_err(|_| TokenError::Signing)?.as_ref().to_vec()
            }
        };
        out.push('.');
        B64.encode_string(&signature, &mut out);
        Ok(out)
    }

    /// Verifies a token's signature and registered claims, and decodes its claims into `C`.
    /// Only the algorithm that belongs to the token's `kid` is accepted, so `alg:none`, HS256
    /// key confusion and RSA/EC swaps all fail here. A claims set that does not decode into `C`
    /// is invalid.
    pub fn verify<C: Claims>(&self, token: &str, rules: &VerifyRules) -> Result<Arc<C>, TokenError> {
        let fingerprint = rules.fingerprint();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let leeway = rules.leeway.as_secs() as i64;
        let key = token_key(token);
        let hit = self.verified.get(&key, |v| v.rules == fingerprint && v.claims.is::<C>());
        if let Some(hit) = hit
            && let Ok(claims) = hit.claims.clone().downcast::<C>()
        {
            if now > hit.exp.saturating_add(leeway) {
                return Err(TokenError::Invalid(jsonwebtoken::errors::ErrorKind::ExpiredSignature.into()));
            }
            if hit.nbf > now.saturating_add(leeway) {
                return Err(TokenError::Invalid(jsonwebtoken::errors::ErrorKind::ImmatureSignature.into()));
            }
            return Ok(claims);
        }
        let claims: Arc<C> = Arc::new(self.verify_uncached(token, rules)?);
        if let (Some(exp), Some(nbf)) = (claims.exp(), claims.nbf()) {
            let entry = Verified { rules: fingerprint, exp, nbf, claims: claims.clone() };
            self.verified.insert(key, Arc::new(entry));
        }
        Ok(claims)
    }

    fn verify_uncached<C: Claims>(&self, token: &str, rules: &VerifyRules) -> Result<C, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let kid = header.kid.ok_or(TokenError::UnknownKid)?;
        let key = self.keys.get(&kid).ok_or(TokenError::UnknownKid)?;
        let alg = key.meta.alg.jwt_algorithm();
        if header.alg != alg {
            return Err(TokenError::AlgorithmMismatch);
        }
        if header.typ.as_deref() != Some(rules.typ) {
            return Err(TokenError::WrongType);
        }
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_issuer(&[rules.issuer.as_str()]);
        match &rules.audience {
            Some(audience) => validation.set_audience(&[audience.as_str()]),
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = rules.leeway.as_secs();
        let data = jsonwebtoken::decode::<C>(token, &key.material.decoding, &validation)?;
        // jsonwebtoken does not enforce `iat` from the required list; do it here.
        if data.claims.iat().is_none() {
            return Err(TokenError::Invalid(
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim("iat".into()).into(),
            ));
        }
        Ok(data.claims)
    }
}

fn load_key(dir: &Path, meta: &KeyMeta) -> Result<LoadedKey, KeyError> {
    let path = dir.join(format!("{}.pem", meta.kid));
    let pem = fs::read_to_string(&path).map_err(|source| KeyError::KeyUnreadable { path: path.clone(), source })?;
    let malformed = |reason: String| KeyError::KeyMalformed { path: path.clone(), reason };
    match meta.alg {
        KeyAlg::RS256 => {
            use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
            use rsa::traits::PublicKeyParts;
            let key =
                rsa::PrivateKey::from_pkcs8_pem(&pem).map_err(|e| malformed(format!("not an RSA PKCS#8 key: {e}")))?;
            if key.size() * 8 < 2048 {
                return Err(malformed(format!("RSA key has {} bits; at least 2048 are required", key.size() * 8)));
            }
            let der = key.to_pkcs8_der().map_err(|e| malformed(e.to_string()))?;
            let pair = RsaKeyPair::from_pkcs8(der.as_bytes()).map_err(|e| malformed(e.to_string()))?;
            let (n, e) = (key.n_bytes(), key.e_bytes());
            let decoding = DecodingKey::from_rsa_raw_components(&n, &e);
            let material = Material { jwk: rsa_jwk(&n, &e), decoding, signer: Signer::Rsa(pair) };
            Ok(LoadedKey { meta: meta.clone(), material: Arc::new(material) })
        }
        KeyAlg::ES256 => {
            use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
            let key =
                p256::SecretKey::from_pkcs8_pem(&pem).map_err(|e| malformed(format!("not a P-256 PKCS#8 key: {e}")))?;
            let der = key.to_pkcs8_der().map_err(|e| malformed(e.to_string()))?;
            let pair = EcdsaKeyPair::from_pkcs8(&lc_sig::ECDSA_P256_SHA256_FIXED_SIGNING, der.as_bytes())
                .map_err(|e| malformed(e.to_string()))?;
            let point = pair.public_key().as_ref().to_vec();
            let jwk = ec_jwk(&point).ok_or_else(|| malformed("bad P-256 public point".into()))?;
            let decoding = DecodingKey::from_ec_components(
                jwk["x"].as_str().unwrap_or_default(),
                jwk["y"].as_str().unwrap_or_default(),
            )
            .map_err(|e| malformed(e.to_string()))?;
            Ok(LoadedKey {
                meta: meta.clone(),
                material: Arc::new(Material { jwk, decoding, signer: Signer::Ec(pair) }),
            })
        }
    }
}

/// The signing key: `active_override` if it is published, else the one key marked active.
fn choose_active(keys: &BTreeMap<String, LoadedKey>, active_override: Option<&str>) -> Result<String, KeyError> {
    if let Some(kid) = active_override {
        if !keys.contains_key(kid) {
            return Err(KeyError::ActiveKidMissing(kid.to_string()));
        }
        return Ok(kid.to_string());
    }
    let active: Vec<&str> =
        keys.values().filter(|k| k.meta.state == KeyState::Active).map(|k| k.meta.kid.as_str()).collect();
    match active.as_slice() {
        [] => Err(KeyError::NoActiveKey),
        [one] => Ok(one.to_string()),
        many => Err(KeyError::SeveralActive(many.join(", "))),
    }
}

fn build_jwks(keys: &BTreeMap<String, LoadedKey>) -> JwksDocument {
    let list: Vec<serde_json::Value> = keys
        .values()
        .map(|k| {
            let mut jwk = k.material.jwk.clone();
            if let Some(obj) = jwk.as_object_mut() {
                obj.insert("kid".into(), k.meta.kid.clone().into());
                obj.insert("alg".into(), k.meta.alg.as_str().into());
                obj.insert("use".into(), "sig".into());
            }
            jwk
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "keys": list })).unwrap_or_default();
    let etag = format!("\"{}\"", B64.encode(&Sha256::digest(&body)[..16]));
    JwksDocument { body: bytes::Bytes::from(body), etag }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("auth-keys-{name}-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn permissions_follow_the_rule_of_a_server_key() {
        let judge = |kind, uid, mode, read_only| judge_permissions(kind, Stat { uid, mode, read_only }, 1000);
        // Directories and keys.json: ours or root's, writable by nobody else.
        assert_eq!(judge(KeyPath::Writable, 1000, 0o40700, false), None);
        assert_eq!(judge(KeyPath::Writable, 0, 0o40755, false), None);
        assert!(judge(KeyPath::Writable, 1000, 0o40775, false).is_some_and(|f| f.contains("mode 0775")));
        assert!(judge(KeyPath::Writable, 1000, 0o40777, false).is_some());
        assert!(judge(KeyPath::Writable, 1001, 0o40700, false).is_some_and(|f| f.contains("uid 1001")));
        // A Kubernetes Secret volume: a world-writable directory, mounted read-only.
        assert_eq!(judge(KeyPath::Writable, 0, 0o41777, true), None);
        // Private keys: ours with no group or other bits, or root's readable by its group at most.
        assert_eq!(judge(KeyPath::PrivateKey, 1000, 0o100600, false), None);
        assert_eq!(judge(KeyPath::PrivateKey, 1000, 0o100400, true), None);
        assert!(judge(KeyPath::PrivateKey, 1000, 0o100640, false).is_some());
        assert!(judge(KeyPath::PrivateKey, 1000, 0o100644, true).is_some(), "read-only does not hide a readable key");
        assert_eq!(judge(KeyPath::PrivateKey, 0, 0o100440, true), None);
        assert_eq!(judge(KeyPath::PrivateKey, 0, 0o100640, false), None);
        assert!(judge(KeyPath::PrivateKey, 0, 0o100644, true).is_some_and(|f| f.contains("mode 0644")));
        assert!(judge(KeyPath::PrivateKey, 0, 0o100660, false).is_some());
        assert!(judge(KeyPath::PrivateKey, 1001, 0o100600, false).is_some());
        // Running as root: a root-owned key is our own, so no group bits.
        assert!(judge_permissions(KeyPath::PrivateKey, Stat { uid: 0, mode: 0o100640, read_only: false }, 0).is_some());
    }

    #[test]
    fn first_generated_key_is_active_and_later_ones_are_next() {
        let dir = temp_dir("lifecycle");
        let first = generate_key(&dir, KeyAlg::ES256, 2048).expect("first key");
        let second = generate_key(&dir, KeyAlg::ES256, 2048).expect("second key");
        assert_eq!(first.state, KeyState::Active);
        assert_eq!(second.state, KeyState::Next);
        let mode = fs::metadata(&first.path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let set = KeySet::load(&dir, None).expect("load");
        assert_eq!(set.active_kid(), Some(first.kid.as_str()));
        let _ = fs::remove_dir_all(dir);
    }

    /// A key set with one fresh key of `alg`, a token it signed (valid for a minute), the rules
    /// that token meets, and the issue time.
    fn signed_fixture(name: &str, alg: KeyAlg) -> (PathBuf, KeySet, String, VerifyRules, i64) {
        let dir = temp_dir(name);
        generate_key(&dir, alg, 2048).expect("key");
        let set = KeySet::load(&dir, None).expect("load");
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = serde_json::json!({"iss": "i", "aud": "a", "sub": "s", "exp": now + 60, "nbf": now, "iat": now});
        let token = set.sign("at+jwt", &claims).expect("sign");
        let rules = VerifyRules {
            typ: "at+jwt",
            issuer: "i".into(),
            audience: Some("a".into()),
            leeway: Duration::from_secs(0),
        };
        (dir, set, token, rules, now)
    }

    #[test]
    fn signed_token_verifies_and_a_flipped_signature_does_not() {
        let (dir, set, token, rules, _) = signed_fixture("sign", KeyAlg::RS256);
        assert!(set.verify::<serde_json::Value>(&token, &rules).is_ok());
        let mut bad = token.clone().into_bytes();
        let last = bad.len() - 3;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert!(set.verify::<serde_json::Value>(&String::from_utf8(bad).expect("utf8"), &rules).is_err());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_cached_verification_is_only_reused_under_the_same_rules() {
        let (dir, set, token, rules, now) = signed_fixture("cache", KeyAlg::ES256);
        assert!(set.verify::<serde_json::Value>(&token, &rules).is_ok());
        assert!(set.verify::<serde_json::Value>(&token, &rules).is_ok(), "served from the cache");
        let other = VerifyRules { audience: Some("b".into()), ..rules.clone() };
        assert!(set.verify::<serde_json::Value>(&token, &other).is_err(), "other rules are checked afresh");
        let expired =
            serde_json::json!({"iss": "i", "aud": "a", "sub": "s", "exp": now - 5, "nbf": now - 60, "iat": now - 60});
        let old = set.sign("at+jwt", &expired).expect("sign");
        assert!(set.verify::<serde_json::Value>(&old, &rules).is_err());
        let _ = fs::remove_dir_all(dir);
    }

    fn rules() -> Lifecycle {
        Lifecycle {
            jwks_max_age: Duration::from_secs(300),
            poll_interval: Duration::from_secs(10),
            access_ttl: Duration::from_secs(900),
            clock_skew: Duration::from_secs(30),
        }
    }

    #[test]
    fn rotation_waits_for_the_publish_delay_then_retires_and_later_removes_the_old_key() {
        let dir = temp_dir("rotate");
        let old = generate_key(&dir, KeyAlg::ES256, 2048).expect("key");
        let new = generate_key(&dir, KeyAlg::ES256, 2048).expect("key");
        let now = OffsetDateTime::now_utc();
        let err = rotate(&dir, &rules(), now).expect_err("too early");
        assert!(err.to_string().contains("cannot be activated before"), "{err}");

        let later = now + rules().publish_delay();
        let report = rotate(&dir, &rules(), later).expect("rotate");
        assert_eq!(report.activated.as_deref(), Some(new.kid.as_str()));
        assert_eq!(report.retired.as_deref(), Some(old.kid.as_str()));
        assert!(remove(&dir, &old.kid, &rules(), later).is_err(), "tokens may still be live");
        let much_later = later + rules().retire_delay();
        remove(&dir, &old.kid, &rules(), much_later).expect("remove");
        assert!(!old.path.exists(), "the private key is deleted");
        let set = KeySet::load(&dir, None).expect("load");
        assert_eq!(set.kids().count(), 1);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn revoking_the_active_key_needs_a_replacement_and_activates_it() {
        let dir = temp_dir("revoke");
        let old = generate_key(&dir, KeyAlg::ES256, 2048).expect("key");
        assert!(revoke(&dir, &old.kid, OffsetDateTime::now_utc()).is_err(), "no replacement yet");
        let new = generate_key(&dir, KeyAlg::ES256, 2048).expect("key");
        let report = revoke(&dir, &old.kid, OffsetDateTime::now_utc()).expect("revoke");
        assert_eq!(report.activated.as_deref(), Some(new.kid.as_str()));
        let set = KeySet::load(&dir, None).expect("load");
        assert_eq!(set.active_kid(), Some(new.kid.as_str()));
        assert!(!set.kids().any(|(kid, _, _)| kid == old.kid));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn unknown_active_kid_is_refused() {
        let dir = temp_dir("override");
        generate_key(&dir, KeyAlg::ES256, 2048).expect("key");
        let err = KeySet::load(&dir, Some("nope")).expect_err("must fail");
        assert!(matches!(err, KeyError::ActiveKidMissing(_)));
        let _ = fs::remove_dir_all(dir);
    }
}
