//! `note`: attaches a note to a contact.
//!
//! The note lands on the contact's timeline and at
//! `GET /v1/contacts/{id}/notes`. The host binds the contact (the params'
//! `contact_id`) and writes the note; every attempt of one action writes the
//! same note, so the type is idempotent. Agents propose notes to record
//! what they saw; reviewers approve them like any other action.

use actionhost_sdk::{Action, AuthScheme, Context, ExecuteError, FieldError, contacts};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest note, in characters (the host's own limit).
const MAX_CHARS: usize = 10_000;

/// Params of `note`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteParams {
    /// The contact the note is about (`ct_…`).
    pub contact_id: String,
    /// The note, plain text, at most 10,000 characters.
    #[serde(alias = "message", alias = "text")]
    pub body: String,
}

/// What was written.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NoteOutput {
    /// The note's id (`nt_…`).
    pub note_id: String,
    /// The contact.
    pub contact_id: String,
}

/// The `note` action.
pub struct Note;

impl Action for Note {
    const NAME: &'static str = "note";
    const TITLE: &'static str = "Add a note";
    const DESCRIPTION: &'static str =
        "Attaches a plain-text note to a contact; it shows on the contact's timeline.";
    const AUTH_SCHEMES: &'static [AuthScheme] = &[AuthScheme::None];
    const IDEMPOTENT: bool = true;
    type Params = NoteParams;
    type Output = NoteOutput;

    fn validate(params: &NoteParams) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if params.body.trim().is_empty() {
            errors.push(FieldError::new("/body", "must not be empty"));
        }
        let chars = params.body.chars().count();
        if chars > MAX_CHARS {
            errors.push(FieldError::new(
                "/body",
                format!("is {chars} characters long; a note holds at most {MAX_CHARS}"),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn execute(params: NoteParams, ctx: &Context) -> Result<NoteOutput, ExecuteError> {
        Self::validate(&params).map_err(ExecuteError::InvalidInput)?;
        let contact = ctx.contact()?;
        let note_id = contacts::add_note(&params.body)?;
        Ok(NoteOutput {
            note_id,
            contact_id: contact.id,
        })
    }
}

actionhost_sdk::plugin! {
    name: "notes",
    description: "Attaches notes to contacts",
    outbound_hosts: [],
    actions: [Note],
}
