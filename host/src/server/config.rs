//! Server settings: embedded defaults, then a TOML file, then `ACTIONHOST_*`
//! environment variables, then command-line flags, each overriding the one
//! before. Unknown settings are errors that name them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::actions::SchedulerConfig;
use crate::agents::RunsConfig;
use crate::events::EventsConfig;
use crate::events::tracker::TrackerConfig;
use crate::executions::ConcurrencyConfig;
use crate::models::ModelsConfig;
use crate::runtime::{Limits, ReuseConfig};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of `actionhost serve`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Where the database, keys and uploaded plugins live (default `./data`).
    pub data_dir: PathBuf,
    /// The database: empty (the default) for sled in `DATA_DIR/db`, or a
    /// PostgreSQL connection string, `postgres://USER:PASSWORD@HOST:PORT/DB`.
    /// Keep a password out of files under version control: set it through
    /// `ACTIONHOST_STORE`.
    pub store: Option<String>,
    /// Connections to PostgreSQL this process opens at most (default 16).
    pub store_pool_size: usize,
    /// Whether `serve` brings an older PostgreSQL schema to this build's
    /// (default true); with false an older schema is refused, and
    /// `actionhost migrate` upgrades it.
    pub store_migrate: bool,
    /// Folder of plugin components (default: the bundled plugins of the build).
    pub plugins_dir: Option<PathBuf>,
    /// Compiled-code cache (default `DATA_DIR/cache`).
    pub cache_dir: Option<PathBuf>,
    /// File holding the key that encrypts credentials (default
    /// `DATA_DIR/secret.key`, generated on first start).
    pub secret_key_file: Option<PathBuf>,
    /// The key itself (64 hex characters or base64 of 32 bytes); set it
    /// through `ACTIONHOST_SECRET_KEY`, not a file under version control.
    #[serde(skip_serializing)]
    pub secret_key: Option<String>,
    /// The URL clients and OAuth2 providers reach this server at (default
    /// `http://LISTEN`); the OAuth2 callback is `PUBLIC_URL/api/v1/auth/callback`.
    pub public_url: Option<String>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Log filter, such as `info` or `actionhost=debug` (`RUST_LOG` wins).
    pub log_level: String,
    /// How long in-flight requests may take to finish at shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Largest request body, in bytes (default 2 MiB).
    pub max_body_bytes: usize,
    /// Largest plugin component accepted, from an upload or the plugins
    /// folder, in bytes (default 64 MiB).
    pub max_plugin_bytes: usize,
    /// Memory for the database's page cache, in bytes (default 64 MiB). A
    /// larger cache serves more reads from memory; the server's resident
    /// memory grows until the cache is full.
    pub db_cache_bytes: u64,
    /// Whether plugins may reach private and loopback addresses (default false).
    pub allow_private_network: bool,
    /// Outbound destinations every plugin may reach beyond its manifest,
    /// such as `https://eu.api.example.com` (or `http://127.0.0.1:*` in tests).
    pub extra_hosts: Vec<String>,
    /// When not empty, a plugin upload (`POST /api/v1/plugins`) is refused
    /// unless its SHA-256 (lowercase hex) is listed here. The plugins folder
    /// is the operator's own and is not checked.
    pub allowed_plugin_sha256: Vec<String>,
    /// Default sandbox limits of plugins.
    pub limits: Limits,
    /// Limits of single plugins, by the name in their manifest
    /// (`[plugin_limits.send-email]`): each field given replaces that of
    /// `[limits]` for that plugin; the fields left out keep `[limits]`.
    pub plugin_limits: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// Instance reuse for plugins that opt in (`[reuse]`: `enabled`,
    /// `max_calls`, `max_idle`).
    pub reuse: ReuseConfig,
    /// The scheduler, retries and idempotency keys (`[scheduler]`).
    pub scheduler: SchedulerConfig,
    /// Executions running at once per plugin and per tenant
    /// (`[concurrency]`: `per_plugin`, `per_tenant`, and the caps of single
    /// plugins in `[concurrency.plugins]`).
    pub concurrency: ConcurrencyConfig,
    /// Events (`[events]`: `retention`, `sweep_interval`).
    pub events: EventsConfig,
    /// The site tracker's endpoint (`[tracker]`: `rate_per_second` and
    /// `burst`, per publishable key).
    pub tracker: TrackerConfig,
    /// Agent runs (`[agents]`: `concurrency`, `run_token_budget`,
    /// `schedule_poll`).
    pub agents: RunsConfig,
    /// Model calls (`[models]`: `max_attempts`, `backoff_base`,
    /// `backoff_max`, `text_provider`, `text_model`).
    pub models: ModelsConfig,
    /// The MCP server at `/mcp` (`[mcp]`: `allowed_hosts`).
    pub mcp: McpConfig,
    /// Prometheus metrics (`[metrics]`: `listen`, the address of
    /// `/metrics`; default none).
    pub metrics: crate::metrics::MetricsConfig,
    /// The console at `/console` (`[console]`: `session_ttl`).
    pub console: ConsoleConfig,
    /// How long records are kept (`[retention]`: `executions`, `actions`,
    /// `events`, `sweep_interval`).
    pub retention: crate::retention::RetentionConfig,
}

