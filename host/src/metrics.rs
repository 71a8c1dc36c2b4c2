//! Prometheus metrics, served at `/metrics` on a listen address of their
//! own (`[metrics] listen`), apart from the API and its keys: point
//! Prometheus at it over a network only it reaches.
//!
//! The series (every name starts with `actionhost_`):
//!
//! | series | labels |
//! |---|---|
//! | `http_requests_total`, `http_request_duration_seconds` | `route` (the matched path template), `method`, `status` |
//! | `executions_total`, `execution_duration_seconds` | `action_type`, `plugin`, `version`, `outcome` (`succeeded` / `failed`), `code` |
//! | `sandbox_faults_total` | `plugin`, `kind` (`fuel_exhausted`, `deadline`, `memory`, `trap`, …) |
//! | `plugin_loads_total`, `plugin_load_seconds` | `outcome` (`loaded` / `failed`), `cache` (`hit` / `miss`) |
//! | `plugin_swaps_total` | `plugin`: a new build swapped in for the one its file or upload held |
//! | `instances_total` | `plugin`, `version`, `event` (`reused`: an execution on a reused instance; `retired`: an instance dropped after its last allowed call) |
//! | `oauth2_refreshes_total` | `outcome` (`ok`, `rejected`, `unavailable`) |
//! | `model_tokens_total` | `agent`, `direction` (`input` / `output`) |
//! | `retention_removed_total` | `kind` (`executions`, `actions`, `events`): records the retention sweeps removed |
//! | `scheduler_lag_seconds` | | how late each due action started |
//! | `actions_due` | | due actions not yet started (sampled every 15 s) |
//! | `actions` | `status` | actions by status, all tenants (sampled every 15 s) |
//!
//! Recording is a no-op when no `listen` is set.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

/// `[metrics]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics` listens, such as `127.0.0.1:9464` (default: no
    /// metrics). It takes no key: keep it on a network only Prometheus
    /// reaches.
    pub listen: Option<SocketAddr>,
}

/// Whether the recorder is installed: without it, the recording functions
/// return at once rather than build labels nobody reads (they sit on the
/// execute and request paths).
static ENABLED: AtomicBool = AtomicBool::new(false);

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Latency buckets, in seconds: from a no-op's 100 µs to a slow
/// provider's minute.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Installs the recorder (once per process) and serves `/metrics` on
/// `listen` until `stop`.
pub async fn serve(
    listen: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .context("metric buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    ENABLED.store(true, Ordering::Relaxed);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for metrics on {listen}"))?;
    tracing::info!(address = %listen, "metrics at http://{listen}/metrics");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || render(handle.clone())),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await
        .context("the metrics listener failed")
}

async fn render(handle: PrometheusHandle) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

