//! `linkedin_message`: sends a plain-text LinkedIn message to one or more
//! members, through LinkedIn's versioned REST messages endpoint.
//!
//! `POST {base_url}/rest/messages` with the `LinkedIn-Version` and
//! `X-Restli-Protocol-Version: 2.0.0` headers and a body of
//! `{"recipients": ["urn:li:person:…"], "subject", "body", "messageType": "MEMBER_TO_MEMBER"}`;
//! LinkedIn answers 201 with the message's id in `x-restli-id`. The host adds
//! the account's OAuth2 bearer token.
//!
//! LinkedIn's terms require a member's own action for each message, so the
//! action type declares that every message needs a human approval.
//!
//! Account metadata: `{"base_url": "https://api.linkedin.com", "linkedin_version": "202411"}`,
//! both optional.

use actionhost_sdk::{Action, AuthScheme, Context, ExecuteError, FieldError, http, log};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const BASE_URL: &str = "https://api.linkedin.com";
const LINKEDIN_VERSION: &str = "202411";
const MAX_BODY_CHARS: usize = 8000;
const MAX_SUBJECT_CHARS: usize = 200;
const MAX_RECIPIENTS: usize = 50;

/// Params of `linkedin_message`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkedInMessageParams {
    /// Member URNs of the recipients, such as `urn:li:person:AbC123_-x`.
    pub recipients: Vec<String>,
    /// An optional subject line.
    #[serde(default)]
    pub subject: Option<String>,
    /// The message, plain text only (LinkedIn renders no HTML or Markdown).
    #[serde(alias = "message", alias = "text")]
    pub body: String,
}

/// What was sent.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LinkedInMessageOutput {
    /// LinkedIn's id of the message (`x-restli-id`), when it gave one.
    pub message_id: Option<String>,
    /// The member URNs messaged.
    pub recipients: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct LinkedInAccount {
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    linkedin_version: Option<String>,
}

fn is_member_urn(urn: &str) -> bool {
    urn.strip_prefix("urn:li:person:").is_some_and(|id| {
        !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

/// Whether `text` looks like HTML markup: a `<` followed by a tag name or `/`
/// and closed by `>` later.
fn looks_like_html(text: &str) -> bool {
    text.match_indices('<').any(|(at, _)| {
        let rest = &text[at + 1..];
        rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!')
            && rest.contains('>')
    })
}

/// The `linkedin_message` action.
pub struct LinkedInMessage;

impl Action for LinkedInMessage {
    const NAME: &'static str = "linkedin_message";
    const TITLE: &'static str = "Send a LinkedIn message";
    const DESCRIPTION: &'static str = "Sends a plain-text LinkedIn message to one or more members. \
         Every message needs a human approval first, as LinkedIn's terms require.";
    const REQUIRES_APPROVAL: bool = true;
    const AUTH_SCHEMES: &'static [AuthScheme] = &[AuthScheme::OAuth2, AuthScheme::Bearer];
    type Params = LinkedInMessageParams;
    type Output = LinkedInMessageOutput;

    fn validate(params: &LinkedInMessageParams) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if params.recipients.is_empty() {
            errors.push(FieldError::new(
                "/recipients",
                "needs at least one member URN",
            ));
        }
        if params.recipients.len() > MAX_RECIPIENTS {
            errors.push(FieldError::new(
                "/recipients",
                format!("at most {MAX_RECIPIENTS} recipients"),
            ));
        }
        for (index, urn) in params.recipients.iter().enumerate() {
            if !is_member_urn(urn) {
                errors.push(FieldError::new(
                    format!("/recipients/{index}"),
                    format!("{urn:?} is not a member URN; expected urn:li:person:<id>"),
                ));
            }
        }
        let chars = params.body.chars().count();
        if params.body.trim().is_empty() {
            errors.push(FieldError::new("/body", "must not be empty"));
        } else if chars > MAX_BODY_CHARS {
            errors.push(FieldError::new(
                "/body",
                format!("{chars} characters; at most {MAX_BODY_CHARS}"),
            ));
        }
        if looks_like_html(&params.body) {
            errors.push(FieldError::new(
                "/body",
                "must be plain text: LinkedIn messages do not render HTML",
            ));
        }
        if let Some(subject) = &params.subject {
            if subject.chars().count() > MAX_SUBJECT_CHARS {
                errors.push(FieldError::new(
                    "/subject",
                    format!("at most {MAX_SUBJECT_CHARS} characters"),
                ));
            }
            if subject.contains(['\r', '\n']) {
                errors.push(FieldError::new("/subject", "must be a single line"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn execute(
        params: LinkedInMessageParams,
        ctx: &Context,
    ) -> Result<LinkedInMessageOutput, ExecuteError> {
        Self::validate(&params).map_err(ExecuteError::InvalidInput)?;
        let account = ctx.account()?;
        let settings: LinkedInAccount = account.metadata_as()?;
        let base_url = settings
            .base_url
            .as_deref()
            .unwrap_or(BASE_URL)
            .trim_end_matches('/');
        let version = settings
            .linkedin_version
            .as_deref()
            .unwrap_or(LINKEDIN_VERSION);

        let mut body = serde_json::json!({
            "recipients": params.recipients,
            "body": params.body,
            "messageType": "MEMBER_TO_MEMBER",
        });
        if let Some(subject) = &params.subject {
            body["subject"] = subject.clone().into();
        }
        log::info(format!("messaging {} member(s)", params.recipients.len()));
        let response = http::Request::post(format!("{base_url}/rest/messages"))
            .header("LinkedIn-Version", version)
            .header("X-Restli-Protocol-Version", "2.0.0")
            .json(&body)?
            .send()?
            .error_for_status()?;
        Ok(LinkedInMessageOutput {
            message_id: response.header("x-restli-id").map(str::to_owned),
            recipients: params.recipients,
        })
    }
}

actionhost_sdk::plugin! {
    name: "linkedin-message",
    description: "Sends LinkedIn messages to members",
    outbound_hosts: ["https://api.linkedin.com"],
    actions: [LinkedInMessage],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_urns_are_recognised() {
        assert!(is_member_urn("urn:li:person:AbC123_-x"));
        assert!(!is_member_urn("urn:li:organization:1"));
        assert!(!is_member_urn("urn:li:person:"));
        assert!(!is_member_urn("urn:li:person:a b"));
    }

    #[test]
    fn html_is_detected_but_comparisons_are_not() {
        assert!(looks_like_html("Hello <b>Ada</b>"));
        assert!(looks_like_html("<p>hi</p>"));
        assert!(!looks_like_html("2 < 3 and 5 > 4"));
        assert!(!looks_like_html("plain text"));
    }
}
