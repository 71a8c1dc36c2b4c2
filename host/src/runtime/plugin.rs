//! A loaded plugin, and every call into it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{WitVersion, is_model, latest, model_v0_1_0, v0_1_0, v0_1_1};
use super::cache::CacheOutcome;
use super::credentials::{Credentials, Grant};
use super::engine::EPOCH_TICK;
use super::log::ExecutionLog;
use super::model::{Completion, CompletionRequest, ModelError, ModelInfo};
use super::outbound::{OutboundPolicy, Responder};
use super::pool::{ReusePool, ReuseStats, Warm};
use super::state::HostState;
use super::types::{
    AccountInfo, ActionTypeInfo, ExecuteError, ExecuteRequest, FieldError, HostRule, Manifest,
    PortRule, ReusePolicy,
};
use super::{Limits, PluginOptions, RuntimeInner};

use latest::actionhost::executor::types as wit;

/// How long `describe` may take at load time.
const DESCRIBE_DEADLINE: Duration = Duration::from_secs(10);

/// A plugin ready to run: compiled, linked, described and checked.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    runtime: Arc<RuntimeInner>,
    pre: Pre,
    manifest: Manifest,
    sha256: String,
    size: usize,
    cache: CacheOutcome,
    load_time: Duration,
    limits: Limits,
    rules: Arc<[HostRule]>,
    validators: HashMap<String, jsonschema::Validator>,
    /// Idle instances, when the plugin opted into reuse and the operator allows it.
    reuse: Option<ReusePool>,
    /// Answers outbound requests instead of the network (the test harness).
    responder: Option<Arc<dyn Responder>>,
}

impl Drop for PluginInner {
    /// The last holder let go: no registry snapshot and no running execution
    /// refers to this version any more, so its code and memory are freed.
    fn drop(&mut self) {
        tracing::debug!(
            plugin = %self.manifest.name,
            version = %self.manifest.version,
            "plugin version released"
        );
    }
}

/// A pre-instantiated component, with the bindings of its WIT version.
enum Pre {
    V0_1_0(v0_1_0::ExecutorPre<HostState>),
    V0_1_1(v0_1_1::ExecutorPre<HostState>),
    /// 0.1.2 and 0.1.3: the same exports, served by the newest bindings.
    Current(latest::ExecutorPre<HostState>),
    /// A language-model provider (`actionhost:model@0.1.0`).
    Model(model_v0_1_0::ModelPre<HostState>),
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Too large.
    #[error("component is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a component at all.
    #[error("not a webassembly component: {0}")]
    NotAComponent(String),
    /// Its file could not be read.
    #[error("cannot read the component: {0}")]
    Read(String),
    /// wasmtime could not compile it.
    #[error("compiling the component failed: {0}")]
    Compile(String),
    /// It was built against a version of the contract this host does not know.
    #[error(
        "the component was built against actionhost:executor@{found}, which this host does not support \
         (supported: {}); rebuild it against a supported version, or upgrade actionhost",
        super::bindings::SUPPORTED.join(", ")
    )]
    WitVersion {
        /// The version the component imports.
        found: String,
    },
    /// It needs something the host does not provide, or lacks an export.
    #[error("the component does not fit the actionhost:executor world: {0}")]
    Link(String),
    /// `describe` trapped or timed out.
    #[error("describe failed: {0}")]
    Describe(PluginFault),
    /// The manifest is wrong.
    #[error("invalid manifest: {0}")]
    Manifest(String),
}

/// A plugin's failure outside its own result: the outer layer of a call.
#[derive(Debug, Clone)]
pub struct PluginFault {
    /// What happened.
    pub kind: FaultKind,
    /// The execution's log up to the fault.
    pub log: ExecutionLog,
}

/// What went wrong in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// The call ran past its wall-clock deadline.
    Deadline {
        /// The deadline.
        limit: Duration,
    },
    /// The guest tried to grow its memory past the limit.
    MemoryLimit {
        /// The limit in bytes.
        limit_bytes: usize,
    },
    /// The guest tried to grow a table past the limit.
    TableLimit {
        /// The limit in elements.
        limit_elements: usize,
    },
    /// The guest held more host resources (requests, headers, streams)
    /// than allowed.
    ResourceLimit {
        /// The limit in handles.
        limit_handles: usize,
    },
    /// The guest ran out of CPU fuel.
    OutOfFuel,
    /// The guest's stack overflowed.
    StackOverflow,
    /// The guest trapped (a panic, `unreachable`, a bad memory access).
    Trap {
        /// wasmtime's description, with the guest backtrace when known.
        message: String,
    },
    /// The output was larger than allowed.
    OutputTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The output was not JSON.
    InvalidOutput {
        /// The parse error.
        message: String,
    },
    /// The host could not set up the call.
    Host {
        /// What failed.
        message: String,
    },
}

