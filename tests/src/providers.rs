//! Local stand-ins for Gmail, LinkedIn, HubSpot and Slack, a receiver of
//! signed webhooks, and an OAuth2 authorization server.
//!
//! One HTTP server on loopback answers the three providers' endpoints and
//! checks each request the way the real service would: the path, the bearer
//! token, the versioning headers, the body's shape. A malformed request gets
//! the provider's own kind of 4xx. On demand it answers 401, 429 with
//! `Retry-After`, 503, or slowly, to exercise the plugins' error mapping.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::server::Server;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;

/// The bearer token the stand-ins accept from the start.
pub const TOKEN: &str = "test-access-token-5f0c";
/// The secret the webhook receiver verifies signatures with.
pub const WEBHOOK_SECRET: &str = "whsec-test-3c61f0b2a9d84e7f";
/// Slack channel ids the Slack stand-in knows.
pub const SLACK_CHANNELS: &[&str] = &["C0123456789", "C0PUBLIC01"];
/// The OAuth2 client the authorization server knows.
pub const CLIENT_ID: &str = "actionhost-test-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "client-secret-b71e9a";

/// A scripted answer for the next request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 401 with the provider's error body.
    Unauthorized,
    /// 429 with `Retry-After: seconds`.
    RateLimited {
        /// The `Retry-After` value.
        retry_after_secs: u64,
    },
    /// 503.
    Unavailable,
    /// Wait, then answer normally.
    Slow(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

struct Shared {
    faults: VecDeque<Fault>,
    requests: Vec<Recorded>,
    hubspot_contacts: HashSet<String>,
    next_id: u64,
    /// Access tokens the provider APIs accept.
    accepted: HashSet<String>,
    oauth: OAuthServer,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            faults: VecDeque::new(),
            requests: Vec::new(),
            hubspot_contacts: HashSet::new(),
            next_id: 0,
            accepted: HashSet::from([TOKEN.to_owned()]),
            oauth: OAuthServer {
                token_lifetime_secs: 3600,
                ..OAuthServer::default()
            },
        }
    }
}

/// The OAuth2 authorization server's state.
#[derive(Default)]
struct OAuthServer {
    /// code → (PKCE challenge, redirect_uri).
    codes: HashMap<String, (String, String)>,
    refresh_tokens: HashSet<String>,
    issued: u64,
    refreshes: u64,
    token_lifetime_secs: u64,
    fail_refresh: Option<String>,
    /// Outages queued for the next token requests.
    faults: VecDeque<TokenFault>,
    /// Token requests, with a note of what was wrong if anything.
    log: Vec<String>,
}

/// An outage of the token endpoint, as opposed to a refusal of the grant.
#[derive(Debug, Clone, Copy)]
pub enum TokenFault {
    /// Waits this long, then answers as usual.
    Slow(Duration),
    /// 503 with a load balancer's HTML page.
    Unavailable,
    /// 200 with something that is not a token.
    Garbage,
}

