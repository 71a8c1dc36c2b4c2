//! The one wasmtime `Engine`: pooling allocation, epoch interruption, and the
//! ticker thread that advances the epoch.

use std::time::Duration;

use wasmtime::{Config, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::RuntimeConfig;

/// How often the epoch advances: the granularity of deadlines and of the
/// cooperative yields of long-running guests.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Slots decommitted together (wasmtime's default is 1: no batching).
const DECOMMIT_BATCH: usize = 16;
/// Bytes at the start of each linear memory reset by memset, not madvise.
const MEMORY_KEEP_RESIDENT: usize = 128 << 10;
/// The same for tables.
const TABLE_KEEP_RESIDENT: usize = 16 << 10;

/// Which instance allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots: fast instantiation.
    Pooling,
    /// mmap per instance: the fallback where address space is short.
    OnDemand,
}

/// Builds the engine, preferring the pooling allocator.
pub fn build(config: &RuntimeConfig) -> wasmtime::Result<(Engine, Allocator)> {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true);
    wasm.epoch_interruption(true);
    wasm.consume_fuel(config.fuel);
    wasm.parallel_compilation(true);

    let mut pool = PoolingAllocationConfig::default();
    let slots = config.max_instances;
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(4))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(4))
        .max_memories_per_component(16)
        .max_tables_per_component(32)
        .max_core_instances_per_component(64)
        .max_memory_size(config.max_memory_bytes)
        // A table slot as large as the limit a plugin may grow to, so that
        // hitting the limit is the limiter's refusal (reported as
        // `table_limit`) and never the pool's silent one (wasmtime's default
        // slot is 20,000 elements).
        .table_elements(config.limits.table_elements)
        // A store's teardown resets its slots. By default that is an
        // `madvise` per slot, whose TLB shootdown interrupts every core and
        // whose pages fault back in on the next instantiation: about 4% of
        // a request's CPU under load. Batching the decommits pays one shootdown
        // per batch, and the first pages of each memory and table (where
        // a small plugin's stack and data live) are reset with a memset and
        // stay resident.
        .decommit_batch_size(DECOMMIT_BATCH)
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT);
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&wasm) {
        Ok(engine) => Ok((engine, Allocator::Pooling)),
        Err(err) => {
            tracing::warn!(
                error = %err,
                "the pooling allocator could not reserve its address space; falling back to on-demand allocation, \
                 which instantiates more slowly (raise `ulimit -v` or lower max_instances to use pooling)"
            );
            // Reserve only what a memory may grow to, with a small guard:
            // explicit bounds checks instead of 4 GiB virtual reservations,
            // so that instances fit in a constrained address space.
            wasm.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            wasm.memory_reservation(config.max_memory_bytes as u64);
            wasm.memory_guard_size(64 << 10);
            wasm.memory_reservation_for_growth(0);
            Ok((Engine::new(&wasm)?, Allocator::OnDemand))
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is
/// dropped.
pub fn start_ticker(engine: EngineWeak) {
    let spawned = std::thread::Builder::new()
        .name("actionhost-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(err) = spawned {
        tracing::error!(error = %err, "could not start the epoch thread: deadlines of CPU-bound plugins will not fire");
    }
}
