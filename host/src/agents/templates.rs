//! Playbook templates: a starting point for an agent. An agent created from
//! one takes its playbook, capabilities and filter unless it gives its own.

use serde::Serialize;
use serde_json::json;

use super::filter::{EventCondition, Filter};

/// A playbook template.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Template {
    /// Its name, for `playbook_template`.
    pub name: &'static str,
    /// What it is for.
    pub description: &'static str,
    /// The playbook (markdown).
    pub playbook_md: &'static str,
    /// The capabilities it proposes with.
    pub capabilities: Vec<&'static str>,
    /// The contacts it watches.
    pub filter: Filter,
}

const PRICING: &str = "\
You are an SDR following up on prospects who are looking at pricing.

For each contact, read their recent events and the actions already taken.

- If they visited a page whose url contains /pricing at least twice in the last 7 days, \
and no email was sent to them (or proposed) in the last 3 days, propose one short, \
personal follow-up email (`email_message`) that refers to what they did on the site.
- Keep it under 80 words, in plain text, signed with the sender's first name.
- If the conditions are not met, propose no action and say why in `reasoning`.";

const COLD: &str = "\
You are a business development rep reaching out to new leads.

For each contact, read their properties (name, company, role) and their timeline.

- If nothing has been sent to them yet, propose one first email (`email_message`): \
two or three sentences about why their company might care, and one question.
- If an email went out more than 5 days ago and they did not engage since, you may \
propose a LinkedIn message (`linkedin_message`) instead; never both at once.
- Never propose anything to a contact who asked not to be contacted.
- If there is nothing worth saying, propose no action and say why in `reasoning`.";

/// Every template.
pub fn all() -> Vec<Template> {
    vec![
        Template {
            name: "cold_outreach",
            description: "First contact with new leads: one email, then a LinkedIn message if the email went unanswered.",
            playbook_md: COLD,
            capabilities: vec!["email", "linkedin"],
            filter: serde_json::from_value(json!({ "lifecycle_stage": "lead" }))
                .unwrap_or_default(),
        },
        Template {
            name: "pricing_visitor_followup",
            description: "A personal email to contacts who visited /pricing twice in 7 days.",
            playbook_md: PRICING,
            capabilities: vec!["email"],
            filter: Filter {
                events: vec![EventCondition {
                    event: "pageview".into(),
                    url_contains: Some("/pricing".into()),
                    min_count: 2,
                    within_days: 7,
                }],
                ..Filter::default()
            },
        },
    ]
}

/// The template named `name`.
pub fn named(name: &str) -> Option<Template> {
    all().into_iter().find(|t| t.name == name)
}
