//! Starting and stopping one service instance: metrics, the actor tree, the HTTP server.
//!
//! `run` is what `auth-service serve` calls and what the integration tests call with a
//! listener on port 0. Startup validates everything (keys, PostgreSQL reachable and migrated,
//! Redis reachable) before the first request is accepted; nothing is created or migrated here.

use std::future::Future;
use std::sync::Arc;

use auth_actors::StartupError;
use tokio::net::TcpListener;

use crate::app::{App, AppState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::server;

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Shutdown was requested and completed.
    Requested,
    /// The actor tree stopped on its own: a child exceeded the restart-intensity limit.
    Escalated,
}

/// Runs the service on `listener` until `shutdown` resolves or the actor tree escalates.
/// `metrics_listener`, when given, serves `/metrics` alone (and the API then does not).
/// `on_ready` is called with the app once the actor tree is up (the binary uses it to install
/// the SIGHUP key-reload handler; tests ignore it).
pub async fn run(
    config: Config,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(&App),
) -> Result<Exit, StartupError> {
    let metrics = Metrics::new();
    // Before the actor tree, so that a failure here leaves nothing running.
    let hasher = crate::passwords::PasswordHasher::new(&config.passwords, metrics.clone())
        .map_err(|e| StartupError::Spawn(format!("password hashing: {e}")))?;
    let mfa_keys = match &config.mfa.encryption_keys {
        Some(raw) => Some(
            crate::sealing::KeyRing::parse(raw.expose())
                .map_err(|e| StartupError::Spawn(format!("invalid MFA_ENCRYPTION_KEYS: {e}")))?,
        ),
        None => {
            tracing::warn!("MFA_ENCRYPTION_KEYS is not set: TOTP enrolment answers 503 (sign-ins and passkeys work)");
            None
        }
    };
    let (services, supervisor, mut supervisor_done) =
        auth_actors::supervisor::start(config.actor_settings(), metrics.actors.clone()).await?;
    if !config.limits.enabled {
        tracing::warn!("RATE_LIMIT_ENABLED=false: rate limiting and lockout are off (load tests only)");
    }
    let webauthn = match crate::flows::webauthn::relying_party(&config.tokens.public_url, crate::mail::SERVICE_NAME) {
        Ok(rp) => Some(rp),
        Err(why) => {
            tracing::warn!(reason = %why, "passkeys are off: the passkey routes answer 503");
            None
        }
    };
    let app = App::new(AppState {
        webauthn,
        mfa_keys,
        authz: crate::authz::AuthzCache::new(
            config.tokens.authz_cache_ttl,
            config.tokens.authz_cache_size,
            auth_actors::cache::CacheCounters::of(&metrics.authz_cache),
        ),
        clients: crate::oauth::protocol::ClientCache::new(
            config.tokens.authz_cache_ttl,
            config.tokens.authz_cache_size,
            auth_actors::cache::CacheCounters::of(&metrics.client_cache),
        ),
        remote_keys: crate::oauth::remote_keys::RemoteKeys::new(
            config.dependency_timeout,
            config.oauth.jwks_allow_http,
            config.oauth.jwks_allow_private,
        ),
        breach_api: config.passwords.breach_api.as_ref().map(crate::passwords::breach::RangeApi::new),
        stopping: std::sync::atomic::AtomicBool::new(false),
        config: Arc::new(config),
        services,
        metrics,
        hasher,
    });
    on_ready(&app);
    let metrics_server = metrics_listener.map(|l| tokio::spawn(server::serve_metrics(l, app.clone())));
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving");

    let escalated = std::sync::atomic::AtomicBool::new(false);
    let stopping = app.clone();
    let stop = async {
        tokio::select! {
            () = shutdown => {
                // Not ready first, still serving, so that a balancer polling readiness stops
                // sending before the listener closes.
                stopping.stopping.store(true, std::sync::atomic::Ordering::Release);
                let delay = stopping.config.http.shutdown_delay;
                if !delay.is_zero() {
                    tracing::info!(delay_secs = delay.as_secs_f64(), "shutting down: not ready, still serving");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = &mut supervisor_done => {
                            tracing::error!("actor system stopped by itself; shutting down");
                            escalated.store(true, std::sync::atomic::Ordering::Release);
                        }
                    }
                }
            }
            _ = &mut supervisor_done => {
                tracing::error!("actor system stopped by itself; shutting down");
                escalated.store(true, std::sync::atomic::Ordering::Release);
            }
        }
    };
    server::serve(listener, app, stop).await;
    if let Some(task) = metrics_server {
        task.abort();
    }
    let escalated = escalated.load(std::sync::atomic::Ordering::Acquire);
    if !escalated {
        supervisor.stop(Some("shutdown".into()));
        let _ = supervisor_done.await;
    }
    tracing::info!("stopped");
    Ok(if escalated { Exit::Escalated } else { Exit::Requested })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

/// Reloads the keys on every SIGHUP, for the lifetime of the process.
pub fn reload_keys_on_sighup(app: &App) {
    use auth_actors::key_manager::ReloadError;
    use tokio::signal::unix::{SignalKind, signal};
    let keys = app.services.keys.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            match keys.reload().await {
                Ok(kid) => tracing::info!(active_kid = %kid, "SIGHUP: keys reloaded"),
                Err(ReloadError::Refused(e)) => tracing::error!(error = %e, "SIGHUP: key reload refused"),
                Err(ReloadError::Call(e)) => tracing::error!(error = %e, "SIGHUP: key manager unavailable"),
            }
        }
    });
}
