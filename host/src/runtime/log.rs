//! The execution log: `log` calls, guest stdout and stderr, and the host's own
//! notes about outbound calls, kept in one size-capped buffer per execution.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Unexpected but harmless.
    Warn,
    /// A failure.
    Error,
}

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// The `log` interface.
    Plugin,
    /// Guest standard output.
    Stdout,
    /// Guest standard error.
    Stderr,
    /// The host, about what the plugin did (outbound calls, limits).
    Host,
}

/// One line of an execution's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// Milliseconds since the execution started.
    pub at_ms: u64,
    /// Severity.
    pub level: LogLevel,
    /// Origin.
    pub source: LogSource,
    /// The text.
    pub message: String,
}

/// A finished execution's log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecutionLog {
    /// The lines kept, oldest first.
    pub lines: Vec<LogLine>,
    /// Bytes dropped because the log reached its cap.
    pub truncated_bytes: u64,
    /// The outbound HTTP requests, oldest first (at most [`MAX_CALLS`]).
    #[serde(default)]
    pub outbound: Vec<OutboundCall>,
}

/// Most outbound requests kept in one execution's trace.
pub const MAX_CALLS: usize = 1000;

/// One outbound HTTP request, as traced: never a header, a query or a body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboundCall {
    /// Method.
    pub method: String,
    /// Host name or address.
    pub host: String,
    /// Path, without the query.
    pub path: String,
    /// Response status; none when no response came.
    pub status: Option<u16>,
    /// Milliseconds from the start of the request to the response head.
    pub duration_ms: u64,
    /// Whether the request reached the provider (it may have been processed).
    pub sent: bool,
    /// Whether the call is over (answered, or failed); false while it is
    /// in flight, as it is when a deadline cuts the execution short.
    #[serde(skip)]
    pub settled: bool,
}

impl std::fmt::Display for OutboundCall {
    /// `GET api.example.com/v1/contacts`, or `SMTP smtp.example.com:587
    /// (MAIL)` with the step of the message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.method == "SMTP" {
            write!(f, "SMTP {} ({})", self.host, self.path)
        } else {
            write!(f, "{} {}{}", self.method, self.host, self.path)
        }
    }
}

impl ExecutionLog {
    /// The last `n` lines, one per line of text, for error reports.
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        let mut tail: Vec<String> = self.lines[start..]
            .iter()
            .map(|line| {
                format!(
                    "[{} {}] {}",
                    line.source.as_str(),
                    line.level.as_str(),
                    line.message
                )
            })
            .collect();
        if self.truncated_bytes > 0 {
            tail.push(format!(
                "[log truncated: {} bytes dropped]",
                self.truncated_bytes
            ));
        }
        tail.join("\n")
    }

    /// Total bytes of message text kept.
    pub fn bytes(&self) -> usize {
        self.lines.iter().map(|line| line.message.len()).sum()
    }
}

impl LogLevel {
    /// The level's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

impl LogSource {
    /// The source's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plugin => "plugin",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Host => "host",
        }
    }
}

/// The shared, capped buffer that every writer of one execution appends to.
#[derive(Debug, Clone)]
pub struct LogSink {
    inner: Arc<Mutex<SinkState>>,
}

#[derive(Debug)]
struct SinkState {
    started: Instant,
    cap: usize,
    used: usize,
    log: ExecutionLog,
    /// Unterminated output of stdout and stderr, awaiting a newline.
    partial: [Vec<u8>; 2],
}

/// Longest line kept from a stream without a newline.
const MAX_LINE: usize = 16 * 1024;