/// Counts and times every API request by its route template (never the
/// path itself, which holds ids), method and status.
pub async fn track_http(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !enabled() {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("actionhost_http_requests_total", &labels).increment(1);
    metrics::histogram!("actionhost_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// One execution's outcome.
pub fn execution(
    action_type: &str,
    plugin: &str,
    version: &str,
    error: Option<&crate::executions::ErrorInfo>,
    seconds: f64,
) {
    if !enabled() {
        return;
    }
    let labels = [
        ("action_type", action_type.to_owned()),
        ("plugin", plugin.to_owned()),
        ("version", version.to_owned()),
        (
            "outcome",
            if error.is_none() {
                "succeeded"
            } else {
                "failed"
            }
            .to_owned(),
        ),
        ("code", error.map_or_else(String::new, |e| e.code.clone())),
    ];
    metrics::counter!("actionhost_executions_total", &labels).increment(1);
    metrics::histogram!(
        "actionhost_execution_duration_seconds",
        "action_type" => action_type.to_owned(),
        "plugin" => plugin.to_owned(),
        "version" => version.to_owned()
    )
    .record(seconds);
    if let Some(kind) = error.and_then(|e| e.fault.as_deref()) {
        metrics::counter!(
            "actionhost_sandbox_faults_total",
            "plugin" => plugin.to_owned(),
            "kind" => kind.to_owned()
        )
        .increment(1);
    }
}

/// One plugin load: compiled (`miss`) or from the cache (`hit`), or failed.
pub fn plugin_load(loaded: bool, cache_hit: Option<bool>, seconds: f64) {
    if !enabled() {
        return;
    }
    let cache = match cache_hit {
        Some(true) => "hit",
        Some(false) => "miss",
        None => "",
    };
    let outcome = if loaded { "loaded" } else { "failed" };
    metrics::counter!("actionhost_plugin_loads_total", "outcome" => outcome, "cache" => cache)
        .increment(1);
    metrics::histogram!("actionhost_plugin_load_seconds", "outcome" => outcome, "cache" => cache)
        .record(seconds);
}

/// A plugin version swapped in for the one its file or upload held, with
/// no restart.
pub fn plugin_swap(plugin: &str) {
    if !enabled() {
        return;
    }
    metrics::counter!("actionhost_plugin_swaps_total", "plugin" => plugin.to_owned()).increment(1);
}

/// An execution that ran on a reused instance (`reused`), or an instance
/// retired after its last allowed call (`retired`).
pub fn instance(plugin: &str, version: &str, event: &'static str) {
    if !enabled() {
        return;
    }
    metrics::counter!(
        "actionhost_instances_total",
        "plugin" => plugin.to_owned(),
        "version" => version.to_owned(),
        "event" => event
    )
    .increment(1);
}

/// Records a retention sweep removed, by kind (`executions`, `actions`,
/// `events`).
pub fn retention_removed(kind: &'static str, removed: usize) {
    if !enabled() {
        return;
    }
    metrics::counter!("actionhost_retention_removed_total", "kind" => kind)
        .increment(removed as u64);
}

/// One OAuth2 token refresh: `ok`, `rejected` (the account expired) or
/// `unavailable` (tried again later).
pub fn oauth2_refresh(outcome: &'static str) {
    metrics::counter!("actionhost_oauth2_refreshes_total", "outcome" => outcome).increment(1);
}

/// How late a due action started, in milliseconds past its due time.
pub fn scheduler_lag(late_ms: u64) {
    metrics::histogram!("actionhost_scheduler_lag_seconds").record(late_ms as f64 / 1000.0);
}

/// How often the store is counted for the gauges.
const SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// Samples the due actions waiting and the actions by status every
/// [`SAMPLE_EVERY`] until `stop`. Each sample walks index keys (no
/// record), off the async threads.
pub async fn sample_actions(
    records: crate::store::Records,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let records = records.clone();
        match tokio::task::spawn_blocking(move || count_actions(&records)).await {
            Ok(Ok((due, by_status))) => {
                metrics::gauge!("actionhost_actions_due").set(due as f64);
                for (status, count) in by_status {
                    metrics::gauge!("actionhost_actions", "status" => status).set(count as f64);
                }
            }
            Ok(Err(err)) => tracing::warn!(%err, "cannot count the actions for the metrics"),
            Err(err) => tracing::warn!(%err, "counting the actions for the metrics failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

type Counts = (usize, Vec<(&'static str, usize)>);

fn count_actions(records: &crate::store::Records) -> Result<Counts, crate::store::StoreError> {
    let now = crate::actions::epoch_ms(std::time::SystemTime::now());
    // Entries `MS\0TENANT`: those due by now.
    let due = records.index_count("actions_due", "", None, Some(&format!("{:013}", now + 1)))?;
    let tenants = records.list_all::<crate::tenancy::Tenant>()?;
    let mut by_status = Vec::new();
    for status in crate::actions::ActionStatus::ALL {
        let mut count = 0;
        for tenant in &tenants {
            count += records.index_count(
                "actions_by_status",
                &format!("{}\0{}\0", tenant.id, status.as_str()),
                None,
                None,
            )?;
        }
        by_status.push((status.as_str(), count));
    }
    Ok((due, by_status))
}

/// Tokens one model call of an agent used.
pub fn model_tokens(agent: &str, usage: &crate::runtime::model::Usage) {
    if !enabled() {
        return;
    }
    for (direction, tokens) in [
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
    ] {
        metrics::counter!(
            "actionhost_model_tokens_total",
            "agent" => agent.to_owned(),
            "direction" => direction
        )
        .increment(tokens);
    }
}
