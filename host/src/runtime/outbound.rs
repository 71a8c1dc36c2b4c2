//! Outbound HTTP from plugins: the allow-list, the address check, credential
//! injection, and the connection itself.
//!
//! Every `wasi:http/outgoing-handler.handle` call of a guest arrives at
//! [`OutboundHooks::send_request`]. In order, it:
//!
//! 1. refuses a scheme, host or port that no rule of the plugin's allow-list
//!    matches, before any DNS lookup or connection;
//! 2. resolves the host and refuses private, loopback, link-local and other
//!    non-public addresses unless the operator allowed them, then connects to
//!    the very address it checked (no second lookup an attacker could race);
//! 3. adds the connected account's credentials, replacing whatever the guest
//!    put in the same header;
//! 4. sends the request with hyper over TCP, or TLS with the webpki roots.
//!
//! The execution log gets one line per request with the method, the
//! destination and the status, never a header or a query string.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::credentials::{Credentials, Grant, TokenError, TokenSource};
use super::log::{LogLevel, LogSink, LogSource, OutboundCall};
use super::types::{HostRule, default_port};

/// The network policy of one execution.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    /// The destinations allowed: the manifest's and the operator's.
    pub rules: Arc<[HostRule]>,
    /// Whether private, loopback and link-local addresses may be reached.
    pub allow_private_network: bool,
    /// How many requests one execution may make.
    pub max_requests: u32,
    /// Timeout for DNS plus connect (and TLS), unless the guest asks for less.
    pub connect_timeout: Duration,
    /// Largest request body a plugin may send.
    pub max_body_bytes: usize,
    /// Answers requests instead of the network (`actionhost plugin test`).
    pub responder: Option<Arc<dyn Responder>>,
}

/// Stands in for the network and the SMTP relay: the plugin test harness
/// answers each request from its case file. Requests reach it after the
/// allow-list check and with the credentials injected, exactly as they
/// would leave the host.
pub trait Responder: Send + Sync + std::fmt::Debug {
    /// Answers an HTTP request (absolute URI, buffered body).
    fn respond(&self, request: http::Request<bytes::Bytes>) -> http::Response<bytes::Bytes>;

    /// Answers an SMTP relay: the server's final reply, or why it refused.
    fn relay(&self, sender: &str, recipients: &[String], message: &[u8]) -> Result<String, String>;
}

/// What one execution may still send: HTTP requests and SMTP messages
/// together, `max_outbound_requests` in all.
#[derive(Debug, Clone)]
pub struct Budget {
    used: Arc<std::sync::atomic::AtomicU32>,
    max: u32,
}

impl Budget {
    /// A budget of `max` sends.
    pub fn new(max: u32) -> Self {
        Self {
            used: Arc::new(std::sync::atomic::AtomicU32::new(0)),
            max,
        }
    }

    /// Takes one send, or says the budget is spent.
    pub fn take(&self) -> bool {
        self.used.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < self.max
    }

    /// The budget's size.
    pub fn max(&self) -> u32 {
        self.max
    }
}

/// The `wasi:http` hooks of one execution's store.
pub struct OutboundHooks {
    policy: OutboundPolicy,
    grant: Arc<Grant>,
    log: LogSink,
    budget: Budget,
}

impl OutboundHooks {
    /// Hooks enforcing `policy` and `budget`, injecting the `grant`'s
    /// credentials, noting in `log`.
    pub fn new(policy: OutboundPolicy, grant: Arc<Grant>, log: LogSink, budget: Budget) -> Self {
        Self {
            policy,
            grant,
            log,
            budget,
        }
    }
}

type Worker = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type ResponseFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, Worker), HttpError>> + Send>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let over_budget = !self.budget.take();
        let policy = self.policy.clone();
        let grant = self.grant.clone();
        let log = self.log.clone();
        Box::new(async move {
            if over_budget {
                log.push(
                    LogLevel::Error,
                    LogSource::Host,
                    &format!(
                        "outbound request refused: more than {} requests and messages in one execution",
                        policy.max_requests
                    ),
                );
                return Err(HttpError::ConnectionLimitReached);
            }
            send(request, options, &policy, &grant, &log).await
        })
    }
}

/// Where a request goes, from its URI.
struct Destination {
    scheme: String,
    host: String,
    port: u16,
}