impl LogSink {
    /// An empty log that keeps at most `cap` bytes of text.
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(SinkState {
                started: Instant::now(),
                cap,
                used: 0,
                log: ExecutionLog::default(),
                partial: [Vec::new(), Vec::new()],
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, SinkState> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one line.
    pub fn push(&self, level: LogLevel, source: LogSource, message: &str) {
        self.state().push(level, source, message);
    }

    /// Whether another line would be kept (the cap is not reached).
    pub fn has_room(&self) -> bool {
        let state = self.state();
        state.used < state.cap
    }

    /// Notes an outbound request in the trace; returns its slot for
    /// [`LogSink::settle_call`], or `None` past the cap.
    pub fn record_call(&self, call: OutboundCall) -> Option<usize> {
        let mut state = self.state();
        if state.log.outbound.len() < MAX_CALLS {
            state.log.outbound.push(call);
            Some(state.log.outbound.len() - 1)
        } else {
            None
        }
    }

    /// Marks a call noted while connecting as sent: from now on the
    /// provider may act on it.
    pub fn mark_sent(&self, slot: Option<usize>, path: Option<&str>) {
        let mut state = self.state();
        if let Some(call) = slot.and_then(|i| state.log.outbound.get_mut(i)) {
            call.sent = true;
            if let Some(path) = path {
                call.path = path.to_owned();
            }
        }
    }

    /// Completes a call noted in flight: its status (none when no answer
    /// came) and duration. A call never settled stays `sent` without a
    /// status: the provider may have processed it.
    pub fn settle_call(&self, slot: Option<usize>, status: Option<u16>, duration_ms: u64) {
        let mut state = self.state();
        if let Some(call) = slot.and_then(|i| state.log.outbound.get_mut(i)) {
            call.status = status;
            call.duration_ms = duration_ms;
            call.settled = true;
        }
    }

    /// Appends raw bytes from guest stdout or stderr, split into lines.
    pub fn write_stream(&self, source: LogSource, bytes: &[u8]) {
        let mut state = self.state();
        let slot = usize::from(source == LogSource::Stderr);
        let level = if source == LogSource::Stderr {
            LogLevel::Warn
        } else {
            LogLevel::Info
        };
        if state.used >= state.cap {
            state.log.truncated_bytes += bytes.len() as u64;
            return;
        }
        let mut pending = std::mem::take(&mut state.partial[slot]);
        for chunk in bytes.split_inclusive(|&b| b == b'\n') {
            if let Some(line) = chunk.strip_suffix(b"\n") {
                pending.extend_from_slice(line);
                let text = String::from_utf8_lossy(&pending).into_owned();
                state.push(level, source, &text);
                pending.clear();
            } else {
                pending.extend_from_slice(chunk);
                if pending.len() >= MAX_LINE {
                    let text = String::from_utf8_lossy(&pending).into_owned();
                    state.push(level, source, &text);
                    pending.clear();
                }
            }
        }
        state.partial[slot] = pending;
    }

    /// The log so far, with any unterminated stream output as final lines.
    pub fn finish(&self) -> ExecutionLog {
        let mut state = self.state();
        for (slot, source) in [(0, LogSource::Stdout), (1, LogSource::Stderr)] {
            let pending = std::mem::take(&mut state.partial[slot]);
            if !pending.is_empty() {
                let text = String::from_utf8_lossy(&pending).into_owned();
                let level = if slot == 1 {
                    LogLevel::Warn
                } else {
                    LogLevel::Info
                };
                state.push(level, source, &text);
            }
        }
        state.log.clone()
    }
}

impl SinkState {
    fn push(&mut self, level: LogLevel, source: LogSource, message: &str) {
        let room = self.cap.saturating_sub(self.used);
        if room == 0 {
            self.log.truncated_bytes += message.len() as u64;
            return;
        }
        let mut message = message.to_owned();
        if message.len() > room {
            let cut = (0..=room)
                .rev()
                .find(|&i| message.is_char_boundary(i))
                .unwrap_or(0);
            self.log.truncated_bytes += (message.len() - cut) as u64;
            message.truncate(cut);
        }
        self.used += message.len();
        let at_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.log.lines.push(LogLine {
            at_ms,
            level,
            source,
            message,
        });
    }
}

/// Which log a store's guest stdout and stderr go to. A reused instance
/// keeps its stream handles across executions, so each execution points
/// this at its own new log (and whatever the previous one left running
/// writes only into the previous log).
#[derive(Clone)]
pub struct Console {
    current: Arc<Mutex<LogSink>>,
}

impl Console {
    /// Output to `sink` until redirected.
    pub fn new(sink: LogSink) -> Self {
        Self {
            current: Arc::new(Mutex::new(sink)),
        }
    }

    /// Sends all later output to `sink`.
    pub fn redirect(&self, sink: LogSink) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    fn sink(&self) -> LogSink {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Guest stdout or stderr, captured into the execution's log. The same value
/// is the `StdoutStream` handed to WASI and, cloned, each stream it opens.
#[derive(Clone)]
pub struct GuestOutput {
    console: Console,
    source: LogSource,
}

impl GuestOutput {
    /// Output from `source` (stdout or stderr) into the console's log.
    pub fn new(console: Console, source: LogSource) -> Self {
        Self { console, source }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

/// How much a guest may write in one call; the sink caps the total anyway.
const WRITE_PERMIT: usize = 64 * 1024;

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.console.sink().write_stream(self.source, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.console.sink().write_stream(self.source, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_output_becomes_lines_and_stops_at_the_cap() {
        let sink = LogSink::new(20);
        sink.write_stream(LogSource::Stdout, b"hello\nwor");
        sink.write_stream(LogSource::Stdout, b"ld\n");
        sink.write_stream(LogSource::Stdout, b"0123456789012345678901234\n");
        let log = sink.finish();
        let texts: Vec<&str> = log.lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(texts[..2], ["hello", "world"]);
        assert!(log.bytes() <= 20);
        assert!(log.truncated_bytes > 0);
    }

    #[test]
    fn the_tail_ends_with_the_last_lines() {
        let sink = LogSink::new(1024);
        for i in 0..10 {
            sink.push(LogLevel::Info, LogSource::Plugin, &format!("line {i}"));
        }
        let tail = sink.finish().tail(2);
        assert_eq!(tail, "[plugin info] line 8\n[plugin info] line 9");
    }
}