/// The running stand-ins. Stopped on drop.
pub struct Providers {
    /// `http://127.0.0.1:PORT`: the base URL of all three.
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Providers {
    /// Starts the server on a free loopback port.
    pub fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                ready_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("report address");
                let app = Router::new().fallback(handle).with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let address = ready_rx.recv().expect("provider stand-in started");
        Self {
            base_url: format!("http://{address}"),
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Queues a fault for the next request.
    pub fn fail_next(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Marks a HubSpot contact as existing, so an upsert updates it.
    pub fn seed_hubspot_contact(&self, email: &str) {
        self.lock()
            .hubspot_contacts
            .insert(email.to_ascii_lowercase());
    }

    /// Makes the provider APIs accept `token`.
    pub fn accept_token(&self, token: &str) {
        self.lock().accepted.insert(token.to_owned());
    }

    /// Makes the provider APIs refuse `token` (as if it expired).
    pub fn revoke_token(&self, token: &str) {
        self.lock().accepted.remove(token);
    }

    /// The access tokens currently accepted, other than [`TOKEN`].
    pub fn issued_tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = self
            .lock()
            .accepted
            .iter()
            .filter(|t| *t != TOKEN)
            .cloned()
            .collect();
        tokens.sort();
        tokens
    }

    /// How many refresh-token grants the token endpoint answered.
    pub fn refreshes(&self) -> u64 {
        self.lock().oauth.refreshes
    }

    /// The lifetime (`expires_in`) of the tokens issued from now on.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.lock().oauth.token_lifetime_secs = secs;
    }

    /// Queues an outage for the next request to the token endpoint.
    pub fn fail_next_token(&self, fault: TokenFault) {
        self.lock().oauth.faults.push_back(fault);
    }

    /// Makes refresh grants fail with `invalid_grant` and this description.
    pub fn fail_refresh(&self, description: &str) {
        self.lock().oauth.fail_refresh = Some(description.to_owned());
    }

    /// What the token endpoint noted about each request.
    pub fn token_log(&self) -> Vec<String> {
        self.lock().oauth.log.clone()
    }

    /// The authorization URL of the stand-in.
    pub fn authorize_url(&self) -> String {
        format!("{}/oauth/authorize", self.base_url)
    }

    /// The token URL of the stand-in.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.base_url)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Providers {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(
    State(shared): State<Arc<Mutex<Shared>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    if uri.path().starts_with("/oauth/") {
        return oauth(&shared, &method, &uri, &recorded).await;
    }
    if uri.path().starts_with("/hooks/") {
        return webhook(&shared, &recorded);
    }
    let fault = {
        let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.requests.push(recorded.clone());
        shared.faults.pop_front()
    };
    match fault {
        Some(Fault::Unauthorized) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            );
        }
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT",
                "Rate limit exceeded",
            );
            response
                .headers_mut()
                .insert("retry-after", retry_after_secs.into());
            return response;
        }
        Some(Fault::Unavailable) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The service is unavailable.",
            );
        }
        Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }

    let authorized = recorded
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| {
            shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .accepted
                .contains(token)
        });
    if (method.as_str(), uri.path()) == ("POST", "/api/chat.postMessage") {
        return slack_post_message(&recorded, authorized);
    }
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "missing or invalid bearer token",
        );
    }
    match (method.as_str(), uri.path()) {
        ("POST", "/gmail/v1/users/me/messages/send") => gmail_send(&recorded),
        ("POST", "/rest/messages") => linkedin_message(&recorded),
        ("POST", "/crm/v3/objects/contacts/batch/upsert") => hubspot_upsert(&shared, &recorded),
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint"),
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": status.as_u16(), "status": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

/// Slack `chat.postMessage`: HTTP 200 with `{"ok": false, "error": code}`
/// for everything but rate limits and outages, as Slack does.
fn slack_post_message(request: &Recorded, authorized: bool) -> Response {
    let slack = |body: Value| (StatusCode::OK, axum::Json(body)).into_response();
    let fail = |code: &str| slack(json!({ "ok": false, "error": code }));
    if request.header("authorization").is_none() {
        return fail("not_authed");
    }
    if !authorized {
        return fail("invalid_auth");
    }
    if !request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return fail("invalid_arguments");
    }
    let body = request.json();
    let Some(channel) = body["channel"].as_str() else {
        return fail("channel_not_found");
    };
    let text = body["text"].as_str().unwrap_or_default();
    let blocks = body.get("blocks");
    if text.is_empty() && blocks.is_none() {
        return fail("no_text");
    }
    if let Some(blocks) = blocks {
        let valid = blocks
            .as_array()
            .is_some_and(|list| !list.is_empty() && list.iter().all(|b| b["type"].is_string()));
        if !valid {
            return fail("invalid_blocks");
        }
    }
    if text.len() > 40_000 {
        return fail("msg_too_long");
    }
    if channel == "C0ARCHIVED" {
        return fail("is_archived");
    }
    if !SLACK_CHANNELS.contains(&channel) {
        return fail("channel_not_found");
    }
    slack(json!({
        "ok": true,
        "channel": channel,
        "ts": "1700000000.000100",
        "message": { "type": "message", "text": text, "user": "U0BOT", "ts": "1700000000.000100" },
    }))
}