impl FaultKind {
    /// A stable code for APIs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Deadline { .. } => "deadline_exceeded",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::TableLimit { .. } => "table_limit",
            Self::ResourceLimit { .. } => "resource_limit",
            Self::OutOfFuel => "out_of_fuel",
            Self::StackOverflow => "stack_overflow",
            Self::Trap { .. } => "trap",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::InvalidOutput { .. } => "invalid_output",
            Self::Host { .. } => "host_error",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deadline { limit } => write!(
                f,
                "plugin exceeded its deadline of {} ms",
                limit.as_millis()
            ),
            Self::MemoryLimit { limit_bytes } => {
                write!(
                    f,
                    "plugin tried to grow its memory past the limit of {limit_bytes} bytes"
                )
            }
            Self::TableLimit { limit_elements } => {
                write!(
                    f,
                    "plugin tried to grow a table past the limit of {limit_elements} elements"
                )
            }
            Self::ResourceLimit { limit_handles } => write!(
                f,
                "plugin held more than the limit of {limit_handles} host resources (requests, headers, streams) at once"
            ),
            Self::OutOfFuel => write!(f, "plugin ran out of cpu fuel"),
            Self::StackOverflow => write!(f, "plugin overflowed its stack"),
            Self::Trap { message } => write!(f, "plugin trapped: {message}"),
            Self::OutputTooLarge { size, limit } => {
                write!(
                    f,
                    "plugin output of {size} bytes is larger than the limit of {limit} bytes"
                )
            }
            Self::InvalidOutput { message } => write!(f, "plugin output is not json: {message}"),
            Self::Host { message } => write!(f, "host failure: {message}"),
        }
    }
}

impl fmt::Display for PluginFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if !self.log.lines.is_empty() {
            write!(f, "; last log lines:\n{}", self.log.tail(10))?;
        }
        Ok(())
    }
}

impl std::error::Error for PluginFault {}

/// A finished call whose plugin returned normally.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The plugin's own result: output JSON, or its typed error.
    pub outcome: Result<serde_json::Value, ExecuteError>,
    /// The log.
    pub log: ExecutionLog,
    /// Wall-clock time of the call, instantiation included when it was not
    /// done by `validate` (see [`Plugin::validate_keeping`]).
    pub duration: Duration,
}

enum Call {
    Describe,
    DescribeModel,
    Complete(model_v0_1_0::actionhost::model::types::CompletionRequest),
    ReusePolicy,
    Validate { action_type: String, params: String },
    Execute(wit::ExecuteRequest),
}

enum Reply {
    Describe(wit::Manifest),
    DescribeModel(model_v0_1_0::actionhost::model::types::ProviderInfo),
    Complete(
        Result<
            model_v0_1_0::actionhost::model::types::Completion,
            model_v0_1_0::actionhost::model::types::ModelError,
        >,
    ),
    ReusePolicy(Option<wit::ReusePolicy>),
    Validate(Result<(), Vec<wit::FieldError>>),
    Execute(Result<String, wit::ExecuteError>),
}

/// The lowercase hex SHA-256 of a component: its identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where a component's bytes are.
#[derive(Debug, Clone)]
pub enum ComponentSource {
    /// In memory.
    Bytes(Arc<[u8]>),
    /// In a file, read only if the component must be compiled.
    File(std::path::PathBuf),
}

impl ComponentSource {
    /// The size and the first eight bytes (the header).
    fn probe(&self) -> Result<(usize, Vec<u8>), LoadError> {
        match self {
            Self::Bytes(bytes) => Ok((bytes.len(), bytes[..bytes.len().min(8)].to_vec())),
            Self::File(path) => {
                let read =
                    |err: std::io::Error| LoadError::Read(format!("{}: {err}", path.display()));
                use std::io::Read as _;
                let file = std::fs::File::open(path).map_err(read)?;
                let size = file.metadata().map_err(read)?.len();
                let mut head = Vec::with_capacity(8);
                file.take(8).read_to_end(&mut head).map_err(read)?;
                Ok((usize::try_from(size).unwrap_or(usize::MAX), head))
            }
        }
    }

    /// The bytes, which must hash to `sha256` (a file may have changed
    /// since it was hashed).
    pub(super) fn read(&self, sha256: &str) -> Result<Arc<[u8]>, LoadError> {
        match self {
            Self::Bytes(bytes) => Ok(bytes.clone()),
            Self::File(path) => {
                let bytes: Arc<[u8]> = std::fs::read(path)
                    .map_err(|err| LoadError::Read(format!("{}: {err}", path.display())))?
                    .into();
                if sha256_hex(&bytes) != sha256 {
                    return Err(LoadError::Read(format!(
                        "{} changed while it was being loaded; it is loaded again on its next change",
                        path.display()
                    )));
                }
                Ok(bytes)
            }
        }
    }
}