/// Settings of the console.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// How long a signed-in session lasts (default 8 hours); then the
    /// person signs in again.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(8 * 3600),
        }
    }
}

/// Settings of the MCP server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// Host names `/mcp` answers besides loopback ones and `public_url`'s,
    /// such as `mcp.example.com` (a port given with it is ignored). A
    /// request with any other `Host` header is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("store", &self.store.as_deref().map(redact_url))
            .field("store_pool_size", &self.store_pool_size)
            .field("plugins_dir", &self.plugins_dir)
            .field("cache_dir", &self.cache_dir)
            .field("secret_key_file", &self.secret_key_file)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "[REDACTED]"),
            )
            .field("public_url", &self.public_url)
            .field("log_format", &self.log_format)
            .field("allow_private_network", &self.allow_private_network)
            .field("extra_hosts", &self.extra_hosts)
            .field("allowed_plugin_sha256", &self.allowed_plugin_sha256)
            .field("limits", &self.limits)
            .field("plugin_limits", &self.plugin_limits)
            .field("scheduler", &self.scheduler)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            store: None,
            store_pool_size: crate::store::DEFAULT_POOL_SIZE,
            store_migrate: true,
            plugins_dir: None,
            cache_dir: None,
            secret_key_file: None,
            secret_key: None,
            public_url: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            shutdown_timeout: Duration::from_secs(30),
            max_body_bytes: 2 << 20,
            max_plugin_bytes: 64 << 20,
            db_cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            allow_private_network: false,
            extra_hosts: Vec::new(),
            allowed_plugin_sha256: Vec::new(),
            limits: Limits::default(),
            plugin_limits: BTreeMap::new(),
            reuse: ReuseConfig::default(),
            scheduler: SchedulerConfig::default(),
            concurrency: ConcurrencyConfig::default(),
            events: EventsConfig::default(),
            tracker: TrackerConfig::default(),
            agents: RunsConfig::default(),
            models: ModelsConfig::default(),
            mcp: McpConfig::default(),
            metrics: crate::metrics::MetricsConfig::default(),
            console: ConsoleConfig::default(),
            retention: crate::retention::RetentionConfig::default(),
        }
    }
}

/// Command-line overrides; only the flags given are merged.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// The settings `ACTIONHOST_*` variables may set. Other `ACTIONHOST_*`
/// variables (such as `ACTIONHOST_CONFIG`, or a tool's own) are not settings
/// and are left alone; a mistyped nested one (`ACTIONHOST_LIMITS__DEADLNE`)
/// is refused by name.
const SETTINGS: &[&str] = &[
    "listen",
    "data_dir",
    "store",
    "store_pool_size",
    "store_migrate",
    "plugins_dir",
    "cache_dir",
    "secret_key_file",
    "secret_key",
    "public_url",
    "log_format",
    "log_level",
    "shutdown_timeout",
    "max_body_bytes",
    "max_plugin_bytes",
    "db_cache_bytes",
    "allow_private_network",
    "extra_hosts",
    "allowed_plugin_sha256",
    "limits",
    "plugin_limits",
    "reuse",
    "scheduler",
    "concurrency",
    "events",
    "tracker",
    "agents",
    "models",
    "mcp",
    "metrics",
    "console",
    "retention",
];

