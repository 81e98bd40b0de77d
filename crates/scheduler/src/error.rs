//! Why a view cannot be scheduled or explained.

use thiserror::Error;

/// A view the scheduler refuses: the caller built something inconsistent.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("duplicate host name {0:?}")]
    DuplicateHost(String),
    #[error("name {0:?} is used by more than one resource, group or clone")]
    DuplicateName(String),
    #[error("resource {resource:?} is active on unknown host {host:?}")]
    UnknownInstanceHost { resource: String, host: String },
    #[error("{owner} names unknown resource {name:?}")]
    UnknownResource { owner: String, name: String },
    #[error("{owner} names unknown host {host:?}")]
    UnknownHost { owner: String, host: String },
    #[error("resource {resource:?} belongs to both {first:?} and {second:?}")]
    SharedMember {
        resource: String,
        first: String,
        second: String,
    },
    #[error("group {0:?} has no members")]
    EmptyGroup(String),
    #[error("clone {0:?} has a node_max or promoted_max of 0")]
    ZeroCloneLimit(String),
    #[error("location constraint {0:?} needs either a host with a score, or rules")]
    InvalidLocation(String),
    #[error("a rule of location constraint {0:?} needs a score or a score_attribute")]
    RuleWithoutScore(String),
    #[error("resource set {0:?} needs at least two resources")]
    ShortSet(String),
    #[error("resource {resource:?} names unknown failover domain {domain:?}")]
    UnknownFailoverDomain { resource: String, domain: String },
    #[error("ordering constraints form a loop through {0}")]
    OrderingLoop(String),
}

/// Why `explain` has no answer.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ExplainError {
    #[error("no resource, group or clone named {0:?}")]
    UnknownResource(String),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}
