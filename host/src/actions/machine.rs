//! The action state machine: every status, every transition, and who may
//! ask for it. **Architecture Invariant:** this is the only place that says
//! which transition is allowed from which status; the rest of the host asks
//! [`next`] and reports its [`Forbidden`] as it is.
//!
//! ```text
//! pending_approval ──approve/edit──▶ scheduled ──execute──▶ executing ──▶ succeeded
//!        │                              │  ▲                    │ ├──────▶ failed
//!        ├──reject──▶ rejected          │  └────reschedule──────┘ └──────▶ outcome_unknown
//!        └──cancel──▶ cancelled ◀─cancel┘                                     │
//!                                    succeeded ◀─mark_succeeded───────────────┤
//!                                    failed    ◀─mark_failed──────────────────┤
//!                                    scheduled ◀─retry────────────────────────┘
//! ```

use serde::{Deserialize, Serialize};

use crate::tenancy::Scope;

/// Where an action is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Waits for a reviewer; never executed in this state.
    PendingApproval,
    /// Runs when due (at once when it has no `scheduled_time`).
    Scheduled,
    /// Claimed by one executor; running now.
    Executing,
    /// The plugin reported success.
    Succeeded,
    /// The plugin reported a failure that retrying will not fix, or the
    /// attempts ran out.
    Failed,
    /// The request may or may not have reached the provider; an operator
    /// decides (`POST /v1/actions/{id}/resolve`).
    OutcomeUnknown,
    /// Cancelled before it ran.
    Cancelled,
    /// A reviewer refused it.
    Rejected,
}

impl ActionStatus {
    /// Every status, for validation messages and tests.
    pub const ALL: [ActionStatus; 8] = [
        Self::PendingApproval,
        Self::Scheduled,
        Self::Executing,
        Self::Succeeded,
        Self::Failed,
        Self::OutcomeUnknown,
        Self::Cancelled,
        Self::Rejected,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingApproval => "pending_approval",
            Self::Scheduled => "scheduled",
            Self::Executing => "executing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
        }
    }

    /// Whether the action is finished for good.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Rejected
        )
    }
}

impl std::fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ActionStatus {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown status {text:?}; one of: {}",
                    Self::ALL.map(ActionStatus::as_str).join(", ")
                )
            })
    }
}

/// Something that moves an action from one status to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// A reviewer approves the current params.
    Approve,
    /// A reviewer refuses the action.
    Reject,
    /// A reviewer replaces the params with a new revision and approves it.
    Edit,
    /// Someone cancels it before it runs.
    Cancel,
    /// It is claimed for execution (by a caller or by the scheduler).
    Execute,
    /// The plugin succeeded.
    Succeed,
    /// The plugin failed for good.
    Fail,
    /// A retryable failure: back to `scheduled` for a later attempt.
    Reschedule,
    /// The outcome cannot be known.
    Unknown,
    /// An operator says an `outcome_unknown` action did happen.
    MarkSucceeded,
    /// An operator says an `outcome_unknown` action did not happen.
    MarkFailed,
    /// An operator asks to run an `outcome_unknown` action again.
    Retry,
}

impl Transition {
    /// The transitions a caller may ask for, in the order they are listed.
    pub const REQUESTABLE: [Transition; 8] = [
        Self::Approve,
        Self::Reject,
        Self::Edit,
        Self::Cancel,
        Self::Execute,
        Self::MarkSucceeded,
        Self::MarkFailed,
        Self::Retry,
    ];

    /// The wire id (`approve`, `mark_succeeded`, …).
    pub fn id(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::Edit => "edit",
            Self::Cancel => "cancel",
            Self::Execute => "execute",
            Self::Succeed => "succeed",
            Self::Fail => "fail",
            Self::Reschedule => "reschedule",
            Self::Unknown => "outcome_unknown",
            Self::MarkSucceeded => "mark_succeeded",
            Self::MarkFailed => "mark_failed",
            Self::Retry => "retry",
        }
    }

    /// The human name (Flowdash's `name`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Approve => "Approve",
            Self::Reject => "Reject",
            Self::Edit => "Edit and approve",
            Self::Cancel => "Cancel",
            Self::Execute => "Execute",
            Self::Succeed => "Succeed",
            Self::Fail => "Fail",
            Self::Reschedule => "Reschedule",
            Self::Unknown => "Outcome unknown",
            Self::MarkSucceeded => "Mark succeeded",
            Self::MarkFailed => "Mark failed",
            Self::Retry => "Retry",
        }
    }

    /// The scope a caller needs to ask for it; `None` for the host's own.
    pub fn scope(self) -> Option<Scope> {
        match self {
            Self::Approve | Self::Reject | Self::Edit => Some(Scope::ActionsApprove),
            Self::Cancel => Some(Scope::ActionsWrite),
            Self::Execute | Self::MarkSucceeded | Self::MarkFailed | Self::Retry => {
                Some(Scope::ActionsExecute)
            }
            Self::Succeed | Self::Fail | Self::Reschedule | Self::Unknown => None,
        }
    }

    /// A requestable transition by its wire id.
    pub fn requestable(id: &str) -> Option<Self> {
        Self::REQUESTABLE.into_iter().find(|t| t.id() == id)
    }
}

