//! The Redis keyspace: every key the service reads or writes is built here, from the configured
//! prefix and typed ids, so that no caller formats a key by hand and two kinds of key can never
//! collide.
//!
//! The layout is the one Redis Cluster needs. A key's slot is decided by its first `{...}`
//! (its hash tag), so every key that one script or one `MGET` touches carries the same tag:
//!
//! | key | tag | read or written together with |
//! |---|---|---|
//! | `rl:{class}:{subject}` | none | nothing (one key per script call) |
//! | `{acct:<account>}lock`, `…att`, `…lvl` | the account | each other, in the login gate script |
//! | `{u:<user>}bl:<jti>`, `{u:<user>}nb`, `{u:<user>}rs:<sid>` | the user | each other, in a token check's `MGET` |
//! | `{authz}epoch` | its own | nothing (read beside the token check, in the same pipeline) |
//! | `{cl:<client>}lock:<address>`, `…fail:<address>`, `…pend:<address>`, `…lvl:<address>`, `{cl:<client>}rl` | the client | each other, in the client gate scripts |
//! | `{cl:<client>}bl:<jti>`, `{cl:<client>}nb` | the client | each other, in a token check's `MGET` |
//! | `{cl:<client>}jti:<digest>` | the client | nothing (one `SET NX` per client assertion) |
//!
//! The prefix comes first and must not contain `{` or `}` (the configuration refuses one that
//! does), so that the tag is always ours.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use uuid::Uuid;

/// A rate-limit bucket class: which limit a counted event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitClass {
    /// Login attempts per client IP.
    Login,
    /// Login attempts (and other password checks) per account, from any IP.
    LoginAccount,
    /// Signups per client IP.
    Signup,
    /// Refreshes per client IP.
    Refresh,
    /// Every other API request per client IP.
    Default,
    /// Requests to the OAuth token endpoint per client IP.
    Token,
    /// Token requests per OAuth client, from any IP.
    Client,
    /// Requests that send an account mail (password reset, verification) per client IP.
    Recovery,
    /// Account mails (password reset, verification) per account, whoever asks.
    RecoveryAccount,
}

impl LimitClass {
    /// The name in keys, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitClass::Login => "login",
            LimitClass::LoginAccount => "login_account",
            LimitClass::Signup => "signup",
            LimitClass::Refresh => "refresh",
            LimitClass::Default => "default",
            LimitClass::Token => "token",
            LimitClass::Client => "client",
            LimitClass::Recovery => "recovery",
            LimitClass::RecoveryAccount => "recovery_account",
        }
    }
}

/// Whose password checks a lockout counts: a known user, or a login name that matched nobody
/// (so that guessing at unknown names is limited too, and costs the same).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Account {
    User(Uuid),
    /// The login name as given, lower-cased.
    Unknown(String),
}

impl Account {
    /// The account for a login name that matched nobody.
    pub fn unknown(login: &str) -> Account {
        Account::Unknown(login.to_lowercase())
    }
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Account::User(id) => write!(f, "{id}"),
            Account::Unknown(login) => write!(f, "unknown:{login}"),
        }
    }
}

/// What a rate-limit bucket counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Ip(IpAddr),
    Account(Account),
}

/// The three keys of an account's login gate (one slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutKeys {
    /// Set while the account is locked.
    pub lock: String,
    /// Password checks reserved since the last success.
    pub attempts: String,
    /// Lockouts within the last day, which set the next one's length.
    pub level: String,
}

/// The keys that say whether one access token is revoked (one slot: its user's or client's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKeys {
    pub blacklist: String,
    pub not_before: String,
    /// The session marker, for a token issued to a session.
    pub session: Option<String>,
}

/// The keys of an OAuth client's authentication gate (one slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGateKeys {
    /// Set while the client's authentication is locked.
    pub lock: String,
    /// Failed authentications since the last success.
    pub failures: String,
    /// Authentications under way (reserved, not yet decided).
    pub pending: String,
    /// Lockouts within the last day, which set the next one's length.
    pub level: String,
    /// GCRA state of the per-client limit of the token endpoint.
    pub rate: String,
}

/// Builds every key under one prefix. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    prefix: Arc<str>,
}

impl Keyspace {
    /// A keyspace under `prefix`, which must not contain `{` or `}`.
    pub fn new(prefix: &str) -> Result<Keyspace, String> {
        if prefix.contains(['{', '}']) {
            return Err(format!("{prefix:?} contains a brace, which would change the keys' hash slots"));
        }
        Ok(Keyspace { prefix: prefix.into() })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, capacity: usize, build: impl FnOnce(&mut String) -> std::fmt::Result) -> String {
        let mut key = String::with_capacity(self.prefix.len() + capacity);
        key.push_str(&self.prefix);
        // Writing into a String cannot fail.
        let _ = build(&mut key);
        key
    }

    /// The GCRA bucket of `class` for `subject`.
    pub fn rate(&self, class: LimitClass, subject: &Subject) -> String {
        self.key(64, |k| match subject {
            Subject::Ip(ip) => write!(k, "rl:{}:ip:{ip}", class.as_str()),
            Subject::Account(account) => write!(k, "rl:{}:{account}", class.as_str()),
        })
    }

    /// The login gate of `account`.
    pub fn lockout(&self, account: &Account) -> LockoutKeys {
        let tagged = |suffix: &str| self.key(64, |k| write!(k, "{{acct:{account}}}{suffix}"));
        LockoutKeys { lock: tagged("lock"), attempts: tagged("att"), level: tagged("lvl") }
    }

