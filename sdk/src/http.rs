//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! ```no_run
//! # fn run() -> Result<(), actionhost_sdk::ExecuteError> {
//! use actionhost_sdk::http::Request;
//! let response = Request::post("https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert")
//!     .header("content-type", "application/json")
//!     .body(br#"{"inputs":[]}"#.to_vec())
//!     .send()?
//!     .error_for_status()?;
//! let body: serde_json::Value = response.json()?;
//! # Ok(()) }
//! ```
//!
//! The host checks every request against the plugin's allow-list and adds the
//! connected account's credentials (an `Authorization` header, an API key)
//! on the way out. Do not set them yourself: you do not have them.
//!
//! [`Response::error_for_status`] maps a provider's failure status to the
//! [`ExecuteError`] variant the host retries by: 401 and 403 are
//! `Unauthorized`, 429 is `RateLimited` with its `Retry-After`, 5xx is
//! `Transient`, any other 4xx is `Permanent`.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::error::ExecuteError;

/// Largest response body [`Request::send`] reads, unless changed with
/// [`Request::max_response_bytes`].
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// An outgoing HTTP request under construction.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    max_response_bytes: usize,
}

impl Request {
    /// A request with any method, such as `PATCH`.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Self {
            method: method.to_owned(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new("PUT", url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new("DELETE", url)
    }

    /// Adds a header; a repeated name adds another value.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, ExecuteError> {
        let body = serde_json::to_vec(value)?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Bounds the wait for the connection and for the first byte of the
    /// response. The host's deadline for the whole execution applies anyway.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Changes the largest response body read (default 16 MiB).
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        let target = Target::parse(&self.url)?;
        let headers = Fields::new();
        for (name, value) in &self.headers {
            headers.append(name, value.as_bytes()).map_err(|err| {
                HttpError::new(HttpErrorKind::Invalid, format!("header {name:?}: {err:?}"))
            })?;
        }
        let request = OutgoingRequest::new(headers);
        let invalid = |what: &str| {
            HttpError::new(
                HttpErrorKind::Invalid,
                format!("invalid {what} in {}", self.url),
            )
        };
        request
            .set_method(&method(&self.method))
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&target.scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(&target.authority))
            .map_err(|()| invalid("authority"))?;
        request
            .set_path_with_query(Some(&target.path_and_query))
            .map_err(|()| invalid("path"))?;

        let body = request.body().map_err(|()| invalid("body"))?;
        let options = self.timeout.map(|timeout| {
            let options = RequestOptions::new();
            let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
            // Both setters only fail if the host does not support timeouts, in
            // which case the host's own deadline still applies.
            let _ = options.set_connect_timeout(Some(nanos));
            let _ = options.set_first_byte_timeout(Some(nanos));
            options
        });
        let pending =
            outgoing_handler::handle(request, options).map_err(|code| self.error(code))?;
        write_body(&body, &self.body)?;
        OutgoingBody::finish(body, None).map_err(|code| self.error(code))?;

        let response = loop {
            match pending.get() {
                Some(result) => break result,
                None => pending.subscribe().block(),
            }
        };
        let response = response
            .map_err(|()| HttpError::new(HttpErrorKind::Interrupted, "response already taken"))?
            .map_err(|code| self.error(code))?;

        let status = response.status();
        let headers = response.headers().entries();
        let incoming = response.consume().map_err(|()| {
            HttpError::new(HttpErrorKind::Interrupted, "response body already taken")
        })?;
        let body = read_body(&incoming, self.max_response_bytes, &self.url)?;
        drop(response);
        let headers = headers
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn error(&self, code: ErrorCode) -> HttpError {
        let kind = match code {
            ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
                HttpErrorKind::Denied
            }
            ErrorCode::DnsTimeout
            | ErrorCode::DnsError(_)
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTimeout
            | ErrorCode::TlsProtocolError
            | ErrorCode::TlsCertificateError
            | ErrorCode::TlsAlertReceived(_) => HttpErrorKind::NotSent,
            ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
                HttpErrorKind::Invalid
            }
            _ => HttpErrorKind::Interrupted,
        };
        HttpError::new(kind, format!("{} {}: {code:?}", self.method, self.url))
    }
}

