//! The Mailer actor: delivers the mail outbox over SMTP (`lettre`), with retries, backoff and
//! a dead letter, and keeps the outbox metrics current.
//!
//! Mail is written to the `mail_outbox` table in the transaction of the change that needs it
//! (`db::outbox::enqueue`); the flow then calls [`MailerHandle::wake`] so it goes out at once,
//! and the Mailer also looks for due mail every `MAIL_POLL_INTERVAL`, which covers mail that
//! other instances wrote, retries, and wakes lost to a restart.
//!
//! The actor's mailbox only decides when a delivery round runs: a round runs in a task of its
//! own (so a slow SMTP server never stalls the mailbox, and a wake during a round just asks
//! for another). A round leases due mail through the Database (`FOR UPDATE SKIP LOCKED`, a
//! lease of `MAIL_SEND_TIMEOUT` plus margin, so several instances never send the same mail
//! while a lease holds), sends each under `MAIL_SEND_TIMEOUT`, and settles it: sent (bodies
//! cleared), due again after an exponential backoff, or dead. A round in flight finishes even
//! if the actor fails meanwhile; a mail whose instance died mid-send is leased again when its
//! lease runs out, so delivery is at least once, with a `Message-ID` of `<{outbox id}@{domain
//! of MAIL_FROM}>` that is the same on every attempt (receivers can drop a duplicate).
//!
//! Which failures are retried how often:
//! - no reply at all (unreachable, TLS failure, timeout): retried with backoff, never given up
//!   on — an SMTP outage loses no mail; the outbox depth and oldest-age metrics show it;
//! - a transient 4xx reply: up to `MAIL_MAX_ATTEMPTS` attempts in all, then dead;
//! - a permanent 5xx reply: up to [`PERMANENT_ATTEMPTS`] attempts (some servers answer 5xx for
//!   a passing fault), then dead; an address that cannot be written into a mail at all is dead
//!   at once.
//!
//! Logs name the outbox id and kind, never the recipient (personal data), a body (it may carry
//! a one-time link) or the SMTP credentials.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use ractor::{ActorProcessingErr, ActorRef};
use tracing::Instrument;

use crate::db::DatabaseHandle;
use crate::db::outbox::{LeaseDue, LeasedMail, MarkSent, RecordFailure, Stats};
use crate::handle::Endpoint;
use crate::metrics::{ActorMetrics, MailFailureLabel, MailLabel};
use crate::supervised::{Mail, Supervised};

/// Attempts a mail gets when the server keeps answering with a permanent (5xx) error.
pub const PERMANENT_ATTEMPTS: u32 = 3;

/// Mails leased (and sent concurrently) per step of a round.
const BATCH: i64 = 8;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: no TLS at all (development).
    Plain,
    /// `smtp+starttls://`: STARTTLS, required (a server that does not offer it is refused).
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// Where mail goes: `SMTP_URL`, parsed. Its `Debug` leaves out the credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpTarget {
    pub security: SmtpSecurity,
    pub host: String,
    pub port: u16,
    /// User and password, percent-decoded.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("security", &self.security)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &self.credentials.as_ref().map(|_| "***"))
            .finish()
    }
}

impl SmtpTarget {
    /// Parses `smtp://`, `smtp+starttls://` or `smtps://` `[user:password@]host[:port]`. The
    /// default ports are 25, 587 and 465. Errors never repeat the URL (it may carry a password).
    pub fn parse(raw: &str) -> Result<SmtpTarget, String> {
        let url = url::Url::parse(raw.trim()).map_err(|e| format!("not a URL ({e})"))?;
        let (security, default_port) = match url.scheme() {
            "smtp" => (SmtpSecurity::Plain, 25),
            "smtp+starttls" => (SmtpSecurity::StartTls, 587),
            "smtps" => (SmtpSecurity::Implicit, 465),
            _ => return Err("use smtp://, smtp+starttls:// or smtps://".into()),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("no host")?;
        // An IPv6 literal comes bracketed; the socket address wants it bare.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err("no path, query or fragment is allowed".into());
        }
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| "the credentials are not valid percent-encoded UTF-8".to_string())
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(password)) if !user.is_empty() => Some((decode(user)?, decode(password)?)),
            _ => return Err("credentials need both a user and a password (user:password@)".into()),
        };
        Ok(SmtpTarget { security, host, port: url.port().unwrap_or(default_port), credentials })
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Checks `MAIL_FROM` (`Name <address>` or a bare address).
pub fn check_from(from: &str) -> Result<(), String> {
    parse_from(from).map(|_| ())
}

