//! The `smtp` host interface: relays a plugin-built message through the
//! connected account's SMTP server with lettre.
//!
//! The server's address is resolved and checked like any outbound HTTP
//! destination (no private addresses unless the operator allows them), and
//! lettre connects to the checked address while verifying TLS against the
//! configured host name.

use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials as SmtpLogin;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use super::credentials::{SmtpServer, SmtpTls};
use super::log::{LogLevel, LogSink, LogSource};
use super::outbound::is_public;

/// Why a relay failed, as the WIT `smtp-error` variant sees it.
#[derive(Debug)]
pub enum RelayError {
    /// No SMTP server configured for the account.
    NotConfigured(String),
    /// Credentials rejected.
    Unauthorized(String),
    /// May pass.
    Transient(String),
    /// Will not pass.
    Permanent(String),
}

/// Everything one execution needs to relay mail.
#[derive(Debug, Clone)]
pub struct SmtpRelay {
    /// The account's server, if it has one.
    pub server: Option<SmtpServer>,
    /// Whether private addresses may be reached.
    pub allow_private_network: bool,
    /// Largest message accepted.
    pub max_message_bytes: usize,
    /// Timeout for each SMTP step.
    pub timeout: Duration,
    /// The execution's log.
    pub log: LogSink,
    /// Answers instead of a server (`actionhost plugin test`).
    pub responder: Option<std::sync::Arc<dyn super::outbound::Responder>>,
}

impl SmtpRelay {
    /// Relays `message` to `recipients`, returning the server's reply.
    pub async fn send(
        &self,
        sender: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<String, RelayError> {
        let Some(server) = &self.server else {
            return Err(RelayError::NotConfigured(
                "the connected account has no smtp server; give it smtp credentials".into(),
            ));
        };
        if message.len() > self.max_message_bytes {
            return Err(RelayError::Permanent(format!(
                "message of {} bytes is larger than the limit of {} bytes",
                message.len(),
                self.max_message_bytes
            )));
        }
        let envelope = envelope(sender, recipients).map_err(RelayError::Permanent)?;
        if let Some(responder) = &self.responder {
            return responder
                .relay(sender, recipients, message)
                .map_err(RelayError::Permanent);
        }
        let address = self.resolve(server).await?;
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
                .port(server.port)
                .timeout(Some(self.timeout));
        let tls = |host: &str| {
            TlsParameters::new(host.to_owned())
                .map_err(|err| RelayError::Permanent(format!("tls setup for {host}: {err}")))
        };
        builder = match server.tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::Starttls => builder.tls(Tls::Required(tls(&server.host)?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(&server.host)?)),
        };
        if let (Some(username), Some(password)) = (&server.username, &server.password) {
            builder = builder.credentials(SmtpLogin::new(
                username.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        let transport = builder.build();
        self.log.push(
            LogLevel::Debug,
            LogSource::Host,
            &format!(
                "smtp: relaying {} bytes to {} recipient(s) via {}:{}",
                message.len(),
                recipients.len(),
                server.host,
                server.port
            ),
        );
        match transport.send_raw(&envelope, message).await {
            Ok(response) => {
                let reply = format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                );
                self.log.push(
                    LogLevel::Debug,
                    LogSource::Host,
                    &format!("smtp: accepted: {reply}"),
                );
                Ok(reply)
            }
            Err(err) => {
                let error = classify(&err);
                self.log
                    .push(LogLevel::Warn, LogSource::Host, &format!("smtp: {error:?}"));
                Err(error)
            }
        }
    }

    async fn resolve(&self, server: &SmtpServer) -> Result<std::net::SocketAddr, RelayError> {
        let lookup = tokio::net::lookup_host((server.host.as_str(), server.port));
        let addresses: Vec<_> = match tokio::time::timeout(self.timeout, lookup).await {
            Ok(Ok(addresses)) => addresses.collect(),
            Ok(Err(err)) => {
                return Err(RelayError::Transient(format!(
                    "dns lookup of {} failed: {err}",
                    server.host
                )));
            }
            Err(_) => {
                return Err(RelayError::Transient(format!(
                    "dns lookup of {} timed out",
                    server.host
                )));
            }
        };
        addresses
            .iter()
            .find(|address| self.allow_private_network || is_public(address.ip()))
            .copied()
            .ok_or_else(|| {
                RelayError::Permanent(format!(
                    "smtp server {} resolves to a private or reserved address; operators can allow this with allow_private_network",
                    server.host
                ))
            })
    }
}

fn envelope(sender: &str, recipients: &[String]) -> Result<Envelope, String> {
    let parse = |address: &str| -> Result<Address, String> {
        address
            .parse()
            .map_err(|err| format!("{address:?} is not a valid envelope address: {err}"))
    };
    let sender = parse(sender)?;
    let recipients = recipients
        .iter()
        .map(|r| parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(sender), recipients).map_err(|err| format!("invalid envelope: {err}"))
}

fn classify(err: &lettre::transport::smtp::Error) -> RelayError {
    let message = err.to_string();
    if let Some(code) = err.status() {
        let code: u16 = code.into();
        if matches!(code, 530 | 534 | 535) {
            return RelayError::Unauthorized(message);
        }
    }
    if err.is_permanent() {
        RelayError::Permanent(message)
    } else {
        // 4xx replies, timeouts, refused or dropped connections.
        RelayError::Transient(message)
    }
}