fn method(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_owned()),
    }
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let stream = body
        .write()
        .map_err(|()| HttpError::new(HttpErrorKind::Invalid, "request body already written"))?;
    // `blocking-write-and-flush` takes at most 4096 bytes a call.
    for chunk in bytes.chunks(4096) {
        stream.blocking_write_and_flush(chunk).map_err(|err| {
            HttpError::new(
                HttpErrorKind::Interrupted,
                format!("writing the request body: {}", stream_error(err)),
            )
        })?;
    }
    Ok(())
}

fn read_body(incoming: &IncomingBody, max: usize, url: &str) -> Result<Vec<u8>, HttpError> {
    let stream = incoming.stream().map_err(|()| {
        HttpError::new(
            HttpErrorKind::Interrupted,
            "response body stream already taken",
        )
    })?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if body.len() + chunk.len() > max {
                    return Err(HttpError::new(
                        HttpErrorKind::Interrupted,
                        format!("response body of {url} is larger than {max} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(body),
            Err(err) => {
                return Err(HttpError::new(
                    HttpErrorKind::Interrupted,
                    format!("reading the response body of {url}: {}", stream_error(err)),
                ));
            }
        }
    }
}

fn stream_error(err: StreamError) -> String {
    match err {
        StreamError::Closed => "stream closed".to_owned(),
        StreamError::LastOperationFailed(err) => err.to_debug_string(),
    }
}

/// The parts of a URL that `wasi:http` wants separately.
struct Target {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, HttpError> {
        let invalid = || {
            HttpError::new(
                HttpErrorKind::Invalid,
                format!("invalid URL {url:?}: expected scheme://host[:port]/path"),
            )
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            _ => return Err(invalid()),
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() {
            return Err(invalid());
        }
        let path_and_query = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Self {
            scheme,
            authority: authority.to_owned(),
            path_and_query,
        })
    }
}

/// A received HTTP response, body included.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ExecuteError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            ExecuteError::Permanent(format!(
                "response (status {}) is not the JSON expected: {err}",
                self.status
            ))
        })
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The response itself when its status is 2xx; otherwise the
    /// [`ExecuteError`] that the status means (see the module docs).
    pub fn error_for_status(self) -> Result<Self, ExecuteError> {
        if self.is_success() {
            return Ok(self);
        }
        Err(self.to_error())
    }

    /// The [`ExecuteError`] for this response's status, with the start of
    /// its body as the message.
    pub fn to_error(&self) -> ExecuteError {
        let mut body = self.text();
        if body.len() > 512 {
            let cut = (0..=512)
                .rev()
                .find(|&i| body.is_char_boundary(i))
                .unwrap_or(0);
            body.truncate(cut);
            body.push('…');
        }
        let message = format!("provider answered {}: {body}", self.status);
        match self.status {
            401 | 403 => ExecuteError::Unauthorized(message),
            429 => ExecuteError::RateLimited {
                message,
                retry_after: self.retry_after(),
            },
            500..=599 => ExecuteError::Transient(message),
            _ => ExecuteError::Permanent(message),
        }
    }

    /// The `Retry-After` header as a duration, when it is a number of seconds.
    /// (HTTP dates are rare in APIs and need a clock the guest cannot trust.)
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.header("retry-after")?.trim();
        value.parse::<u64>().ok().map(Duration::from_secs)
    }
}

/// What went wrong with a request, as far as a retry is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// The host refused the request: the destination is not on the plugin's
    /// allow-list, or resolves to a forbidden address.
    Denied,
    /// The request never reached the provider (DNS, refused connection, TLS).
    /// Safe to retry.
    NotSent,
    /// The request may have reached the provider, but the response did not
    /// come back whole (timeout, reset, oversize body).
    Interrupted,
    /// The request itself is malformed (URL, header, method).
    Invalid,
}

/// An HTTP request that did not produce a response.
#[derive(Debug, Clone)]
pub struct HttpError {
    /// What kind of failure this is.
    pub kind: HttpErrorKind,
    /// What happened, naming the request.
    pub message: String,
}

impl HttpError {
    fn new(kind: HttpErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for ExecuteError {
    fn from(error: HttpError) -> Self {
        match error.kind {
            HttpErrorKind::Denied => {
                ExecuteError::Permanent(format!("request denied by the host: {}", error.message))
            }
            HttpErrorKind::Invalid => ExecuteError::Permanent(error.message),
            HttpErrorKind::NotSent | HttpErrorKind::Interrupted => {
                ExecuteError::Transient(error.message)
            }
        }
    }
}
