//! `actionhost actions list|get|approve|reject|cancel`: the Actions API of
//! a running server, from the command line. Tables by default, the API's
//! JSON with `--json`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};

use super::CliError;

#[derive(Debug, Subcommand)]
pub enum ActionsCommand {
    /// List actions, newest first.
    List(ListArgs),
    /// Show one action: status, params, history and executions.
    Get(IdArgs),
    /// Approve an action waiting for approval.
    Approve(ReviewArgs),
    /// Reject an action waiting for approval.
    Reject(ReviewArgs),
    /// Cancel an action that has not run.
    Cancel(ReviewArgs),
}

/// Where the server is and how to authenticate.
#[derive(Debug, Args)]
pub struct Remote {
    /// The server's URL.
    #[arg(long, env = "ACTIONHOST_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An API key (`ahk_…`) with the scopes the command needs.
    #[arg(long, env = "ACTIONHOST_KEY", hide_env_values = true)]
    key: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    remote: Remote,
    /// Only this status (`pending_approval`, `scheduled`, …).
    #[arg(long)]
    status: Option<String>,
    /// Only this action type.
    #[arg(long = "type", value_name = "TYPE")]
    action_type: Option<String>,
    /// Only this identity.
    #[arg(long)]
    identity_id: Option<String>,
    /// Page size, 1–100.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Results to skip.
    #[arg(long, default_value_t = 0)]
    skip: u32,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    #[command(flatten)]
    remote: Remote,
    /// The action id (`act_…`).
    id: String,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    remote: Remote,
    /// The action id (`act_…`).
    id: String,
    /// A comment kept in the action's history.
    #[arg(long)]
    comment: Option<String>,
}