/// A webhook receiver verifying `x-webhook-signature: t=<unix>,v1=<hex>`, an
/// HMAC-SHA256 under [`WEBHOOK_SECRET`] of `"{t}." + body`, as a careful
/// receiver would: constant-time comparison, timestamps at most 5 minutes
/// old. `/hooks/status/{code}` answers `code` after verifying.
fn webhook(shared: &Arc<Mutex<Shared>>, request: &Recorded) -> Response {
    use hmac::Mac;
    let fault = {
        let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.requests.push(request.clone());
        shared.faults.pop_front()
    };
    let refuse = |status: StatusCode, why: &str| {
        (status, axum::Json(json!({ "error": why }))).into_response()
    };
    if !request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "json expected");
    }
    let Some(signature) = request.header("x-webhook-signature") else {
        return refuse(StatusCode::UNAUTHORIZED, "missing x-webhook-signature");
    };
    let mut timestamp = None;
    let mut mac_hex = None;
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<u64>().ok(),
            Some(("v1", value)) => mac_hex = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(mac_bytes)) = (timestamp, mac_hex) else {
        return refuse(StatusCode::UNAUTHORIZED, "malformed x-webhook-signature");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if now.abs_diff(timestamp) > 300 {
        return refuse(StatusCode::UNAUTHORIZED, "stale timestamp");
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes())
        .expect("any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&request.body);
    if mac.verify_slice(&mac_bytes).is_err() {
        return refuse(StatusCode::UNAUTHORIZED, "signature mismatch");
    }
    if request.header("idempotency-key").is_none_or(str::is_empty) {
        return refuse(StatusCode::BAD_REQUEST, "missing idempotency-key");
    }
    if request.json().get("payload").is_none() {
        return refuse(StatusCode::BAD_REQUEST, "body has no payload");
    }
    match fault {
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut response = refuse(StatusCode::TOO_MANY_REQUESTS, "slow down");
            response
                .headers_mut()
                .insert("retry-after", retry_after_secs.into());
            return response;
        }
        Some(Fault::Unavailable) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "down"),
        Some(Fault::Unauthorized) => return refuse(StatusCode::UNAUTHORIZED, "revoked"),
        Some(Fault::Slow(_)) | None => {}
    }
    let status = request
        .path
        .strip_prefix("/hooks/status/")
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::NO_CONTENT);
    status.into_response()
}

/// Gmail `users.messages.send`: `{"raw": base64url(RFC 2822)}`.
fn gmail_send(request: &Recorded) -> Response {
    let body = request.json();
    let Some(raw) = body["raw"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "'raw' RFC822 payload message string required",
        );
    };
    let Ok(message) = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(raw))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Invalid value for ByteString",
        );
    };
    let text = String::from_utf8_lossy(&message);
    let has = |header: &str| {
        text.lines()
            .any(|l| l.to_ascii_lowercase().starts_with(header))
    };
    if !has("to:") && !has("cc:") && !has("bcc:") {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Recipient address required",
        );
    }
    (StatusCode::OK, axum::Json(json!({ "id": "18c2f0a9d1e4b7a1", "threadId": "18c2f0a9d1e4b7a1", "labelIds": ["SENT"] })))
        .into_response()
}

/// LinkedIn `POST /rest/messages`, versioned API.
fn linkedin_message(request: &Recorded) -> Response {
    let version_ok = request
        .header("linkedin-version")
        .is_some_and(|v| v.len() == 6 && v.chars().all(|c| c.is_ascii_digit()));
    if !version_ok {
        return error(
            StatusCode::BAD_REQUEST,
            "VERSION_MISSING",
            "A version must be present. Please specify a version by adding the LinkedIn-Version header.",
        );
    }
    if request.header("x-restli-protocol-version") != Some("2.0.0") {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PROTOCOL",
            "X-Restli-Protocol-Version 2.0.0 is required",
        );
    }
    let body = request.json();
    let recipients_ok = body["recipients"].as_array().is_some_and(|list| {
        !list.is_empty()
            && list
                .iter()
                .all(|r| r.as_str().is_some_and(|u| u.starts_with("urn:li:person:")))
    });
    if !recipients_ok || !body["body"].is_string() || body["messageType"] != "MEMBER_TO_MEMBER" {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_BODY",
            "recipients, body and messageType are required",
        );
    }
    let mut response = StatusCode::CREATED.into_response();
    response.headers_mut().insert(
        "x-restli-id",
        "urn:li:message:2-MTcwMDAwMDAwMA".parse().expect("header"),
    );
    response
}