fn parse_from(from: &str) -> Result<Mailbox, String> {
    from.trim().parse::<Mailbox>().map_err(|e| format!("not a mail address ({e})"))
}

/// Checks extra trusted roots (PEM, one or more certificates).
pub fn check_roots(pem: &[u8]) -> Result<(), String> {
    let cert = Certificate::from_pem(pem).map_err(|e| format!("not PEM certificates ({e})"))?;
    TlsParameters::builder("localhost".into())
        .add_root_certificate(cert)
        .build_rustls()
        .map(|_| ())
        .map_err(|e| format!("unusable as trusted roots ({e})"))
}

/// The Mailer's settings (from `SMTP_URL`, `MAIL_*`, `SMTP_CA_FILE`).
#[derive(Clone)]
pub struct MailerSettings {
    /// `None`: mail waits in the outbox.
    pub smtp: Option<SmtpTarget>,
    pub from: String,
    /// Extra trusted roots (PEM), besides the Mozilla roots.
    pub extra_roots: Option<Vec<u8>>,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub poll_interval: Duration,
    pub send_timeout: Duration,
}

impl std::fmt::Debug for MailerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailerSettings")
            .field("smtp", &self.smtp)
            .field("max_attempts", &self.max_attempts)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl Default for MailerSettings {
    fn default() -> Self {
        MailerSettings {
            smtp: None,
            from: "auth-service <no-reply@localhost>".into(),
            extra_roots: None,
            max_attempts: 8,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(900),
            poll_interval: Duration::from_secs(2),
            send_timeout: Duration::from_secs(30),
        }
    }
}

impl MailerSettings {
    /// The wait after failed attempt number `attempt` (1-based): `retry_base * 2^(attempt-1)`,
    /// at most `retry_max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.retry_base.saturating_mul(1 << doublings).min(self.retry_max)
    }

    /// What follows failed attempt number `attempt` of class `failure`: the wait before the
    /// next attempt, or `None` to give the mail up.
    pub fn after_failure(&self, failure: FailureClass, attempt: u32) -> Option<Duration> {
        let bound = match failure {
            FailureClass::Connection => return Some(self.backoff(attempt)),
            FailureClass::Transient => self.max_attempts,
            FailureClass::Permanent => PERMANENT_ATTEMPTS.min(self.max_attempts),
            FailureClass::Unsendable => return None,
        };
        (attempt < bound).then(|| self.backoff(attempt))
    }
}

/// How a delivery attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// No reply: unreachable, TLS, timeout, connection dropped.
    Connection,
    /// A 4xx reply.
    Transient,
    /// A 5xx reply.
    Permanent,
    /// The mail cannot be written (an invalid recipient address): no attempt can succeed.
    Unsendable,
}

impl FailureClass {
    fn label(self) -> &'static str {
        match self {
            FailureClass::Connection => "connection",
            FailureClass::Transient => "transient",
            FailureClass::Permanent | FailureClass::Unsendable => "permanent",
        }
    }
}

/// Classifies a lettre error, with a reason for operators that carries no secret and no
/// address: for a reply its code only (servers often echo the recipient in the text).
fn classify(e: &lettre::transport::smtp::Error) -> (FailureClass, String) {
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    if e.is_permanent() {
        (FailureClass::Permanent, format!("permanent SMTP reply {code}"))
    } else if e.is_transient() {
        (FailureClass::Transient, format!("transient SMTP reply {code}"))
    } else if e.is_timeout() {
        (FailureClass::Connection, "SMTP timeout".into())
    } else if e.is_tls() {
        (FailureClass::Connection, format!("TLS: {}", source_chain(e)))
    } else {
        (FailureClass::Connection, source_chain(e))
    }
}

/// The innermost causes of an error (I/O and TLS errors), never a server's reply text.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        reason = cause.to_string();
        source = cause.source();
    }
    reason.chars().take(200).collect()
}

type Transport = AsyncSmtpTransport<Tokio1Executor>;