pub(super) async fn load(
    runtime: Arc<RuntimeInner>,
    component: ComponentSource,
    sha256: String,
    options: PluginOptions,
) -> Result<Plugin, LoadError> {
    let started = Instant::now();
    let limit = runtime.config.max_component_bytes;
    let (size, head) = component.probe()?;
    if size > limit {
        return Err(LoadError::TooLarge { size, limit });
    }
    check_component_header(&head)?;
    let (component, cache) = runtime
        .cache
        .load(&runtime.engine, &component, &sha256)
        .await?;
    let model = is_model(&component, &runtime.engine);
    let wit_version = if model {
        None
    } else {
        Some(
            WitVersion::of(&component, &runtime.engine)
                .map_err(|found| LoadError::WitVersion { found })?
                .unwrap_or(WitVersion::V0_1_3),
        )
    };
    let instance_pre = runtime
        .linker
        .instantiate_pre(&component)
        .map_err(|err| LoadError::Link(format!("{err:#}")))?;
    let link = |err: wasmtime::Error| LoadError::Link(format!("{err:#}"));
    let pre = match wit_version {
        None => Pre::Model(model_v0_1_0::ModelPre::new(instance_pre).map_err(link)?),
        Some(WitVersion::V0_1_0) => {
            Pre::V0_1_0(v0_1_0::ExecutorPre::new(instance_pre).map_err(link)?)
        }
        Some(WitVersion::V0_1_1) => {
            Pre::V0_1_1(v0_1_1::ExecutorPre::new(instance_pre).map_err(link)?)
        }
        Some(WitVersion::V0_1_2 | WitVersion::V0_1_3) => {
            Pre::Current(latest::ExecutorPre::new(instance_pre).map_err(link)?)
        }
    };
    let wit_version = match wit_version {
        Some(version) => version.as_str().to_owned(),
        None => format!("model {}", model_v0_1_0::VERSION),
    };

    // `describe` runs before the plugin's name is known: under the limits
    // of every plugin, or the caller's.
    let clamp = |mut limits: Limits| {
        limits.memory_bytes = limits.memory_bytes.min(runtime.config.max_memory_bytes);
        limits.table_elements = limits
            .table_elements
            .min(runtime.config.limits.table_elements);
        limits
    };
    let describe_limits = {
        let limits = clamp(
            options
                .limits
                .clone()
                .unwrap_or_else(|| runtime.config.limits.clone()),
        );
        Limits {
            deadline: limits.deadline.min(DESCRIBE_DEADLINE),
            ..limits
        }
    };
    // The entry is a few kilobytes, but reading it and writing it (with an
    // fsync) is file I/O: on a blocking thread, not the async one.
    let cached = {
        let (runtime, sha256) = (runtime.clone(), sha256.clone());
        tokio::task::spawn_blocking(move || runtime.cache.manifest::<Described>(&sha256))
            .await
            .ok()
            .flatten()
    };
    let described = match cached {
        Some(described) => described,
        None => {
            let described = describe(&runtime, &pre, &describe_limits).await?;
            let (runtime, sha256, json) = (runtime.clone(), sha256.clone(), described.clone());
            // Awaited, so that the entry is there when the load returns; a
            // failure to write it is logged by `store_manifest`.
            let _ = tokio::task::spawn_blocking(move || {
                runtime.cache.store_manifest(&sha256, &json);
            })
            .await;
            described
        }
    };
    let mut manifest = check_manifest(described.manifest, &wit_version, described.model.is_some())?;
    manifest.model = described.model;
    let limits = clamp(
        options
            .limits
            .or_else(|| runtime.config.plugin_limits.get(&manifest.name).cloned())
            .unwrap_or_else(|| runtime.config.limits.clone()),
    );
    manifest.reuse = described.reuse.map(|p| ReusePolicy {
        max_calls: p.max_calls,
        max_idle: p.max_idle,
    });
    let reuse = manifest.reuse.and_then(|policy| {
        ReusePool::new(
            &manifest.name,
            &manifest.version,
            policy,
            &runtime.config.reuse,
        )
    });
    let mut validators = HashMap::new();
    for action_type in &manifest.action_types {
        let validator = jsonschema::validator_for(&action_type.params_schema).map_err(|err| {
            LoadError::Manifest(format!(
                "params schema of {} is not a valid JSON Schema: {err}",
                action_type.name
            ))
        })?;
        validators.insert(action_type.name.clone(), validator);
    }
    let rules: Arc<[HostRule]> = manifest
        .outbound_hosts
        .iter()
        .cloned()
        .chain(options.extra_hosts)
        .collect();
    Ok(Plugin {
        inner: Arc::new(PluginInner {
            runtime,
            pre,
            manifest,
            sha256,
            size,
            cache,
            load_time: started.elapsed(),
            limits,
            rules,
            validators,
            reuse,
            responder: options.responder,
        }),
    })
}

/// What a component says about itself: its manifest and, from WIT 0.1.2
/// on, its instance reuse policy. Kept in the compiled-code cache.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Described {
    manifest: wit::Manifest,
    reuse: Option<wit::ReusePolicy>,
    /// For a model provider: which one.
    #[serde(default)]
    model: Option<ModelInfo>,
}

