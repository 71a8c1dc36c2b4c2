//! Loading each bundled plugin with an empty compiled-code cache (compile)
//! and with a warm one: `load/<plugin>/cold` and `load/<plugin>/cached`.
//!
//! The figures compared with peers (in-process execute against a raw
//! wasmtime loop, HTTP against axum and `wasmtime serve`, the scheduler,
//! start-up, memory) are the benchmark suite's: `bench/run`, see
//! BENCHMARKS.md. Run this one with `cargo bench -p actionhost --bench
//! runtime`; `scripts/test` runs it in test mode (each benchmark once) so
//! that it never rots. The components come from `scripts/build-plugins`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actionhost::runtime::{PluginOptions, Runtime, RuntimeConfig};
use criterion::{Criterion, criterion_group, criterion_main};

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

criterion_group!(benches, load);
criterion_main!(benches);
