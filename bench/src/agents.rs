//! Agent runs: the host's overhead per contact (the model stand-in answers
//! at once), and a run's wall time when each model call takes a second,
//! beside contacts × 1 s ÷ the concurrency cap (the floor the cap allows).
//!
//! The model is the `anthropic` provider plugin against the tests' model
//! stand-in (`actionhost_tests::models`), which checks every request as the
//! real API would; each contact gets one proposed `note`, so the proposal's
//! checks (schema, `validate`) and its durable write are in the figure.

use std::time::{Duration, Instant};

use actionhost_tests::models::{MODEL_KEY, Models, Reply};
use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use crate::Settings;
use crate::sections::{Results, artifact, cache, fresh_dir};
use crate::server::{Launch, Server};
use crate::stats::Figure;

/// The cap of contacts evaluated at once in both measurements.
const CONCURRENCY: usize = 8;

pub fn run(settings: &Settings, results: &mut Results) -> anyhow::Result<()> {
    let (instant_contacts, slow_contacts) = if settings.quick {
        (40, 16)
    } else {
        (1_000, 100)
    };

    let models = Models::start();
    let note = |_: &Value| {
        Reply::Tool(
            json!({ "reasoning": "seen", "actions": [{ "type": "note", "params": { "body": "Looked at the timeline." } }] }),
        )
    };
    models.respond(note);
    let (server, _dir) = start(settings)?;
    let agent = setup(&server, &models, instant_contacts)?;
    let (elapsed, summary) = run_once(&server, &agent)?;
    ensure!(
        summary["contacts_evaluated"] == instant_contacts
            && summary["actions_proposed"] == instant_contacts,
        "the run evaluated and proposed for every contact: {summary}"
    );
    ensure!(
        models.problems().is_empty(),
        "the stand-in refused requests: {:?}",
        models.problems()
    );
    results.push(
        Figure::single(
            "agents.instant.contacts_per_s",
            &format!("agent run, model answering at once: contacts evaluated per second ({instant_contacts} contacts, {CONCURRENCY} at once)"),
            "/s",
            instant_contacts as f64 / elapsed.as_secs_f64(),
        )
        .with_note("one model call, one proposed note checked and stored per contact"),
    );
    drop(server);

    let models = Models::start();
    models.respond(move |body| Reply::Slow(Duration::from_secs(1), Box::new(note(body))));
    let (server, _dir) = start(settings)?;
    let agent = setup(&server, &models, slow_contacts)?;
    let (elapsed, summary) = run_once(&server, &agent)?;
    ensure!(summary["contacts_evaluated"] == slow_contacts, "{summary}");
    let floor = slow_contacts as f64 / CONCURRENCY as f64;
    results.push(Figure::single(
        "agents.slow.wall_s",
        &format!("agent run of {slow_contacts} contacts, each model call taking 1 s: wall time"),
        "s",
        elapsed.as_secs_f64(),
    ));
    results.push(Figure::single(
        "agents.slow.floor_s",
        &format!("{slow_contacts} × 1 s ÷ {CONCURRENCY} (the concurrency cap's floor)"),
        "s",
        floor,
    ));
    results.ratio(
        "ratio.agents.slow_vs_floor",
        "agent run wall time ÷ its concurrency floor",
        "agents.slow.wall_s",
        "agents.slow.floor_s",
    );
    Ok(())
}

fn start(settings: &Settings) -> anyhow::Result<(Server, tempfile::TempDir)> {
    let plugins = [
        artifact(settings, "target/plugins/notes.wasm")?,
        artifact(settings, "target/plugins/anthropic.wasm")?,
    ];
    let dir = fresh_dir(&plugins)?;
    let cache = cache(settings);
    let server = Launch {
        binary: &settings.actionhost,
        dir: dir.path(),
        cache: &cache,
        env: vec![("ACTIONHOST_AGENTS__CONCURRENCY", CONCURRENCY.to_string())],
    }
    .start()?;
    Ok((server, dir))
}

fn call(server: &Server, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, answer) = server.call(method, path, &text)?;
    ensure!(
        (200..300).contains(&status),
        "{method} {path}: {status} {answer}"
    );
    Ok(answer)
}

/// The provider account, `contacts` contacts and an agent proposing notes.
fn setup(server: &Server, models: &Models, contacts: usize) -> anyhow::Result<String> {
    let config = call(
        server,
        "POST",
        "/api/v1/auth-configs",
        &json!({ "appName": "anthropic", "scheme": { "type": "api_key", "header": "x-api-key" }, "hosts": [models.base_url] }),
    )?;
    call(
        server,
        "POST",
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config["id"], "entityId": "models", "metadata": { "base_url": models.base_url }, "credentials": { "api_key": MODEL_KEY } }),
    )?;
    let rows: Vec<Value> = (0..contacts)
        .map(|i| json!({ "email": format!("c{i}@bench.example"), "properties": { "lifecyclestage": "lead", "firstname": format!("C{i}") } }))
        .collect();
    for chunk in rows.chunks(1000) {
        call(
            server,
            "POST",
            "/v1/contacts/batch",
            &json!({ "contacts": chunk }),
        )?;
    }
    let agent = call(
        server,
        "POST",
        "/v1/agents",
        &json!({
            "name": "bench", "capabilities": ["notes"], "playbook": { "playbook_md": "Note what you see." },
            "monitoring": { "filter": { "lifecycle_stage": "lead" }, "max_contacts_per_run": 1000 },
            "llm_config": { "provider": "anthropic", "model": "bench" },
        }),
    )?;
    Ok(agent["agent"]["_id"]
        .as_str()
        .context("agent id")?
        .to_owned())
}

/// Triggers a run and waits for its end; its wall time and summary.
fn run_once(server: &Server, agent: &str) -> anyhow::Result<(Duration, Value)> {
    let started = Instant::now();
    let triggered = call(
        server,
        "POST",
        &format!("/v1/agents/{agent}/trigger"),
        &json!({}),
    )?;
    let run = triggered["job_id"].as_str().context("job id")?.to_owned();
    loop {
        let answer = call(
            server,
            "GET",
            &format!("/v1/agents/runs/{run}?mode=summary"),
            &Value::Null,
        )?;
        let status = answer["run"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if status == "completed" {
            return Ok((started.elapsed(), answer["run"]["summary"].clone()));
        }
        ensure!(
            status != "failed" && status != "cancelled",
            "the run ended {status}: {answer}"
        );
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the run did not finish: {answer}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