/// HubSpot `batch/upsert` of contacts by email.
fn hubspot_upsert(shared: &Arc<Mutex<Shared>>, request: &Recorded) -> Response {
    let body = request.json();
    let Some(inputs) = body["inputs"].as_array() else {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Invalid input JSON: inputs is required",
        );
    };
    let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
    let mut results = Vec::new();
    for input in inputs {
        let email = input["id"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if input["idProperty"] != "email"
            || email.is_empty()
            || input["properties"]["email"]
                .as_str()
                .map(str::to_ascii_lowercase)
                != Some(email.clone())
        {
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "each input needs idProperty email, an id and properties.email",
            );
        }
        let new = shared.hubspot_contacts.insert(email.clone());
        shared.next_id += 1;
        results.push(json!({ "id": (1000 + shared.next_id).to_string(), "new": new, "properties": input["properties"] }));
    }
    (StatusCode::OK, axum::Json(json!({ "status": "COMPLETE", "results": results, "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:01Z" })))
        .into_response()
}

fn form(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// The authorization server: `GET /oauth/authorize` consents at once and
/// redirects with a code; `POST /oauth/token` checks the client's basic
/// auth, the code, the redirect URI and the PKCE verifier (S256), or the
/// refresh token, the way RFC 6749 and RFC 7636 say.
async fn oauth(
    shared: &Arc<Mutex<Shared>>,
    method: &Method,
    uri: &Uri,
    request: &Recorded,
) -> Response {
    if (method.as_str(), uri.path()) == ("POST", "/oauth/token") {
        let fault = {
            let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
            shared.oauth.faults.pop_front().inspect(|fault| {
                shared.oauth.log.push(format!("outage: {fault:?}"));
            })
        };
        match fault {
            Some(TokenFault::Slow(delay)) => tokio::time::sleep(delay).await,
            Some(TokenFault::Unavailable) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("content-type", "text/html")],
                    "<html><body>503 Service Temporarily Unavailable</body></html>",
                )
                    .into_response();
            }
            Some(TokenFault::Garbage) => {
                return (
                    StatusCode::OK,
                    [("content-type", "application/json")],
                    "{\"status\": \"ok\", \"maintenance\": tru",
                )
                    .into_response();
            }
            None => {}
        }
    }
    let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
    match (method.as_str(), uri.path()) {
        ("GET", "/oauth/authorize") => {
            let query = form(uri.query().unwrap_or_default());
            let get = |k: &str| query.get(k).cloned().unwrap_or_default();
            if get("response_type") != "code" || get("client_id") != CLIENT_ID {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "response_type code and a known client_id are required",
                );
            }
            if get("code_challenge_method") != "S256" || get("code_challenge").len() < 43 {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "PKCE with S256 is required",
                );
            }
            if get("state").is_empty() || get("redirect_uri").is_empty() {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "state and redirect_uri are required",
                );
            }
            shared.oauth.issued += 1;
            let code = format!("code-{}", shared.oauth.issued);
            shared
                .oauth
                .codes
                .insert(code.clone(), (get("code_challenge"), get("redirect_uri")));
            let mut location = url::Url::parse(&get("redirect_uri")).expect("redirect uri");
            location
                .query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &get("state"));
            let mut response = StatusCode::FOUND.into_response();
            response
                .headers_mut()
                .insert("location", location.as_str().parse().expect("location"));
            response
        }
        ("POST", "/oauth/token") => {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
            );
            if request.header("authorization") != Some(expected.as_str()) {
                shared.oauth.log.push("bad client authentication".into());
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client authentication failed",
                );
            }
            let params = form(&String::from_utf8_lossy(&request.body));
            let get = |k: &str| params.get(k).cloned().unwrap_or_default();
            match get("grant_type").as_str() {
                "authorization_code" => {
                    let Some((challenge, redirect_uri)) = shared.oauth.codes.remove(&get("code"))
                    else {
                        shared.oauth.log.push("unknown code".into());
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "unknown or used code",
                        );
                    };
                    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(sha2::Sha256::digest(get("code_verifier").as_bytes()));
                    if computed != challenge {
                        shared.oauth.log.push("pkce mismatch".into());
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "code_verifier does not match the challenge",
                        );
                    }
                    if get("redirect_uri") != redirect_uri {
                        shared.oauth.log.push("redirect mismatch".into());
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "redirect_uri differs",
                        );
                    }
                    shared.oauth.log.push("code exchanged".into());
                    issue(&mut shared)
                }
                "refresh_token" => {
                    if let Some(description) = shared.oauth.fail_refresh.clone() {
                        shared.oauth.log.push("refresh refused".into());
                        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &description);
                    }
                    if !shared.oauth.refresh_tokens.contains(&get("refresh_token")) {
                        shared.oauth.log.push("unknown refresh token".into());
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "unknown refresh token",
                        );
                    }
                    shared.oauth.refreshes += 1;
                    shared.oauth.log.push("refreshed".into());
                    issue(&mut shared)
                }
                other => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    &format!("grant_type {other:?}"),
                ),
            }
        }
        _ => oauth_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

