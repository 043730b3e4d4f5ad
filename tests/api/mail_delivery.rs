//! The Mailer, end to end through a real SMTP server (`mail::MailSink`): what a delivered mail
//! carries, exactly-once delivery across instances in the normal case, outages, bounded
//! retries and the dead letter, supervision, TLS (STARTTLS and implicit) with credentials,
//! and the outbox metrics.
//!
//! Mail is written through the real `outbox::enqueue` on the app's database, as the account
//! flows write it, and the Mailer is woken as they wake it.

use std::path::PathBuf;
use std::time::Duration;

use auth_actors::db::outbox::{OutgoingMail, enqueue};
use uuid::Uuid;

use crate::helpers::*;
use crate::mail::MailSink;

const FROM: &str = "auth-service <no-reply@auth.test>";

/// The settings of a Mailer that retries fast, sending to `smtp_url`.
fn mail_settings(smtp_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SMTP_URL", smtp_url.to_string()),
        ("MAIL_FROM", FROM.to_string()),
        ("MAIL_RETRY_BASE", "50ms".to_string()),
        ("MAIL_RETRY_MAX", "200ms".to_string()),
        ("MAIL_POLL_INTERVAL", "100ms".to_string()),
        ("MAIL_SEND_TIMEOUT", "5s".to_string()),
    ]
}