impl ServeConfig {
    /// Defaults, then `file`, then the environment, then `overrides`.
    pub fn load(file: Option<&std::path::Path>, overrides: &Overrides) -> Result<Self, String> {
        let mut figment = Figment::from(Serialized::defaults(ServeConfig::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(format!("config file {} does not exist", path.display()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment
            .merge(Env::prefixed("ACTIONHOST_").split("__").filter(|key| {
                let key = key.as_str().to_ascii_lowercase();
                let top = key.split(['.']).next().unwrap_or_default();
                let top = top.split("__").next().unwrap_or_default();
                SETTINGS.contains(&top)
            }))
            .merge(Serialized::defaults(overrides));
        let config = figment.extract::<ServeConfig>().map_err(|err| {
            let mut message = String::new();
            for error in err {
                if !message.is_empty() {
                    message.push_str("; ");
                }
                message.push_str(&error.to_string());
            }
            format!("invalid configuration: {message}")
        })?;
        config
            .scheduler
            .check()
            .and_then(|()| config.concurrency.check())
            .and_then(|()| {
                config
                    .limits
                    .check()
                    .map_err(|err| format!("limits: {err}"))
            })
            .and_then(|()| config.plugin_limits().map(drop))
            .map_err(|message| format!("invalid configuration: {message}"))?;
        if let Some(url) = config.store.as_deref().filter(|url| !url.trim().is_empty())
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "invalid configuration: store is {:?}; leave it empty for sled in the data dir, or give a PostgreSQL connection string, postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                redact_url(url)
            ));
        }
        if config.store_pool_size == 0 {
            return Err("invalid configuration: store_pool_size must be at least 1".into());
        }
        let mut config = config;
        for (n, hash) in config.allowed_plugin_sha256.iter_mut().enumerate() {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "invalid configuration: allowed_plugin_sha256[{n}] is {hash:?}, not a SHA-256 \
                     (64 hex characters, as `sha256sum plugin.wasm` prints)"
                ));
            }
            hash.make_ascii_lowercase();
        }
        Ok(config)
    }

    /// The limits of each plugin named in `[plugin_limits]`: `[limits]`
    /// with the plugin's fields in place of its own.
    pub fn plugin_limits(&self) -> Result<HashMap<String, Limits>, String> {
        let serde_json::Value::Object(base) =
            serde_json::to_value(&self.limits).map_err(|err| format!("limits: {err}"))?
        else {
            return Err("limits: not a table".into());
        };
        self.plugin_limits
            .iter()
            .map(|(name, fields)| {
                let mut merged = base.clone();
                merged.extend(fields.clone());
                let limits = serde_json::from_value::<Limits>(serde_json::Value::Object(merged))
                    .map_err(|err| err.to_string())
                    .and_then(|limits| {
                        limits.check()?;
                        // The pool's table slots are sized by [limits].
                        if limits.table_elements > self.limits.table_elements {
                            return Err(format!(
                                "table_elements is {}, more than [limits] table_elements ({}), which sizes every instance slot",
                                limits.table_elements, self.limits.table_elements
                            ));
                        }
                        Ok(limits)
                    })
                    .map_err(|err| format!("plugin_limits.{name}: {err}"))?;
                Ok((name.clone(), limits))
            })
            .collect()
    }

    /// Where the records live.
    pub fn store_location(&self) -> crate::server::StoreLocation<'_> {
        match self.store.as_deref().filter(|url| !url.trim().is_empty()) {
            Some(url) => crate::server::StoreLocation::Postgres {
                url,
                pool_size: self.store_pool_size,
                migrate: self.store_migrate,
            },
            None => crate::server::StoreLocation::Sled {
                data_dir: &self.data_dir,
                cache_bytes: self.db_cache_bytes,
            },
        }
    }

    /// Where compiled components are cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cache"))
    }
}

