//! `actionhost serve`: wires the store, tenancy, accounts, plugins and the
//! API together, and runs until SIGTERM or Ctrl-C.
//!
//! Start-up, in order: open the store (migrating it), bootstrap the first
//! tenant and `admin.key` on an empty data dir, load the secret key (or
//! generate it), build the sandbox and load the plugins, bind, serve.
//! Shutdown: stop accepting, let in-flight requests finish within
//! `shutdown_timeout`, flush the store.

pub mod config;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Instrument as _;

use crate::accounts::{Accounts, KeySource, SecretBox};
use crate::actions::Actions;
use crate::agents::Agents;
use crate::api::{ApiSettings, AppState};
use crate::contacts::Contacts;
use crate::events::Events;
use crate::events::tracker::Tracker;
use crate::executions::Pipeline;
use crate::identities::Identities;
use crate::models::Models;
use crate::registry::PluginRegistry;
use crate::replica::Replicas;
use crate::runtime::{HostRule, Runtime, RuntimeConfig};
use crate::store::{PgStore, Records, Signals, SledStore, migrate};
use crate::tenancy::{Tenancy, bootstrap};

pub use config::{LogFormat, Overrides, ServeConfig};

/// Starts logging for the server.
pub fn init_logging(config: &ServeConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// Where the records live: sled in a data dir, or a PostgreSQL database.
#[derive(Debug, Clone, Copy)]
pub enum StoreLocation<'a> {
    /// sled in `DATA_DIR/db`, its page cache holding at most `cache_bytes`.
    Sled {
        /// The data dir.
        data_dir: &'a std::path::Path,
        /// The page cache's bound.
        cache_bytes: u64,
    },
    /// A PostgreSQL database.
    Postgres {
        /// Its connection string.
        url: &'a str,
        /// Connections opened at most.
        pool_size: usize,
        /// Whether an older schema is migrated (or refused).
        migrate: bool,
    },
}

