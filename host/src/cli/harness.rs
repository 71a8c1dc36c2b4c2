//! `actionhost plugin test FILE.wasm --case CASE.json`: runs a plugin in the
//! real sandbox against a case file, without a server or a network.
//!
//! A case gives the params, the account (metadata and test credentials) and
//! the outbound exchanges the plugin should make, each with a canned answer.
//! The sandbox hands every request to [`CaseResponder`] after the allow-list
//! check and the credential injection, exactly as it would leave the host;
//! the responder checks it against the next expected exchange and answers.
//! Then the harness compares the result with the case's `expect` and prints
//! every difference, with a unified diff for documents.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{CliError, default_cache_dir};
use crate::runtime::{
    AccountInfo, ContactBinding, ContactInfo, Credentials, ExecuteError, ExecuteRequest,
    ExecutionLog, Grant, HostRule, NoteError, NoteWriter, PluginOptions, Responder, Runtime,
    RuntimeConfig, SenderInfo,
};

/// One test case, as written in a `.case.json` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case checks, for the report.
    #[serde(default)]
    name: Option<String>,
    /// The action type; may be left out when the plugin has only one.
    #[serde(default)]
    action_type: Option<String>,
    /// The params.
    params: Value,
    /// The connected account the action runs as.
    #[serde(default)]
    account: Option<CaseAccount>,
    /// Test credentials, injected by the host as in production (same shape
    /// as a request's inline `authConfig.credentials`).
    #[serde(default)]
    credentials: Option<Credentials>,
    /// Destinations the operator would allow beyond the plugin's manifest,
    /// such as `https://hooks.example.com`.
    #[serde(default)]
    allow_hosts: Vec<String>,
    /// The attempt number (default 1).
    #[serde(default)]
    attempt: Option<u32>,
    /// The contact a contact-bound action addresses (its params'
    /// `contact_id` names it), as the host would hand it over.
    #[serde(default)]
    contact: Option<CaseContact>,
    /// The identity the action acts as.
    #[serde(default)]
    sender: Option<CaseSender>,
    /// The outbound exchanges expected, in order.
    #[serde(default)]
    exchanges: Vec<Exchange>,
    /// The expected result.
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseAccount {
    #[serde(default = "default_account_id")]
    id: String,
    #[serde(default)]
    app_name: Option<String>,
    #[serde(default = "empty_object")]
    metadata: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseContact {
    #[serde(default = "default_contact_id")]
    id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default = "empty_object")]
    properties: Value,
}

