//! The secrets a connected account lends to one execution.
//!
//! The runtime injects them into outbound requests (HTTP headers or query) or
//! uses them to log in to an SMTP server; the plugin never receives them.
//! `Debug` prints `[REDACTED]` for every secret, and the type is deliberately
//! not `Serialize`, so a secret cannot end up in a response or a log line by
//! accident.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::types::HostRule;

/// A future returning a token, for the object-safe [`TokenSource`].
pub type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SecretString, TokenError>> + Send + 'a>>;

/// Why no access token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The provider refused the grant (a revoked or invalid refresh token,
    /// a client it no longer knows): the account must be connected again.
    #[error("{0}")]
    Rejected(String),
    /// The token endpoint could not be reached in time or answered
    /// something that is not a token: the account is fine, try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// An OAuth2 access token that the host can refresh while an execution runs.
///
/// The runtime asks for [`TokenSource::current`] before each request and,
/// when the provider answers 401, for [`TokenSource::refresh`] with the token
/// it rejected; it then replays the request once with the new token (a 401
/// means the request was not processed). Implementations share one refresh
/// among concurrent executions of the same account.
pub trait TokenSource: Send + Sync {
    /// The token to send now.
    fn current(&self) -> TokenFuture<'_>;
    /// A new token, replacing `rejected`; `Err` says why none can be had.
    fn refresh<'a>(&'a self, rejected: &'a SecretString) -> TokenFuture<'a>;
}

/// What an execution may use: credentials, the outbound hosts that
/// receive them (empty: every host the plugin may reach), and the contact
/// and identity it acts on (the `contacts` interface, WIT 0.1.3).
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// The credentials.
    pub credentials: Credentials,
    /// The hosts that get them; a request elsewhere goes out without them.
    pub hosts: Vec<HostRule>,
    /// The contact and sender, when the execution has them.
    pub binding: Option<Arc<ContactBinding>>,
}

impl From<Credentials> for Grant {
    fn from(credentials: Credentials) -> Self {
        Self {
            credentials,
            hosts: Vec::new(),
            binding: None,
        }
    }
}

/// The contact an execution addresses and who it acts as: what the
/// `contacts` interface (WIT 0.1.3) hands to the plugin.
#[derive(Clone, Default)]
pub struct ContactBinding {
    /// The contact, for an action type bound to one (a top-level
    /// `contact_id` in its params schema).
    pub contact: Option<ContactInfo>,
    /// The identity the action is performed as.
    pub sender: Option<SenderInfo>,
    /// Where `add-note` writes, for a bound contact.
    pub notes: Option<Arc<dyn NoteWriter>>,
}

impl std::fmt::Debug for ContactBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactBinding")
            .field("contact", &self.contact.as_ref().map(|c| &c.id))
            .field("sender", &self.sender.as_ref().map(|s| &s.id))
            .finish_non_exhaustive()
    }
}

/// A contact, as a plugin sees it.
#[derive(Debug, Clone)]
pub struct ContactInfo {
    /// `ct_…`.
    pub id: String,
    /// Their address.
    pub email: Option<String>,
    /// Their properties, a JSON object.
    pub properties: serde_json::Value,
}

/// An identity, as a plugin sees it.
#[derive(Debug, Clone)]
pub struct SenderInfo {
    /// `id_…`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its address.
    pub email: Option<String>,
}

/// Why a note was not written.
#[derive(Debug, Clone)]
pub enum NoteError {
    /// The note itself is refused (empty, too long, the contact is gone).
    Rejected(String),
    /// The store could not take it now.
    Unavailable(String),
}