    /// The revocation keys of an access token of `user`, with id `jti`, in session `session`.
    pub fn token(&self, user: Uuid, jti: Uuid, session: Uuid) -> TokenKeys {
        TokenKeys {
            blacklist: self.blacklist(user, jti),
            not_before: self.not_before(user),
            session: Some(self.session_revoked(user, session)),
        }
    }

    /// The revocation keys of an access token issued to the OAuth client `client` itself.
    pub fn client_token(&self, client: &str, jti: Uuid) -> TokenKeys {
        TokenKeys {
            blacklist: self.client_blacklist(client, jti),
            not_before: self.key(48, |k| write!(k, "{{cl:{client}}}nb")),
            session: None,
        }
    }

    /// Set while the access token `jti` of client `client` is revoked.
    pub fn client_blacklist(&self, client: &str, jti: Uuid) -> String {
        self.key(80, |k| write!(k, "{{cl:{client}}}bl:{jti}"))
    }

    /// The authentication gate of client `client` as seen from `address`: the lockout is kept
    /// per (address, client), so a stranger who knows a client id (they are public) locks out
    /// only their own address; the request limit is the client's own.
    pub fn client_gate(&self, client: &str, address: &str) -> ClientGateKeys {
        let per_address = |suffix: &str| self.key(96, |k| write!(k, "{{cl:{client}}}{suffix}:{address}"));
        ClientGateKeys {
            lock: per_address("lock"),
            failures: per_address("fail"),
            pending: per_address("pend"),
            level: per_address("lvl"),
            rate: self.key(48, |k| write!(k, "{{cl:{client}}}rl")),
        }
    }

    /// Set while a client assertion with this `jti` (given as its digest, hex) of `client` is
    /// within its lifetime: the assertion cannot be used twice.
    pub fn client_assertion(&self, client: &str, jti_digest: &str) -> String {
        self.key(96, |k| write!(k, "{{cl:{client}}}jti:{jti_digest}"))
    }

    /// Set while the access token `jti` of `user` is revoked (logout, RFC 7009).
    pub fn blacklist(&self, user: Uuid, jti: Uuid) -> String {
        self.key(80, |k| write!(k, "{{u:{user}}}bl:{jti}"))
    }

    /// The logout-all marker of `user`: access tokens issued up to it (ms) are refused.
    pub fn not_before(&self, user: Uuid) -> String {
        self.key(48, |k| write!(k, "{{u:{user}}}nb"))
    }

    /// Set while the access tokens of `user`'s session `session` are refused.
    pub fn session_revoked(&self, user: Uuid, session: Uuid) -> String {
        self.key(80, |k| write!(k, "{{u:{user}}}rs:{session}"))
    }

    /// The authorization epoch (see the service's `authz` module).
    pub fn authz_epoch(&self) -> String {
        self.key(16, |k| k.write_str("{authz}epoch"))
    }
}

/// The hash tag of a key: what Redis Cluster hashes to pick its slot (the whole key without one).
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks() -> Keyspace {
        Keyspace::new("auth:").expect("prefix")
    }

    #[test]
    fn the_keys_of_one_script_or_mget_share_a_slot() {
        let (user, jti, sid) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let t = ks().token(user, jti, sid);
        assert_eq!(hash_tag(&t.blacklist), hash_tag(&t.not_before));
        assert_eq!(Some(hash_tag(&t.blacklist)), t.session.as_deref().map(hash_tag));
        let c = ks().client_token("svc_1", jti);
        assert_eq!(hash_tag(&c.blacklist), hash_tag(&c.not_before));
        assert_eq!(hash_tag(&c.blacklist), "cl:svc_1");
        let g = ks().client_gate("svc_1", "192.0.2.7");
        assert_eq!(hash_tag(&g.lock), hash_tag(&g.failures));
        assert_eq!(hash_tag(&g.lock), hash_tag(&g.pending));
        assert_eq!(hash_tag(&g.lock), hash_tag(&g.rate));
        assert_eq!(hash_tag(&t.blacklist), format!("u:{user}"));
        for account in [Account::User(user), Account::unknown("Mallory")] {
            let l = ks().lockout(&account);
            assert_eq!(hash_tag(&l.lock), hash_tag(&l.attempts));
            assert_eq!(hash_tag(&l.lock), hash_tag(&l.level));
        }
        assert_eq!(hash_tag(&ks().authz_epoch()), "authz");
    }

    #[test]
    fn keys_carry_the_prefix_and_do_not_collide() {
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let user = Uuid::now_v7();
        let account = Account::User(user);
        let keys = [
            ks().rate(LimitClass::Login, &Subject::Ip(ip)),
            ks().rate(LimitClass::Default, &Subject::Ip(ip)),
            ks().rate(LimitClass::LoginAccount, &Subject::Account(account.clone())),
            ks().not_before(user),
            ks().authz_epoch(),
            ks().lockout(&account).lock,
        ];
        assert!(keys.iter().all(|k| k.starts_with("auth:")));
        let unique: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        assert_eq!(keys[0], "auth:rl:login:ip:10.0.0.1");
        assert_eq!(Account::unknown("Mallory").to_string(), "unknown:mallory");
    }

    #[test]
    fn a_prefix_with_a_brace_is_refused() {
        assert!(Keyspace::new("a{b}:").is_err());
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("p:{}x"), "p:{}x");
    }
}