fn build_transport(target: &SmtpTarget, settings: &MailerSettings) -> Result<Transport, String> {
    let tls = |host: &str| -> Result<TlsParameters, String> {
        let mut params = TlsParameters::builder(host.to_string());
        if let Some(pem) = &settings.extra_roots {
            let cert = Certificate::from_pem(pem).map_err(|e| format!("SMTP_CA_FILE: {e}"))?;
            params = params.add_root_certificate(cert);
        }
        params.build_rustls().map_err(|e| format!("TLS setup: {e}"))
    };
    let tls = match target.security {
        SmtpSecurity::Plain => Tls::None,
        SmtpSecurity::StartTls => Tls::Required(tls(&target.host)?),
        SmtpSecurity::Implicit => Tls::Wrapper(tls(&target.host)?),
    };
    let mut builder = Transport::builder_dangerous(target.host.as_str())
        .port(target.port)
        .tls(tls)
        .timeout(Some(settings.send_timeout));
    if let Some((user, password)) = &target.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

/// Messages the Mailer handles.
pub enum MailerMsg {
    /// Mail was just written: deliver now (a round starts, or another follows the current one).
    Wake,
    /// The poll interval elapsed: look for due mail and refresh the metrics.
    Poll,
    /// A round finished; `retry_in` is the soonest retry it scheduled, if any.
    RoundDone { retry_in: Option<Duration> },
}

/// Startup arguments, reused on every restart.
#[derive(Clone)]
pub struct MailerArgs {
    pub settings: MailerSettings,
    pub db: DatabaseHandle,
    pub metrics: ActorMetrics,
    /// The Database's call timeout, for the lease's margin.
    pub call_timeout: Duration,
    /// Whether the start was already announced in the log (once per process, not per restart).
    pub announced: Arc<AtomicBool>,
}

/// What a round needs, shared with its task.
struct Round {
    settings: MailerSettings,
    db: DatabaseHandle,
    metrics: ActorMetrics,
    transport: Option<Transport>,
    from: Mailbox,
    domain: String,
    lease: Duration,
}

/// The Mailer's state.
pub struct Mailer {
    myself: ActorRef<Mail<MailerMsg>>,
    round: Arc<Round>,
    /// Whether a round is running.
    busy: bool,
    /// Whether a wake or poll came during the round, so another must follow.
    again: bool,
}

impl Supervised for Mailer {
    type Msg = MailerMsg;
    type Args = MailerArgs;

    async fn start(myself: ActorRef<Mail<MailerMsg>>, args: MailerArgs) -> Result<Self, ActorProcessingErr> {
        let MailerArgs { settings, db, metrics, call_timeout, announced } = args;
        let from = parse_from(&settings.from).map_err(|e| format!("MAIL_FROM: {e}"))?;
        let domain = from.email.domain().to_string();
        let transport = match &settings.smtp {
            Some(target) => Some(build_transport(target, &settings)?),
            None => None,
        };
        if !announced.swap(true, Ordering::AcqRel) {
            match &settings.smtp {
                Some(target) => tracing::info!(
                    host = %target.host, port = target.port, security = ?target.security,
                    authenticated = target.credentials.is_some(), "mailer delivering the outbox"
                ),
                None => tracing::warn!("SMTP_URL is unset: mail stays in the outbox until it is set"),
            }
        }
        let lease = settings.send_timeout + call_timeout * 2 + Duration::from_secs(5);
        if !settings.poll_interval.is_zero() {
            myself.send_interval(settings.poll_interval, || Mail::Msg(MailerMsg::Poll));
        }
        let _ = myself.cast(Mail::Msg(MailerMsg::Wake));
        let round = Arc::new(Round { settings, db, metrics, transport, from, domain, lease });
        Ok(Mailer { myself, round, busy: false, again: false })
    }

    async fn handle(&mut self, msg: MailerMsg) -> Result<(), ActorProcessingErr> {
        match msg {
            MailerMsg::Wake | MailerMsg::Poll => {
                if self.busy {
                    self.again = true;
                } else {
                    self.start_round();
                }
            }
            MailerMsg::RoundDone { retry_in } => {
                self.busy = false;
                if std::mem::take(&mut self.again) {
                    self.start_round();
                } else if let Some(wait) = retry_in.filter(|w| *w < self.round.settings.poll_interval) {
                    // A retry due before the next poll: wake for it rather than wait.
                    self.myself.send_after(wait, || Mail::Msg(MailerMsg::Wake));
                }
            }
        }
        Ok(())
    }
}

impl Mailer {
    fn start_round(&mut self) {
        self.busy = true;
        let round = self.round.clone();
        let myself = self.myself.clone();
        tokio::spawn(
            async move {
                let retry_in = round.run().await;
                // The actor may have been restarted meanwhile; the new instance polls on its own.
                let _ = myself.cast(Mail::Msg(MailerMsg::RoundDone { retry_in }));
            }
            .in_current_span(),
        );
    }
}

impl Round {
    /// Delivers due mail until none is left, then refreshes the metrics. Returns the soonest
    /// retry it scheduled.
    async fn run(&self) -> Option<Duration> {
        let mut soonest: Option<Duration> = None;
        if let Some(transport) = &self.transport {
            loop {
                let batch = match self.db.run(LeaseDue { limit: BATCH, lease: self.lease }).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::warn!(error = %e, "mailer could not lease due mail; trying at the next poll");
                        break;
                    }
                };
                let full = batch.len() as i64 == BATCH;
                let sends = batch.into_iter().map(|mail| self.deliver(transport, mail));
                for retry in futures_util::future::join_all(sends).await.into_iter().flatten() {
                    soonest = Some(soonest.map_or(retry, |s| s.min(retry)));
                }
                if !full {
                    break;
                }
            }
        }
        self.refresh_stats().await;
        soonest
    }

    async fn refresh_stats(&self) {
        match self.db.run(Stats).await {
            Ok(stats) => {
                self.metrics.mail_outbox_depth.set(stats.pending);
                self.metrics.mail_outbox_oldest_age.set(stats.oldest_pending_secs);
            }
            Err(e) => tracing::debug!(error = %e, "mailer could not count the outbox"),
        }
    }

    /// One attempt at one mail, settled in the outbox. Returns the retry wait, if it scheduled one.
    async fn deliver(&self, transport: &Transport, mail: LeasedMail) -> Option<Duration> {
        let attempt = u32::try_from(mail.attempts).unwrap_or(0).saturating_add(1);
        let outcome = match self.message(&mail) {
            Err(reason) => Err((FailureClass::Unsendable, reason)),
            Ok(message) => match tokio::time::timeout(self.settings.send_timeout, transport.send(message)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(classify(&e)),
                Err(_) => Err((FailureClass::Connection, "SMTP timeout".to_string())),
            },
        };
        let label = MailLabel { kind: mail.kind.clone() };
        match outcome {
            Ok(()) => {
                self.metrics.mail_sent.get_or_create(&label).inc();
                match self.db.run(MarkSent { id: mail.id }).await {
                    Ok(_) => tracing::info!(mail_id = %mail.id, kind = %mail.kind, attempt, "mail sent"),
                    // Sent but not marked: the lease runs out and it goes again (same Message-ID).
                    Err(e) => tracing::warn!(
                        mail_id = %mail.id, kind = %mail.kind, error = %e,
                        "mail sent but not marked; it may be sent again when its lease ends"
                    ),
                }
                None
            }
            Err((class, reason)) => {
                let failure = MailFailureLabel { kind: mail.kind.clone(), reason: class.label() };
                self.metrics.mail_failed_attempts.get_or_create(&failure).inc();
                let retry_in = self.settings.after_failure(class, attempt);
                let op = RecordFailure { id: mail.id, error: reason.clone(), retry_in };
                if let Err(e) = self.db.run(op).await {
                    tracing::warn!(mail_id = %mail.id, error = %e, "mail failure not recorded; retried when its lease ends");
                }
                match retry_in {
                    Some(wait) => tracing::warn!(
                        mail_id = %mail.id, kind = %mail.kind, attempt, class = class.label(), reason = %reason,
                        retry_in_ms = wait.as_millis() as u64, "mail delivery failed; retrying"
                    ),
                    None => {
                        self.metrics.mail_dead.get_or_create(&label).inc();
                        tracing::error!(
                            mail_id = %mail.id, kind = %mail.kind, attempt, class = class.label(), reason = %reason,
                            "mail dead-lettered: delivery given up"
                        );
                    }
                }
                retry_in
            }
        }
    }

    /// The mail as sent: From, To, Subject, a `Message-ID` stable across attempts, and the text
    /// and HTML bodies as multipart/alternative.
    fn message(&self, mail: &LeasedMail) -> Result<Message, String> {
        let to: Mailbox = mail.recipient.trim().parse().map_err(|_| "invalid recipient address".to_string())?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(format!("<{}@{}>", mail.id, self.domain)))
            .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
            .map_err(|e| format!("the mail could not be built: {e}"))
    }
}