/// Runs `describe` (and `reuse-policy`, for WIT 0.1.2) in a fresh instance.
async fn describe(
    runtime: &Arc<RuntimeInner>,
    pre: &Pre,
    limits: &Limits,
) -> Result<Described, LoadError> {
    if matches!(pre, Pre::Model(_)) {
        return describe_model(runtime, pre, limits).await;
    }
    let (reply, log) = run_isolated(runtime, pre, limits, Call::Describe).await;
    let manifest = match reply {
        Ok(Reply::Describe(manifest)) => manifest,
        Ok(_) => unreachable!("describe returns a manifest"),
        Err(kind) => return Err(LoadError::Describe(PluginFault { kind, log })),
    };
    let reuse = if matches!(pre, Pre::Current(_)) {
        let (reply, log) = run_isolated(runtime, pre, limits, Call::ReusePolicy).await;
        match reply {
            Ok(Reply::ReusePolicy(policy)) => policy,
            Ok(_) => unreachable!("reuse-policy returns a policy"),
            Err(kind) => return Err(LoadError::Describe(PluginFault { kind, log })),
        }
    } else {
        None
    };
    Ok(Described {
        manifest,
        reuse,
        model: None,
    })
}

/// `describe` of a model provider, as a manifest without action types and
/// the provider it serves.
async fn describe_model(
    runtime: &Arc<RuntimeInner>,
    pre: &Pre,
    limits: &Limits,
) -> Result<Described, LoadError> {
    let (reply, log) = run_isolated(runtime, pre, limits, Call::DescribeModel).await;
    let info = match reply {
        Ok(Reply::DescribeModel(info)) => info,
        Ok(_) => unreachable!("describe returns the provider's info"),
        Err(kind) => return Err(LoadError::Describe(PluginFault { kind, log })),
    };
    if info.provider.is_empty()
        || info.provider.len() > 64
        || !info
            .provider
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(LoadError::Manifest(format!(
            "provider name {:?} must be lowercase letters, digits, - and _",
            info.provider
        )));
    }
    Ok(Described {
        manifest: wit::Manifest {
            name: info.name,
            version: info.version,
            description: info.description,
            action_types: Vec::new(),
            outbound_hosts: info
                .outbound_hosts
                .into_iter()
                .map(|host| wit::OutboundHost {
                    scheme: host.scheme,
                    host: host.host,
                    port: host.port,
                })
                .collect(),
        },
        reuse: None,
        model: Some(ModelInfo {
            provider: info.provider,
            default_base_url: info.default_base_url,
        }),
    })
}

fn check_component_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotAComponent(
            "the file does not start with the webassembly magic number".into(),
        ));
    }
    // Bytes 4..8: version (2 bytes) and layer (2 bytes); layer 1 is a component.
    if bytes[6..8] != [1, 0] {
        return Err(LoadError::NotAComponent(
            "this is a core webassembly module, not a component; build plugins with `--target wasm32-wasip2` \
             (or wrap a module with `wasm-tools component new`)"
                .into(),
        ));
    }
    Ok(())
}

fn check_manifest(
    manifest: wit::Manifest,
    wit_version: &str,
    model: bool,
) -> Result<Manifest, LoadError> {
    let fail = |message: String| Err(LoadError::Manifest(message));
    let name = manifest.name;
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.starts_with('-')
    {
        return fail(format!(
            "plugin name {name:?} must be kebab-case: lowercase letters, digits and -"
        ));
    }
    if semver::Version::parse(&manifest.version).is_err() {
        return fail(format!(
            "version {:?} of {name} is not a semantic version such as 1.2.0",
            manifest.version
        ));
    }
    if manifest.action_types.is_empty() && !model {
        return fail(format!("{name} declares no action types"));
    }
    let mut action_types: Vec<ActionTypeInfo> = Vec::new();
    for action_type in manifest.action_types {
        let type_name = action_type.name;
        if type_name.is_empty()
            || type_name.len() > 64
            || !type_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return fail(format!(
                "action type name {type_name:?} must be snake_case: lowercase letters, digits and _"
            ));
        }
        if action_types.iter().any(|t| t.name == type_name) {
            return fail(format!("action type {type_name} is declared twice"));
        }
        let parse = |what: &str, text: &str| -> Result<serde_json::Value, LoadError> {
            serde_json::from_str(text).map_err(|err| {
                LoadError::Manifest(format!("{what} of {type_name} is not JSON: {err}"))
            })
        };
        let params_schema = parse("params schema", &action_type.params_schema)?;
        let output_schema = action_type
            .output_schema
            .as_deref()
            .map(|s| parse("output schema", s))
            .transpose()?;
        action_types.push(ActionTypeInfo {
            name: type_name.clone(),
            title: action_type.title,
            description: action_type.description,
            params_schema,
            output_schema,
            auth_schemes: action_type
                .auth_schemes
                .into_iter()
                .map(Into::into)
                .collect(),
            idempotent: action_type.idempotent,
            requires_approval: action_type.requires_approval,
        });
    }
    let mut outbound_hosts = Vec::new();
    for host in manifest.outbound_hosts {
        let rule = HostRule {
            scheme: host.scheme.to_ascii_lowercase(),
            host: host.host.to_ascii_lowercase(),
            port: host.port.map_or(PortRule::Default, PortRule::Exact),
        };
        // Round-trip through the parser to apply the same checks as operator rules.
        let checked: HostRule = rule.to_string().parse().map_err(LoadError::Manifest)?;
        outbound_hosts.push(checked);
    }
    Ok(Manifest {
        name,
        version: manifest.version,
        description: manifest.description,
        wit_version: wit_version.to_owned(),
        action_types,
        outbound_hosts,
        reuse: None,
        model: None,
    })
}