impl ActionsCommand {
    pub async fn run(self) -> Result<ExitCode, CliError> {
        match self {
            Self::List(args) => {
                let mut query = vec![
                    format!("limit={}", args.limit),
                    format!("skip={}", args.skip),
                ];
                for (name, value) in [
                    ("status", &args.status),
                    ("type", &args.action_type),
                    ("identity_id", &args.identity_id),
                ] {
                    if let Some(value) = value {
                        query.push(format!("{name}={}", encode(value)));
                    }
                }
                let answer = call(
                    &args.remote,
                    "GET",
                    &format!("/v1/actions?{}", query.join("&")),
                    None,
                )
                .await?;
                print(&args.remote, &answer, list_table);
            }
            Self::Get(args) => {
                let answer = call(
                    &args.remote,
                    "GET",
                    &format!("/v1/actions/{}", encode(&args.id)),
                    None,
                )
                .await?;
                print(&args.remote, &answer, detail_table);
            }
            Self::Approve(args) => review(&args, "approve").await?,
            Self::Reject(args) => review(&args, "reject").await?,
            Self::Cancel(args) => {
                let answer = call(
                    &args.remote,
                    "POST",
                    &format!("/v1/actions/{}/cancel", encode(&args.id)),
                    Some(json!({ "comment": args.comment })),
                )
                .await?;
                print(&args.remote, &answer, detail_table);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

async fn review(args: &ReviewArgs, decision: &str) -> Result<(), CliError> {
    let answer = call(
        &args.remote,
        "POST",
        &format!("/v1/actions/{}/approve", encode(&args.id)),
        Some(json!({ "action": decision, "comment": args.comment })),
    )
    .await?;
    print(&args.remote, &answer, detail_table);
    Ok(())
}

pub(super) fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// One API call; a non-2xx answer is an error carrying the server's message.
async fn call(
    remote: &Remote,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, CliError> {
    let body = body
        .map(|body| serde_json::to_vec(&body).map(|bytes| (bytes, "application/json")))
        .transpose()
        .map_err(|err| CliError::Failed(err.to_string()))?;
    call_raw(remote, method, path, body).await
}

/// [`call`] with a body of any content type.
pub(super) async fn call_raw(
    remote: &Remote,
    method: &str,
    path: &str,
    body: Option<(Vec<u8>, &str)>,
) -> Result<Value, CliError> {
    let url = format!("{}{path}", remote.url.trim_end_matches('/'));
    let mut request = http::Request::builder()
        .method(method)
        .uri(&url)
        .header("authorization", format!("Bearer {}", remote.key))
        .header("accept", "application/json");
    let bytes = match body {
        Some((bytes, content_type)) => {
            request = request.header("content-type", content_type);
            bytes
        }
        None => Vec::new(),
    };
    let request = request
        .body(bytes)
        .map_err(|err| CliError::Usage(format!("invalid --url {url:?}: {err}")))?;
    let response = crate::runtime::fetch(request, Duration::from_secs(60))
        .await
        .map_err(|err| {
            CliError::Failed(format!("cannot reach the server at {}: {err}", remote.url))
        })?;
    let status = response.status();
    let body: Value = serde_json::from_slice(response.body()).unwrap_or_else(
        |_| json!({ "error": String::from_utf8_lossy(response.body()).into_owned() }),
    );
    if status.is_success() {
        return Ok(body);
    }
    let message = body["error"].as_str().unwrap_or("no message").to_owned();
    let code = body["errorCode"].as_str().unwrap_or("error");
    Err(CliError::Failed(format!(
        "{} {code}: {message}",
        status.as_u16()
    )))
}

pub(super) fn print(remote: &Remote, answer: &Value, table: fn(&Value) -> String) {
    if remote.json {
        println!(
            "{}",
            serde_json::to_string_pretty(answer).unwrap_or_default()
        );
    } else {
        println!("{}", table(answer));
    }
}

pub(super) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    table
}

fn list_table(answer: &Value) -> String {
    let mut table = new_table(&["ID", "TYPE", "STATUS", "IDENTITY", "DUE", "SUMMARY"]);
    for action in answer["actions"].as_array().into_iter().flatten() {
        table.add_row(vec![
            text(&action["id"]),
            text(&action["type"]),
            text(&action["status"]),
            text(&action["identity_id"]),
            text(&action["due_at"]),
            text(&action["summary"]),
        ]);
    }
    let pagination = &answer["pagination"];
    format!(
        "{table}\n{} of {} (skip {})",
        answer["actions"].as_array().map_or(0, Vec::len),
        text(&pagination["total_items"]),
        text(&pagination["skip"])
    )
}

fn detail_table(answer: &Value) -> String {
    let action = &answer["action"];
    let mut table = new_table(&["FIELD", "VALUE"]);
    for field in [
        "id",
        "type",
        "status",
        "summary",
        "identity_id",
        "revision",
        "attempts",
        "due_at",
        "created_at",
        "updated_at",
    ] {
        table.add_row(vec![field.to_owned(), text(&action[field])]);
    }
    table.add_row(vec!["params".to_owned(), text(&action["params"])]);
    if !action["last_error"].is_null() {
        table.add_row(vec![
            "last_error".to_owned(),
            format!(
                "{}: {}",
                text(&action["last_error"]["code"]),
                text(&action["last_error"]["message"])
            ),
        ]);
    }
    let mut history = new_table(&["AT", "TRANSITION", "FROM", "TO", "ACTOR", "COMMENT"]);
    for entry in action["history"].as_array().into_iter().flatten() {
        let actor = &entry["actor"];
        let who = match actor["type"].as_str() {
            Some("system") => text(&actor["name"]),
            Some("user") => text(&actor["email"]),
            _ => text(&actor["key_id"]),
        };
        history.add_row(vec![
            text(&entry["at"]),
            text(&entry["transition"]),
            text(&entry["from"]),
            text(&entry["to"]),
            who,
            text(&entry["comment"]),
        ]);
    }
    let next: Vec<String> = action["transitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| text(&t["id"]))
        .collect();
    format!(
        "{table}\nhistory:\n{history}\nallowed now: {}",
        if next.is_empty() {
            "nothing".to_owned()
        } else {
            next.join(", ")
        }
    )
}