fn issue(shared: &mut Shared) -> Response {
    shared.oauth.issued += 1;
    let access = format!("oauth-access-{}-9d2c", shared.oauth.issued);
    let refresh = format!("oauth-refresh-{}-41aa", shared.oauth.issued);
    shared.accepted.insert(access.clone());
    shared.oauth.refresh_tokens.insert(refresh.clone());
    (
        StatusCode::OK,
        axum::Json(json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": shared.oauth.token_lifetime_secs,
            "refresh_token": refresh,
        })),
    )
        .into_response()
}

/// A known credential in `text`, for the leak checks.
pub fn contains_secret(text: &str, secrets: &[&str]) -> Option<String> {
    secrets
        .iter()
        .find(|secret| text.contains(*secret))
        .map(|s| (*s).to_owned())
}

/// An OAuth2 auth config for `crm-sync` against the stand-in's authorize
/// and token endpoints; returns its id.
pub fn oauth_config(server: &Server, providers: &Providers) -> String {
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({
            "appName": "crm-sync",
            "scheme": { "type": "oauth2", "client_id": CLIENT_ID, "authorize_url": providers.authorize_url(), "token_url": providers.token_url(), "scopes": ["crm.objects.contacts.write"] },
            "clientSecret": CLIENT_SECRET,
            "hosts": ["http://127.0.0.1:*"],
        }),
    );
    config.ok()["id"].as_str().expect("id").to_owned()
}

/// Connects an account through the consent flow and returns its id.
pub fn oauth_connect(
    server: &Server,
    providers: &Providers,
    config_id: &str,
    entity: &str,
) -> String {
    let started = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "entityId": entity, "metadata": { "base_url": providers.base_url } }),
    );
    let started = started.ok().clone();
    assert_eq!(started["connectionStatus"], "initiated");
    let consent = started["redirectUrl"].as_str().expect("redirectUrl");
    assert!(consent.contains("code_challenge="), "PKCE: {consent}");
    assert!(consent.contains("state="), "state: {consent}");
    // The user consents at the provider, which redirects to our callback.
    let redirect = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(consent)
        .send()
        .expect("authorize");
    assert_eq!(redirect.status().as_u16(), 302);
    let callback = redirect.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(
        callback.starts_with(&format!("{}/api/v1/auth/callback?", server.url)),
        "{callback}"
    );
    let done = server.send(server.request("GET", callback.trim_start_matches(&server.url)));
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.json["connectionStatus"], "active");
    assert_eq!(
        providers.token_log().last().map(String::as_str),
        Some("code exchanged")
    );
    started["connectedAccountId"]
        .as_str()
        .expect("id")
        .to_owned()
}