impl Destination {
    fn of(uri: &http::Uri) -> Result<Self, HttpError> {
        let scheme = uri
            .scheme_str()
            .ok_or(HttpError::HttpRequestUriInvalid)?
            .to_ascii_lowercase();
        let host = uri.host().ok_or(HttpError::HttpRequestUriInvalid)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = match uri.port_u16() {
            Some(port) => port,
            None => default_port(&scheme).ok_or(HttpError::HttpRequestUriInvalid)?,
        };
        Ok(Self { scheme, host, port })
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Everything needed to deliver one request to one checked address.
struct Route<'a> {
    destination: Destination,
    address: SocketAddr,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    log: &'a LogSink,
}

async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    policy: &OutboundPolicy,
    grant: &Grant,
    log: &LogSink,
) -> Result<(http::Response<WasiBody>, Worker), HttpError> {
    let destination = Destination::of(request.uri())?;
    if !policy
        .rules
        .iter()
        .any(|rule| rule.matches(&destination.scheme, &destination.host, destination.port))
    {
        let allowed: Vec<String> = policy.rules.iter().map(ToString::to_string).collect();
        log.push(
            LogLevel::Error,
            LogSource::Host,
            &format!(
                "outbound request to {destination} refused: not on the plugin's allow-list ({})",
                if allowed.is_empty() {
                    "empty".to_owned()
                } else {
                    allowed.join(", ")
                }
            ),
        );
        return Err(HttpError::HttpRequestDenied);
    }
    if let Some(responder) = &policy.responder {
        return replay(
            request,
            responder.as_ref(),
            &destination,
            policy,
            grant,
            log,
        )
        .await;
    }

    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(policy.connect_timeout)
        .min(policy.connect_timeout);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(Duration::from_secs(600));
    let address = resolve(
        &destination,
        policy.allow_private_network,
        connect_timeout,
        log,
    )
    .await?;
    let covered = grant.covers(&destination.scheme, &destination.host, destination.port);
    let route = Route {
        destination,
        address,
        connect_timeout,
        first_byte_timeout,
        log,
    };
    let max_body = policy.max_body_bytes;
    let credentials = match &grant.credentials {
        Credentials::OAuth2(source) if covered => {
            return send_refreshable(request, source.as_ref(), &route, max_body).await;
        }
        credentials if covered => credentials,
        _ => &Credentials::None,
    };
    inject(&mut request, credentials)?;
    strip_to_origin_form(&mut request);
    let request = request.map(|body| {
        http_body_util::Limited::new(body, max_body)
            .map_err(move |_| HttpError::HttpRequestBodySize(Some(max_body as u64)))
            .boxed_unsync()
    });
    deliver(request, &route).await
}

