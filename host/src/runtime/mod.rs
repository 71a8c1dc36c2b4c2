//! The sandbox: loads executor plugins (WebAssembly components) and runs them.
//!
//! **Architecture Invariant:** this is the only module that imports
//! `wasmtime`; the rest of the host sees [`Runtime`], [`Plugin`] and the plain
//! types of [`types`].
//!
//! How the pieces are wired:
//!
//! - [`Runtime::new`] builds one [`wasmtime::Engine`] (pooling allocator,
//!   epoch interruption; see `engine.rs`), one `Linker` with WASI p2,
//!   wasi-http and the `smtp` and `log` host interfaces, and opens the
//!   compiled-code cache (`cache.rs`).
//! - [`Runtime::load`] turns component bytes into a [`Plugin`]: compile or
//!   load from cache, pre-instantiate against the linker (an import the host
//!   does not offer fails here, by name), call `describe` once, check the
//!   manifest, and compile each action type's params schema.
//! - [`Plugin::execute`] creates a fresh `Store` (`state.rs`) from the cached
//!   `InstancePre`, with the memory limiter, the deadline, the outbound policy
//!   and the account's credentials, and calls the guest. A plugin that opts
//!   into reuse (`reuse-policy`) instead gets an idle instance that last ran
//!   for the same connected account, if there is one (`pool.rs`). It returns two
//!   layers: `Err(PluginFault)` when the plugin trapped or broke a limit, and
//!   `Ok(Execution)` whose `outcome` is the plugin's own `result`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use actionhost::runtime::{Credentials, ExecuteRequest, PluginOptions, Runtime, RuntimeConfig};
//! let runtime = Runtime::new(RuntimeConfig::new("/tmp/actionhost-cache"))?;
//! let plugin = runtime.load(std::fs::read("crm_sync.wasm")?.into(), PluginOptions::default()).await?;
//! let request = ExecuteRequest {
//!     action_id: "act_1".into(),
//!     action_type: "crm_sync".into(),
//!     params: serde_json::json!({"contacts": [{"email": "ada@example.com"}]}),
//!     attempt: 1,
//!     idempotency_key: "act_1".into(),
//!     account: None,
//!     reuse_key: None,
//! };
//! match plugin.execute(request, Arc::new(Credentials::None.into())).await {
//!     Ok(execution) => println!("plugin said {:?}", execution.outcome),
//!     Err(fault) => println!("plugin faulted: {fault}"),
//! }
//! # Ok(()) }
//! ```

mod bindings;
mod cache;
mod credentials;
mod engine;
mod log;
pub mod model;
mod outbound;
mod plugin;
pub use plugin::{ComponentSource, sha256_hex};
mod pool;
mod smtp;
mod state;
pub mod types;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use cache::CacheOutcome;
pub use credentials::{
    ContactBinding, ContactInfo, Credentials, Grant, NoteError, NoteWriter, SenderInfo, SmtpServer,
    SmtpTls, TokenError, TokenFuture, TokenSource,
};
pub use engine::Allocator;
pub use log::{ExecutionLog, LogLevel, LogLine, LogSource, OutboundCall};
pub use outbound::{FetchError, Responder, fetch, is_public};
pub use plugin::{Execution, FaultKind, LoadError, Plugin, PluginFault, ValidatedInstance};
pub use pool::ReuseStats;
pub use types::{
    AccountInfo, ActionTypeInfo, AuthScheme, ExecuteError, ExecuteRequest, FieldError, HostRule,
    Manifest, ReusePolicy,
};

use self::bindings::latest;
use self::cache::CompiledCache;
use self::state::HostState;

/// The WIT versions of `actionhost:executor` this host can load.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = bindings::SUPPORTED;