async fn mail_app(smtp_url: &str, extra: &[(&'static str, &str)]) -> TestApp {
    let mut settings = mail_settings(smtp_url);
    settings.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    spawn_app_with(|l| {
        for (name, value) in &settings {
            l.set(name, value.as_str());
        }
    })
    .await
}

fn address(prefix: &str) -> String {
    format!("{prefix}{}@example.com", Uuid::new_v4().simple())
}

/// Writes a mail to the app's outbox as a flow does (committed), and wakes the Mailer.
async fn send(app: &TestApp, to: &str) -> Uuid {
    let mail = OutgoingMail {
        kind: "test",
        recipient: to.to_string(),
        subject: format!("Hello {to}"),
        text: format!("Plain words for {to}: https://auth.test/confirm?token=t0k3n"),
        html: format!("<p>HTML words for {to}</p>"),
    };
    let url = database_url(&app.database);
    let client = auth_actors::db::connect_pooled(&url, Duration::from_secs(5)).await.expect("a pooled connection");
    let id = enqueue(&client, &mail).await.expect("enqueued");
    app.app.services.mailer.wake();
    id
}

/// (status, attempts, body_text is null, body_html is null, last_error) of outbox row `id`.
async fn row(app: &TestApp, id: Uuid) -> (String, i32, bool, bool, Option<String>) {
    let r = app
        .db()
        .await
        .query_one(
            "SELECT status, attempts, body_text IS NULL, body_html IS NULL, last_error FROM mail_outbox WHERE id = $1",
            &[&id],
        )
        .await
        .expect("the outbox row");
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

async fn wait_status(app: &TestApp, id: Uuid, status: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if row(app, id).await.0 == status {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "mail {id} never became {status}: {:?}", row(app, id).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_mail_is_delivered_once_with_its_headers_and_both_bodies_then_its_bodies_are_cleared() {
    let sink = MailSink::start().await;
    let app = mail_app(&sink.smtp_url(), &[]).await;
    let to = address("alice-");
    let id = send(&app, &to).await;

    let mail = sink.wait_for(&to).await;
    assert!(mail.from.contains("no-reply@auth.test"), "{}", mail.from);
    assert_eq!(mail.to, vec![to.clone()]);
    assert_eq!(mail.subject, format!("Hello {to}"));
    assert_eq!(mail.message_id, format!("<{id}@auth.test>"), "a Message-ID stable across retries");
    assert!(mail.text.contains("Plain words") && mail.text.contains("token=t0k3n"), "{}", mail.text);
    assert!(mail.html.contains("<p>HTML words"), "{}", mail.html);
    let content_type = mail.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v);
    assert!(content_type.is_some_and(|v| v.contains("multipart/alternative")), "{:?}", mail.headers);
    assert!(!mail.tls && !mail.authenticated, "plain smtp:// in development");

    wait_status(&app, id, "sent").await;
    let (_, attempts, text_cleared, html_cleared, error) = row(&app, id).await;
    assert_eq!((attempts, text_cleared, html_cleared, error), (1, true, true, None), "the one-time link is gone");
    assert_eq!(app.metric("auth_mail_sent_total{kind=\"test\"}").await, 1.0);
    // Polls go on: still exactly one copy.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sink.messages(&to).await.len(), 1, "sent once");
}

#[tokio::test]
async fn two_instances_on_one_database_send_each_mail_exactly_once() {
    let sink = MailSink::start().await;
    let first = mail_app(&sink.smtp_url(), &[]).await;
    let settings = mail_settings(&sink.smtp_url());
    let second = spawn_app_on(&first.database, |l| {
        for (name, value) in &settings {
            l.set(name, value.as_str());
        }
    })
    .await;

    let recipients: Vec<String> = (0..24).map(|_| address("both-")).collect();
    for (i, to) in recipients.iter().enumerate() {
        send(if i % 2 == 0 { &first } else { &second }, to).await;
        second.app.services.mailer.wake();
        first.app.services.mailer.wake();
    }
    for to in &recipients {
        sink.wait_for(to).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for to in &recipients {
        assert_eq!(sink.messages(to).await.len(), 1, "{to} got a duplicate");
    }
    let sent = first.metric("auth_mail_sent_total{kind=\"test\"}").await
        + second.metric("auth_mail_sent_total{kind=\"test\"}").await;
    assert_eq!(sent, 24.0, "each mail sent by exactly one instance");
}

#[tokio::test]
async fn an_smtp_outage_leaves_requests_unaffected_and_loses_no_mail() {
    let mut sink = MailSink::start().await;
    let app = mail_app(&sink.smtp_url(), &[]).await;
    sink.stop().await;

    let to = address("outage-");
    let id = send(&app, &to).await;
    let (status, _) = app.get_json("/api/v1/readyz").await;
    assert_eq!(status, 200, "readiness does not depend on SMTP");
    let (_, session) = app.user_session().await;
    assert!(!session.access.is_empty(), "signup and login go on while SMTP is down");
    app.eventually("several failed connection attempts", || async {
        app.metric("auth_mail_failed_attempts_total{kind=\"test\",reason=\"connection\"}").await >= 3.0
    })
    .await;
    let (status, attempts, ..) = row(&app, id).await;
    assert_eq!(status, "pending", "an outage never dead-letters (attempts so far: {attempts})");
    assert_eq!(app.metric("auth_mail_outbox_depth").await, 2.0, "this mail and the signup's verification mail");

    let sink = sink.restart().await;
    let mail = sink.wait_for(&to).await;
    assert_eq!(mail.message_id, format!("<{id}@auth.test>"));
    wait_status(&app, id, "sent").await;
    app.eventually("the depth back at zero", || async { app.metric("auth_mail_outbox_depth").await == 0.0 }).await;
}

#[tokio::test]
async fn a_transient_failure_is_retried_max_attempts_times_then_dead_lettered_and_counted() {
    let sink = MailSink::start().await;
    let app = mail_app(&sink.smtp_url(), &[("MAIL_MAX_ATTEMPTS", "4")]).await;
    let to = address("tempfail-");
    let id = send(&app, &to).await;

    wait_status(&app, id, "dead").await;
    let (_, attempts, text_cleared, html_cleared, error) = row(&app, id).await;
    assert_eq!(attempts, 4, "MAIL_MAX_ATTEMPTS attempts");
    assert!(text_cleared && html_cleared, "a dead mail keeps no body");
    let error = error.expect("last_error");
    assert!(error.contains("451") && !error.contains(&to), "the code, never the address: {error}");
    assert_eq!(app.metric("auth_mail_failed_attempts_total{kind=\"test\",reason=\"transient\"}").await, 4.0);
    assert_eq!(app.metric("auth_mail_dead_lettered_total{kind=\"test\"}").await, 1.0);
    assert_eq!(app.metric("auth_mail_sent_total{kind=\"test\"}").await, 0.0);
    assert!(sink.messages(&to).await.is_empty());
}

#[tokio::test]
async fn a_permanent_refusal_is_retried_three_times_then_dead_lettered_and_counted() {
    let sink = MailSink::start().await;
    let app = mail_app(&sink.smtp_url(), &[]).await;
    let to = address("refuse-");
    let id = send(&app, &to).await;
    let fine = address("fine-");
    send(&app, &fine).await;

    wait_status(&app, id, "dead").await;
    let (_, attempts, ..) = row(&app, id).await;
    assert_eq!(attempts, 3, "a permanent 5xx gets three attempts, not MAIL_MAX_ATTEMPTS (8)");
    assert_eq!(app.metric("auth_mail_failed_attempts_total{kind=\"test\",reason=\"permanent\"}").await, 3.0);
    assert_eq!(app.metric("auth_mail_dead_lettered_total{kind=\"test\"}").await, 1.0);
    sink.wait_for(&fine).await;
}

#[tokio::test]
async fn an_address_that_cannot_be_written_is_dead_lettered_at_once() {
    let sink = MailSink::start().await;
    let app = mail_app(&sink.smtp_url(), &[]).await;
    let id = send(&app, "not an address").await;
    wait_status(&app, id, "dead").await;
    assert_eq!(row(&app, id).await.1, 1);
}

#[tokio::test]
async fn a_mailer_killed_mid_send_is_restarted_and_no_mail_is_lost() {
    let sink = MailSink::start().await;
    let app = mail_app(&sink.smtp_url(), &[]).await;
    let recipients: Vec<String> = (0..30).map(|_| address("crash-")).collect();
    for (i, to) in recipients.iter().enumerate() {
        send(&app, to).await;
        if i % 10 == 5 {
            // The previous kill's restart may still be under way (its backoff): a Mailer that is
            // down cannot be failed again, so wait until this one takes.
            app.eventually("the Mailer is up to be failed", || async {
                app.fail_actor("mailer").await.status() == 202
            })
            .await;
        }
    }
    for to in &recipients {
        sink.wait_for(to).await;
    }
    assert!(app.metric("auth_actor_restarts_total{actor=\"mailer\"}").await >= 1.0);
    let (status, _) = app.get_json("/api/v1/readyz").await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for to in &recipients {
        assert_eq!(sink.messages(to).await.len(), 1, "{to}: sent once in the normal case");
    }
}

/// A self-signed certificate for 127.0.0.1, made with the openssl CLI: (cert, key).
fn self_signed() -> (PathBuf, PathBuf) {
    let dir = temp_dir("smtp-tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

async fn tls_sink(implicit: bool) -> (MailSink, PathBuf) {
    let (cert, key) = self_signed();
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let mut args = vec!["--tls-cert", c.as_str(), "--tls-key", k.as_str(), "--auth", "mailer:p@ss:w/rd"];
    if implicit {
        args.push("--implicit-tls");
    }
    (MailSink::start_with(0, &args).await, cert)
}

/// A mail over `scheme` (STARTTLS or implicit TLS) to a sink whose certificate `SMTP_CA_FILE`
/// trusts, with percent-encoded credentials: delivered encrypted and authenticated.
async fn delivers_over_tls(scheme: &str, implicit: bool) {
    let (sink, cert) = tls_sink(implicit).await;
    let url = format!("{scheme}://mailer:p%40ss%3Aw%2Frd@127.0.0.1:{}", sink.smtp_port);
    let app = mail_app(&url, &[("SMTP_CA_FILE", &cert.display().to_string())]).await;
    let to = address("tls-");
    let id = send(&app, &to).await;
    wait_status(&app, id, "sent").await;
    let mail = sink.wait_for(&to).await;
    assert!(mail.tls && mail.authenticated, "{mail:?}");
}

#[tokio::test]
async fn starttls_with_a_trusted_private_ca_and_percent_encoded_credentials_delivers() {
    delivers_over_tls("smtp+starttls", false).await;
}

#[tokio::test]
async fn implicit_tls_with_credentials_delivers() {
    delivers_over_tls("smtps", true).await;
}

#[tokio::test]
async fn an_untrusted_certificate_or_a_server_without_starttls_gets_no_mail() {
    // A self-signed certificate nobody said to trust.
    let (tls, _) = tls_sink(true).await;
    let untrusted = mail_app(&format!("smtps://mailer:p%40ss%3Aw%2Frd@127.0.0.1:{}", tls.smtp_port), &[]).await;
    let to = address("untrusted-");
    let id = send(&untrusted, &to).await;
    // A plain server when STARTTLS is required: no downgrade to plaintext.
    let plain = MailSink::start().await;
    let required = mail_app(&format!("smtp+starttls://127.0.0.1:{}", plain.smtp_port), &[]).await;
    let to_plain = address("downgrade-");
    let id_plain = send(&required, &to_plain).await;

    for app in [&untrusted, &required] {
        app.eventually("failed connection attempts", || async {
            app.metric("auth_mail_failed_attempts_total{kind=\"test\",reason=\"connection\"}").await >= 2.0
        })
        .await;
    }
    assert!(tls.messages(&to).await.is_empty() && plain.messages(&to_plain).await.is_empty());
    assert_eq!(row(&untrusted, id).await.0, "pending");
    assert_eq!(row(&required, id_plain).await.0, "pending");
}

#[tokio::test]
async fn without_smtp_url_mail_waits_and_the_metrics_show_depth_and_age() {
    let app = spawn_app().await;
    let first = send(&app, &address("waiting-")).await;
    send(&app, &address("waiting-")).await;
    app.eventually("a depth of two", || async { app.metric("auth_mail_outbox_depth").await == 2.0 }).await;
    app.eventually("an oldest age above zero", || async {
        app.metric("auth_mail_outbox_oldest_age_seconds").await > 0.0
    })
    .await;
    assert_eq!(row(&app, first).await.0, "pending");
    assert_eq!(row(&app, first).await.1, 0, "no attempt without SMTP_URL");
    let (status, _) = app.get_json("/api/v1/readyz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_invalid_smtp_url_mail_from_or_ca_file_is_refused_at_startup_without_echoing_secrets() {
    let database = fresh_database().await;
    let keys = shared_keys().await;
    for (name, value) in [
        ("SMTP_URL", "smtp://user:s3cr3t@host/path"),
        ("SMTP_URL", "smtp://:s3cr3t@host"),
        ("MAIL_FROM", "not an address"),
        ("SMTP_CA_FILE", "/nonexistent/ca.pem"),
    ] {
        let mut layers = test_layers(&database, &keys);
        layers.set(name, value);
        let e = layers.build().expect_err(value).to_string();
        assert!(e.contains(name) && !e.contains("s3cr3t"), "{e}");
    }
}

/// The real binary with JSON logs: a sent mail and a dead-lettered one are each logged with
/// their outbox id and kind, and no line carries a recipient, a body or the SMTP password.
#[tokio::test]
async fn the_log_names_outbox_ids_and_kinds_never_addresses_bodies_or_the_smtp_password() {
    use tokio::io::AsyncReadExt;

    let (sink, cert) = tls_sink(false).await;
    let database = fresh_database().await;
    let port = free_port();
    let smtp_url = format!("smtp+starttls://mailer:p%40ss%3Aw%2Frd@127.0.0.1:{}", sink.smtp_port);
    let mut child = crate::helpers::serve_command("maillogs", &database, port)
        .await
        .env("SMTP_URL", &smtp_url)
        .env("SMTP_CA_FILE", cert.display().to_string())
        .env("MAIL_FROM", FROM)
        .env("MAIL_RETRY_BASE", "50ms")
        .env("MAIL_RETRY_MAX", "100ms")
        .env("MAIL_POLL_INTERVAL", "100ms")
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    crate::helpers::wait_until_ready(&base).await;

    let pooled = auth_actors::db::connect_pooled(&database_url(&database), Duration::from_secs(5)).await.expect("db");
    let (good, bad) = (address("logged-"), address("refuse-logged-"));
    let mut ids = Vec::new();
    for to in [&good, &bad] {
        let mail = OutgoingMail {
            kind: "log_check",
            recipient: to.clone(),
            subject: "Your link".into(),
            text: "https://auth.test/reset?token=0neT1me-s3cret".into(),
            html: "<a href=\"https://auth.test/reset?token=0neT1me-s3cret\">reset</a>".into(),
        };
        ids.push(enqueue(&pooled, &mail).await.expect("enqueued"));
    }
    sink.wait_for(&good).await;
    let db = connect(&database).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let row = db.query_one("SELECT status FROM mail_outbox WHERE id = $1", &[&ids[1]]).await.expect("row");
        if row.get::<_, String>(0) == "dead" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the refused mail was never dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let pid = child.id().expect("pid");
    std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("kill");
    tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("exits").expect("wait");
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).await.expect("read");

    let (mut sent, mut dead) = (false, false);
    for line in out.lines() {
        for secret in ["p@ss:w/rd", "p%40ss", "0neT1me-s3cret", good.as_str(), bad.as_str(), "logged-"] {
            assert!(!line.contains(secret), "{secret:?} leaked into: {line}");
        }
        if line.contains("mail sent") && line.contains(&ids[0].to_string()) && line.contains("log_check") {
            sent = true;
        }
        if line.contains("mail dead-lettered") && line.contains(&ids[1].to_string()) && line.contains("550") {
            dead = true;
        }
    }
    assert!(sent, "the sent mail is logged by id and kind");
    assert!(dead, "the dead letter is logged by id, kind and reply code");
}