/// A call with an empty allow-list and no credentials: `describe` and
/// `validate` never need the network.
async fn run_isolated(
    runtime: &RuntimeInner,
    pre: &Pre,
    limits: &Limits,
    call: Call,
) -> (Result<Reply, FaultKind>, ExecutionLog) {
    run(
        runtime,
        pre,
        limits,
        Arc::from(Vec::new()),
        Arc::new(Grant::from(Credentials::None)),
        None,
        call,
    )
    .await
}

fn outbound_policy(
    runtime: &RuntimeInner,
    limits: &Limits,
    rules: Arc<[HostRule]>,
    runtime_responder: Option<Arc<dyn Responder>>,
) -> OutboundPolicy {
    OutboundPolicy {
        rules,
        allow_private_network: runtime.config.allow_private_network,
        max_requests: limits.max_outbound_requests,
        connect_timeout: limits.connect_timeout,
        max_body_bytes: limits.max_outbound_body_bytes,
        responder: runtime_responder,
    }
}

fn new_store(
    limits: &Limits,
    runtime: &RuntimeInner,
    policy: OutboundPolicy,
    grant: Arc<Grant>,
) -> Store<HostState> {
    let mut store = Store::new(&runtime.engine, HostState::new(limits, policy, grant));
    store.limiter(|state| &mut state.limiter);
    store
}

/// Sets the fuel and the deadline of the call about to be made.
fn arm(
    store: &mut Store<HostState>,
    runtime: &RuntimeInner,
    limits: &Limits,
) -> Result<(), FaultKind> {
    if let Some(fuel) = limits.fuel.filter(|_| runtime.config.fuel) {
        store.set_fuel(fuel).map_err(|err| FaultKind::Host {
            message: format!("setting fuel: {err:#}"),
        })?;
    }
    // Yield to the async executor at every epoch tick, so a spinning guest
    // never starves other tasks, and trap once the deadline has passed.
    let deadline = Instant::now() + limits.deadline;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    Ok(())
}

/// Instantiates the plugin in a fresh store and makes one call.
async fn run(
    runtime: &RuntimeInner,
    pre: &Pre,
    limits: &Limits,
    rules: Arc<[HostRule]>,
    grant: Arc<Grant>,
    responder: Option<Arc<dyn Responder>>,
    call: Call,
) -> (Result<Reply, FaultKind>, ExecutionLog) {
    let policy = outbound_policy(runtime, limits, rules, responder);
    let mut store = new_store(limits, runtime, policy, grant);
    if let Err(fault) = arm(&mut store, runtime, limits) {
        return (Err(fault), store.data().log.finish());
    }

    // Every version's bindings share the newest version's types, so the
    // same calls serve each; only the instance type differs.
    macro_rules! call_with {
        ($pre:expr) => {
            call_with!($pre, call)
        };
        ($pre:expr, $call:expr) => {{
            let executor = $pre.instantiate_async(&mut store).await?;
            match $call {
                Call::Describe => Reply::Describe(executor.call_describe(&mut store).await?),
                // Only 0.1.2 and later have the export; see below.
                Call::ReusePolicy => Reply::ReusePolicy(None),
                Call::Validate {
                    action_type,
                    params,
                } => Reply::Validate(
                    executor
                        .call_validate(&mut store, &action_type, &params)
                        .await?,
                ),
                Call::Execute(request) => {
                    Reply::Execute(executor.call_execute(&mut store, &request).await?)
                }
                Call::DescribeModel | Call::Complete(_) => {
                    return Err(wasmtime::format_err!("an executor has no model exports"));
                }
            }
        }};
    }
    let call_future = async {
        let reply = match pre {
            Pre::V0_1_0(pre) => call_with!(pre),
            Pre::V0_1_1(pre) => call_with!(pre),
            Pre::Current(pre) => match call {
                Call::ReusePolicy => {
                    let executor = pre.instantiate_async(&mut store).await?;
                    Reply::ReusePolicy(executor.call_reuse_policy(&mut store).await?)
                }
                call => call_with!(pre, call),
            },
            Pre::Model(pre) => {
                let model = pre.instantiate_async(&mut store).await?;
                match call {
                    Call::DescribeModel => {
                        Reply::DescribeModel(model.call_describe(&mut store).await?)
                    }
                    Call::Complete(request) => {
                        Reply::Complete(model.call_complete(&mut store, &request).await?)
                    }
                    _ => {
                        return Err(wasmtime::format_err!(
                            "a model provider has no executor exports"
                        ));
                    }
                }
            }
        };
        wasmtime::Result::Ok(reply)
    };
    // The epoch catches CPU-bound guests; this catches guests blocked in a
    // host call (a slow server), with one tick of grace so the epoch reports
    // first when both apply.
    let outcome = tokio::time::timeout(limits.deadline + EPOCH_TICK, call_future).await;
    let state = store.data();
    (settle(outcome, state, limits), state.log.finish())
}

