//! actionhost: a self-hosted server that executes outreach and integration
//! actions through sandboxed WebAssembly executor plugins.
//!
//! See `ARCHITECTURE.md` at the repository root for the map of the code.

pub mod accounts;
pub mod actions;
pub mod agents;
pub mod api;
pub mod cli;
pub mod contacts;
pub mod events;
pub mod executions;
mod files;
pub mod identities;
pub mod metrics;
pub mod models;
pub mod registry;
pub mod replica;
pub mod retention;
pub mod runtime;
pub mod server;
pub mod store;
pub mod tenancy;
pub mod tools;