/// Writes an execution's note on its contact (the host's store, outside
/// the runtime).
pub trait NoteWriter: Send + Sync {
    /// Stores `body` and returns the note's id.
    fn add_note(
        &self,
        body: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, NoteError>> + Send>>;
}

impl Grant {
    /// Whether a request to this destination carries the credentials.
    pub fn covers(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.hosts.is_empty()
            || self
                .hosts
                .iter()
                .any(|rule| rule.matches(scheme, host, port))
    }
}

/// How to authenticate to the provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credentials {
    /// Nothing to inject.
    #[default]
    None,
    /// `Authorization: Bearer <token>`; also used for OAuth2 access tokens.
    Bearer {
        /// The token.
        token: SecretString,
    },
    /// An API key, in a header (`header`, such as `x-api-key`) or a query
    /// parameter (`query`, such as `key`).
    ApiKey {
        /// Header name to carry the key.
        #[serde(default)]
        header: Option<String>,
        /// Query parameter to carry the key.
        #[serde(default)]
        query: Option<String>,
        /// The key.
        value: SecretString,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: SecretString,
    },
    /// An SMTP server and its login, for the `smtp` host interface.
    Smtp(SmtpServer),
    /// A secret the host signs with (the `signing` host interface), for
    /// signed webhooks; never sent anywhere.
    SigningSecret {
        /// The secret.
        secret: SecretString,
    },
    /// An OAuth2 bearer token the host refreshes; not readable from a file.
    #[serde(skip)]
    OAuth2(Arc<dyn TokenSource>),
}

impl fmt::Debug for dyn TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSource([REDACTED])")
    }
}

/// How to reach the account's SMTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpServer {
    /// Host name or IP address.
    pub host: String,
    /// Port; 587 for STARTTLS, 465 for implicit TLS, 25 for none.
    pub port: u16,
    /// Transport security.
    #[serde(default)]
    pub tls: SmtpTls,
    /// Login name, if the server requires one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, if the server requires one.
    #[serde(default)]
    pub password: Option<SecretString>,
}

/// Transport security towards an SMTP server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Upgrade with STARTTLS, and refuse to go on without it.
    #[default]
    Starttls,
    /// Implicit TLS from the first byte (port 465).
    Tls,
    /// Plain text: only for a relay on a trusted network or for tests.
    None,
}

impl Credentials {
    /// The SMTP server, when these are SMTP credentials.
    pub fn smtp(&self) -> Option<&SmtpServer> {
        match self {
            Self::Smtp(server) => Some(server),
            _ => None,
        }
    }

    /// The signing secret, when these are signing credentials.
    pub fn signing_secret(&self) -> Option<&SecretString> {
        match self {
            Self::SigningSecret { secret } => Some(secret),
            _ => None,
        }
    }

    /// Checks that the credentials are usable, naming what is missing.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::ApiKey {
                header: None,
                query: None,
                ..
            } => {
                Err("api_key credentials need a `header` or a `query` name to carry the key".into())
            }
            Self::ApiKey {
                header: Some(_),
                query: Some(_),
                ..
            } => Err("api_key credentials take a `header` or a `query` name, not both".into()),
            Self::ApiKey {
                header: Some(name), ..
            } if http::HeaderName::from_bytes(name.as_bytes()).is_err() => Err(format!(
                "api_key header name {name:?} is not a valid header name"
            )),
            Self::Smtp(SmtpServer {
                username: Some(_),
                password: None,
                ..
            }) => Err("smtp credentials with a `username` need a `password`".into()),
            Self::Bearer { token } if token.expose_secret().is_empty() => {
                Err("bearer token is empty".into())
            }
            Self::SigningSecret { secret } if secret.expose_secret().len() < 16 => {
                Err("a signing secret needs at least 16 bytes".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_secret() {
        let credentials: Credentials =
            serde_json::from_str(r#"{"type":"bearer","token":"tok-very-secret"}"#).expect("valid");
        let printed = format!("{credentials:?}");
        assert!(!printed.contains("tok-very-secret"), "{printed}");
        let smtp: Credentials = serde_json::from_str(
            r#"{"type":"smtp","host":"mail","port":25,"tls":"none","username":"u","password":"pw-secret"}"#,
        )
        .expect("valid");
        assert!(!format!("{smtp:?}").contains("pw-secret"));
    }

    #[test]
    fn incomplete_credentials_are_explained() {
        let key: Credentials =
            serde_json::from_str(r#"{"type":"api_key","value":"k"}"#).expect("parses");
        assert!(key.check().expect_err("no carrier").contains("header"));
    }
}