/// A transition the current status does not allow.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot {} an action that is {current}; {}", .transition.id(), allowed_text(.allowed))]
pub struct Forbidden {
    /// What was asked.
    pub transition: Transition,
    /// The status the action is in.
    pub current: ActionStatus,
    /// What a caller may ask for instead.
    pub allowed: Vec<Transition>,
}

fn allowed_text(allowed: &[Transition]) -> String {
    if allowed.is_empty() {
        "it is final and allows no transition".to_owned()
    } else {
        format!(
            "allowed now: {}",
            allowed
                .iter()
                .map(|t| t.id())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The status `transition` leads to from `from`, or why it may not happen.
pub fn next(from: ActionStatus, transition: Transition) -> Result<ActionStatus, Forbidden> {
    target(from, transition).ok_or_else(|| Forbidden {
        transition,
        current: from,
        allowed: requestable_from(from),
    })
}

/// The transitions a caller may ask for from `from`.
pub fn requestable_from(from: ActionStatus) -> Vec<Transition> {
    Transition::REQUESTABLE
        .into_iter()
        .filter(|&t| target(from, t).is_some())
        .collect()
}

/// The table itself.
fn target(from: ActionStatus, transition: Transition) -> Option<ActionStatus> {
    use ActionStatus as S;
    use Transition as T;
    Some(match (from, transition) {
        (S::PendingApproval, T::Approve | T::Edit) => S::Scheduled,
        (S::PendingApproval, T::Reject) => S::Rejected,
        (S::PendingApproval | S::Scheduled, T::Cancel) => S::Cancelled,
        (S::Scheduled, T::Execute) => S::Executing,
        (S::Executing, T::Succeed) => S::Succeeded,
        (S::Executing, T::Fail) => S::Failed,
        (S::Executing, T::Reschedule) => S::Scheduled,
        (S::Executing, T::Unknown) => S::OutcomeUnknown,
        (S::OutcomeUnknown, T::MarkSucceeded) => S::Succeeded,
        (S::OutcomeUnknown, T::MarkFailed) => S::Failed,
        (S::OutcomeUnknown, T::Retry) => S::Scheduled,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_TRANSITIONS: [Transition; 12] = [
        Transition::Approve,
        Transition::Reject,
        Transition::Edit,
        Transition::Cancel,
        Transition::Execute,
        Transition::Succeed,
        Transition::Fail,
        Transition::Reschedule,
        Transition::Unknown,
        Transition::MarkSucceeded,
        Transition::MarkFailed,
        Transition::Retry,
    ];

    #[test]
    fn the_allowed_list_of_a_refusal_is_exactly_what_next_accepts() {
        for from in ActionStatus::ALL {
            for refused in ALL_TRANSITIONS {
                let Err(err) = next(from, refused) else {
                    continue;
                };
                for transition in Transition::REQUESTABLE {
                    assert_eq!(
                        err.allowed.contains(&transition),
                        next(from, transition).is_ok(),
                        "{from} / {}",
                        transition.id()
                    );
                }
            }
        }
    }

    #[test]
    fn final_states_allow_nothing_and_say_so() {
        for from in ActionStatus::ALL.into_iter().filter(|s| s.is_final()) {
            for transition in ALL_TRANSITIONS {
                let err = next(from, transition).expect_err("final");
                assert!(err.allowed.is_empty());
                assert!(err.to_string().contains("allows no transition"), "{err}");
            }
        }
    }

    #[test]
    fn a_forbidden_transition_names_the_state_and_the_allowed_ones() {
        let err = next(ActionStatus::PendingApproval, Transition::Execute).expect_err("forbidden");
        assert_eq!(
            err.to_string(),
            "cannot execute an action that is pending_approval; allowed now: approve, reject, edit, cancel"
        );
    }

    #[test]
    fn waiting_for_approval_never_leads_straight_to_executing() {
        for transition in ALL_TRANSITIONS {
            assert_ne!(
                next(ActionStatus::PendingApproval, transition).ok(),
                Some(ActionStatus::Executing)
            );
        }
    }
}
