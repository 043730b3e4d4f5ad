//! `auth-service serve`.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::Layers;
use crate::startup::{self, Exit};

/// Exit status when the actor tree gave up (restart-intensity limit): distinct from 1
/// (startup failure) so that an orchestrator's logs tell the two apart.
const EXIT_ESCALATED: u8 = 3;

/// A listener with a deep accept queue (the kernel caps it at `net.core.somaxconn`), so that a
/// burst of connections is not dropped while the accept loop catches up.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

pub async fn run(layers: &Layers) -> anyhow::Result<ExitCode> {
    let config = layers.build()?;
    let _logging = crate::telemetry::init(config.log_format, &config.log_level);
    let addr = config.http.bind_addr;
    let listener = bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let metrics_listener = match config.http.metrics_bind_addr {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} (METRICS_BIND_ADDR)"))?,
        ),
        None => None,
    };
    let exit =
        startup::run(config, listener, metrics_listener, startup::shutdown_signal(), startup::reload_keys_on_sighup)
            .await?;
    Ok(match exit {
        Exit::Requested => ExitCode::SUCCESS,
        Exit::Escalated => ExitCode::from(EXIT_ESCALATED),
    })
}