/// A connection string with its password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("REDACTED"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) if url.contains('@') => "[a connection string that does not parse]".into(),
        Err(_) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_can_come_from_the_environment() {
        let defaults = serde_json::to_value(ServeConfig::default()).expect("serializes");
        let mut keys: Vec<&str> = defaults
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.push("secret_key");
        keys.sort_unstable();
        let mut settings = SETTINGS.to_vec();
        settings.sort_unstable();
        assert_eq!(keys, settings);
    }

    #[test]
    fn the_upload_allow_list_takes_hex_sha256_only_and_names_a_bad_entry() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("actionhost.toml");
        let good = "AB".repeat(32);
        std::fs::write(&file, format!("allowed_plugin_sha256 = [\"{good}\"]\n")).expect("write");
        let config = ServeConfig::load(Some(&file), &Overrides::default()).expect("loads");
        assert_eq!(config.allowed_plugin_sha256, vec!["ab".repeat(32)]);

        std::fs::write(
            &file,
            format!("allowed_plugin_sha256 = [\"{good}\", \"sha256:abc\"]\n"),
        )
        .expect("write");
        let err = ServeConfig::load(Some(&file), &Overrides::default()).expect_err("refused");
        assert!(
            err.contains("allowed_plugin_sha256[1]") && err.contains("sha256:abc"),
            "{err}"
        );
    }

    #[test]
    fn a_plugins_limits_replace_only_the_fields_it_names() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("actionhost.toml");
        std::fs::write(
            &file,
            "[limits]\ndeadline = \"20s\"\nmax_log_bytes = 1000\n\n\
             [plugin_limits.linkedin-message]\ndeadline = \"5s\"\nmemory_bytes = 16777216\n",
        )
        .expect("write");
        let config = ServeConfig::load(Some(&file), &Overrides::default()).expect("loads");
        let limits = config.plugin_limits().expect("resolves");
        let linkedin = &limits["linkedin-message"];
        assert_eq!(linkedin.deadline, Duration::from_secs(5));
        assert_eq!(linkedin.memory_bytes, 16 << 20);
        assert_eq!(linkedin.max_log_bytes, 1000, "the rest comes from [limits]");
        assert_eq!(config.limits.deadline, Duration::from_secs(20));
        assert_eq!(limits.len(), 1);
    }

    #[test]
    fn a_mistake_in_a_plugins_limits_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("actionhost.toml");
        for (text, expect) in [
            ("[plugin_limits.crm]\ndeadlin = \"5s\"\n", "deadlin"),
            (
                "[plugin_limits.crm]\ndeadline = \"soon\"\n",
                "plugin_limits.crm",
            ),
            (
                "[plugin_limits.crm]\nmemory_bytes = -1\n",
                "plugin_limits.crm",
            ),
            (
                "[concurrency.plugins]\ncrm = 0\n",
                "concurrency.plugins.crm",
            ),
            (
                "[plugin_limits.crm]\nmax_outbound_requests = 5000\n",
                "plugin_limits.crm: max_outbound_requests is 5000",
            ),
            (
                "[plugin_limits.crm]\ntable_elements = 200000\n",
                "plugin_limits.crm: table_elements",
            ),
            ("[limits]\ndeadline = \"0s\"\n", "limits: deadline"),
            (
                "[limits]\nmemory_bytes = 2147483648\n",
                "limits: memory_bytes",
            ),
        ] {
            std::fs::write(&file, text).expect("write");
            let err = ServeConfig::load(Some(&file), &Overrides::default()).expect_err(text);
            assert!(err.contains(expect), "{text}: {err}");
        }
    }
}