/// The typed handle to the Mailer.
#[derive(Clone)]
pub struct MailerHandle {
    endpoint: Endpoint<MailerMsg>,
}

impl MailerHandle {
    pub(crate) fn new(endpoint: Endpoint<MailerMsg>) -> Self {
        MailerHandle { endpoint }
    }

    /// Asks for delivery now, after a flow committed a mail. Never blocks and never fails: a
    /// Mailer that is down delivers at its next poll after the restart.
    pub fn wake(&self) {
        let _ = self.endpoint.cast(MailerMsg::Wake);
    }

    /// Whether the Mailer is running.
    pub fn is_up(&self) -> bool {
        self.endpoint.is_up()
    }

    #[cfg(feature = "failure-hook")]
    pub fn fail(&self, reason: &str) -> Result<(), crate::handle::CallError> {
        self.endpoint.fail(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_forms_parse_with_their_security_and_default_ports() {
        let t = SmtpTarget::parse("smtp://127.0.0.1:1025").expect("plain");
        assert_eq!(
            (t.security, t.host.as_str(), t.port, t.credentials),
            (SmtpSecurity::Plain, "127.0.0.1", 1025, None)
        );
        let t = SmtpTarget::parse("smtp+starttls://mail.example.com").expect("starttls");
        assert_eq!((t.security, t.port), (SmtpSecurity::StartTls, 587));
        let t = SmtpTarget::parse("smtps://mail.example.com").expect("implicit");
        assert_eq!((t.security, t.port), (SmtpSecurity::Implicit, 465));
        let t = SmtpTarget::parse("smtp://[::1]:25").expect("ipv6");
        assert_eq!(t.host, "::1");
    }

    #[test]
    fn credentials_are_percent_decoded_and_never_in_debug_or_errors() {
        let t = SmtpTarget::parse("smtps://us%40er:p%3Ass%2Fw0rd@mail.example.com").expect("credentials");
        assert_eq!(t.credentials, Some(("us@er".to_string(), "p:ss/w0rd".to_string())));
        assert!(!format!("{t:?}").contains("w0rd"));
        for bad in [
            "smtp://user:s3cr3t@host/path",
            "http://user:s3cr3t@host",
            "smtp://user:s3cr3t%ff@host",
            "smtp://:s3cr3t@host",
        ] {
            let e = SmtpTarget::parse(bad).expect_err(bad);
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn the_backoff_doubles_from_the_base_to_the_cap() {
        let s = MailerSettings {
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(60),
            ..MailerSettings::default()
        };
        let waits: Vec<u64> = (1..=5).map(|a| s.backoff(a).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60]);
        assert_eq!(s.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn transient_replies_get_max_attempts_permanent_ones_three_and_outages_never_end() {
        let s = MailerSettings { max_attempts: 5, ..MailerSettings::default() };
        assert!(s.after_failure(FailureClass::Transient, 4).is_some());
        assert_eq!(s.after_failure(FailureClass::Transient, 5), None);
        assert!(s.after_failure(FailureClass::Permanent, 2).is_some());
        assert_eq!(s.after_failure(FailureClass::Permanent, 3), None);
        assert!(s.after_failure(FailureClass::Connection, 1000).is_some());
        assert_eq!(s.after_failure(FailureClass::Unsendable, 1), None);
        let one = MailerSettings { max_attempts: 1, ..MailerSettings::default() };
        assert_eq!(one.after_failure(FailureClass::Permanent, 1), None);
    }

    #[test]
    fn mail_from_must_be_an_address() {
        assert!(check_from("auth-service <no-reply@auth.example>").is_ok());
        assert!(check_from("no-reply@auth.example").is_ok());
        assert!(check_from("not an address").is_err());
    }
}
