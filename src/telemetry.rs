//! Logging through `tracing`: text for people, JSON (one object per line) for machines.
//! `RUST_LOG`, when set, wins over `LOG_LEVEL`.
//!
//! Every line goes into one in-memory buffer; a background thread writes that buffer to stdout
//! whenever it passes 64 KiB, and at least every 20 ms. A request pays for formatting its line
//! and one short lock, never for a write to stdout or a thread wake-up. If stdout falls so far
//! behind that 16 MiB are waiting, new lines are dropped rather than slowing requests down, and
//! counted in `auth_log_lines_dropped_total`.
//!
//! The access log (one line per request, target `access`) is formatted here by hand rather than
//! by `tracing`'s formatter, in the same layout and with the same fields: it is written once per
//! request, and the generic formatter cost a quarter of the throughput of the cheapest routes.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Bytes buffered before the writer thread is woken early.
const FLUSH_AT: usize = 64 * 1024;
/// Longest time a line waits in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Bytes buffered beyond which new lines are dropped.
const CAPACITY: usize = 16 * 1024 * 1024;

static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);
static SINK: OnceLock<Sink> = OnceLock::new();

/// Lines dropped because the buffer was full, for the metrics registry.
pub fn dropped_lines() -> Counter {
    DROPPED.clone()
}

struct Sink {
    buffer: Arc<Buffer>,
    format: LogFormat,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Buffer {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves only bytes behind; they are still worth writing.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append(&self, line: &[u8]) {
        let mut pending = self.lock();
        let before = pending.bytes.len();
        if before + line.len() > CAPACITY {
            drop(pending);
            DROPPED.inc();
            return;
        }
        pending.bytes.extend_from_slice(line);
        if before < FLUSH_AT && pending.bytes.len() >= FLUSH_AT {
            self.wake.notify_one();
        }
    }

    /// The writer thread: swaps the buffer out under the lock and writes it without the lock.
    fn drain(&self) {
        let mut spare = Vec::with_capacity(FLUSH_AT);
        let mut out = std::io::stdout().lock();
        loop {
            let closed = {
                let mut pending = self.lock();
                if pending.bytes.len() < FLUSH_AT && !pending.closed {
                    pending = self
                        .wake
                        .wait_timeout(pending, FLUSH_EVERY)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
                std::mem::swap(&mut pending.bytes, &mut spare);
                pending.closed
            };
            if !spare.is_empty() {
                // Nowhere left to report a failed write to stdout; the lines are lost either way.
                let _ = out.write_all(&spare).and_then(|()| out.flush());
                spare.clear();
                if spare.capacity() > 4 * FLUSH_AT {
                    spare = Vec::with_capacity(FLUSH_AT);
                }
            }
            if closed && self.lock().bytes.is_empty() {
                return;
            }
        }
    }
}

/// `tracing`'s writer: each formatted event is appended to the buffer in one piece.
#[derive(Clone)]
struct BufferWriter(Arc<Buffer>);

impl std::io::Write for BufferWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferWriter {
    type Writer = BufferWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Keeps the log writer alive; dropping it writes out what is buffered.
pub struct Logging {
    buffer: Arc<Buffer>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Logging {
    fn drop(&mut self) {
        self.buffer.lock().closed = true;
        self.buffer.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn init(format: LogFormat, level: &str) -> Logging {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let buffer = Arc::new(Buffer::default());
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn({
            let buffer = buffer.clone();
            move || buffer.drain()
        })
        .ok();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(BufferWriter(buffer.clone()));
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    if installed.is_ok() {
        let _ = SINK.set(Sink { buffer: buffer.clone(), format });
    }
    Logging { buffer, thread }
}

/// One request, as the access log records it.
pub struct Access<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub latency: Duration,
    pub client_ip: IpAddr,
}

/// Writes the access-log line of one request (target `access`, level INFO, message `request`,
/// inside a `request` span carrying `request_id`), if the filter lets that target through.
pub fn access(entry: &Access<'_>) {
    if !tracing::enabled!(target: "access", tracing::Level::INFO) {
        return;
    }
    let Some(sink) = SINK.get() else {
        // No logging of our own installed (the service embedded in another program): go
        // through whatever `tracing` subscriber there is.
        let span = tracing::info_span!("request", request_id = %entry.request_id);
        span.in_scope(|| {
            tracing::info!(
                target: "access",
                method = entry.method, route = entry.route, status = entry.status,
                latency_ms = entry.latency.as_secs_f64() * 1000.0, client_ip = %entry.client_ip, "request"
            );
        });
        return;
    };
    LINE.with(|cell| {
        let mut state = cell.borrow_mut();
        let state = &mut *state;
        state.line.clear();
        let line = &mut state.line;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        if state.second != now.as_secs() || state.stamp.is_empty() {
            state.second = now.as_secs();
            state.stamp = second_stamp(now.as_secs());
        }
        let micros = now.subsec_micros();
        // Milliseconds with three decimals, from integers (cheaper than formatting a float).
        let latency_us = entry.latency.as_micros();
        let (ms, frac) = (latency_us / 1000, latency_us % 1000);
        match sink.format {
            LogFormat::Text => {
                let _ = writeln!(
                    line,
                    "{}.{micros:06}Z  INFO request{{request_id={}}}: access: request method={} route=\"{}\" status={} latency_ms={ms}.{frac:03} client_ip={}",
                    state.stamp, entry.request_id, entry.method, entry.route, entry.status, entry.client_ip
                );
            }
            LogFormat::Json => {
                let _ = write!(line, "{{\"timestamp\":\"{}.{micros:06}Z\",\"level\":\"INFO\",\"message\":\"request\",\"method\":", state.stamp);
                json_str(line, entry.method);
                line.push_str(",\"route\":");
                json_str(line, entry.route);
                let _ = write!(line, ",\"status\":{},\"latency_ms\":{ms}.{frac:03},\"client_ip\":\"{}\"", entry.status, entry.client_ip);
                line.push_str(",\"target\":\"access\",\"span\":{\"request_id\":");
                json_str(line, entry.request_id);
                line.push_str(",\"name\":\"request\"}}\n");
            }
        }
        sink.buffer.append(line.as_bytes());
    });
}

struct LineState {
    second: u64,
    stamp: String,
    line: String,
}

thread_local! {
    static LINE: RefCell<LineState> =
        const { RefCell::new(LineState { second: 0, stamp: String::new(), line: String::new() }) };
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a Unix second, as `tracing`'s own timestamps begin.
fn second_stamp(secs: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Appends `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        json_str(&mut out, "a\"b\\c\n");
        assert_eq!(out, r#""a\"b\\c\u000a""#);
        let parsed: String = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed, "a\"b\\c\n");
    }

    #[test]
    fn second_stamps_are_utc() {
        assert_eq!(second_stamp(0), "1970-01-01T00:00:00");
        assert_eq!(second_stamp(1_795_000_000), "2026-11-18T11:06:40");
    }

    #[test]
    fn a_full_buffer_drops_and_counts() {
        let buffer = Buffer::default();
        let before = DROPPED.get();
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..16 {
            buffer.append(&chunk);
        }
        assert_eq!(DROPPED.get(), before);
        buffer.append(b"one more\n");
        assert_eq!(DROPPED.get(), before + 1);
        assert_eq!(buffer.lock().bytes.len(), CAPACITY);
    }
}
