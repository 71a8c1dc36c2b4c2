//! The console at `/console`: a small app for reviewers and operators,
//! served from assets embedded in the binary, over the same API as every
//! client.
//!
//! - **Sign-in.** `POST /console/session` takes an API key once and sets an
//!   HttpOnly, `SameSite=Strict` session cookie ([`SESSION_COOKIE`]); the
//!   page never holds the key. The session acts with the key's scopes and
//!   ends at sign-out (`DELETE /console/session`), at its expiry (`[console]
//!   session_ttl`), or when the key is revoked.
//! - **The API with a session.** [`super::Authorized`] accepts the cookie
//!   where no key header is sent; every request with another method than
//!   GET, HEAD or OPTIONS must also carry the session's token in
//!   `X-CSRF-Token`, or it is refused with 403.
//! - **The page's safety.** Every console response carries a
//!   Content-Security-Policy that allows scripts, styles and requests from
//!   this server only and no inline script; the app renders every value as
//!   text (`textContent`), never as markup.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::tenancy::{ConsoleSession, Principal, key_hash};

/// Sign-in attempts a client address may make: [`SIGN_IN_BURST`] at once,
/// then one more every [`SIGN_IN_EVERY`]. Behind a proxy every client
/// shares the proxy's address (and its limit).
pub const SIGN_IN_BURST: u32 = 10;
/// See [`SIGN_IN_BURST`].
pub const SIGN_IN_EVERY: std::time::Duration = std::time::Duration::from_secs(6);

/// Console sign-in attempts per client address: a guessed key costs its
/// guesser time, whatever the answer.
pub struct SignInLimiter(governor::DefaultKeyedRateLimiter<std::net::IpAddr>);

impl SignInLimiter {
    /// The limiter of [`SIGN_IN_BURST`] and [`SIGN_IN_EVERY`].
    pub fn new() -> Self {
        let quota = governor::Quota::with_period(SIGN_IN_EVERY)
            .unwrap_or_else(|| unreachable!("a non-zero period"))
            .allow_burst(
                std::num::NonZeroU32::new(SIGN_IN_BURST).unwrap_or(std::num::NonZeroU32::MIN),
            );
        Self(governor::RateLimiter::keyed(quota))
    }

    /// `Err(wait)` when `client` has used its attempts.
    fn check(&self, client: std::net::IpAddr) -> Result<(), std::time::Duration> {
        use governor::clock::Clock as _;
        self.0.check_key(&client).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }
}

impl Default for SignInLimiter {
    fn default() -> Self {
        Self::new()
    }
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "actionhost_session";

/// The console's Content-Security-Policy: nothing but this server's own
/// scripts, styles and API, no inline code, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../../console/index.html");

/// The app's files, served under `/console/`: name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JAVASCRIPT, include_str!("../../console/app.js")),
    ("core.js", JAVASCRIPT, include_str!("../../console/core.js")),
    (
        "review.js",
        JAVASCRIPT,
        include_str!("../../console/review.js"),
    ),
    (
        "manage.js",
        JAVASCRIPT,
        include_str!("../../console/manage.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../console/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../console/favicon.svg"),
    ),
];

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The console's routes.
pub fn router() -> axum::Router<AppState> {
    let mut router = axum::Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route(
            "/console/session",
            get(session_get).post(session_open).delete(session_close),
        );
    for &(name, content_type, body) in ASSETS {
        router = router.route(
            &format!("/console/{name}"),
            get(move || async move { asset(content_type, body) }),
        );
    }
    router
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    protect(headers);
    response
}

/// The headers every console response carries.
fn protect(headers: &mut HeaderMap) {
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `POST /console/session`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    api_key: String,
}

/// What the page knows of its session.
#[derive(Serialize)]
struct SessionView {
    status: &'static str,
    csrf_token: String,
    expires_at: String,
    tenant_id: String,
    key_id: String,
    key_name: String,
    user_email: String,
    scopes: Vec<String>,
}

impl SessionView {
    fn of(session: &ConsoleSession, principal: &Principal) -> Self {
        Self {
            status: "success",
            csrf_token: session.csrf_token.clone(),
            expires_at: session.expires_at(),
            tenant_id: session.tenant_id.clone(),
            key_id: principal.key.id.clone(),
            key_name: principal.key.name.clone(),
            user_email: principal.user.email.clone(),
            scopes: principal
                .key
                .scopes
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Signs in: exchanges an API key for a session cookie.
async fn session_open(
    State(state): State<AppState>,
    client: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if let Some(axum::Extension(axum::extract::ConnectInfo(address))) = client
        && let Err(wait) = state.sign_ins.check(address.ip())
    {
        let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        tracing::warn!(client = %address.ip(), "console sign-in attempts limited");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many sign-in attempts from this address; try again in {seconds} s"),
        )
        .with_retry_after(seconds));
    }
    let sign_in: SignIn = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid("send {\"api_key\": \"…\"}: the API key to sign in with"))?;
    let key = sign_in.api_key.trim();
    let Some(principal) = state.tenancy.authenticate(key)? else {
        return Err(unauthorized("the api key is invalid or revoked"));
    };
    let ttl = state.settings.console_session_ttl;
    let (secret, session) = state.tenancy.open_session(&principal, ttl)?;
    let mut response = (
        StatusCode::CREATED,
        axum::Json(SessionView::of(&session, &principal)),
    )
        .into_response();
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        ttl.as_secs(),
        if state.settings.public_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        }
    );
    let headers = response.headers_mut();
    headers.insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::internal("cookie"))?,
    );
    protect(headers);
    tracing::info!(key = %principal.key.id, "console session opened");
    Ok(response)
}

/// The current session, for a page that was reloaded.
async fn session_get(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    let (session, principal) = current(&parts, &state)?;
    let mut response = axum::Json(SessionView::of(&session, &principal)).into_response();
    protect(response.headers_mut());
    Ok(response)
}

/// Signs out: ends the session on the server and clears the cookie.
async fn session_close(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    let secret = session_secret(&parts.headers)
        .ok_or_else(|| unauthorized("no console session: sign in first"))?;
    current(&parts, &state)?;
    state.tenancy.close_session(secret)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        ))
        .map_err(|_| ApiError::internal("cookie"))?,
    );
    protect(headers);
    Ok(response)
}

/// The session cookie's secret, if the request has one.
pub(super) fn session_secret(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, secret)| secret.trim())
        .filter(|secret| !secret.is_empty())
}

/// The live session of the request, checking its CSRF token unless the
/// method is safe: 401 without one, 403 without the token.
pub(super) fn current(
    parts: &Parts,
    state: &AppState,
) -> Result<(ConsoleSession, Principal), ApiError> {
    let secret = session_secret(&parts.headers)
        .ok_or_else(|| unauthorized("no console session: sign in first"))?;
    let Some((session, principal)) = state.tenancy.session(secret)? else {
        return Err(unauthorized(
            "the console session has ended (signed out, expired, or its key revoked): sign in again",
        ));
    };
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = parts
            .headers
            .get("x-csrf-token")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        // Compared as hashes: the time taken says nothing of the token.
        if key_hash(sent) != key_hash(&session.csrf_token) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a change made with a console session must carry the session's X-CSRF-Token header",
            ));
        }
    }
    Ok((session, principal))
}
