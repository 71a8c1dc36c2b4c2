//! `send_email`: sends one email through the connected account's SMTP server
//! (relayed by the host) or through the Gmail API; `email_message` (seed
//! 001) sends one to a contact, from the action's identity, the same ways.
//!
//! The account's metadata chooses the way:
//!
//! ```json
//! { "provider": "smtp",  "from": "Ada Lovelace <ada@example.com>" }
//! { "provider": "gmail", "from": "ada@example.com", "base_url": "https://gmail.googleapis.com" }
//! ```
//!
//! For Gmail the message goes to `POST /gmail/v1/users/me/messages/send` as
//! `{"raw": <base64url RFC 2822 message>}`; the host adds the account's bearer
//! token. For SMTP the host connects with the account's SMTP credentials.

use actionhost_sdk::email::{Mailbox, parse_mailbox};
use actionhost_sdk::{Action, AuthScheme, Context, ExecuteError, FieldError, http, log, smtp};
use base64::Engine as _;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const GMAIL_BASE_URL: &str = "https://gmail.googleapis.com";
const MAX_RECIPIENTS: usize = 100;

/// One address, or a list of addresses.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Recipients {
    /// A single address.
    One(String),
    /// Several addresses.
    Many(Vec<String>),
}

impl Recipients {
    fn as_slice(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

/// Params of `send_email`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendEmailParams {
    /// Recipients: `ada@example.com` or `Ada Lovelace <ada@example.com>`, one or a list.
    pub to: Recipients,
    /// Carbon-copy recipients.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Blind carbon-copy recipients: they receive the message without
    /// appearing in its headers.
    #[serde(default)]
    pub bcc: Vec<String>,
    /// Where replies should go, when not to the sender.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// The subject line; any Unicode, encoded as RFC 2047 when needed.
    pub subject: String,
    /// The plain-text body.
    #[serde(default, alias = "message", alias = "text")]
    pub body: Option<String>,
    /// The HTML body; with `body` as well, the message is multipart/alternative.
    #[serde(default)]
    pub html: Option<String>,
}

/// What was sent.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SendEmailOutput {
    /// `smtp` or `gmail`.
    pub provider: String,
    /// The `Message-ID` header of the sent message, without angle brackets.
    pub message_id: String,
    /// Every envelope recipient.
    pub recipients: Vec<String>,
    /// Gmail's id of the sent message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gmail_id: Option<String>,
    /// Gmail's thread id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The SMTP server's final reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_reply: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Provider {
    Smtp,
    Gmail,
}

/// The account metadata this plugin reads.
#[derive(Debug, Deserialize)]
struct EmailAccount {
    provider: Provider,
    from: String,
    #[serde(default)]
    base_url: Option<String>,
}

/// The `send_email` action.
pub struct SendEmail;

impl Action for SendEmail {
    const NAME: &'static str = "send_email";
    const TITLE: &'static str = "Send an email";
    const DESCRIPTION: &'static str = "Sends an email with a plain-text and/or HTML body, with cc, bcc and reply-to, \
         through the connected account's SMTP server or Gmail.";
    const AUTH_SCHEMES: &'static [AuthScheme] =
        &[AuthScheme::Smtp, AuthScheme::OAuth2, AuthScheme::Bearer];
    type Params = SendEmailParams;
    type Output = SendEmailOutput;

