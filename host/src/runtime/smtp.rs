//! The `smtp` host interface: relays a plugin-built message through the
//! connected account's SMTP server with lettre's connection API.
//!
//! The server's address is resolved and checked like any outbound HTTP
//! destination (no private addresses unless the operator allows them), and
//! lettre connects to the checked address while verifying TLS against the
//! configured host name.
//!
//! The session runs step by step rather than through lettre's transport so
//! that the host knows where a failure happened: until the server has
//! accepted `DATA`, nothing can be delivered and a failure is safe to retry;
//! once the message is on its way, a connection that drops or a reply that
//! never comes leaves the message possibly delivered. That exchange is noted
//! in the execution's outbound log as sent and, without a reply, unanswered,
//! which the pipeline reports as `outcome_unknown` for a type that is not
//! idempotent, exactly as for an HTTP request.

use std::future::Future;
use std::time::{Duration, Instant};

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::{Credentials as SmtpLogin, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Quit, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use secrecy::ExposeSecret;

use super::credentials::{SmtpServer, SmtpTls};
use super::log::{LogLevel, LogSink, LogSource, OutboundCall};
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
    /// The execution's sends left, shared with its HTTP requests.
    pub budget: super::outbound::Budget,
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
        if !self.budget.take() {
            let refusal = format!(
                "more than {} outbound requests and messages in one execution",
                self.budget.max()
            );
            self.log.push(
                LogLevel::Error,
                LogSource::Host,
                &format!("smtp: {refusal}"),
            );
            return Err(RelayError::Permanent(refusal));
        }
        if let Some(responder) = &self.responder {
            return responder
                .relay(sender, recipients, message)
                .map_err(RelayError::Permanent);
        }
        let address = self.resolve(server).await?;
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
        let started = Instant::now();
        let elapsed_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Noted while it connects, not yet sent: a deadline that strikes
        // before the go-ahead finds a server that could not be reached, and
        // nothing delivered.
        let slot = self.log.record_call(OutboundCall {
            method: "SMTP".into(),
            host: format!("{}:{}", server.host, server.port),
            path: "MAIL".into(),
            status: None,
            duration_ms: 0,
            sent: false,
            settled: false,
        });

        // Up to the server's go-ahead for the message, nothing can be
        // delivered: any failure here may simply be tried again.
        let mut connection = match self.open(server, address, &envelope, message).await {
            Ok(connection) => connection,
            Err(error) => {
                self.log.settle_call(slot, None, elapsed_ms());
                self.log
                    .push(LogLevel::Warn, LogSource::Host, &format!("smtp: {error:?}"));
                return Err(error);
            }
        };

        // Noted as sent before the first byte of the message goes out, so
        // that an execution cut short while it waits still shows it.
        // Not under the step timeout: a large message takes as long as it
        // takes, within the execution's deadline.
        self.log.mark_sent(slot, Some("DATA"));
        let (status, outcome) = match connection.message(message).await {
            Ok(response) => {
                let code = u16::from(response.code());
                let reply = format!(
                    "{code} {}",
                    response.message().collect::<Vec<_>>().join(" ")
                );
                (Some(code), Ok(reply))
            }
            // A negative reply is an answer: the server will not deliver
            // it. A dropped connection is none.
            Err(err) => (err.status().map(u16::from), Err(classify(&err))),
        };
        self.log.settle_call(slot, status, elapsed_ms());
        match outcome {
            Ok(reply) => {
                self.log.push(
                    LogLevel::Debug,
                    LogSource::Host,
                    &format!("smtp: accepted: {reply}"),
                );
                // The message is accepted; a failed or slow goodbye changes
                // nothing, so it does not hold the plugin for long.
                let goodbye = self.timeout.min(Duration::from_secs(1));
                let _ = tokio::time::timeout(goodbye, connection.command(Quit)).await;
                Ok(reply)
            }
            Err(error) => {
                let unanswered = if status.is_none() {
                    " (the server may have received the message)"
                } else {
                    ""
                };
                self.log.push(
                    LogLevel::Warn,
                    LogSource::Host,
                    &format!("smtp: {error:?}{unanswered}"),
                );
                Err(error)
            }
        }
    }

    /// Connects, greets, secures, authenticates and sends the envelope,
    /// up to the server's `354` go-ahead for the message.
    async fn open(
        &self,
        server: &SmtpServer,
        address: std::net::SocketAddr,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<AsyncSmtpConnection, RelayError> {
        let tls = || {
            TlsParameters::new(server.host.clone()).map_err(|err| {
                RelayError::Permanent(format!("tls setup for {}: {err}", server.host))
            })
        };
        let hello = ClientId::default();
        let wrapper = match server.tls {
            SmtpTls::Tls => Some(tls()?),
            SmtpTls::None | SmtpTls::Starttls => None,
        };
        let mut connection = self
            .step(
                "connect",
                AsyncSmtpConnection::connect_tokio1(
                    address,
                    Some(self.timeout),
                    &hello,
                    wrapper,
                    None,
                ),
            )
            .await?;
        if matches!(server.tls, SmtpTls::Starttls) {
            let parameters = tls()?;
            self.step("starttls", connection.starttls(parameters, &hello))
                .await?;
        }
        if let (Some(username), Some(password)) = (&server.username, &server.password) {
            let login = SmtpLogin::new(username.clone(), password.expose_secret().to_owned());
            self.step(
                "authentication",
                connection.auth(&[Mechanism::Plain, Mechanism::Login], &login),
            )
            .await?;
        }
        let mut options = Vec::new();
        let all_ascii = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .all(|address| AsRef::<str>::as_ref(address).is_ascii());
        if !all_ascii {
            if !connection
                .server_info()
                .supports_feature(Extension::SmtpUtfEight)
            {
                return Err(RelayError::Permanent(
                    "an address is not ASCII and the server does not offer SMTPUTF8".into(),
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            if !connection
                .server_info()
                .supports_feature(Extension::EightBitMime)
            {
                return Err(RelayError::Permanent(
                    "the message is not ASCII and the server does not offer 8BITMIME".into(),
                ));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        self.step(
            "MAIL FROM",
            connection.command(Mail::new(envelope.from().cloned(), options)),
        )
        .await?;
        for recipient in envelope.to() {
            self.step(
                "RCPT TO",
                connection.command(Rcpt::new(recipient.clone(), Vec::new())),
            )
            .await?;
        }
        self.step("DATA", connection.command(Data)).await?;
        Ok(connection)
    }

    /// One step of the session within the step timeout.
    async fn step<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, RelayError> {
        match tokio::time::timeout(self.timeout, step).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(classify(&err)),
            Err(_) => Err(RelayError::Transient(format!(
                "smtp {what}: no reply within {} ms",
                self.timeout.as_millis()
            ))),
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
