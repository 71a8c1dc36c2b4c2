//! The data of one execution's `Store`: the WASI and wasi-http contexts, the
//! limiter, the log, and the host interfaces' state (the `…Ctx` of this
//! runtime; wasmtime's `WasiView`/`WasiHttpView` borrow from it).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::Limits;
use super::bindings::latest::actionhost::executor::{log as wit_log, smtp as wit_smtp};
use super::credentials::Grant;
use super::log::{GuestOutput, LogLevel, LogSink, LogSource};
use super::outbound::{OutboundHooks, OutboundPolicy};
use super::smtp::{RelayError, SmtpRelay};

/// Per-store state.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    pub(super) limiter: Limiter,
    pub(super) log: LogSink,
    smtp: SmtpRelay,
}

impl HostState {
    pub(super) fn new(limits: &Limits, policy: OutboundPolicy, grant: Arc<Grant>) -> Self {
        let log = LogSink::new(limits.max_log_bytes);
        // No environment, arguments, preopened directories or sockets: the
        // guest gets clocks, random numbers, and stdio captured into the log.
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(log.clone(), LogSource::Stdout))
            .stderr(GuestOutput::new(log.clone(), LogSource::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let smtp = SmtpRelay {
            server: grant.credentials.smtp().cloned(),
            allow_private_network: policy.allow_private_network,
            max_message_bytes: limits.max_outbound_body_bytes,
            timeout: limits.connect_timeout,
            log: log.clone(),
        };
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks::new(policy, grant, log.clone()),
            limiter: Limiter::new(limits),
            log,
            smtp,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl wit_log::Host for HostState {
    fn write(&mut self, level: wit_log::Level, message: String) {
        let level = match level {
            wit_log::Level::Trace => LogLevel::Trace,
            wit_log::Level::Debug => LogLevel::Debug,
            wit_log::Level::Info => LogLevel::Info,
            wit_log::Level::Warn => LogLevel::Warn,
            wit_log::Level::Error => LogLevel::Error,
        };
        self.log.push(level, LogSource::Plugin, &message);
    }

    fn has_room(&mut self) -> bool {
        self.log.has_room()
    }
}

impl wit_smtp::Host for HostState {
    async fn send(
        &mut self,
        envelope: wit_smtp::Envelope,
        message: Vec<u8>,
    ) -> Result<String, wit_smtp::SmtpError> {
        self.smtp
            .send(&envelope.sender, &envelope.recipients, &message)
            .await
            .map_err(|err| match err {
                RelayError::NotConfigured(m) => wit_smtp::SmtpError::NotConfigured(m),
                RelayError::Unauthorized(m) => wit_smtp::SmtpError::Unauthorized(m),
                RelayError::Transient(m) => wit_smtp::SmtpError::Transient(m),
                RelayError::Permanent(m) => wit_smtp::SmtpError::Permanent(m),
            })
    }
}

/// Caps memory and table growth, and remembers whether a cap was hit so that
/// the resulting trap is reported as a limit rather than a crash.
pub struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    pub(super) memory_hit: bool,
    pub(super) table_hit: bool,
}

impl Limiter {
    fn new(limits: &Limits) -> Self {
        Self {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            memory_hit: false,
            table_hit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.table_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}
