//! In-process execute overhead: the no-op fixture in Rust, JavaScript and
//! Python through actionhost's full runtime path (limits, context, log
//! capture, output check), next to the floor: the same Rust component
//! called from a bare `InstancePre` with the pooling allocator.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actionhost::runtime::{
    AccountInfo, Credentials, ExecuteRequest, Grant, PluginOptions, Runtime, RuntimeConfig,
};
use anyhow::{Context as _, ensure};
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable, Val};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::stats::{Figure, quantile};

/// The executors compared: label, fixture file, action type.
const LANGUAGES: &[(&str, &str, &str)] = &[
    ("rust", "fixture-noop", "noop"),
    ("javascript", "fixture-noop-js", "noop_js"),
    ("python", "fixture-noop-py", "noop_py"),
];

fn noop_request() -> ExecuteRequest {
    ExecuteRequest {
        action_id: "act_bench".into(),
        action_type: "noop".into(),
        params: serde_json::json!({}),
        attempt: 1,
        idempotency_key: "act_bench".into(),
        account: None,
        reuse_key: None,
    }
}

/// The floor: a bare store per call, pooling allocator, no limits, no log.
struct RawWasmtime {
    pre: InstancePre<RawState>,
    engine: Engine,
}

struct RawState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RawState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

impl RawWasmtime {
    fn new(bytes: &[u8]) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(
            PoolingAllocationConfig::default(),
        ));
        let engine = Engine::new(&config)?;
        let component = Component::new(&engine, bytes)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        // The actionhost interfaces as stubs: the floor logs nothing.
        let mut log = linker.instance("actionhost:executor/log@0.1.0")?;
        log.func_new("write", |_, _, _, _| Ok(()))?;
        let mut smtp = linker.instance("actionhost:executor/smtp@0.1.0")?;
        smtp.func_new("send", |_, _, _, _| {
            Err(wasmtime::format_err!("no smtp in the raw loop"))
        })?;
        let pre = linker.instantiate_pre(&component)?;
        Ok(Self { pre, engine })
    }

    async fn call(&self) {
        let state = RawState {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, state);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        let execute = instance
            .get_func(&mut store, "execute")
            .expect("execute export");
        let request = Val::Record(vec![
            ("action-id".into(), Val::String("act_bench".into())),
            ("action-type".into(), Val::String("noop".into())),
            ("params".into(), Val::String("{}".into())),
            ("attempt".into(), Val::U32(1)),
            ("idempotency-key".into(), Val::String("act_bench".into())),
            ("account".into(), Val::Option(None)),
        ]);
        let mut results = [Val::Bool(false)];
        execute
            .call_async(&mut store, &[request], &mut results)
            .await
            .expect("call");
        assert!(
            matches!(&results[0], Val::Result(Ok(_))),
            "the raw no-op call succeeds: {:?}",
            results[0]
        );
    }
}

/// Runs `call` for `budget` after a warm-up of a fifth of it, in 20
/// batches; each sample is one batch's mean time per call, in µs.
async fn time_calls<F, Fut>(budget: Duration, mut call: F) -> Vec<f64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let warm_until = Instant::now() + budget / 5;
    let mut calls_per_batch = 0u64;
    while Instant::now() < warm_until || calls_per_batch < 3 {
        call().await;
        calls_per_batch += 1;
    }
    // Size batches so that 20 of them take about `budget`.
    let per_call = (budget / 5).as_secs_f64() / calls_per_batch as f64;
    let batch = ((budget.as_secs_f64() / 20.0 / per_call) as u64).max(1);
    let mut samples = Vec::with_capacity(20);
    for _ in 0..20 {
        let start = Instant::now();
        for _ in 0..batch {
            call().await;
        }
        samples.push(start.elapsed().as_secs_f64() * 1e6 / batch as f64);
    }
    samples
}

/// A figure whose spread is the batches' p10..p90.
fn batch_figure(id: &str, name: &str, samples: &[f64]) -> Figure {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut figure = Figure::from_samples(id, name, "µs/call", &sorted);
    figure.low = quantile(&sorted, 0.1);
    figure.high = quantile(&sorted, 0.9);
    figure.with_note("median of 20 batch means; spread p10–p90")
}

/// Every in-process figure, `budget` per figure.
pub async fn run(fixtures: &Path, cache: &Path, budget: Duration) -> anyhow::Result<Vec<Figure>> {
    let read = |name: &str| {
        let path = fixtures.join(format!("{name}.wasm"));
        std::fs::read(&path)
            .with_context(|| format!("{}: run scripts/build-plugins first", path.display()))
    };
    let mut figures = Vec::new();
    let credentials = Arc::new(Grant::from(Credentials::None));

    let noop = read("fixture-noop")?;
    let raw = RawWasmtime::new(&noop)?;
    let samples = time_calls(budget, || raw.call()).await;
    figures.push(batch_figure(
        "inprocess.raw_wasmtime",
        "raw wasmtime loop: instantiate + execute of the no-op Rust component",
        &samples,
    ));

    for reuse in [false, true] {
        let mut config = RuntimeConfig::new(cache);
        config.reuse.enabled = reuse;
        let runtime = Runtime::new(config)?;
        for (label, fixture, action_type) in LANGUAGES {
            if reuse && *label == "rust" {
                continue; // The Rust fixture does not opt into reuse.
            }
            let plugin = runtime
                .load(read(fixture)?.into(), PluginOptions::default())
                .await
                .with_context(|| format!("loading {fixture}"))?;
            let request = ExecuteRequest {
                action_type: (*action_type).into(),
                account: Some(AccountInfo {
                    id: "ca_bench".into(),
                    app_name: (*fixture).into(),
                    metadata: serde_json::json!({}),
                }),
                reuse_key: Some("ca_bench".into()),
                ..noop_request()
            };
            // One checked call first: a failing plugin must not look fast.
            let first = plugin.execute(request.clone(), credentials.clone()).await?;
            ensure!(
                first.outcome.is_ok(),
                "{fixture} did not succeed: {:?}",
                first.outcome
            );
            let samples = time_calls(budget, || async {
                let execution = plugin
                    .execute(request.clone(), credentials.clone())
                    .await
                    .expect("no fault");
                assert!(execution.outcome.is_ok(), "{:?}", execution.outcome);
            })
            .await;
            let mode = if reuse { "reused" } else { "fresh" };
            let instance = if reuse {
                "a reused instance"
            } else {
                "a fresh instance"
            };
            figures.push(batch_figure(
                &format!("inprocess.{label}_{mode}"),
                &format!(
                    "actionhost runtime: execute of the no-op {label} plugin, {instance} per call"
                ),
                &samples,
            ));
        }
    }
    Ok(figures)
}