/// A call's result: its value, or the fault that ended it (the deadline, when
/// the timeout fired first).
fn settle<T>(
    outcome: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    state: &HostState,
    limits: &Limits,
) -> Result<T, FaultKind> {
    match outcome {
        Err(_elapsed) => Err(FaultKind::Deadline {
            limit: limits.deadline,
        }),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(classify(&err, state, limits)),
    }
}

/// An instance whose `validate` accepted an execution's params, kept so the
/// same execution's `execute` runs in it rather than in a second instance
/// (see [`Plugin::validate_keeping`]). It was validated with no credentials
/// and no network; `execute` lends them only once `validate` has returned.
pub struct ValidatedInstance {
    store: Store<HostState>,
    executor: latest::Executor,
}

impl fmt::Debug for ValidatedInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatedInstance").finish_non_exhaustive()
    }
}

/// `execute` in the instance that validated the params: its state readied
/// as a reused instance's is (a new log, limiter, outbound budget and this
/// execution's credentials), then one call.
async fn run_validated(
    inner: &PluginInner,
    kept: ValidatedInstance,
    grant: Arc<Grant>,
    request: wit::ExecuteRequest,
) -> (Result<Reply, FaultKind>, ExecutionLog) {
    let (runtime, limits) = (&*inner.runtime, &inner.limits);
    let ValidatedInstance {
        mut store,
        executor,
    } = kept;
    let policy = outbound_policy(
        runtime,
        limits,
        inner.rules.clone(),
        inner.responder.clone(),
    );
    store.data_mut().prepare(limits, policy, grant);
    if let Err(fault) = arm(&mut store, runtime, limits) {
        return (Err(fault), store.data().log.finish());
    }
    let call = executor.call_execute(&mut store, &request);
    let outcome = tokio::time::timeout(limits.deadline + EPOCH_TICK, call).await;
    let state = store.data();
    let result = settle(outcome, state, limits).map(Reply::Execute);
    (result, state.log.finish())
}

/// One execution on an instance kept for `account` (see `pool.rs`): an idle
/// one when there is one, else a new one, which is kept afterwards unless the
/// call faulted.
async fn run_reused(
    inner: &PluginInner,
    pool: &ReusePool,
    pre: &latest::ExecutorPre<HostState>,
    account: &str,
    grant: Arc<Grant>,
    request: wit::ExecuteRequest,
) -> (Result<Reply, FaultKind>, ExecutionLog) {
    let (runtime, limits) = (&*inner.runtime, &inner.limits);
    let policy = outbound_policy(
        runtime,
        limits,
        inner.rules.clone(),
        inner.responder.clone(),
    );
    let (mut store, executor, calls) = match pool.take(account) {
        Some(mut warm) => {
            warm.store.data_mut().prepare(limits, policy, grant);
            (warm.store, Some(warm.executor), warm.calls)
        }
        None => (new_store(limits, runtime, policy, grant), None, 0),
    };
    if let Err(fault) = arm(&mut store, runtime, limits) {
        return (Err(fault), store.data().log.finish());
    }
    let call_future = async {
        let executor = match executor {
            Some(executor) => executor,
            None => pre.instantiate_async(&mut store).await?,
        };
        let result = executor.call_execute(&mut store, &request).await?;
        wasmtime::Result::Ok((executor, result))
    };
    let outcome = tokio::time::timeout(limits.deadline + EPOCH_TICK, call_future).await;
    let log = store.data().log.finish();
    match outcome {
        Ok(Ok((executor, result))) => {
            // An instance at its memory or table cap is not worth keeping.
            if !store.data().hit_limit() {
                store.data_mut().park();
                let warm = Warm {
                    store,
                    executor,
                    calls: calls + 1,
                };
                pool.give_back(account, warm);
            }
            (Ok(Reply::Execute(result)), log)
        }
        // A faulted instance is dropped here, never given back.
        Ok(Err(err)) => (Err(classify(&err, store.data(), limits)), log),
        Err(_elapsed) => (
            Err(FaultKind::Deadline {
                limit: limits.deadline,
            }),
            log,
        ),
    }
}