/// Hands an allowed request, credentials injected, to the responder.
async fn replay(
    mut request: http::Request<WasiBody>,
    responder: &dyn Responder,
    destination: &Destination,
    policy: &OutboundPolicy,
    grant: &Grant,
    log: &LogSink,
) -> Result<(http::Response<WasiBody>, Worker), HttpError> {
    let covered = grant.covers(&destination.scheme, &destination.host, destination.port);
    match &grant.credentials {
        Credentials::OAuth2(source) if covered => {
            let token = source
                .current()
                .await
                .map_err(|_| HttpError::ConfigurationError)?;
            inject(&mut request, &Credentials::Bearer { token })?;
        }
        credentials if covered => inject(&mut request, credentials)?,
        _ => {}
    }
    let (parts, body) = request.into_parts();
    let max_body = policy.max_body_bytes;
    let body = match http_body_util::Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(HttpError::HttpRequestBodySize(Some(max_body as u64))),
    };
    let method = parts.method.to_string();
    let path = parts.uri.path().to_owned();
    let response = responder.respond(http::Request::from_parts(parts, body));
    log.record_call(OutboundCall {
        method,
        host: destination.host.clone(),
        path,
        status: Some(response.status().as_u16()),
        duration_ms: 0,
        sent: true,
        settled: true,
    });
    let response = response.map(|body| {
        http_body_util::Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}

/// Sends a request with an OAuth2 token; on a 401, refreshes the token and
/// replays the request once, so its body is buffered first.
async fn send_refreshable(
    request: http::Request<WasiBody>,
    source: &dyn TokenSource,
    route: &Route<'_>,
    max_body: usize,
) -> Result<(http::Response<WasiBody>, Worker), HttpError> {
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(HttpError::HttpRequestBodySize(Some(max_body as u64))),
    };
    let build = |token: &SecretString| -> Result<http::Request<WasiBody>, HttpError> {
        let mut request = http::Request::new(
            http_body_util::Full::new(body.clone())
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        inject(
            &mut request,
            &Credentials::Bearer {
                token: token.clone(),
            },
        )?;
        strip_to_origin_form(&mut request);
        Ok(request)
    };
    let token = source.current().await.map_err(|reason| {
        route.log.push(
            LogLevel::Error,
            LogSource::Host,
            &format!("no access token for the account: {reason}"),
        );
        HttpError::ConfigurationError
    })?;
    let (response, worker) = deliver(build(&token)?, route).await?;
    if response.status() != http::StatusCode::UNAUTHORIZED {
        return Ok((response, worker));
    }
    drop(response);
    route.log.push(
        LogLevel::Info,
        LogSource::Host,
        "the provider answered 401: refreshing the account's token and replaying the request once",
    );
    match source.refresh(&token).await {
        Ok(fresh) => deliver(build(&fresh)?, route).await,
        // The provider is fine and so is the account: the replay never
        // went out, and may be tried again later.
        Err(TokenError::Unavailable(reason)) => {
            route.log.push(
                LogLevel::Warn,
                LogSource::Host,
                &format!("token refresh failed, the request is not replayed: {reason}"),
            );
            Err(HttpError::DestinationUnavailable)
        }
        Err(TokenError::Rejected(reason)) => {
            route.log.push(
                LogLevel::Warn,
                LogSource::Host,
                &format!("token refresh failed: {reason}"),
            );
            let response = http::Response::builder()
                .status(http::StatusCode::UNAUTHORIZED)
                .body(
                    http_body_util::Empty::new()
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                )
                .map_err(|_| HttpError::InternalError(None))?;
            Ok((response, Box::new(async { Ok(()) })))
        }
    }
}

/// Connects to the checked address and sends the request.
async fn deliver(
    request: http::Request<WasiBody>,
    route: &Route<'_>,
) -> Result<(http::Response<WasiBody>, Worker), HttpError> {
    let Route {
        destination,
        address,
        connect_timeout,
        first_byte_timeout,
        log,
    } = route;
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let elapsed_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Noted while it connects, not yet sent: a deadline that strikes now
    // finds a provider that could not be reached, and nothing delivered.
    let slot = log.record_call(OutboundCall {
        method: method.to_string(),
        host: destination.host.clone(),
        path: path.clone(),
        status: None,
        duration_ms: 0,
        sent: false,
        settled: false,
    });
    // Failures before the request is written: it never reached the provider.
    let settle_unsent = || log.settle_call(slot, None, elapsed_ms());

    let stream = match tokio::time::timeout(*connect_timeout, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            log.push(
                LogLevel::Warn,
                LogSource::Host,
                &format!("{method} {destination}{path}: connect failed: {err}"),
            );
            settle_unsent();
            return Err(HttpError::ConnectionRefused);
        }
        Err(_) => {
            settle_unsent();
            return Err(HttpError::ConnectionTimeout);
        }
    };
    let _ = stream.set_nodelay(true);
    let io: Box<dyn Stream> = if destination.scheme == "https" {
        match tls_connect(stream, &destination.host, *connect_timeout).await {
            Ok(stream) => Box::new(stream),
            Err(err) => {
                settle_unsent();
                return Err(err);
            }
        }
    } else {
        Box::new(stream)
    };

    let handshake = tokio::time::timeout(
        *connect_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(io)),
    )
    .await;
    let (mut sender, connection) = match handshake {
        Ok(Ok(pair)) => pair,
        Ok(Err(err)) => {
            settle_unsent();
            return Err(HttpError::from(err));
        }
        Err(_) => {
            settle_unsent();
            return Err(HttpError::ConnectionTimeout);
        }
    };
    let connection = tokio::spawn(connection);

    // From here the request may reach the provider: it is noted as sent
    // before the first byte goes out, so an execution cut short while it
    // waits (its deadline, a shutdown) still shows a request in flight.
    log.mark_sent(slot, None);
    let response =
        match tokio::time::timeout(*first_byte_timeout, sender.send_request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => {
                log.push(
                    LogLevel::Warn,
                    LogSource::Host,
                    &format!("{method} {destination}{path}: {err}"),
                );
                log.settle_call(slot, None, elapsed_ms());
                return Err(HttpError::from(err));
            }
            Err(_) => {
                log.push(
                    LogLevel::Warn,
                    LogSource::Host,
                    &format!("{method} {destination}{path}: no response in time"),
                );
                log.settle_call(slot, None, elapsed_ms());
                return Err(HttpError::HttpResponseTimeout);
            }
        };
    log.push(
        LogLevel::Debug,
        LogSource::Host,
        &format!(
            "{method} {destination}{path} -> {} in {} ms",
            response.status().as_u16(),
            started.elapsed().as_millis()
        ),
    );
    log.settle_call(slot, Some(response.status().as_u16()), elapsed_ms());
    let response = response.map(|body| body.map_err(HttpError::from).boxed_unsync());
    let worker: Worker = Box::new(async move {
        match connection.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(HttpError::from(err)),
            Err(_) => Err(HttpError::ConnectionTerminated),
        }
    });
    Ok((response, worker))
}

