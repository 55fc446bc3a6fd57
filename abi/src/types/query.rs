//! Selecting reservations: a streamed query and its paged form, whose opaque
//! page tokens carry a keyset cursor.

use std::hash::Hasher;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use derive_builder::Builder;
use uuid::Uuid;

use super::{
    Reservation, ReservationId, ReservationStatus, ResourceId, UserId, Window,
    reservation::optional_time,
};
use crate::{
    error::{Error, FieldContext, InvalidValue, Result},
    pb,
};

/// Which reservations to return: those overlapping `window`, held by
/// `user_id`, on `resource_id`, in `status` — each filter optional — ordered
/// by start then id (reversed when `desc`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReservationQuery {
    /// Only this user's reservations.
    pub user_id: Option<UserId>,
    /// Only reservations of this resource.
    pub resource_id: Option<ResourceId>,
    /// Only reservations in this (effective) status.
    pub status: Option<ReservationStatus>,
    /// Only reservations overlapping this window.
    pub window: Window,
    /// Newest start first.
    pub desc: bool,
}

/// Raw values of a query, checked by [`ReservationQueryBuilder::build`].
#[derive(Builder)]
#[builder(
    name = "ReservationQueryBuilder",
    public,
    pattern = "owned",
    build_fn(private, name = "fields", error = "Error")
)]
struct ReservationQueryFields {
    /// Only this user's reservations.
    #[builder(default, setter(into, strip_option))]
    user_id: Option<String>,
    /// Only reservations of this resource.
    #[builder(default, setter(into, strip_option))]
    resource_id: Option<String>,
    /// Only reservations in this status.
    #[builder(default, setter(strip_option))]
    status: Option<ReservationStatus>,
    /// Window start; open when unset.
    #[builder(default, setter(strip_option))]
    start: Option<DateTime<Utc>>,
    /// Window end; open when unset.
    #[builder(default, setter(strip_option))]
    end: Option<DateTime<Utc>>,
    /// Newest start first.
    #[builder(default)]
    desc: bool,
}

impl ReservationQueryBuilder {
    /// Checks every value and makes the query.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first invalid field.
    pub fn build(self) -> Result<ReservationQuery> {
        ReservationQuery::from_fields(self.fields()?)
    }
}

fn optional_id<T>(
    value: Option<String>,
    parse: impl FnOnce(String) -> Result<T, InvalidValue>,
    field: &'static str,
) -> Result<Option<T>> {
    value
        .filter(|v| !v.is_empty())
        .map(parse)
        .transpose()
        .field(field)
}

impl ReservationQuery {
    /// A builder taking raw values.
    pub fn builder() -> ReservationQueryBuilder {
        ReservationQueryBuilder::default()
    }

    fn from_fields(f: ReservationQueryFields) -> Result<Self> {
        Ok(ReservationQuery {
            user_id: optional_id(f.user_id, UserId::parse, "user_id")?,
            resource_id: optional_id(f.resource_id, ResourceId::parse, "resource_id")?,
            status: f.status,
            window: Window::new(f.start, f.end).field("start")?,
            desc: f.desc,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn from_wire(
        user_id: String,
        resource_id: String,
        status: i32,
        start: Option<&prost_types::Timestamp>,
        end: Option<&prost_types::Timestamp>,
        desc: bool,
    ) -> Result<Self> {
        ReservationQuery::from_fields(ReservationQueryFields {
            status: ReservationStatus::from_wire(status).field("status")?,
            start: optional_time(start, "start")?,
            end: optional_time(end, "end")?,
            user_id: Some(user_id),
            resource_id: Some(resource_id),
            desc,
        })
    }

    /// Whether `r` is selected by this query.
    pub fn matches(&self, r: &Reservation) -> bool {
        self.user_id.as_ref().is_none_or(|u| *u == r.user_id)
            && self
                .resource_id
                .as_ref()
                .is_none_or(|x| *x == r.resource_id)
            && self.status.is_none_or(|s| s == r.status)
            && self.window.overlaps(&r.timespan)
    }

    /// A digest of the selection, stamped into page tokens so that a token
    /// is only accepted for the selection that issued it.
    fn selection_hash(&self) -> u64 {
        let mut h = fnv::FnvHasher::default();
        for id in [
            self.user_id.as_ref().map(UserId::as_str),
            self.resource_id.as_ref().map(ResourceId::as_str),
        ] {
            match id {
                Some(id) => {
                    h.write_u8(1);
                    h.write(id.as_bytes());
                    h.write_u8(0xff);
                }
                None => h.write_u8(0),
            }
        }
        h.write_u8(self.status.map_or(0, |s| s as u8 + 1));
        for t in [self.window.start(), self.window.end()] {
            match t {
                Some(t) => {
                    h.write_u8(1);
                    h.write_i64(t.timestamp_micros());
                }
                None => h.write_u8(0),
            }
        }
        h.write_u8(u8::from(self.desc));
        h.finish()
    }
}

impl TryFrom<pb::QueryRequest> for ReservationQuery {
    type Error = Error;

    fn try_from(q: pb::QueryRequest) -> Result<Self> {
        ReservationQuery::from_wire(
            q.user_id,
            q.resource_id,
            q.status,
            q.start.as_ref(),
            q.end.as_ref(),
            q.desc,
        )
    }
}

/// Where a page ends: the sort key of its last reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Start of the last reservation returned.
    pub start: DateTime<Utc>,
    /// Id of the last reservation returned.
    pub id: ReservationId,
}

const TOKEN_VERSION: u8 = 1;
const TOKEN_BYTES: usize = 1 + 8 + 8 + 16;

impl Cursor {
    /// The cursor just past `r`.
    pub fn after(r: &Reservation) -> Self {
        Cursor {
            start: r.timespan.start(),
            id: r.id,
        }
    }

    fn encode(&self, selection: u64) -> String {
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.push(TOKEN_VERSION);
        bytes.extend_from_slice(&selection.to_be_bytes());
        bytes.extend_from_slice(&self.start.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.id.uuid().as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(token: &str, selection: u64) -> Result<Self, InvalidValue> {
        let bad = || InvalidValue::new("not a page token issued by rsvp");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let bytes: [u8; TOKEN_BYTES] = bytes.try_into().map_err(|_| bad())?;
        if bytes[0] != TOKEN_VERSION {
            return Err(bad());
        }
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            b
        };
        if u64::from_be_bytes(word(1)) != selection {
            return Err(InvalidValue::new(
                "was issued for a different selection; send the same filters as the first page",
            ));
        }
        let start = DateTime::from_timestamp_micros(i64::from_be_bytes(word(9))).ok_or_else(bad)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[17..]);
        Ok(Cursor {
            start,
            id: ReservationId::from(Uuid::from_bytes(id)),
        })
    }
}

/// The page size used when a request asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest page a request may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The most bytes of reservations a page carries: a page ends early rather
/// than outgrow what clients accept in one message (4 MiB by default).
pub const MAX_PAGE_BYTES: usize = 1 << 20;

/// One page of a [`ReservationQuery`]: `page_size` reservations after `cursor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationFilter {
    /// The selection.
    pub query: ReservationQuery,
    /// 1 to 1000.
    pub page_size: u32,
    /// Where the previous page ended; `None` for the first page.
    pub cursor: Option<Cursor>,
}

impl ReservationFilter {
    /// The first page of `query`, of `page_size` reservations (0: the default).
    ///
    /// # Errors
    /// When `page_size` is above 1000.
    pub fn first_page(query: ReservationQuery, page_size: u32) -> Result<Self> {
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n <= MAX_PAGE_SIZE => n,
            n => {
                return Err(Error::invalid(
                    "page_size",
                    format!("must be 0 to {MAX_PAGE_SIZE}, got {n}"),
                ));
            }
        };
        Ok(ReservationFilter {
            query,
            page_size,
            cursor: None,
        })
    }

