//! The change feed: what changed, and which changes a listener wants.

use chrono::{DateTime, Utc};

use super::{Reservation, ResourceId, UserId};
use crate::{
    error::{Error, Result},
    pb,
    time::to_timestamp,
    types::query::ReservationQuery,
};

/// What kind of change happened to a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeOp {
    /// It was made.
    Create,
    /// Its status, note or interval changed (cancel and expiry included).
    Update,
    /// Its row was removed from the store.
    Delete,
}

impl ChangeOp {
    /// Lower-case name, as stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Create => "create",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
        }
    }
}

impl From<ChangeOp> for pb::ReservationUpdateType {
    fn from(op: ChangeOp) -> Self {
        match op {
            ChangeOp::Create => pb::ReservationUpdateType::Create,
            ChangeOp::Update => pb::ReservationUpdateType::Update,
            ChangeOp::Delete => pb::ReservationUpdateType::Delete,
        }
    }
}

/// One entry of the change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Increases with every change; listeners resume after the last they saw.
    pub id: i64,
    /// What happened.
    pub op: ChangeOp,
    /// The reservation as it stood right after the change.
    pub reservation: Reservation,
    /// When it changed.
    pub changed_at: DateTime<Utc>,
}

impl From<Change> for pb::ReservationChange {
    fn from(c: Change) -> Self {
        pb::ReservationChange {
            change_id: c.id,
            op: pb::ReservationUpdateType::from(c.op).into(),
            reservation: Some(c.reservation.into()),
            changed_at: Some(to_timestamp(c.changed_at)),
        }
    }
}

/// Which changes a listener receives, and where it resumes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenFilter {
    /// Only changes to this user's reservations.
    pub user_id: Option<UserId>,
    /// Only changes to reservations of this resource.
    pub resource_id: Option<ResourceId>,
    /// `None`: only changes from now on. `Some(n)`: every retained change
    /// with an id above `n`, then live ones.
    pub after_change_id: Option<i64>,
}

impl ListenFilter {
    /// Whether the listener wants `change`.
    pub fn matches(&self, change: &Change) -> bool {
        let r = &change.reservation;
        self.user_id.as_ref().is_none_or(|u| *u == r.user_id)
            && self
                .resource_id
                .as_ref()
                .is_none_or(|x| *x == r.resource_id)
    }
}

impl TryFrom<pb::ListenRequest> for ListenFilter {
    type Error = Error;

    fn try_from(req: pb::ListenRequest) -> Result<Self> {
        let ids = ReservationQuery::builder()
            .user_id(req.user_id)
            .resource_id(req.resource_id)
            .build()?;
        if let Some(after) = req.after_change_id
            && after < 0
        {
            return Err(Error::invalid(
                "after_change_id",
                format!("must not be negative, got {after}"),
            ));
        }
        Ok(ListenFilter {
            user_id: ids.user_id,
            resource_id: ids.resource_id,
            after_change_id: req.after_change_id,
        })
    }
}
