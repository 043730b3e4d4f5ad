//! Logging through `tracing`: text for people, JSON (one object per line) for machines.
//! `RUST_LOG`, when set, wins over `LOG_LEVEL`.
//!
//! Lines are handed to a background thread that writes them to stdout in batches, so a
//! request never waits on a log write. If that thread falls far behind (over 128 000 lines
//! queued), new lines are dropped rather than slowing requests down.

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Keeps the log writer alive; dropping it flushes what is queued.
pub struct Logging {
    _guard: WorkerGuard,
}

pub fn init(format: LogFormat, level: &str) -> Logging {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let (writer, guard) = NonBlockingBuilder::default().lossy(true).finish(out);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    Logging { _guard: guard }
}