fn classify(err: &wasmtime::Error, state: &HostState, limits: &Limits) -> FaultKind {
    if state.limiter.memory_hit {
        return FaultKind::MemoryLimit {
            limit_bytes: limits.memory_bytes,
        };
    }
    if state.limiter.table_hit {
        return FaultKind::TableLimit {
            limit_elements: limits.table_elements,
        };
    }
    if matches!(
        err.downcast_ref::<wasmtime::component::ResourceTableError>(),
        Some(wasmtime::component::ResourceTableError::Full)
    ) {
        return FaultKind::ResourceLimit {
            limit_handles: limits.resource_handles,
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FaultKind::Deadline {
            limit: limits.deadline,
        },
        Some(Trap::OutOfFuel) => FaultKind::OutOfFuel,
        Some(Trap::StackOverflow) => FaultKind::StackOverflow,
        Some(_) => FaultKind::Trap {
            message: format!("{err:#}"),
        },
        None => FaultKind::Trap {
            message: format!("{err:#}"),
        },
    }
}

impl Plugin {
    /// The checked manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// SHA-256 of the component bytes, hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Whether the load compiled or used the cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.inner.cache
    }

    /// How long the load took.
    pub fn load_time(&self) -> Duration {
        self.inner.load_time
    }

    /// The plugin's limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Instance reuse counters, when this plugin's instances are reused.
    pub fn reuse_stats(&self) -> Option<ReuseStats> {
        self.inner.reuse.as_ref().map(ReusePool::stats)
    }

    /// Checks params against the action type's size limit and JSON Schema,
    /// returning every failing path.
    pub fn check_params(
        &self,
        action_type: &str,
        params: &serde_json::Value,
    ) -> Result<(), Vec<FieldError>> {
        let Some(validator) = self.inner.validators.get(action_type) else {
            let known: Vec<&str> = self
                .inner
                .manifest
                .action_types
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            return Err(vec![FieldError {
                path: String::new(),
                message: format!(
                    "unknown action type {action_type:?}; this plugin provides {}",
                    known.join(", ")
                ),
            }]);
        };
        let size = params.to_string().len();
        if size > self.inner.limits.max_params_bytes {
            return Err(vec![FieldError {
                path: String::new(),
                message: format!(
                    "params are {size} bytes; the limit is {} bytes",
                    self.inner.limits.max_params_bytes
                ),
            }]);
        }
        let errors: Vec<FieldError> = validator
            .iter_errors(params)
            .map(|err| FieldError {
                path: err.instance_path().to_string(),
                message: err.to_string(),
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// One model call of a provider plugin, with the provider account's
    /// credentials injected by the host. The outer `Result` is a fault of
    /// the sandbox, the inner one the plugin's own answer.
    pub async fn complete(
        &self,
        request: &CompletionRequest,
        grant: Arc<Grant>,
    ) -> Result<Result<Completion, ModelError>, PluginFault> {
        let inner = &self.inner;
        if !matches!(inner.pre, Pre::Model(_)) {
            return Err(PluginFault {
                kind: FaultKind::Host {
                    message: format!("{} is not a model provider", inner.manifest.name),
                },
                log: ExecutionLog::default(),
            });
        }
        let call = Call::Complete(request.into());
        let (reply, log) = run(
            &inner.runtime,
            &inner.pre,
            &inner.limits,
            inner.rules.clone(),
            grant,
            inner.responder.clone(),
            call,
        )
        .await;
        match reply {
            Ok(Reply::Complete(result)) => Ok(result.map(Into::into).map_err(Into::into)),
            Ok(_) => unreachable!("complete returns a completion"),
            Err(kind) => Err(PluginFault { kind, log }),
        }
    }

    /// Runs the plugin's `validate` for params that passed [`Self::check_params`].
    pub async fn validate(
        &self,
        action_type: &str,
        params: &serde_json::Value,
    ) -> Result<Result<(), Vec<FieldError>>, PluginFault> {
        Ok(self.validate_keeping(action_type, params).await?.map(drop))
    }

    /// [`Self::validate`], keeping the instance when it accepted the params,
    /// so that [`Self::execute_in`] need not instantiate the plugin again.
    ///
    /// Only a plugin on the newest WIT version is kept, and not one that hit
    /// its memory or table cap while validating; `None` otherwise. Like every
    /// `validate`, the call has no credentials and an empty allow-list.
    pub async fn validate_keeping(
        &self,
        action_type: &str,
        params: &serde_json::Value,
    ) -> Result<Result<Option<ValidatedInstance>, Vec<FieldError>>, PluginFault> {
        let inner = &self.inner;
        let Pre::Current(pre) = &inner.pre else {
            return Ok(self
                .validate_isolated(action_type, params)
                .await?
                .map(|()| None));
        };
        let (runtime, limits) = (&*inner.runtime, &inner.limits);
        let closed = outbound_policy(runtime, limits, Arc::from(Vec::new()), None);
        let grant = Arc::new(Grant::from(Credentials::None));
        let mut store = new_store(limits, runtime, closed, grant);
        if let Err(kind) = arm(&mut store, runtime, limits) {
            let log = store.data().log.finish();
            return Err(PluginFault { kind, log });
        }
        let params = params.to_string();
        let call = async {
            let executor = pre.instantiate_async(&mut store).await?;
            let verdict = executor
                .call_validate(&mut store, action_type, &params)
                .await?;
            wasmtime::Result::Ok((executor, verdict))
        };
        let outcome = tokio::time::timeout(limits.deadline + EPOCH_TICK, call).await;
        match settle(outcome, store.data(), limits) {
            Ok((executor, Ok(()))) => {
                let kept =
                    (!store.data().hit_limit()).then_some(ValidatedInstance { store, executor });
                Ok(Ok(kept))
            }
            Ok((_, Err(errors))) => Ok(Err(errors.into_iter().map(Into::into).collect())),
            Err(kind) => Err(PluginFault {
                kind,
                log: store.data().log.finish(),
            }),
        }
    }

    /// `validate` in an instance of its own, dropped afterwards.
    async fn validate_isolated(
        &self,
        action_type: &str,
        params: &serde_json::Value,
    ) -> Result<Result<(), Vec<FieldError>>, PluginFault> {
        let call = Call::Validate {
            action_type: action_type.to_owned(),
            params: params.to_string(),
        };
        let inner = &self.inner;
        let (reply, log) = run_isolated(&inner.runtime, &inner.pre, &inner.limits, call).await;
        match reply {
            Ok(Reply::Validate(result)) => {
                Ok(result.map_err(|errors| errors.into_iter().map(Into::into).collect()))
            }
            Ok(_) => unreachable!("validate returns a validation result"),
            Err(kind) => Err(PluginFault { kind, log }),
        }
    }

    /// Executes one attempt of an action with the account's credentials.
    pub async fn execute(
        &self,
        request: ExecuteRequest,
        grant: Arc<Grant>,
    ) -> Result<Execution, PluginFault> {
        self.execute_in(request, grant, None).await
    }

    /// [`Self::execute`], in the instance that validated the params when
    /// there is one. An execution that reuses an account's instance runs in
    /// that one instead and drops `validated`.
    pub async fn execute_in(
        &self,
        request: ExecuteRequest,
        grant: Arc<Grant>,
        validated: Option<ValidatedInstance>,
    ) -> Result<Execution, PluginFault> {
        let started = Instant::now();
        let inner = &self.inner;
        let account_id = request.reuse_key.clone();
        let call = Call::Execute(wit::ExecuteRequest {
            action_id: request.action_id,
            action_type: request.action_type,
            params: request.params.to_string(),
            attempt: request.attempt,
            idempotency_key: request.idempotency_key,
            account: request.account.map(
                |AccountInfo {
                     id,
                     app_name,
                     metadata,
                 }| wit::Account {
                    id,
                    app_name,
                    metadata: metadata.to_string(),
                },
            ),
        });
        let reusable = match (&inner.reuse, &inner.pre, account_id) {
            (Some(pool), Pre::Current(pre), Some(account)) => Some((pool, pre, account)),
            _ => None,
        };
        let (reply, log) = match (reusable, validated, call) {
            (Some((pool, pre, account)), _, Call::Execute(request)) => {
                run_reused(inner, pool, pre, &account, grant, request).await
            }
            (None, Some(kept), Call::Execute(request)) => {
                run_validated(inner, kept, grant, request).await
            }
            (_, _, call) => {
                run(
                    &inner.runtime,
                    &inner.pre,
                    &inner.limits,
                    inner.rules.clone(),
                    grant,
                    inner.responder.clone(),
                    call,
                )
                .await
            }
        };
        let result = match reply {
            Ok(Reply::Execute(result)) => result,
            Ok(_) => unreachable!("execute returns an execution result"),
            Err(kind) => return Err(PluginFault { kind, log }),
        };
        let outcome = match result {
            Ok(output) => {
                let limit = inner.limits.max_output_bytes;
                if output.len() > limit {
                    return Err(PluginFault {
                        kind: FaultKind::OutputTooLarge {
                            size: output.len(),
                            limit,
                        },
                        log,
                    });
                }
                match serde_json::from_str(&output) {
                    Ok(value) => Ok(value),
                    Err(err) => {
                        return Err(PluginFault {
                            kind: FaultKind::InvalidOutput {
                                message: err.to_string(),
                            },
                            log,
                        });
                    }
                }
            }
            Err(error) => Err(error.into()),
        };
        Ok(Execution {
            outcome,
            log,
            duration: started.elapsed(),
        })
    }
}
