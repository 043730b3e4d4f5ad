//! A real SMTP server for the tests: `scripts/mail-sink.py` (aiosmtpd) started per test, on
//! ports of its own, and the mail it received read back over its inbox API.
//!
//! Recipients whose local part starts with `refuse-` get a permanent 550 and `tempfail-` a
//! transient 451 (see the script).

#![allow(dead_code)] // each test uses some of the sink's helpers

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One mail as the sink received it.
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub message_id: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub text: String,
    pub html: String,
    pub raw: String,
    pub tls: bool,
    pub authenticated: bool,
}

impl Mail {
    /// The first `http(s)://` link in the text body that contains `part`.
    pub fn link(&self, part: &str) -> String {
        self.text
            .split_whitespace()
            .find(|w| (w.starts_with("http://") || w.starts_with("https://")) && w.contains(part))
            .unwrap_or_else(|| panic!("no link with {part:?} in:\n{}", self.text))
            .to_string()
    }

    /// The value of query parameter `name` of the first link containing `part`.
    pub fn link_param(&self, part: &str, name: &str) -> String {
        let link = url::Url::parse(&self.link(part)).expect("a URL");
        link.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).expect("the parameter")
    }
}

/// A running sink. Dropping it kills the server.
pub struct MailSink {
    child: Child,
    pub smtp_port: u16,
    pub http_port: u16,
    extra: Vec<String>,
}

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join("scripts/ensure-mail-sink.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/ensure-mail-sink.sh runs");
    assert!(out.status.success(), "scripts/ensure-mail-sink.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("a path").trim())
}

static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

impl MailSink {
    /// A sink on free ports.
    pub async fn start() -> MailSink {
        Self::start_with(0, &[]).await
    }

    /// A sink whose SMTP side listens on `smtp_port` (0: a free one), with more arguments of
    /// the script (`--tls-cert`, `--implicit-tls`, `--auth`, ...).
    pub async fn start_with(smtp_port: u16, extra: &[&str]) -> MailSink {
        let python = PYTHON.get_or_init(python).clone();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/mail-sink.py");
        let started = Instant::now();
        loop {
            let mut child = Command::new(&python)
                .arg(&script)
                .args(["--smtp", &format!("127.0.0.1:{smtp_port}"), "--http", "127.0.0.1:0"])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("the mail sink starts");
            let stdout = child.stdout.take().expect("its stdout");
            let mut line = String::new();
            let read = tokio::time::timeout(Duration::from_secs(20), BufReader::new(stdout).read_line(&mut line)).await;
            if let Ok(Ok(n)) = read
                && n > 0
            {
                let ports: serde_json::Value = serde_json::from_str(&line).expect("the sink's ports");
                return MailSink {
                    child,
                    smtp_port: ports["smtp"].as_u64().expect("smtp port") as u16,
                    http_port: ports["http"].as_u64().expect("http port") as u16,
                    extra: extra.iter().map(|s| s.to_string()).collect(),
                };
            }
            // A restart on a fixed port can race the old socket's release: try again briefly.
            let _ = child.kill().await;
            assert!(started.elapsed() < Duration::from_secs(20), "the mail sink did not start on port {smtp_port}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn smtp_url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.smtp_port)
    }

    /// Stops the server (its mail is forgotten); [`restart`](Self::restart) brings it back
    /// on the same SMTP port.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }

    /// A new sink on the same SMTP port, with the same arguments.
    pub async fn restart(self) -> MailSink {
        let MailSink { mut child, smtp_port, extra, .. } = self;
        let _ = child.kill().await;
        let _ = child.wait().await;
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        MailSink::start_with(smtp_port, &extra).await
    }

    /// Every mail received for `to`, oldest first.
    pub async fn messages(&self, to: &str) -> Vec<Mail> {
        let url = format!("http://127.0.0.1:{}/messages", self.http_port);
        reqwest::Client::new()
            .get(url)
            .query(&[("to", to)])
            .send()
            .await
            .expect("the inbox answers")
            .json()
            .await
            .expect("the inbox's JSON")
    }

    /// Waits (up to 20 s) until `count` mails for `to` arrived, and returns them.
    pub async fn wait_for_count(&self, to: &str, count: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.messages(to).await;
            if got.len() >= count {
                return got;
            }
            assert!(Instant::now() < deadline, "{count} mail(s) for {to} did not arrive; got {}", got.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the first mail to `to`.
    pub async fn wait_for(&self, to: &str) -> Mail {
        self.wait_for_count(to, 1).await.remove(0)
    }

    /// Waits for a mail to `to` whose subject contains `subject`.
    pub async fn wait_for_subject(&self, to: &str, subject: &str) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = self.messages(to).await.into_iter().find(|m| m.subject.contains(subject)) {
                return m;
            }
            assert!(Instant::now() < deadline, "no mail for {to} with subject {subject:?} arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
