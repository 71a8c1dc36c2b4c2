//! The data of one execution's `Store`: the WASI and wasi-http contexts, the
//! limiter, the log, and the host interfaces' state (the `…Ctx` of this
//! runtime; wasmtime's `WasiView`/`WasiHttpView` borrow from it).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::Limits;
use secrecy::{ExposeSecret, SecretString};

use super::bindings::latest::actionhost::executor::{
    contacts as wit_contacts, log as wit_log, signing as wit_signing, smtp as wit_smtp,
};
use super::credentials::{ContactBinding, Grant, NoteError};
use super::log::{Console, GuestOutput, LogLevel, LogSink, LogSource};
use super::outbound::{Budget, OutboundHooks, OutboundPolicy};
use super::smtp::{RelayError, SmtpRelay};

/// Per-store state.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    pub(super) limiter: Limiter,
    pub(super) log: LogSink,
    console: Console,
    smtp: SmtpRelay,
    signing_secret: Option<SecretString>,
    binding: Option<Arc<ContactBinding>>,
}

impl HostState {
    pub(super) fn new(limits: &Limits, policy: OutboundPolicy, grant: Arc<Grant>) -> Self {
        let log = LogSink::new(limits.max_log_bytes);
        let console = Console::new(log.clone());
        // No environment, arguments, preopened directories or sockets: the
        // guest gets clocks, random numbers, and stdio captured into the log.
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(console.clone(), LogSource::Stdout))
            .stderr(GuestOutput::new(console.clone(), LogSource::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        // Host resources live in the host's memory: without a cap of our own,
        // wasmtime's (a million entries) would let one instance take gigabytes.
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.resource_handles);
        let budget = Budget::new(policy.max_requests);
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table,
            smtp: SmtpRelay::new(limits, &policy, &grant, log.clone(), budget.clone()),
            signing_secret: grant.credentials.signing_secret().cloned(),
            binding: grant.binding.clone(),
            hooks: OutboundHooks::new(policy, grant, log.clone(), budget),
            limiter: Limiter::new(limits),
            log,
            console,
        }
    }

    /// Readies a reused instance's state for its next execution: a new log
    /// (stdout and stderr redirected to it), limiter, outbound budget and
    /// this execution's credentials. What the guest kept in its own memory
    /// stays; that is why the runtime only reuses an instance for the same
    /// account.
    pub(super) fn prepare(&mut self, limits: &Limits, policy: OutboundPolicy, grant: Arc<Grant>) {
        self.log = LogSink::new(limits.max_log_bytes);
        self.console.redirect(self.log.clone());
        let budget = Budget::new(policy.max_requests);
        self.smtp = SmtpRelay::new(limits, &policy, &grant, self.log.clone(), budget.clone());
        self.signing_secret = grant.credentials.signing_secret().cloned();
        self.binding = grant.binding.clone();
        self.hooks = OutboundHooks::new(policy, grant, self.log.clone(), budget);
        self.limiter = Limiter::new(limits);
    }

    /// Takes away everything an execution lent, before the instance waits
    /// idle: no credentials, no signing secret, no network, no SMTP server.
    pub(super) fn park(&mut self) {
        let closed = OutboundPolicy {
            rules: Arc::from(Vec::new()),
            allow_private_network: false,
            max_requests: 0,
            connect_timeout: std::time::Duration::ZERO,
            max_body_bytes: 0,
            responder: None,
        };
        self.hooks = OutboundHooks::new(
            closed,
            Arc::new(Grant::default()),
            self.log.clone(),
            Budget::new(0),
        );
        self.smtp.server = None;
        self.smtp.responder = None;
        self.signing_secret = None;
        self.binding = None;
    }

    /// Whether a limit was hit during the last call (the guest may have
    /// handled the refused growth, but it sits at its cap).
    pub(super) fn hit_limit(&self) -> bool {
        self.limiter.memory_hit || self.limiter.table_hit
    }
}

impl SmtpRelay {
    fn new(
        limits: &Limits,
        policy: &OutboundPolicy,
        grant: &Grant,
        log: LogSink,
        budget: Budget,
    ) -> Self {
        Self {
            budget,
            server: grant.credentials.smtp().cloned(),
            allow_private_network: policy.allow_private_network,
            max_message_bytes: limits.max_outbound_body_bytes,
            timeout: limits.connect_timeout,
            log,
            responder: policy.responder.clone(),
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

impl wit_signing::Host for HostState {
    fn hmac_sha256(&mut self, message: Vec<u8>) -> Result<Vec<u8>, wit_signing::SigningError> {
        use hmac::Mac;
        let Some(secret) = &self.signing_secret else {
            return Err(wit_signing::SigningError::NotConfigured(
                "this execution's connected account has no signing secret; connect it through an auth config \
                 of type signing_secret"
                    .into(),
            ));
        };
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(&message);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl wit_contacts::Host for HostState {
    fn get_contact(&mut self) -> Option<wit_contacts::Contact> {
        let contact = self.binding.as_ref()?.contact.as_ref()?;
        Some(wit_contacts::Contact {
            id: contact.id.clone(),
            email: contact.email.clone(),
            properties: contact.properties.to_string(),
        })
    }

    fn get_sender(&mut self) -> Option<wit_contacts::Sender> {
        let sender = self.binding.as_ref()?.sender.as_ref()?;
        Some(wit_contacts::Sender {
            id: sender.id.clone(),
            name: sender.name.clone(),
            email: sender.email.clone(),
        })
    }

    async fn add_note(&mut self, body: String) -> Result<String, wit_contacts::ContactError> {
        let Some(notes) = self
            .binding
            .as_ref()
            .filter(|b| b.contact.is_some())
            .and_then(|b| b.notes.clone())
        else {
            return Err(wit_contacts::ContactError::NotBound(
                "this execution addresses no contact: its action type's params need a top-level contact_id"
                    .into(),
            ));
        };
        notes.add_note(body).await.map_err(|err| match err {
            NoteError::Rejected(message) => wit_contacts::ContactError::Rejected(message),
            NoteError::Unavailable(message) => wit_contacts::ContactError::Unavailable(message),
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
