//! Runtime benchmarks, each against its floor in the same run.
//!
//! - `execute_noop/actionhost_runtime`: instantiate + `execute` of the no-op
//!   fixture through the full runtime path (fresh store, limiter, deadline,
//!   outbound policy, log capture, JSON output check).
//! - `execute_noop/raw_wasmtime`: the same component, the same call, from a
//!   plain `InstancePre` with the pooling allocator: no limits, no log.
//! - `execute_by_language/<lang>/<fresh|reused>`: `execute` of the no-op
//!   fixture written in Rust, JavaScript (`fixture-noop-js`) and Python
//!   (`fixture-noop-py`), for one connected account, with a fresh instance
//!   per execution (reuse off) and with instance reuse (the fixtures opt in);
//!   a table of each one's ratio to Rust follows the run.
//! - `load/<plugin>/cold` and `load/<plugin>/cached`: loading each bundled
//!   plugin with an empty compiled-code cache (compile), and with a warm one.
//!
//! Run with `cargo bench -p actionhost --bench runtime`; `scripts/test` runs
//! it in test mode (each benchmark once) so that it never rots. The
//! components come from `scripts/build-plugins`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actionhost::runtime::{
    AccountInfo, Credentials, ExecuteRequest, PluginOptions, Runtime, RuntimeConfig,
};
use criterion::{Criterion, criterion_group, criterion_main};
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable, Val};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

fn component(folder: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(folder)
        .join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|err| panic!("{}: {err}; run scripts/build-plugins first", path.display()))
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

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

/// The floor: a bare store per call, pooling allocator, no limits.
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
    fn new(bytes: &[u8]) -> Self {
        let mut config = Config::new();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(
            PoolingAllocationConfig::default(),
        ));
        let engine = Engine::new(&config).expect("engine");
        let component = Component::new(&engine, bytes).expect("compile");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).expect("wasi-http");
        // The actionhost interfaces, as stubs: the floor does no logging or SMTP.
        let mut log = linker
            .instance("actionhost:executor/log@0.1.0")
            .expect("log interface");
        log.func_new("write", |_, _, _, _| Ok(()))
            .expect("stub log.write");
        let mut smtp = linker
            .instance("actionhost:executor/smtp@0.1.0")
            .expect("smtp interface");
        smtp.func_new("send", |_, _, _, _| {
            Err(wasmtime::format_err!("no smtp in the raw loop"))
        })
        .expect("stub smtp.send");
        let pre = linker.instantiate_pre(&component).expect("pre-instantiate");
        Self { pre, engine }
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
            "noop succeeds: {:?}",
            results[0]
        );
    }
}

fn execute_noop(c: &mut Criterion) {
    let bytes = component("fixtures", "fixture-noop");
    let rt = tokio();
    let cache = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(RuntimeConfig::new(cache.path())).expect("runtime");
    let plugin = rt
        .block_on(runtime.load(bytes.clone().into(), PluginOptions::default()))
        .expect("load");
    let credentials = Arc::new(actionhost::runtime::Grant::from(Credentials::None));
    let raw = RawWasmtime::new(&bytes);

    let mut group = c.benchmark_group("execute_noop");
    group.bench_function("actionhost_runtime", |b| {
        b.to_async(&rt).iter(|| async {
            let execution = plugin
                .execute(noop_request(), credentials.clone())
                .await
                .expect("no fault");
            assert!(execution.outcome.is_ok());
        });
    });
    group.bench_function("raw_wasmtime", |b| b.to_async(&rt).iter(|| raw.call()));
    group.finish();
}

/// The languages compared: label, fixture, action type.
const LANGUAGES: &[(&str, &str, &str)] = &[
    ("rust", "fixture-noop", "noop"),
    ("javascript", "fixture-noop-js", "noop_js"),
    ("python", "fixture-noop-py", "noop_py"),
];