/// Sandbox limits of one plugin. Every field has a safe default.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest linear memory of an instance, in bytes (default 64 MiB).
    pub memory_bytes: usize,
    /// Largest table of an instance, in elements (default 100,000).
    pub table_elements: usize,
    /// Most host resources (HTTP requests, headers, streams, pollables) an
    /// instance may hold at once (default 10,000). Each lives in the host's
    /// memory, not the guest's, so `memory_bytes` does not bound them.
    pub resource_handles: usize,
    /// Wall-clock deadline of one call (default 30 s).
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// CPU fuel per call, when the runtime was built with fuel (default none).
    pub fuel: Option<u64>,
    /// Largest params document, in bytes of JSON (default 1 MiB).
    pub max_params_bytes: usize,
    /// Largest output document, in bytes of JSON (default 4 MiB).
    pub max_output_bytes: usize,
    /// Largest execution log, in bytes (default 64 KiB).
    pub max_log_bytes: usize,
    /// Largest outbound message body (SMTP message), in bytes (default 25 MiB).
    pub max_outbound_body_bytes: usize,
    /// Outbound HTTP requests per call (default 100).
    pub max_outbound_requests: u32,
    /// Timeout for DNS, connect and TLS of each outbound connection (default 10 s).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            table_elements: 100_000,
            resource_handles: 10_000,
            deadline: Duration::from_secs(30),
            fuel: None,
            max_params_bytes: 1 << 20,
            max_output_bytes: 4 << 20,
            max_log_bytes: 64 << 10,
            max_outbound_body_bytes: 25 << 20,
            max_outbound_requests: 100,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Refuses limits that could not work as written, naming the key:
    /// a zero deadline, or a request budget past what one execution's
    /// trace can hold (which would leave sent requests out of it).
    pub fn check(&self) -> Result<(), String> {
        if self.deadline.is_zero() || self.connect_timeout.is_zero() {
            return Err("deadline and connect_timeout must be longer than 0".into());
        }
        if self.max_outbound_requests as usize > log::MAX_CALLS {
            return Err(format!(
                "max_outbound_requests is {}, more than {} (the most requests one execution's trace records)",
                self.max_outbound_requests,
                log::MAX_CALLS
            ));
        }
        if self.memory_bytes > RuntimeConfig::DEFAULT_MAX_MEMORY_BYTES {
            return Err(format!(
                "memory_bytes is {}, more than the sandbox's largest memory ({} bytes, 1 GiB)",
                self.memory_bytes,
                RuntimeConfig::DEFAULT_MAX_MEMORY_BYTES
            ));
        }
        Ok(())
    }
}

/// How the operator configures the sandbox as a whole.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached.
    pub cache_dir: PathBuf,
    /// Whether plugins may reach private, loopback and link-local addresses.
    /// Off by default; tests that talk to local peers turn it on.
    pub allow_private_network: bool,
    /// Instance slots of the pooling allocator: the most executions that can
    /// run at once (default 1,000).
    pub max_instances: u32,
    /// Upper bound of any plugin's memory limit (default 1 GiB).
    pub max_memory_bytes: usize,
    /// Largest component accepted, in bytes (default 64 MiB).
    pub max_component_bytes: usize,
    /// Whether to meter CPU fuel (costs some speed; default off).
    pub fuel: bool,
    /// Default limits of plugins.
    pub limits: Limits,
    /// Limits of single plugins, by the name in their manifest, in place of
    /// `limits` (a plugin loaded with [`PluginOptions::limits`] keeps those).
    pub plugin_limits: HashMap<String, Limits>,
    /// Instance reuse for plugins that opt in (`reuse-policy`).
    pub reuse: ReuseConfig,
}

/// The operator's bounds on instance reuse, which a plugin opts into with
/// its `reuse-policy` export (WIT 0.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReuseConfig {
    /// Whether any instance is reused at all (default true).
    pub enabled: bool,
    /// Cap on a plugin's `max-calls` (default 10,000).
    pub max_calls: u32,
    /// Cap on the idle instances kept per plugin, all accounts together
    /// (default 16; also used when a plugin says 0).
    pub max_idle: u32,
}

impl Default for ReuseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_calls: 10_000,
            max_idle: 16,
        }
    }
}