    fn validate(params: &SendEmailParams) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let lists = [
            ("to", params.to.as_slice()),
            ("cc", &params.cc),
            ("bcc", &params.bcc),
        ];
        for (field, list) in lists {
            for (index, address) in list.iter().enumerate() {
                if parse_mailbox(address).is_none() {
                    let path = match params.to {
                        Recipients::One(_) if field == "to" => "/to".to_owned(),
                        _ => format!("/{field}/{index}"),
                    };
                    errors.push(FieldError::new(
                        path,
                        format!("{address:?} is not an email address; write ada@example.com or Ada <ada@example.com>"),
                    ));
                }
            }
        }
        if params.to.as_slice().is_empty() {
            errors.push(FieldError::new("/to", "needs at least one recipient"));
        }
        let total = params.to.as_slice().len() + params.cc.len() + params.bcc.len();
        if total > MAX_RECIPIENTS {
            errors.push(FieldError::new(
                "",
                format!("{total} recipients; at most {MAX_RECIPIENTS} per email"),
            ));
        }
        if let Some(reply_to) = &params.reply_to
            && parse_mailbox(reply_to).is_none()
        {
            errors.push(FieldError::new(
                "/reply_to",
                format!("{reply_to:?} is not an email address"),
            ));
        }
        if params.subject.trim().is_empty() {
            errors.push(FieldError::new("/subject", "must not be empty"));
        }
        if params.subject.contains(['\r', '\n']) {
            errors.push(FieldError::new("/subject", "must be a single line"));
        }
        let empty = |body: &Option<String>| body.as_deref().is_none_or(|b| b.trim().is_empty());
        if empty(&params.body) && empty(&params.html) {
            errors.push(FieldError::new(
                "/body",
                "give a plain-text `body`, an `html` body, or both",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn execute(params: SendEmailParams, ctx: &Context) -> Result<SendEmailOutput, ExecuteError> {
        Self::validate(&params).map_err(ExecuteError::InvalidInput)?;
        deliver(&params, ctx, None)
    }
}

/// Sends `params` through the account's provider, from `sender` when given
/// (an identity's mailbox), else from the account's `from`.
fn deliver(
    params: &SendEmailParams,
    ctx: &Context,
    sender: Option<Mailbox>,
) -> Result<SendEmailOutput, ExecuteError> {
    let account = ctx.account()?;
    let settings: EmailAccount = account.metadata_as()?;
    let from = match sender {
        Some(sender) => sender,
        None => parse_mailbox(&settings.from).ok_or_else(|| {
            ExecuteError::Permanent(format!(
                "account {} has an invalid `from` address {:?}",
                account.id, settings.from
            ))
        })?,
    };
    let message = Message::new(params, &from, &ctx.idempotency_key);
    match settings.provider {
        Provider::Smtp => send_smtp(&message, &from),
        Provider::Gmail => send_gmail(
            &message,
            settings.base_url.as_deref().unwrap_or(GMAIL_BASE_URL),
        ),
    }
}

/// Params of `email_message`: an email to a contact, from the action's
/// identity.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailMessageParams {
    /// The contact to write to (`ct_…`); the message goes to their address.
    pub contact_id: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text message.
    #[serde(alias = "body")]
    pub message: String,
    /// Carbon-copy recipients.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Where replies should go, when not to the sender.
    #[serde(default)]
    pub reply_to: Option<String>,
}

impl EmailMessageParams {
    /// The same message as `send_email` params, to the contact's mailbox.
    fn to_send_email(&self, to: String) -> SendEmailParams {
        SendEmailParams {
            to: Recipients::One(to),
            cc: self.cc.clone(),
            bcc: Vec::new(),
            reply_to: self.reply_to.clone(),
            subject: self.subject.clone(),
            body: Some(self.message.clone()),
            html: None,
        }
    }
}

/// The `email_message` action (seed 001): an email to a contact.
pub struct EmailMessage;

impl Action for EmailMessage {
    const NAME: &'static str = "email_message";
    const TITLE: &'static str = "Email a contact";
    const DESCRIPTION: &'static str = "Sends a plain-text email to a contact's address, from the action's identity, \
         through the identity's email account (SMTP or Gmail).";
    const AUTH_SCHEMES: &'static [AuthScheme] =
        &[AuthScheme::Smtp, AuthScheme::OAuth2, AuthScheme::Bearer];
    type Params = EmailMessageParams;
    type Output = SendEmailOutput;

    fn validate(params: &EmailMessageParams) -> Result<(), Vec<FieldError>> {
        // The contact's address is the host's to check; the rest is the
        // same message `send_email` sends.
        let mut errors =
            match SendEmail::validate(&params.to_send_email("placeholder@example.com".into())) {
                Ok(()) => Vec::new(),
                Err(errors) => errors,
            };
        for error in &mut errors {
            if error.path == "/body" {
                error.path = "/message".into();
                error.message = "must not be empty".into();
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn execute(params: EmailMessageParams, ctx: &Context) -> Result<SendEmailOutput, ExecuteError> {
        Self::validate(&params).map_err(ExecuteError::InvalidInput)?;
        let contact = ctx.contact()?;
        let Some(address) = contact.email.clone() else {
            return Err(ExecuteError::Permanent(format!(
                "contact {} has no email address; give them one with PATCH /v1/contacts/{}",
                contact.id, contact.id
            )));
        };
        let to = match contact.full_name() {
            Some(name) => format!("{} <{address}>", name.replace(['<', '>', '"'], "")),
            None => address,
        };
        let sender = ctx.sender().and_then(|sender| {
            let address = sender.email?;
            parse_mailbox(&format!(
                "{} <{address}>",
                sender.name.replace(['<', '>', '"'], "")
            ))
            .or_else(|| parse_mailbox(&address))
        });
        deliver(&params.to_send_email(to), ctx, sender)
    }
}

/// A message ready to go, in both shapes the providers need.
struct Message {
    message_id: String,
    recipients: Vec<String>,
    /// Without a `Bcc` header: for SMTP, where the envelope reaches them.
    without_bcc: Vec<u8>,
    /// With a `Bcc` header: Gmail reads it, delivers, and strips it.
    with_bcc: Vec<u8>,
}

impl Message {
    fn new(params: &SendEmailParams, from: &Mailbox, idempotency_key: &str) -> Self {
        let mailboxes = |list: &[String]| -> Vec<Mailbox> {
            list.iter().filter_map(|a| parse_mailbox(a)).collect()
        };
        let to = mailboxes(params.to.as_slice());
        let cc = mailboxes(&params.cc);
        let bcc = mailboxes(&params.bcc);
        let domain = from
            .address
            .rsplit_once('@')
            .map_or("localhost", |(_, d)| d);
        let key: String = idempotency_key
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        // Stable across attempts, so a retried send can be recognised.
        let message_id = format!("{key}@{domain}");

        let build = |with_bcc: bool| -> Vec<u8> {
            let mut builder = MessageBuilder::new()
                .from(address(from))
                .to(address_list(&to))
                .subject(params.subject.as_str())
                .message_id(message_id.as_str());
            if !cc.is_empty() {
                builder = builder.cc(address_list(&cc));
            }
            if with_bcc && !bcc.is_empty() {
                builder = builder.bcc(address_list(&bcc));
            }
            if let Some(reply_to) = params.reply_to.as_deref().and_then(parse_mailbox) {
                builder = builder.reply_to(address(&reply_to));
            }
            if let Some(text) = &params.body {
                builder = builder.text_body(text.as_str());
            }
            if let Some(html) = &params.html {
                builder = builder.html_body(html.as_str());
            }
            builder
                .write_to_vec()
                .unwrap_or_else(|err| panic!("building a message in memory failed: {err}"))
        };
        let recipients = to
            .iter()
            .chain(&cc)
            .chain(&bcc)
            .map(|m| m.address.clone())
            .collect();
        let (without_bcc, with_bcc) = (build(false), build(true));
        Self {
            message_id,
            recipients,
            without_bcc,
            with_bcc,
        }
    }
}

fn address(mailbox: &Mailbox) -> Address<'static> {
    Address::new_address(mailbox.name.clone(), mailbox.address.clone())
}

fn address_list(mailboxes: &[Mailbox]) -> Address<'static> {
    Address::new_list(mailboxes.iter().map(address).collect())
}

fn send_smtp(message: &Message, from: &Mailbox) -> Result<SendEmailOutput, ExecuteError> {
    log::info(format!(
        "relaying {} over smtp to {} recipient(s)",
        message.message_id,
        message.recipients.len()
    ));
    let reply = smtp::send(&from.address, &message.recipients, &message.without_bcc)?;
    Ok(SendEmailOutput {
        provider: "smtp".into(),
        message_id: message.message_id.clone(),
        recipients: message.recipients.clone(),
        gmail_id: None,
        thread_id: None,
        smtp_reply: Some(reply),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GmailSent {
    id: String,
    #[serde(default)]
    thread_id: Option<String>,
}

fn send_gmail(message: &Message, base_url: &str) -> Result<SendEmailOutput, ExecuteError> {
    let url = format!(
        "{}/gmail/v1/users/me/messages/send",
        base_url.trim_end_matches('/')
    );
    log::info(format!("sending {} through gmail", message.message_id));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&message.with_bcc);
    let sent: GmailSent = http::Request::post(url)
        .json(&serde_json::json!({ "raw": raw }))?
        .send()?
        .error_for_status()?
        .json()?;
    Ok(SendEmailOutput {
        provider: "gmail".into(),
        message_id: message.message_id.clone(),
        recipients: message.recipients.clone(),
        gmail_id: Some(sent.id),
        thread_id: sent.thread_id,
        smtp_reply: None,
    })
}

actionhost_sdk::plugin! {
    name: "send-email",
    description: "Sends email through SMTP or the Gmail API",
    outbound_hosts: ["https://gmail.googleapis.com"],
    actions: [SendEmail, EmailMessage],
}