/// Why a host-side [`fetch`] failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(String);

/// A request the host itself makes (an OAuth2 token endpoint): HTTP or HTTPS
/// with the webpki roots, the whole exchange within `timeout`, the response
/// body capped at 1 MiB. Not for plugins: they go through the allow-list.
pub async fn fetch(
    request: http::Request<Vec<u8>>,
    timeout: Duration,
) -> Result<http::Response<Vec<u8>>, FetchError> {
    tokio::time::timeout(timeout, fetch_inner(request))
        .await
        .map_err(|_| FetchError(format!("no answer within {} ms", timeout.as_millis())))?
}

async fn fetch_inner(
    request: http::Request<Vec<u8>>,
) -> Result<http::Response<Vec<u8>>, FetchError> {
    let destination = Destination::of(request.uri())
        .map_err(|_| FetchError(format!("invalid url {}", request.uri())))?;
    let stream = TcpStream::connect((destination.host.as_str(), destination.port))
        .await
        .map_err(|err| FetchError(format!("cannot connect to {destination}: {err}")))?;
    let io: Box<dyn Stream> = if destination.scheme == "https" {
        Box::new(
            tls_connect(stream, &destination.host, Duration::from_secs(30))
                .await
                .map_err(|err| FetchError(format!("tls with {destination} failed: {err}")))?,
        )
    } else {
        Box::new(stream)
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|err| FetchError(format!("http with {destination} failed: {err}")))?;
    tokio::spawn(connection);
    let (mut parts, body) = request.into_parts();
    if !parts.headers.contains_key(http::header::HOST) {
        let host = match destination.port {
            80 | 443 => destination.host.clone(),
            port => format!("{}:{port}", destination.host),
        };
        if let Ok(value) = HeaderValue::try_from(host) {
            parts.headers.insert(http::header::HOST, value);
        }
    }
    let mut request =
        http::Request::from_parts(parts, http_body_util::Full::new(bytes::Bytes::from(body)));
    strip_to_origin_form(&mut request);
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| FetchError(format!("request to {destination} failed: {err}")))?;
    let (parts, body) = response.into_parts();
    let body = http_body_util::Limited::new(body, 1 << 20)
        .collect()
        .await
        .map_err(|err| FetchError(format!("reading the answer of {destination}: {err}")))?
        .to_bytes()
        .to_vec();
    Ok(http::Response::from_parts(parts, body))
}

/// Resolves the destination and returns the first address the policy allows.
async fn resolve(
    destination: &Destination,
    allow_private_network: bool,
    timeout: Duration,
    log: &LogSink,
) -> Result<SocketAddr, HttpError> {
    let lookup = tokio::net::lookup_host((destination.host.as_str(), destination.port));
    let addresses: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addresses)) => addresses.collect(),
        Ok(Err(err)) => {
            log.push(
                LogLevel::Warn,
                LogSource::Host,
                &format!("dns lookup of {} failed: {err}", destination.host),
            );
            return Err(HttpError::DnsError {
                rcode: Some(err.to_string()),
                info_code: None,
            });
        }
        Err(_) => return Err(HttpError::DnsTimeout),
    };
    if addresses.is_empty() {
        return Err(HttpError::DestinationNotFound);
    }
    match addresses
        .iter()
        .find(|address| allow_private_network || is_public(address.ip()))
    {
        Some(address) => Ok(*address),
        None => {
            log.push(
                LogLevel::Error,
                LogSource::Host,
                &format!(
                    "outbound request to {destination} refused: it resolves to a private or reserved address ({}); \
                     operators can allow this with allow_private_network",
                    addresses[0].ip()
                ),
            );
            Err(HttpError::DestinationIpProhibited)
        }
    }
}