/// An open store, to close when the server stops.
#[derive(Clone)]
pub enum OpenStore {
    /// sled.
    Sled(SledStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

impl OpenStore {
    /// Makes every write durable and closes the store.
    pub fn close(&self) -> anyhow::Result<()> {
        match self {
            Self::Sled(store) => store.flush_blocking()?,
            // Every write was durable when acknowledged.
            Self::Postgres(_) => {}
        }
        Ok(())
    }

    /// What the log calls it.
    pub fn describe(&self) -> String {
        match self {
            Self::Sled(_) => "sled".into(),
            Self::Postgres(store) => format!("postgres {}", store.target()),
        }
    }
}

/// Opens the store at `location` and brings it to the current schema.
pub fn open_store(location: StoreLocation<'_>) -> anyhow::Result<(OpenStore, Records)> {
    let (store, records) = match location {
        StoreLocation::Sled {
            data_dir,
            cache_bytes,
        } => {
            let store = SledStore::open_with_cache(data_dir, cache_bytes)?;
            let records = Records::new(Arc::new(store.clone()));
            (OpenStore::Sled(store), records)
        }
        StoreLocation::Postgres {
            url,
            pool_size,
            migrate,
        } => {
            let store = PgStore::open(url, pool_size, migrate)?;
            let records = Records::new(Arc::new(store.clone()));
            (OpenStore::Postgres(store), records)
        }
    };
    let version = migrate(&records)?;
    tracing::debug!(version, "store schema");
    crate::retention::index_existing(&records)?;
    Ok((store, records))
}

/// Runs the server until a shutdown signal.
pub async fn serve(config: ServeConfig, plugins_dir: PathBuf) -> anyhow::Result<()> {
    // The data dir holds the keys, uploads and cache whatever the store.
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
    let data_dir_lock = crate::replica::DataDirLock::acquire(&config.data_dir)?;
    let (store, records) = open_store(config.store_location())?;
    if let OpenStore::Postgres(store) = &store {
        store.claim_serving()?;
    }
    tracing::info!(store = %store.describe(), replica = crate::replica::id(), "store open");
    let signals = match &store {
        OpenStore::Postgres(store) => store.signals(),
        OpenStore::Sled(_) => Signals::local(),
    };
    let replicas = Replicas::new(
        records.clone(),
        config.scheduler.lease,
        matches!(store, OpenStore::Postgres(_)),
        data_dir_lock.previous.clone(),
        config.listen.to_string(),
        signals,
    );
    // Live before this replica takes on anything.
    replicas
        .renew()
        .await
        .context("cannot write this replica's lease")?;
    let tenancy = Tenancy::new(records.clone());
    if let Some(path) = bootstrap(&tenancy, &config.data_dir)? {
        records.durable().await?;
        tracing::warn!(
            path = %path.display(),
            "first start: created the default tenant and an admin key with every scope; the key is in this file (mode 0600), read it once and keep it safe"
        );
    }
    let (secrets, source) = SecretBox::load(
        config.secret_key.as_deref(),
        config.secret_key_file.as_deref(),
        &config.data_dir,
    )?;
    match source {
        KeySource::Generated(path) => tracing::warn!(
            path = %path.display(),
            "no secret key configured: generated one to encrypt credentials at rest; back it up, and prefer --secret-key-file or ACTIONHOST_SECRET_KEY kept apart from the data"
        ),
        KeySource::File(path) => tracing::info!(path = %path.display(), "secret key loaded"),
        KeySource::Inline => tracing::info!("secret key taken from the environment"),
    }
    secrets.check_against(&records)?;

    let mut runtime_config = RuntimeConfig::new(config.cache_dir());
    runtime_config.allow_private_network = config.allow_private_network;
    runtime_config.limits = config.limits.clone();
    runtime_config.plugin_limits = config
        .plugin_limits()
        .map_err(|err| anyhow::anyhow!("invalid configuration: {err}"))?;
    runtime_config.reuse = config.reuse;
    runtime_config.max_component_bytes = config.max_plugin_bytes;
    let runtime = Runtime::new(runtime_config)?;
    let extra_hosts = config
        .extra_hosts
        .iter()
        .map(|rule| rule.parse::<HostRule>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| anyhow::anyhow!("invalid configuration: extra_hosts: {err}"))?;
    if !plugins_dir.is_dir() {
        anyhow::bail!(
            "the plugins folder {} does not exist (build the bundled plugins with scripts/build-plugins, or set --plugins-dir)",
            plugins_dir.display()
        );
    }
    let uploads_dir = config.data_dir.join("plugins");
    let registry = PluginRegistry::new(
        runtime,
        plugins_dir.clone(),
        uploads_dir.clone(),
        extra_hosts,
        config.allowed_plugin_sha256.iter().cloned().collect(),
    )
    .with_context(|| {
        format!(
            "cannot open the uploaded plugins folder {}",
            uploads_dir.display()
        )
    })?;
    if let OpenStore::Postgres(_) = &store {
        // Uploads and switches are the database's, for every replica.
        registry.share(records.clone(), replicas.signals().clone());
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    let accounts = Accounts::new(
        records.clone(),
        secrets,
        format!("{}/api/v1/auth/callback", public_url.trim_end_matches('/')),
        // A third of an execution's deadline: a refresh on a provider's 401
        // in the middle of a run still leaves it time to answer.
        (config.limits.deadline / 3).max(Duration::from_secs(1)),
        replicas.clone(),
    );
    let pipeline = Pipeline::new(
        registry.clone(),
        accounts.clone(),
        records.clone(),
        config.concurrency.clone(),
        replicas.place(),
    );
    let actions = Actions::new(
        records.clone(),
        pipeline.clone(),
        config.scheduler.clone(),
        replicas.clone(),
    );
    let mut events_config = config.events.clone();
    if let Some(retention) = config.retention.events {
        events_config.retention = retention;
    }
    let events = Events::new(records.clone(), events_config);
    let contacts = Contacts::new(records.clone(), events.clone(), actions.clone());
    let tracker = Tracker::new(records.clone(), events.clone(), &config.tracker);
    let models = Models::new(registry.clone(), accounts.clone(), config.models.clone());
    let agents = Agents::new(
        records.clone(),
        actions.clone(),
        contacts.clone(),
        models.clone(),
        config.agents.clone(),
    );
    let tools = crate::tools::Tools::new(actions.clone(), accounts.clone());
    let shutdown = tokio_util::sync::CancellationToken::new();
    // Read before the first request can start an action.
    let interrupted = actions.interrupted()?;
    let state = AppState {
        tenancy,
        accounts,
        pipeline,
        actions: actions.clone(),
        contacts: contacts.clone(),
        events: events.clone(),
        tracker,
        identities: Identities::new(records.clone()),
        agents: agents.clone(),
        models,
        tools,
        settings: Arc::new(ApiSettings {
            max_body_bytes: config.max_body_bytes,
            max_plugin_bytes: config.max_plugin_bytes,
            public_url: public_url.clone(),
            mcp_allowed_hosts: config.mcp.allowed_hosts.clone(),
            console_session_ttl: config.console.session_ttl,
            shutdown: shutdown.clone(),
        }),
        sign_ins: Arc::new(crate::api::console::SignInLimiter::new()),
    };
    let app = crate::api::router(state)
        .layer(axum::middleware::from_fn(crate::metrics::track_http))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<_>| {
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        request_id = %request_id,
                        method = %request.method(),
                        path = %request.uri().path(),
                        key = tracing::field::Empty,
                    )
                })
                .on_request(())
                // Every answer is logged below with its status; a 503 from
                // `/readyz` while plugins load is not a failure to report.
                .on_failure(())
                .on_response(
                    |response: &axum::http::Response<_>,
                     latency: Duration,
                     _span: &tracing::Span| {
                        tracing::info!(
                            status = response.status().as_u16(),
                            latency_ms = latency.as_secs_f64() * 1000.0,
                            "answered"
                        );
                    },
                ),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));

    tracing::info!(address = %address, url = %public_url, data_dir = %config.data_dir.display(), "listening on http://{address}");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Renewed until the runs in flight have finished, after the rest stops.
    let lease_stop = tokio_util::sync::CancellationToken::new();
    if let Some(listen) = config.metrics.listen {
        let stop = stop_rx.clone();
        tokio::spawn(
            crate::metrics::sample_actions(records.clone(), stop_rx.clone()).in_current_span(),
        );
        tokio::spawn(
            async move {
                if let Err(err) = crate::metrics::serve(listen, stop).await {
                    tracing::error!(error = %format!("{err:#}"), "metrics are not served");
                }
            }
            .in_current_span(),
        );
    }
    let lease = tokio::spawn({
        let (replicas, stop) = (replicas.clone(), lease_stop.clone());
        async move { replicas.run_renewals(stop).await }.in_current_span()
    });
    tokio::spawn(
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new connections; finishing in-flight requests");
            // MCP's open event streams end now rather than at the timeout.
            shutdown.cancel();
            let _ = stop_tx.send(true);
        }
        .in_current_span(),
    );
    // Plugins load in the background: `/healthz` answers at once, `/readyz`
    // once they are loaded. Recovery and the scheduler need them, so they
    // follow; the folder is watched from then on.
    let started = std::time::Instant::now();
    let configured_names: Vec<(&'static str, String)> = config
        .plugin_limits
        .keys()
        .map(|name| ("plugin_limits", name.clone()))
        .chain(
            config
                .concurrency
                .plugins
                .keys()
                .map(|name| ("concurrency.plugins", name.clone())),
        )
        .collect();
    let scheduler = tokio::spawn({
        let actions = actions.clone();
        let agents = agents.clone();
        let mut stop = stop_rx.clone();
        let registry = registry.clone();
        async move {
            tokio::select! {
                loaded = registry.load_all() => {
                    if let Err(err) = loaded {
                        tracing::error!(%err, folder = %registry.folder().display(), "cannot read the plugins folder; no plugins loaded");
                    }
                }
                _ = stop.wait_for(|stop| *stop) => return Ok(()),
            }
            let (versions, loading, failed) = registry.counts();
            tracing::info!(
                versions,
                loading,
                failed,
                action_types = %registry.action_types().join(","),
                ms = started.elapsed().as_millis() as u64,
                "plugins loaded; ready"
            );
            // A name that matches no plugin is most likely a typo: the
            // setting does nothing until such a plugin arrives.
            let loaded: std::collections::BTreeSet<String> = registry
                .plugins()
                .iter()
                .map(|plugin| plugin.manifest().name.clone())
                .collect();
            for (setting, name) in configured_names
                .iter()
                .filter(|(_, name)| !loaded.contains(name))
            {
                tracing::warn!(
                    setting = %format!("{setting}.{name}"),
                    plugins = %loaded.iter().map(String::as_str).collect::<Vec<_>>().join(","),
                    "no loaded plugin has this name; the setting applies once one does"
                );
            }
            tokio::spawn({
                let (registry, stop) = (registry.clone(), stop.clone());
                async move { registry.follow_shared(stop).await }.in_current_span()
            });
            tokio::spawn({
                let registry = registry.clone();
                let stop = stop.clone();
                async move {
                    if let Err(err) = crate::registry::watch_folder(registry, stop).await {
                        tracing::error!(%err, "cannot watch the plugins folder; new files are not picked up until a restart");
                    }
                }
                .in_current_span()
            });
            let (rescheduled, unknown) = match actions.recover(interrupted).await {
                Ok(counts) => counts,
                Err(err) => {
                    tracing::error!(error = %err, "recovering interrupted actions failed; the scheduler does not start (restart the server once the cause is fixed)");
                    return Err(err.into());
                }
            };
            if rescheduled + unknown > 0 {
                tracing::warn!(
                    rescheduled,
                    outcome_unknown = unknown,
                    "recovered actions the last run left executing: idempotent types run again, the others wait for an operator (POST /v1/actions/{{id}}/resolve)"
                );
            }
            match contacts.resume_erasures().await {
                Ok(0) => {}
                Ok(resumed) => tracing::warn!(resumed, "finished contact erasures the last run left half-done"),
                Err(err) => tracing::error!(error = %err, "finishing interrupted contact erasures failed; they are tried again at the next start"),
            }
            tokio::spawn({
                let (actions, stop) = (actions.clone(), stop.clone());
                async move { actions.run_recovery(stop).await }.in_current_span()
            });
            tokio::spawn({
                let (events, stop) = (events.clone(), stop.clone());
                async move { events.run_retention(stop).await }.in_current_span()
            });
            tokio::spawn({
                let (records, retention, stop) =
                    (records.clone(), config.retention.clone(), stop.clone());
                async move { crate::retention::run(records, retention, stop).await }
                    .in_current_span()
            });
            tokio::spawn({
                let (agents, stop) = (agents.clone(), stop.clone());
                async move { agents.run_queue(stop).await }.in_current_span()
            });
            tokio::spawn({
                let (agents, stop) = (agents.clone(), stop.clone());
                async move { agents.run_schedules(stop).await }.in_current_span()
            });
            actions.run_scheduler(stop).await;
            anyhow::Ok(())
        }
        .in_current_span()
    });
    let mut graceful = stop_rx.clone();
    // The client's address reaches the handlers (console sign-in limits).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|stop| *stop).await;
    });
    let mut deadline = stop_rx;
    let timeout = config.shutdown_timeout;
    tokio::select! {
        result = server => result.context("the http server failed")?,
        () = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(timeout).await;
        } => {
            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "in-flight requests did not finish in time; closing them");
        }
    }
    // The scheduler has stopped claiming; let the runs in flight finish.
    // A recovery failure was logged when it happened.
    let _ = scheduler.await;
    if !agents.drain(timeout).await {
        tracing::warn!("some agent runs did not finish in time; they resume at the next start");
    }
    let drained = actions.drain(timeout).await;
    lease_stop.cancel();
    let _ = lease.await;
    if drained {
        // Nothing is left running: the others need not wait for the lease
        // to expire.
        if let Err(err) = replicas.release().await {
            tracing::warn!(%err, "cannot remove this replica's lease; it expires by itself");
        }
    } else {
        tracing::warn!(
            "some action runs did not finish in time; they are recovered at the next start, or by another replica once this one's lease expires"
        );
    }
    store.close()?;
    tracing::info!("stopped; the store is flushed");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
