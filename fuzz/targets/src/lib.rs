//! The fuzz targets' bodies, one function per input the server parses from
//! someone it does not control. Each takes arbitrary bytes and must return
//! without panicking; some check a property of what they parsed as well.
//!
//! `fuzz/` runs them under libFuzzer (`cargo +nightly fuzz run NAME`,
//! see `reliability/run`); `tests/corpus.rs` runs each over its seed
//! corpus in `fuzz/corpus/NAME/` on every `./scripts/test`, so that a
//! seed which once found a bug keeps proving it fixed.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use actionhost::runtime::types::HostRule;
use actionhost::runtime::{Plugin, PluginOptions, Runtime, RuntimeConfig};
use actionhost::server::{Overrides, ServeConfig};

/// A target's body: arbitrary bytes in, a panic if something is wrong.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus folder and cargo-fuzz target.
pub const TARGETS: &[(&str, Target)] = &[
    ("upload", upload),
    ("params", params),
    ("config", config),
    ("host_rule", host_rule),
    ("sealed", sealed),
];

/// The upload path: any bytes given to `POST /v1/plugins` (or dropped in
/// the plugins folder) are parsed, compiled, instantiated and described by
/// [`Runtime::load`]; it answers a plugin or an error, never a panic.
pub fn upload(data: &[u8]) {
    let fixture = fixture();
    let loaded = fixture.tokio.block_on(
        fixture
            .runtime
            .load(Arc::from(data), PluginOptions::default()),
    );
    if let Ok(plugin) = loaded {
        assert!(
            !plugin.manifest().action_types.is_empty(),
            "a plugin loaded with no action type"
        );
    }
}

/// The params validation path of a create or an execute: the JSON is
/// checked against the action type's schema, then by the plugin's own
/// `validate`. Every refusal names a path that is a JSON Pointer.
pub fn params(data: &[u8]) {
    let Ok(params) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let fixture = fixture();
    let plugin = &fixture.send_email;
    let refusals = match plugin.check_params("send_email", &params) {
        Ok(()) => match fixture
            .tokio
            .block_on(plugin.validate("send_email", &params))
        {
            Ok(Ok(())) => return,
            Ok(Err(refusals)) => refusals,
            // A fault of the plugin (a trap) is an answer too, not a crash.
            Err(_fault) => return,
        },
        Err(refusals) => refusals,
    };
    assert!(!refusals.is_empty(), "a refusal with no reason");
    for refusal in refusals {
        assert!(
            refusal.path.is_empty() || refusal.path.starts_with('/'),
            "{:?} is not a JSON Pointer",
            refusal.path
        );
    }
}

/// The config file: any text is loaded or refused with a message.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = fixture().scratch.join("actionhost.toml");
    std::fs::write(&file, text).expect("writes the scratch config file");
    if let Err(message) = ServeConfig::load(Some(&file), &Overrides::default()) {
        assert!(!message.is_empty(), "a refusal with no message");
    }
}

/// A host rule (`extra_hosts`, a plugin's manifest): what parses prints as
/// a rule that parses to the same rule.
pub fn host_rule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rule) = text.parse::<HostRule>() else {
        return;
    };
    let printed = rule.to_string();
    let again: HostRule = printed.parse().unwrap_or_else(|err| {
        panic!("{text:?} parsed, but its printed form {printed:?} does not: {err}")
    });
    assert_eq!(again.to_string(), printed, "{text:?} does not round-trip");
}

/// The envelope of a credential at rest (base64 of a 24-byte nonce and the
/// XChaCha20-Poly1305 ciphertext, bound to its record's id): any stored
/// text opens or is refused, never panics; and whatever is sealed opens
/// again, in its own record only. The first byte splits the input into a
/// record id and a value.
pub fn sealed(data: &[u8]) {
    use actionhost::accounts::SecretBox;
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (context, value) = rest.split_at(usize::from(split).min(rest.len()));
    let context = String::from_utf8_lossy(context);
    let secrets = SecretBox::from_key([7; 32]);
    let _ = secrets.open(&context, &String::from_utf8_lossy(value));
    let sealed = secrets.seal(&context, value);
    assert!(
        secrets
            .open(&context, &sealed)
            .is_ok_and(|opened| opened == value),
        "a sealed value does not open again"
    );
    assert!(
        secrets.open(&format!("{context}x"), &sealed).is_err(),
        "a sealed value opens in another record"
    );
}

/// What the targets share, built once per process.
struct Fixture {
    tokio: tokio::runtime::Runtime,
    runtime: Runtime,
    send_email: Plugin,
    scratch: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let scratch = tempfile::tempdir().expect("temp dir").keep();
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        let mut config = RuntimeConfig::new(scratch.join("cache"));
        config.max_instances = 16;
        let runtime = Runtime::new(config).expect("the runtime");
        let component = std::fs::read(plugin_path("send-email"))
            .expect("target/plugins/send-email.wasm; run scripts/build-plugins");
        let send_email = tokio
            .block_on(runtime.load(Arc::from(component), PluginOptions::default()))
            .expect("send-email loads");
        Fixture {
            tokio,
            runtime,
            send_email,
            scratch,
        }
    })
}

fn plugin_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/plugins")
        .join(format!("{name}.wasm"))
}