fn default_contact_id() -> String {
    "ct_test".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSender {
    #[serde(default = "default_sender_id")]
    id: String,
    name: String,
    #[serde(default)]
    email: Option<String>,
}

fn default_sender_id() -> String {
    "id_test".to_owned()
}

/// `add-note` in a test: the note is kept nowhere; its id is `nt_test`.
struct TestNotes;

impl NoteWriter for TestNotes {
    fn add_note(
        &self,
        body: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, NoteError>> + Send>>
    {
        Box::pin(async move {
            if body.trim().is_empty() {
                Err(NoteError::Rejected("a note must not be empty".into()))
            } else {
                Ok("nt_test".to_owned())
            }
        })
    }
}

fn default_account_id() -> String {
    "ca_test".to_owned()
}

fn empty_object() -> Value {
    json!({})
}

/// An HTTP request and its answer, or an SMTP relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    #[serde(default)]
    request: Option<ExpectedRequest>,
    #[serde(default)]
    response: Option<CannedResponse>,
    #[serde(default)]
    smtp: Option<ExpectedSmtp>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedRequest {
    method: String,
    url: String,
    /// Headers that must be present with exactly these values; others are ignored.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// A JSON body (compared as JSON) or a string (compared as text).
    #[serde(default)]
    body: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CannedResponse {
    #[serde(default = "ok_status")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// A JSON document, or a string sent as it is.
    #[serde(default)]
    body: Option<Value>,
}

fn ok_status() -> u16 {
    200
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedSmtp {
    #[serde(default)]
    sender: Option<String>,
    #[serde(default)]
    recipients: Option<Vec<String>>,
    /// Texts the raw message must contain (headers or body).
    #[serde(default)]
    contains: Vec<String>,
    /// The server's reply (default `250 2.0.0 OK`).
    #[serde(default)]
    reply: Option<String>,
    /// Refuse the message with this text instead (a permanent failure).
    #[serde(default)]
    refuse: Option<String>,
}

/// What the execution must end with.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Expect {
    /// The plugin's output, compared exactly.
    Output(Value),
    /// Fields the output object must have with these values (for outputs
    /// with a part that changes, such as a timestamp).
    OutputIncludes(serde_json::Map<String, Value>),
    /// The plugin's error: every field given must match (`kind`, `message`,
    /// `retry_after_ms`, `errors`).
    Error(serde_json::Map<String, Value>),
    /// A fault of the sandbox, by code (`trap`, `deadline_exceeded`, ...).
    Fault(String),
}

/// Answers the plugin's requests from the case, noting every mismatch.
#[derive(Debug)]
struct CaseResponder {
    expected: Mutex<VecDeque<Exchange>>,
    seen: Mutex<usize>,
    problems: Mutex<Vec<String>>,
}

impl CaseResponder {
    fn new(exchanges: Vec<Exchange>) -> Self {
        Self {
            expected: Mutex::new(exchanges.into()),
            seen: Mutex::new(0),
            problems: Mutex::new(Vec::new()),
        }
    }

    fn next(&self) -> (usize, Option<Exchange>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        *seen += 1;
        let next = self
            .expected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        (*seen, next)
    }

    fn problem(&self, text: String) {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text);
    }

    fn take_problems(&self) -> Vec<String> {
        let mut problems =
            std::mem::take(&mut *self.problems.lock().unwrap_or_else(|e| e.into_inner()));
        let seen = *self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let left = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        for (offset, exchange) in left.iter().enumerate() {
            let what = match (&exchange.request, &exchange.smtp) {
                (Some(request), _) => format!("{} {}", request.method, request.url),
                (None, Some(_)) => "an SMTP relay".to_owned(),
                (None, None) => "an exchange".to_owned(),
            };
            problems.push(format!(
                "exchange {}: expected {what}, but the plugin never sent it",
                seen + offset + 1
            ));
        }
        problems
    }
}

fn not_in_case() -> http::Response<bytes::Bytes> {
    let mut response = http::Response::new(bytes::Bytes::from_static(
        b"actionhost plugin test: this request is not the one the case expects",
    ));
    *response.status_mut() = http::StatusCode::NOT_IMPLEMENTED;
    response
}

impl Responder for CaseResponder {
    fn respond(&self, request: http::Request<bytes::Bytes>) -> http::Response<bytes::Bytes> {
        let (n, next) = self.next();
        let method = request.method().as_str().to_owned();
        let url = request.uri().to_string();
        let Some(exchange) = next else {
            self.problem(format!(
                "exchange {n}: unexpected request {method} {url}: the case expects no more"
            ));
            return not_in_case();
        };
        let (Some(expected), Some(canned)) = (exchange.request, exchange.response) else {
            self.problem(format!(
                "exchange {n}: expected an SMTP relay, got the request {method} {url}"
            ));
            return not_in_case();
        };
        if !expected.method.eq_ignore_ascii_case(&method) {
            self.problem(format!(
                "exchange {n}: method: expected {}, got {method}",
                expected.method
            ));
        }
        if expected.url != url {
            self.problem(format!(
                "exchange {n}: url:\n  expected {}\n  got      {url}",
                expected.url
            ));
        }
        for (name, want) in &expected.headers {
            // A credential the host injected is never printed: a fingerprint
            // tells two tokens apart without showing either.
            let got: Vec<String> = request
                .headers()
                .get_all(name.to_ascii_lowercase().as_str())
                .iter()
                .filter_map(|value| {
                    let text = value.to_str().ok()?;
                    Some(if value.is_sensitive() && text != want {
                        format!("<injected credential, sha256 {}>", fingerprint(text))
                    } else {
                        text.to_owned()
                    })
                })
                .collect();
            match got.as_slice() {
                [] => self.problem(format!(
                    "exchange {n}: header {name}: expected {want:?}, but it is missing"
                )),
                [one] if one == want => {}
                values => self.problem(format!(
                    "exchange {n}: header {name}: expected {want:?}, got {}",
                    values
                        .iter()
                        .map(|v| if v.starts_with("<injected") {
                            v.clone()
                        } else {
                            format!("{v:?}")
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        if let Some(want) = &expected.body {
            let body = request.body();
            match want {
                Value::String(text) => {
                    let got = String::from_utf8_lossy(body);
                    if *text != got {
                        self.problem(format!(
                            "exchange {n}: body differs:\n{}",
                            diff(text, &got)
                        ));
                    }
                }
                json => match serde_json::from_slice::<Value>(body) {
                    Ok(got) if got == *json => {}
                    Ok(got) => self.problem(format!(
                        "exchange {n}: body differs:\n{}",
                        diff(&pretty(json), &pretty(&got))
                    )),
                    Err(err) => self.problem(format!(
                        "exchange {n}: body: expected JSON, got text that does not parse ({err}):\n  {}",
                        String::from_utf8_lossy(body)
                    )),
                },
            }
        }
        canned_response(&canned).unwrap_or_else(|err| {
            self.problem(format!(
                "exchange {n}: the case's response is invalid: {err}"
            ));
            not_in_case()
        })
    }

    fn relay(&self, sender: &str, recipients: &[String], message: &[u8]) -> Result<String, String> {
        let (n, next) = self.next();
        let Some(smtp) = next.and_then(|exchange| exchange.smtp) else {
            self.problem(format!(
                "exchange {n}: unexpected SMTP relay from {sender} to {}",
                recipients.join(", ")
            ));
            return Err("this relay is not the one the case expects".into());
        };
        if let Some(want) = &smtp.sender
            && want != sender
        {
            self.problem(format!(
                "exchange {n}: smtp sender: expected {want:?}, got {sender:?}"
            ));
        }
        if let Some(want) = &smtp.recipients
            && want.as_slice() != recipients
        {
            self.problem(format!(
                "exchange {n}: smtp recipients: expected {want:?}, got {recipients:?}"
            ));
        }
        let text = String::from_utf8_lossy(message);
        for needle in &smtp.contains {
            if !text.contains(needle.as_str()) {
                self.problem(format!(
                    "exchange {n}: the message does not contain {needle:?}; it is:\n{}",
                    indent(&text)
                ));
            }
        }
        match smtp.refuse {
            Some(reason) => Err(reason),
            None => Ok(smtp.reply.unwrap_or_else(|| "250 2.0.0 OK".to_owned())),
        }
    }
}

/// The first 8 hex digits of the SHA-256 of `text`.
fn fingerprint(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..4])
}

fn canned_response(canned: &CannedResponse) -> Result<http::Response<bytes::Bytes>, http::Error> {
    let (body, is_json) = match &canned.body {
        None => (Vec::new(), false),
        Some(Value::String(text)) => (text.clone().into_bytes(), false),
        Some(json) => (json.to_string().into_bytes(), true),
    };
    let mut builder = http::Response::builder().status(canned.status);
    for (name, value) in &canned.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if is_json
        && !canned
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-type"))
    {
        builder = builder.header("content-type", "application/json");
    }
    builder.body(bytes::Bytes::from(body))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A unified diff, expected (`-`) against actual (`+`), indented.
fn diff(expected: &str, actual: &str) -> String {
    let diff = similar::TextDiff::from_lines(expected, actual);
    indent(
        &diff
            .unified_diff()
            .context_radius(3)
            .header("expected", "actual")
            .to_string(),
    )
}

/// Runs every case against the component; exit code 0 when all pass.
pub async fn run(
    file: &Path,
    cases: &[PathBuf],
    cache_dir: Option<PathBuf>,
) -> Result<ExitCode, CliError> {
    let bytes: Arc<[u8]> = std::fs::read(file)
        .map_err(|err| CliError::Usage(format!("cannot read {}: {err}", file.display())))?
        .into();
    if cases.is_empty() {
        return Err(CliError::Usage("give at least one --case FILE.json".into()));
    }
    let mut parsed = Vec::new();
    for path in cases {
        let text = std::fs::read_to_string(path)
            .map_err(|err| CliError::Usage(format!("cannot read {}: {err}", path.display())))?;
        let case: Case = serde_json::from_str(&text).map_err(|err| {
            CliError::Usage(format!("{}: not a valid case: {err}", path.display()))
        })?;
        parsed.push((path, case));
    }
    let mut config = RuntimeConfig::new(cache_dir.unwrap_or_else(default_cache_dir));
    // Reuse would carry one case's globals into the next.
    config.reuse.enabled = false;
    let runtime = Runtime::new(config).map_err(|err| CliError::Failed(err.to_string()))?;
    let mut failed = 0;
    for (path, case) in parsed {
        let label = case
            .name
            .clone()
            .unwrap_or_else(|| path.display().to_string());
        let started = Instant::now();
        let problems = run_case(&runtime, &bytes, case).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if problems.is_empty() {
            println!("ok      {label} ({ms:.1} ms)");
        } else {
            failed += 1;
            println!("FAILED  {label} ({})", path.display());
            for problem in problems {
                println!("  - {}", problem.replace('\n', "\n    "));
            }
        }
    }
    if failed == 0 {
        println!("all {} case(s) passed", cases.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} of {} case(s) failed", cases.len());
        Ok(ExitCode::FAILURE)
    }
}

async fn run_case(
    runtime: &Runtime,
    bytes: &Arc<[u8]>,
    case: Case,
) -> Result<Vec<String>, CliError> {
    let mut extra_hosts = Vec::new();
    for rule in &case.allow_hosts {
        extra_hosts.push(
            rule.parse::<HostRule>()
                .map_err(|err| CliError::Usage(format!("allow_hosts: {rule:?}: {err}")))?,
        );
    }
    match &case.expect {
        Expect::OutputIncludes(fields) | Expect::Error(fields) if fields.is_empty() => {
            return Err(CliError::Usage(
                "expect: name at least one field to check (an empty object would match anything)"
                    .into(),
            ));
        }
        _ => {}
    }
    for exchange in &case.exchanges {
        if exchange.smtp.is_some() == (exchange.request.is_some() || exchange.response.is_some())
            || exchange.request.is_some() != exchange.response.is_some()
        {
            return Err(CliError::Usage(
                "each exchange has either `request` and `response`, or `smtp`".into(),
            ));
        }
    }
    let responder = Arc::new(CaseResponder::new(case.exchanges.clone()));
    let options = PluginOptions {
        extra_hosts,
        responder: Some(responder.clone()),
        ..PluginOptions::default()
    };
    let plugin = runtime
        .load(bytes.clone(), options)
        .await
        .map_err(|err| CliError::Failed(format!("the component does not load: {err}")))?;
    let action_type = match (&case.action_type, plugin.manifest().action_types.as_slice()) {
        (Some(name), _) => name.clone(),
        (None, [only]) => only.name.clone(),
        (None, types) => {
            return Err(CliError::Usage(format!(
                "the plugin has several action types; name one with \"action_type\": {}",
                types
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let credentials = case.credentials.unwrap_or_default();
    credentials
        .check()
        .map_err(|err| CliError::Usage(format!("credentials: {err}")))?;

    let mut log = ExecutionLog::default();
    let actual = match plugin.check_params(&action_type, &case.params) {
        Err(errors) => invalid_input(&errors),
        Ok(()) => match plugin.validate(&action_type, &case.params).await {
            Err(fault) => json!({"fault": fault.kind.code(), "message": fault.kind.to_string()}),
            Ok(Err(errors)) => invalid_input(&errors),
            Ok(Ok(())) => {
                let request = ExecuteRequest {
                    action_id: "act_test".into(),
                    action_type: action_type.clone(),
                    params: case.params.clone(),
                    attempt: case.attempt.unwrap_or(1),
                    idempotency_key: "act_test".into(),
                    account: case.account.map(|account| AccountInfo {
                        id: account.id,
                        app_name: account
                            .app_name
                            .unwrap_or_else(|| plugin.manifest().name.clone()),
                        metadata: account.metadata,
                    }),
                    reuse_key: None,
                };
                let mut grant = Grant::from(credentials);
                if case.contact.is_some() || case.sender.is_some() {
                    grant.binding = Some(Arc::new(ContactBinding {
                        notes: case
                            .contact
                            .is_some()
                            .then(|| Arc::new(TestNotes) as Arc<dyn NoteWriter>),
                        contact: case.contact.map(|c| ContactInfo {
                            id: c.id,
                            email: c.email,
                            properties: c.properties,
                        }),
                        sender: case.sender.map(|s| SenderInfo {
                            id: s.id,
                            name: s.name,
                            email: s.email,
                        }),
                    }));
                }
                match plugin.execute(request, Arc::new(grant)).await {
                    Ok(execution) => {
                        log = execution.log;
                        match execution.outcome {
                            Ok(output) => json!({ "output": output }),
                            Err(error) => json!({ "error": error_json(&error) }),
                        }
                    }
                    Err(fault) => {
                        let result =
                            json!({"fault": fault.kind.code(), "message": fault.kind.to_string()});
                        log = fault.log;
                        result
                    }
                }
            }
        },
    };

    let mut problems = responder.take_problems();
    if let Some(problem) = compare(&case.expect, &actual) {
        problems.push(problem);
    }
    if !problems.is_empty() && !log.lines.is_empty() {
        problems.push(format!("plugin log:\n{}", indent(&log.tail(50))));
    }
    Ok(problems)
}

fn invalid_input(errors: &[crate::runtime::FieldError]) -> Value {
    json!({"error": {
        "kind": "invalid_input",
        "errors": errors.iter().map(|e| json!({"path": e.path, "message": e.message})).collect::<Vec<_>>(),
    }})
}

fn error_json(error: &ExecuteError) -> Value {
    match error {
        ExecuteError::InvalidInput(errors) => invalid_input(errors)["error"].clone(),
        ExecuteError::RateLimited {
            message,
            retry_after,
        } => json!({
            "kind": error.code(),
            "message": message,
            "retry_after_ms": retry_after.map(|d| d.as_millis() as u64),
        }),
        ExecuteError::Unauthorized(message)
        | ExecuteError::Transient(message)
        | ExecuteError::Permanent(message) => json!({"kind": error.code(), "message": message}),
    }
}

/// The difference between the expected and the actual result, if any.
fn compare(expect: &Expect, actual: &Value) -> Option<String> {
    let mismatch = |want: Value| {
        Some(format!(
            "result differs:\n{}",
            diff(&pretty(&want), &pretty(actual))
        ))
    };
    match expect {
        Expect::Output(want) if actual.get("output") == Some(want) => None,
        Expect::Output(want) => mismatch(json!({ "output": want })),
        Expect::OutputIncludes(want) => {
            let got = actual.get("output");
            if got.is_some()
                && want
                    .iter()
                    .all(|(key, value)| got.and_then(|o| o.get(key)) == Some(value))
            {
                return None;
            }
            let shown: serde_json::Map<String, Value> = want
                .keys()
                .map(|key| {
                    let value = got.and_then(|o| o.get(key)).cloned();
                    (key.clone(), value.unwrap_or(Value::Null))
                })
                .collect();
            let actual = match got {
                Some(_) => json!({ "output": shown }),
                None => actual.clone(),
            };
            Some(format!(
                "result differs:\n{}",
                diff(&pretty(&json!({ "output": want })), &pretty(&actual))
            ))
        }
        Expect::Error(want) => {
            let Some(got) = actual.get("error") else {
                return mismatch(json!({ "error": want }));
            };
            if want.iter().all(|(key, value)| got.get(key) == Some(value)) {
                return None;
            }
            // Show only the fields the case names, so the diff is about them.
            let shown: serde_json::Map<String, Value> = want
                .keys()
                .map(|key| (key.clone(), got.get(key).cloned().unwrap_or(Value::Null)))
                .collect();
            Some(format!(
                "result differs:\n{}",
                diff(
                    &pretty(&json!({ "error": want })),
                    &pretty(&json!({ "error": shown }))
                )
            ))
        }
        Expect::Fault(code) if actual.get("fault").and_then(Value::as_str) == Some(code) => None,
        Expect::Fault(code) => mismatch(json!({ "fault": code })),
    }
}