fn execute_by_language(c: &mut Criterion) {
    let rt = tokio();
    // One cache for both runtimes and across runs: compiling a JavaScript or
    // Python component takes seconds. The tests' cache, which scripts/test
    // fills before the benches run in test mode.
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-cache");
    let credentials = Arc::new(actionhost::runtime::Grant::from(Credentials::None));
    let mut group = c.benchmark_group("execute_by_language");
    for reuse in [false, true] {
        let mut config = RuntimeConfig::new(&cache);
        config.reuse.enabled = reuse;
        let runtime = Runtime::new(config).expect("runtime");
        for (label, fixture, action_type) in LANGUAGES {
            if reuse && *label == "rust" {
                continue; // The Rust fixture does not opt into reuse.
            }
            let plugin = rt
                .block_on(runtime.load(
                    component("fixtures", fixture).into(),
                    PluginOptions::default(),
                ))
                .expect("load");
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
            let mode = if reuse { "reused" } else { "fresh" };
            group.bench_function(format!("{label}/{mode}"), |b| {
                b.to_async(&rt).iter(|| async {
                    let execution = plugin
                        .execute(request.clone(), credentials.clone())
                        .await
                        .expect("no fault");
                    assert!(execution.outcome.is_ok(), "{:?}", execution.outcome);
                });
            });
        }
    }
    group.finish();
    print_language_table();
}

/// Each language's median against Rust's, from criterion's estimates of
/// this run (nothing is printed in test mode, which measures nothing).
fn print_language_table() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion/execute_by_language");
    let median = |label: &str, mode: &str| -> Option<f64> {
        // criterion stores `label/mode` as `label_mode`.
        let file = dir
            .join(format!("{label}_{mode}"))
            .join("new/estimates.json");
        let text = std::fs::read_to_string(file).ok()?;
        let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
        estimates["median"]["point_estimate"].as_f64()
    };
    if std::env::args().any(|arg| arg == "--test") {
        return;
    }
    let Some(rust) = median("rust", "fresh") else {
        return;
    };
    println!("\nper-execution time (median) and ratio to Rust (fresh instance):");
    for (label, _, _) in LANGUAGES {
        for mode in ["fresh", "reused"] {
            if let Some(ns) = median(label, mode) {
                println!(
                    "  {label:<10} {mode:<6} {:>10.1} µs  {:>6.1}x",
                    ns / 1000.0,
                    ns / rust
                );
            }
        }
    }
}

fn load(c: &mut Criterion) {
    let rt = tokio();
    let mut group = c.benchmark_group("load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for name in ["send-email", "linkedin-message", "crm-sync"] {
        let bytes: Arc<[u8]> = component("plugins", name).into();
        group.bench_function(format!("{name}/cold"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let cache = tempfile::tempdir().expect("temp dir");
                    let runtime = Runtime::new(RuntimeConfig::new(cache.path())).expect("runtime");
                    let started = Instant::now();
                    let plugin = rt
                        .block_on(runtime.load(bytes.clone(), PluginOptions::default()))
                        .expect("load");
                    total += started.elapsed();
                    assert_eq!(
                        plugin.cache_outcome(),
                        actionhost::runtime::CacheOutcome::Miss
                    );
                }
                total
            });
        });
        let cache = tempfile::tempdir().expect("temp dir");
        let runtime = Runtime::new(RuntimeConfig::new(cache.path())).expect("runtime");
        rt.block_on(runtime.load(bytes.clone(), PluginOptions::default()))
            .expect("warm the cache");
        group.bench_function(format!("{name}/cached"), |b| {
            b.iter(|| {
                let plugin = rt
                    .block_on(runtime.load(bytes.clone(), PluginOptions::default()))
                    .expect("load");
                assert_eq!(
                    plugin.cache_outcome(),
                    actionhost::runtime::CacheOutcome::Hit
                );
            });
        });
    }
    group.finish();
}

criterion_group!(benches, execute_noop, execute_by_language, load);
criterion_main!(benches);