    /// The page after the one that returned `page_token`; an empty token
    /// means the first page.
    ///
    /// # Errors
    /// When the token is malformed or was issued for another selection.
    pub fn with_page_token(mut self, page_token: &str) -> Result<Self> {
        self.cursor = if page_token.is_empty() {
            None
        } else {
            Some(Cursor::decode(page_token, self.query.selection_hash()).field("page_token")?)
        };
        Ok(self)
    }

    /// The token that asks for the page after `last`.
    pub fn next_page_token(&self, last: &Reservation) -> String {
        Cursor::after(last).encode(self.query.selection_hash())
    }
}

impl TryFrom<pb::FilterRequest> for ReservationFilter {
    type Error = Error;

    fn try_from(f: pb::FilterRequest) -> Result<Self> {
        let page_size = u32::try_from(f.page_size).map_err(|_| {
            Error::invalid(
                "page_size",
                format!("must be 0 to {MAX_PAGE_SIZE}, got {}", f.page_size),
            )
        })?;
        let query = ReservationQuery::from_wire(
            f.user_id,
            f.resource_id,
            f.status,
            f.start.as_ref(),
            f.end.as_ref(),
            f.desc,
        )?;
        ReservationFilter::first_page(query, page_size)?.with_page_token(&f.page_token)
    }
}

/// A page of reservations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The reservations, in query order.
    pub reservations: Vec<Reservation>,
    /// Asks for the next page; `None` when this is the last.
    pub next_page_token: Option<String>,
}

impl From<Page> for pb::FilterResponse {
    fn from(p: Page) -> Self {
        pb::FilterResponse {
            reservations: p.reservations.into_iter().map(Into::into).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(resource: &str) -> ReservationQuery {
        ReservationQuery::builder()
            .resource_id(resource)
            .build()
            .unwrap()
    }

    #[test]
    fn page_tokens_round_trip_for_their_own_selection_only() {
        let cursor = Cursor {
            start: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: ReservationId::new(),
        };
        let q = query("room-1");
        let token = cursor.encode(q.selection_hash());
        let page = ReservationFilter::first_page(q, 10)
            .unwrap()
            .with_page_token(&token)
            .unwrap();
        assert_eq!(page.cursor, Some(cursor));

        let other = ReservationFilter::first_page(query("room-2"), 10).unwrap();
        let err = other.with_page_token(&token).unwrap_err();
        assert!(err.to_string().starts_with("page_token:"), "{err}");
    }

    #[test]
    fn garbage_page_tokens_are_invalid() {
        for token in ["x", "not base64!", "AAAA", &"A".repeat(44)] {
            let f = ReservationFilter::first_page(query("r"), 1).unwrap();
            let err = f.with_page_token(token).unwrap_err();
            assert!(err.to_string().starts_with("page_token:"), "{token}: {err}");
        }
    }

    #[test]
    fn page_size_is_bounded() {
        let wire = |page_size| {
            ReservationFilter::try_from(pb::FilterRequest {
                page_size,
                ..Default::default()
            })
        };
        assert_eq!(wire(0).unwrap().page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(wire(1000).unwrap().page_size, 1000);
        for bad in [-1, 1001, i32::MIN, i32::MAX] {
            let err = wire(bad).unwrap_err();
            assert!(err.to_string().starts_with("page_size:"), "{bad}: {err}");
        }
    }
}