/// Whether `ip` is a globally routable unicast address: not loopback,
/// private, link-local, shared (CGNAT), documentation, benchmarking,
/// multicast, broadcast or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Adds the account's credentials to the request.
fn inject(
    request: &mut http::Request<WasiBody>,
    credentials: &Credentials,
) -> Result<(), HttpError> {
    let sensitive = |value: String| -> Result<HeaderValue, HttpError> {
        let mut value = HeaderValue::try_from(value).map_err(|_| HttpError::ConfigurationError)?;
        value.set_sensitive(true);
        Ok(value)
    };
    match credentials {
        Credentials::None
        | Credentials::Smtp(_)
        | Credentials::OAuth2(_)
        | Credentials::SigningSecret { .. } => {}
        Credentials::Bearer { token } => {
            let value = sensitive(format!("Bearer {}", token.expose_secret()))?;
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        Credentials::Basic { username, password } => {
            let pair = format!("{username}:{}", password.expose_secret());
            let value = sensitive(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))?;
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        Credentials::ApiKey {
            header: Some(name),
            value,
            ..
        } => {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpError::ConfigurationError)?;
            let value = sensitive(value.expose_secret().to_owned())?;
            request.headers_mut().insert(name, value);
        }
        Credentials::ApiKey {
            query: Some(param),
            value,
            ..
        } => {
            let uri = request.uri().clone();
            let pair = format!(
                "{}={}",
                encode_query(param),
                encode_query(value.expose_secret())
            );
            let path_and_query = match uri.query() {
                Some(query) if !query.is_empty() => format!("{}?{query}&{pair}", uri.path()),
                _ => format!("{}?{pair}", uri.path()),
            };
            let mut parts = uri.into_parts();
            parts.path_and_query = Some(
                path_and_query
                    .parse()
                    .map_err(|_| HttpError::ConfigurationError)?,
            );
            *request.uri_mut() =
                http::Uri::from_parts(parts).map_err(|_| HttpError::ConfigurationError)?;
        }
        Credentials::ApiKey { .. } => return Err(HttpError::ConfigurationError),
    }
    Ok(())
}

fn encode_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// hyper sends the URI as given: a request to an origin server carries only
/// the path and query (the `Host` header names the host).
fn strip_to_origin_form<B>(request: &mut http::Request<B>) {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(uri) = path_and_query.parse() {
        *request.uri_mut() = uri;
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

async fn tls_connect(
    stream: TcpStream,
    host: &str,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HttpError> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
                .unwrap_or_else(|err| {
                    panic!("the ring provider supports the default TLS versions: {err}")
                }),
        )
    });
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::from(ip),
        Err(_) => rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| {
            HttpError::DnsError {
                rcode: Some("invalid dns name".into()),
                info_code: None,
            }
        })?,
    };
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(HttpError::Tls(err)),
        Err(_) => Err(HttpError::ConnectionTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(
                !is_public(private.parse().expect("ip")),
                "{private} taken as public"
            );
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(
                is_public(public.parse().expect("ip")),
                "{public} taken as private"
            );
        }
    }

    #[test]
    fn rules_match_scheme_host_and_port() {
        let rule: HostRule = "https://api.hubapi.com".parse().expect("rule");
        assert!(rule.matches("https", "api.hubapi.com", 443));
        assert!(!rule.matches("http", "api.hubapi.com", 80));
        assert!(!rule.matches("https", "api.hubapi.com", 8443));
        assert!(!rule.matches("https", "evil.com", 443));
        let wildcard: HostRule = "https://*.googleapis.com".parse().expect("rule");
        assert!(wildcard.matches("https", "gmail.googleapis.com", 443));
        assert!(!wildcard.matches("https", "googleapis.com", 443));
        assert!(!wildcard.matches("https", "evilgoogleapis.com", 443));
        let any_port: HostRule = "http://127.0.0.1:*".parse().expect("rule");
        assert!(any_port.matches("http", "127.0.0.1", 39_001));
        let v6: HostRule = "http://[::1]:8080".parse().expect("rule");
        assert!(v6.matches("http", "[::1]", 8080));
        assert_eq!(v6.to_string(), "http://[::1]:8080", "round-trips");
        assert!("ftp://x".parse::<HostRule>().is_err());
        assert!("https://".parse::<HostRule>().is_err());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query("a b&c=d"), "a%20b%26c%3Dd");
    }
}