impl RuntimeConfig {
    /// The default of `max_memory_bytes`: 1 GiB.
    pub const DEFAULT_MAX_MEMORY_BYTES: usize = 1 << 30;

    /// Defaults, with the compiled-code cache in `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            allow_private_network: false,
            max_instances: 1000,
            max_memory_bytes: Self::DEFAULT_MAX_MEMORY_BYTES,
            max_component_bytes: 64 << 20,
            fuel: false,
            limits: Limits::default(),
            plugin_limits: HashMap::new(),
            reuse: ReuseConfig::default(),
        }
    }
}

/// What the operator grants one plugin beyond its manifest.
#[derive(Clone, Default)]
pub struct PluginOptions {
    /// Extra outbound destinations, such as a provider's regional endpoint or,
    /// in tests, `http://127.0.0.1:*`.
    pub extra_hosts: Vec<HostRule>,
    /// Limits replacing the runtime's defaults.
    pub limits: Option<Limits>,
    /// Answers outbound HTTP and SMTP instead of the network: the plugin
    /// test harness's canned exchanges.
    pub responder: Option<Arc<dyn Responder>>,
}

/// Errors building the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the configuration.
    #[error("could not configure the webassembly engine: {0}")]
    Engine(String),
    /// The compiled-code cache could not be opened.
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
}

/// The sandbox: one engine, one linker, one compiled-code cache.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<HostState>,
    cache: CompiledCache,
    config: RuntimeConfig,
    allocator: Allocator,
}

impl Runtime {
    /// Builds the engine and linker and opens the cache.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let (engine, allocator) =
            engine::build(&config).map_err(|err| RuntimeError::Engine(format!("{err:#}")))?;
        engine::start_ticker(engine.weak());
        let mut linker = Linker::<HostState>::new(&engine);
        let link = |result: wasmtime::Result<()>| {
            result.map_err(|err| RuntimeError::Engine(format!("{err:#}")))
        };
        link(wasmtime_wasi::p2::add_to_linker_async(&mut linker))?;
        link(wasmtime_wasi_http::p2::add_only_http_to_linker_async(
            &mut linker,
        ))?;
        link(latest::actionhost::executor::smtp::add_to_linker::<
            _,
            HasSelf<HostState>,
        >(&mut linker, |s| s))?;
        link(latest::actionhost::executor::log::add_to_linker::<
            _,
            HasSelf<HostState>,
        >(&mut linker, |s| s))?;
        link(latest::actionhost::executor::signing::add_to_linker::<
            _,
            HasSelf<HostState>,
        >(&mut linker, |s| s))?;
        link(latest::actionhost::executor::contacts::add_to_linker::<
            _,
            HasSelf<HostState>,
        >(&mut linker, |s| s))?;
        let cache = CompiledCache::open(&config.cache_dir, &engine)?;
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                config,
                allocator,
            }),
        })
    }

    /// The allocator in use.
    pub fn allocator(&self) -> Allocator {
        self.inner.allocator
    }

    /// The configuration the runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Loads a component: compile (or read from cache), link, describe, check.
    pub async fn load(
        &self,
        bytes: Arc<[u8]>,
        options: PluginOptions,
    ) -> Result<Plugin, LoadError> {
        let sha256 = plugin::sha256_hex(&bytes);
        plugin::load(
            self.inner.clone(),
            ComponentSource::Bytes(bytes),
            sha256,
            options,
        )
        .await
    }

    /// [`Runtime::load`] for a caller that has hashed the component
    /// already: `sha256` is the lowercase hex SHA-256 of its bytes (it names
    /// the compiled-code cache entry and the loaded plugin). A file is read
    /// only when it has to be compiled, and then checked against `sha256`:
    /// a warm start hashes each file once, streaming, and never holds a
    /// 20 MB component on the heap.
    pub async fn load_hashed(
        &self,
        component: ComponentSource,
        sha256: String,
        options: PluginOptions,
    ) -> Result<Plugin, LoadError> {
        plugin::load(self.inner.clone(), component, sha256, options).await
    }
}
