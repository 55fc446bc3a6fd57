//! A registered resource: its capacity, rules and labels, checked from the
//! wire; how an update's field mask applies; and how a list is asked for.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc, Weekday};
use chrono_tz::Tz;

use super::{Policy, ResourceId, Rules, Schedule, Timespan, UserId, WeeklyHours};
use crate::{
    error::{Error, FieldContext, InvalidValue, Result},
    pb,
    time::{from_duration, from_timestamp, to_duration, to_timestamp},
};

/// The most units a resource may have.
pub const MAX_CAPACITY: u32 = 1_000_000;
/// The most characters of a display name.
pub const MAX_DISPLAY_NAME_CHARS: usize = 256;
/// The most dated open periods of one resource.
pub const MAX_OPEN_PERIODS: usize = 1_000;
/// The most weekly opening periods of one resource.
pub const MAX_OPENING_HOURS: usize = 7 * 48;
/// The most admins of one resource.
pub const MAX_ADMINS: usize = 100;
/// The most labels of one resource.
pub const MAX_LABELS: usize = 64;
/// The longest buffer, notice, hold or duration limit a policy may set.
pub const MAX_POLICY_DURATION: TimeDelta = TimeDelta::days(3660);

/// What a resource is, as its owner describes it: everything but the
/// times and the version the store keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSpec {
    /// The `resource_id` of its reservations.
    pub id: ResourceId,
    /// A name for people.
    pub display_name: String,
    /// Units live reservations may hold at the same instant.
    pub capacity: u32,
    /// The booking policy.
    pub policy: Policy,
    /// When it is open, in which zone.
    pub schedule: Schedule,
    /// Principals who administer it.
    pub admins: Vec<UserId>,
    /// Free labels, to find resources by.
    pub labels: BTreeMap<String, String>,
}

/// A registered resource as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// What it is.
    pub spec: ResourceSpec,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was deleted; a deleted resource takes no new reservations.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Changes with every update: the etag.
    pub version: i64,
}

impl Resource {
    /// The rules its reservations are judged by.
    pub fn rules(&self) -> Rules {
        Rules {
            capacity: self.spec.capacity,
            deleted: self.deleted_at.is_some(),
            policy: self.spec.policy.clone(),
            schedule: self.spec.schedule.clone(),
        }
    }

    /// The etag of this version.
    pub fn etag(&self) -> String {
        self.version.to_string()
    }

    /// At least as many bytes as the resource takes on the wire.
    pub fn wire_size_bound(&self) -> usize {
        use prost::Message;
        // Three timestamps, the etag and their tags take under 80.
        80 + pb::Resource::from(&self.spec).encoded_len()
    }
}

impl From<Resource> for pb::Resource {
    fn from(r: Resource) -> Self {
        let etag = r.etag();
        pb::Resource {
            created_at: Some(to_timestamp(r.created_at)),
            updated_at: Some(to_timestamp(r.updated_at)),
            deleted_at: r.deleted_at.map(to_timestamp),
            etag,
            ..pb::Resource::from(&r.spec)
        }
    }
}

fn weekday_to_wire(day: Weekday) -> pb::DayOfWeek {
    match day {
        Weekday::Mon => pb::DayOfWeek::Monday,
        Weekday::Tue => pb::DayOfWeek::Tuesday,
        Weekday::Wed => pb::DayOfWeek::Wednesday,
        Weekday::Thu => pb::DayOfWeek::Thursday,
        Weekday::Fri => pb::DayOfWeek::Friday,
        Weekday::Sat => pb::DayOfWeek::Saturday,
        Weekday::Sun => pb::DayOfWeek::Sunday,
    }
}

fn weekday_from_wire(day: i32) -> Result<Weekday, InvalidValue> {
    Ok(match pb::DayOfWeek::try_from(day) {
        Ok(pb::DayOfWeek::Monday) => Weekday::Mon,
        Ok(pb::DayOfWeek::Tuesday) => Weekday::Tue,
        Ok(pb::DayOfWeek::Wednesday) => Weekday::Wed,
        Ok(pb::DayOfWeek::Thursday) => Weekday::Thu,
        Ok(pb::DayOfWeek::Friday) => Weekday::Fri,
        Ok(pb::DayOfWeek::Saturday) => Weekday::Sat,
        Ok(pb::DayOfWeek::Sunday) => Weekday::Sun,
        _ => return Err(InvalidValue::new("must be a day of the week (1 to 7)")),
    })
}

impl From<&Policy> for pb::BookingPolicy {
    fn from(p: &Policy) -> Self {
        let d = |v: Option<TimeDelta>| v.map(to_duration);
        pb::BookingPolicy {
            min_notice: d(p.min_notice),
            max_advance: d(p.max_advance),
            granularity: d(p.granularity),
            min_duration: d(p.min_duration),
            max_duration: d(p.max_duration),
            buffer_before: d(p.buffer_before),
            buffer_after: d(p.buffer_after),
            default_hold: d(p.default_hold),
            max_hold: d(p.max_hold),
            max_quantity: p.max_quantity.unwrap_or(0),
            min_cancel_notice: d(p.min_cancel_notice),
            check_in_opens: d(p.check_in_opens),
            auto_release_after: d(p.auto_release_after),
        }
    }
}

impl From<&ResourceSpec> for pb::Resource {
    fn from(s: &ResourceSpec) -> Self {
        let policy = (s.policy != Policy::default()).then(|| pb::BookingPolicy::from(&s.policy));
        pb::Resource {
            id: s.id.to_string(),
            display_name: s.display_name.clone(),
            capacity: s.capacity,
            time_zone: if s.schedule.zone == Tz::UTC {
                String::new()
            } else {
                s.schedule.zone.name().to_string()
            },
            policy,
            opening_hours: s
                .schedule
                .hours
                .iter()
                .map(|h| pb::OpeningHours {
                    day: weekday_to_wire(h.day).into(),
                    open_minute: h.open_minute.into(),
                    close_minute: h.close_minute.into(),
                })
                .collect(),
            admins: s.admins.iter().map(ToString::to_string).collect(),
            labels: s.labels.clone().into_iter().collect(),
            open_periods: s
                .schedule
                .periods
                .iter()
                .map(|p| pb::Interval {
                    start: Some(to_timestamp(p.start())),
                    end: Some(to_timestamp(p.end())),
                })
                .collect(),
            closed_by_default: s.schedule.closed_by_default,
            ..Default::default()
        }
    }
}

/// A policy duration: not negative, at most [`MAX_POLICY_DURATION`].
fn policy_duration(
    d: Option<&prost_types::Duration>,
    field: &'static str,
    positive: bool,
) -> Result<Option<TimeDelta>> {
    let Some(d) = d else { return Ok(None) };
    let d = from_duration(d).field(field)?;
    if d < TimeDelta::zero() || (positive && d.is_zero()) {
        let what = if positive { "positive" } else { "negative" };
        return Err(Error::invalid(
            field,
            if positive {
                format!("must be {what}")
            } else {
                format!("must not be {what}")
            },
        ));
    }
    if d > MAX_POLICY_DURATION {
        return Err(Error::invalid(field, "must be at most 3660 days"));
    }
    Ok(Some(d))
}

fn policy_from_wire(p: Option<&pb::BookingPolicy>) -> Result<Policy> {
    let Some(p) = p else {
        return Ok(Policy::default());
    };
    let granularity = policy_duration(p.granularity.as_ref(), "resource.policy.granularity", true)?;
    if let Some(g) = granularity {
        let day = TimeDelta::days(1).num_microseconds().unwrap_or(i64::MAX);
        let step = g.num_microseconds().unwrap_or(i64::MAX);
        if step < 1_000_000 || day % step != 0 {
            return Err(Error::invalid(
                "resource.policy.granularity",
                "must divide a day into whole seconds (15m, 30m, 1h, ...)",
            ));
        }
    }
    let policy = Policy {
        min_notice: policy_duration(p.min_notice.as_ref(), "resource.policy.min_notice", false)?,
        max_advance: policy_duration(p.max_advance.as_ref(), "resource.policy.max_advance", false)?,
        granularity,
        min_duration: policy_duration(
            p.min_duration.as_ref(),
            "resource.policy.min_duration",
            false,
        )?,
        max_duration: policy_duration(
            p.max_duration.as_ref(),
            "resource.policy.max_duration",
            true,
        )?,
        buffer_before: policy_duration(
            p.buffer_before.as_ref(),
            "resource.policy.buffer_before",
            false,
        )?,
        buffer_after: policy_duration(
            p.buffer_after.as_ref(),
            "resource.policy.buffer_after",
            false,
        )?,
        default_hold: policy_duration(
            p.default_hold.as_ref(),
            "resource.policy.default_hold",
            true,
        )?,
        max_hold: policy_duration(p.max_hold.as_ref(), "resource.policy.max_hold", true)?,
        max_quantity: (p.max_quantity > 0).then_some(p.max_quantity),
        min_cancel_notice: policy_duration(
            p.min_cancel_notice.as_ref(),
            "resource.policy.min_cancel_notice",
            false,
        )?,
        check_in_opens: policy_duration(
            p.check_in_opens.as_ref(),
            "resource.policy.check_in_opens",
            false,
        )?,
        auto_release_after: policy_duration(
            p.auto_release_after.as_ref(),
            "resource.policy.auto_release_after",
            false,
        )?,
    };
    if let (Some(min), Some(max)) = (policy.min_duration, policy.max_duration)
        && min > max
    {
        return Err(Error::invalid(
            "resource.policy.min_duration",
            "must not be longer than max_duration",
        ));
    }
    if let (Some(min), Some(max)) = (policy.min_notice, policy.max_advance)
        && min > max
    {
        return Err(Error::invalid(
            "resource.policy.min_notice",
            "must not be longer than max_advance",
        ));
    }
    Ok(policy)
}

fn label_key(key: &str) -> Result<(), InvalidValue> {
    let ok = !key.is_empty()
        && key.len() <= 63
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(InvalidValue::new(format!(
            "label key {key:?} must be 1 to 63 characters of letters, digits, '-', '_', '.', '/'"
        )))
    }
}

fn label_value(value: &str) -> Result<(), InvalidValue> {
    if value.chars().count() > 256 || value.chars().any(char::is_control) {
        return Err(InvalidValue::new(
            "label values are at most 256 characters, none of them a control character",
        ));
    }
    Ok(())
}

/// Checks a set of labels (of a resource, or of a list's filter).
///
/// # Errors
/// [`Error::InvalidArgument`] on `field`.
pub fn check_labels(
    labels: impl IntoIterator<Item = (String, String)>,
    field: &'static str,
) -> Result<BTreeMap<String, String>> {
    let labels: BTreeMap<String, String> = labels.into_iter().collect();
    if labels.len() > MAX_LABELS {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    for (k, v) in &labels {
        label_key(k).field(field)?;
        label_value(v).field(field)?;
    }
    Ok(labels)
}

impl TryFrom<pb::Resource> for ResourceSpec {
    type Error = Error;

    /// Checks every field of a resource as a client sends it (the times and
    /// the etag are the store's and are ignored).
    fn try_from(r: pb::Resource) -> Result<Self> {
        let id = ResourceId::parse(r.id).field("resource.id")?;
        if r.display_name.chars().count() > MAX_DISPLAY_NAME_CHARS
            || r.display_name.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "resource.display_name",
                "at most 256 characters, none of them a control character",
            ));
        }
        let capacity = match r.capacity {
            0 => 1,
            c if c > MAX_CAPACITY => {
                return Err(Error::invalid(
                    "resource.capacity",
                    "must be at most 1,000,000",
                ));
            }
            c => c,
        };
        let zone: Tz = if r.time_zone.is_empty() {
            Tz::UTC
        } else {
            r.time_zone.parse().map_err(|_| {
                Error::invalid(
                    "resource.time_zone",
                    format!("{:?} is not an IANA time zone", r.time_zone),
                )
            })?
        };
        let policy = policy_from_wire(r.policy.as_ref())?;
        if r.opening_hours.len() > MAX_OPENING_HOURS {
            return Err(Error::invalid(
                "resource.opening_hours",
                format!("at most {MAX_OPENING_HOURS} periods"),
            ));
        }
        let hours = r
            .opening_hours
            .iter()
            .map(|h| {
                let day = weekday_from_wire(h.day).field("resource.opening_hours.day")?;
                if h.open_minute >= h.close_minute || h.close_minute > 1440 {
                    return Err(Error::invalid(
                        "resource.opening_hours",
                        "0 <= open_minute < close_minute <= 1440",
                    ));
                }
                Ok(WeeklyHours {
                    day,
                    // Both at most 1440: they fit.
                    open_minute: h.open_minute as u16,
                    close_minute: h.close_minute as u16,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if r.open_periods.len() > MAX_OPEN_PERIODS {
            return Err(Error::invalid(
                "resource.open_periods",
                format!("at most {MAX_OPEN_PERIODS} periods"),
            ));
        }
        let mut periods = Vec::with_capacity(r.open_periods.len());
        for p in &r.open_periods {
            let start = p
                .start
                .as_ref()
                .ok_or_else(|| Error::invalid("resource.open_periods.start", "required"))
                .and_then(|t| from_timestamp(t).field("resource.open_periods.start"))?;
            let end = p
                .end
                .as_ref()
                .ok_or_else(|| Error::invalid("resource.open_periods.end", "required"))
                .and_then(|t| from_timestamp(t).field("resource.open_periods.end"))?;
            let span = Timespan::new(start, end).field("resource.open_periods")?;
            if let Some(last) = periods.last()
                && Timespan::end(last) > span.start()
            {
                return Err(Error::invalid(
                    "resource.open_periods",
                    "periods must be in order and must not overlap",
                ));
            }
            periods.push(span);
        }
        if r.admins.len() > MAX_ADMINS {
            return Err(Error::invalid(
                "resource.admins",
                format!("at most {MAX_ADMINS} admins"),
            ));
        }
        let admins = r
            .admins
            .into_iter()
            .map(UserId::parse)
            .collect::<Result<Vec<_>, _>>()
            .field("resource.admins")?;
        let labels = check_labels(r.labels, "resource.labels")?;
        Ok(ResourceSpec {
            id,
            display_name: r.display_name,
            capacity,
            policy,
            schedule: Schedule {
                zone,
                hours,
                periods,
                closed_by_default: r.closed_by_default,
            },
            admins,
            labels,
        })
    }
}

/// The fields of a resource an update may name in its mask.
const MASKABLE: &[&str] = &[
    "display_name",
    "capacity",
    "time_zone",
    "policy",
    "opening_hours",
    "admins",
    "labels",
    "open_periods",
    "closed_by_default",
];

/// The policy fields an update may name one by one (`policy.<name>`).
const POLICY_FIELDS: &[&str] = &[
    "min_notice",
    "max_advance",
    "granularity",
    "min_duration",
    "max_duration",
    "buffer_before",
    "buffer_after",
    "default_hold",
    "max_hold",
    "max_quantity",
    "min_cancel_notice",
    "check_in_opens",
    "auto_release_after",
];

fn copy_policy_field(to: &mut pb::BookingPolicy, from: &pb::BookingPolicy, name: &str) {
    match name {
        "min_notice" => to.min_notice = from.min_notice,
        "max_advance" => to.max_advance = from.max_advance,
        "granularity" => to.granularity = from.granularity,
        "min_duration" => to.min_duration = from.min_duration,
        "max_duration" => to.max_duration = from.max_duration,
        "buffer_before" => to.buffer_before = from.buffer_before,
        "buffer_after" => to.buffer_after = from.buffer_after,
        "default_hold" => to.default_hold = from.default_hold,
        "max_hold" => to.max_hold = from.max_hold,
        "max_quantity" => to.max_quantity = from.max_quantity,
        "min_cancel_notice" => to.min_cancel_notice = from.min_cancel_notice,
        "check_in_opens" => to.check_in_opens = from.check_in_opens,
        "auto_release_after" => to.auto_release_after = from.auto_release_after,
        _ => {}
    }
}

fn policy_field_set(p: &pb::BookingPolicy, name: &str) -> bool {
    match name {
        "min_notice" => p.min_notice.is_some(),
        "max_advance" => p.max_advance.is_some(),
        "granularity" => p.granularity.is_some(),
        "min_duration" => p.min_duration.is_some(),
        "max_duration" => p.max_duration.is_some(),
        "buffer_before" => p.buffer_before.is_some(),
        "buffer_after" => p.buffer_after.is_some(),
        "default_hold" => p.default_hold.is_some(),
        "max_hold" => p.max_hold.is_some(),
        "max_quantity" => p.max_quantity != 0,
        "min_cancel_notice" => p.min_cancel_notice.is_some(),
        "check_in_opens" => p.check_in_opens.is_some(),
        "auto_release_after" => p.auto_release_after.is_some(),
        _ => false,
    }
}

/// A change to a registered resource: the fields its mask names, with the
/// values the request gives them.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourcePatch {
    /// Which resource.
    pub id: ResourceId,
    /// The etag the caller last read; `None` skips the check.
    pub etag: Option<String>,
    values: pb::Resource,
    paths: Vec<String>,
}

impl ResourcePatch {
    /// Reads an update request. An empty mask names every field the
    /// request sets (each policy field on its own).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a missing resource or id, or a mask
    /// naming a field that does not exist or cannot change.
    pub fn from_request(req: pb::UpdateResourceRequest) -> Result<Self> {
        let values = req
            .resource
            .ok_or_else(|| Error::invalid("resource", "required"))?;
        let id = ResourceId::parse(values.id.clone()).field("resource.id")?;
        let paths: Vec<String> = match req.update_mask {
            Some(mask) if !mask.paths.is_empty() => {
                for path in &mask.paths {
                    let known = MASKABLE.contains(&path.as_str())
                        || path
                            .strip_prefix("policy.")
                            .is_some_and(|f| POLICY_FIELDS.contains(&f));
                    if !known {
                        return Err(Error::invalid(
                            "update_mask",
                            format!(
                                "{path:?} is not a field an update can change (one of {}, or \
                                 policy.<field>)",
                                MASKABLE.join(", ")
                            ),
                        ));
                    }
                }
                mask.paths
            }
            _ => {
                let mut set = Vec::new();
                let v = &values;
                for (name, is_set) in [
                    ("display_name", !v.display_name.is_empty()),
                    ("capacity", v.capacity != 0),
                    ("time_zone", !v.time_zone.is_empty()),
                    ("opening_hours", !v.opening_hours.is_empty()),
                    ("admins", !v.admins.is_empty()),
                    ("labels", !v.labels.is_empty()),
                    ("open_periods", !v.open_periods.is_empty()),
                    ("closed_by_default", v.closed_by_default),
                ] {
                    if is_set {
                        set.push(name.to_string());
                    }
                }
                if let Some(p) = &v.policy {
                    for name in POLICY_FIELDS {
                        if policy_field_set(p, name) {
                            set.push(format!("policy.{name}"));
                        }
                    }
                }
                set
            }
        };
        Ok(ResourcePatch {
            id,
            etag: (!values.etag.is_empty()).then(|| values.etag.clone()),
            values,
            paths,
        })
    }

    /// `current` with the patch applied, checked as a new resource is.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first field whose new value is
    /// invalid.
    pub fn apply(&self, current: &ResourceSpec) -> Result<ResourceSpec> {
        let mut next = pb::Resource::from(current);
        let from = &self.values;
        for path in &self.paths {
            match path.as_str() {
                "display_name" => next.display_name.clone_from(&from.display_name),
                "capacity" => next.capacity = from.capacity,
                "time_zone" => next.time_zone.clone_from(&from.time_zone),
                "policy" => next.policy = from.policy,
                "opening_hours" => next.opening_hours.clone_from(&from.opening_hours),
                "admins" => next.admins.clone_from(&from.admins),
                "labels" => next.labels.clone_from(&from.labels),
                "open_periods" => next.open_periods.clone_from(&from.open_periods),
                "closed_by_default" => next.closed_by_default = from.closed_by_default,
                other => {
                    if let Some(field) = other.strip_prefix("policy.") {
                        let source = from.policy.unwrap_or_default();
                        let target = next.policy.get_or_insert_with(Default::default);
                        copy_policy_field(target, &source, field);
                    }
                }
            }
        }
        ResourceSpec::try_from(next)
    }
}

/// Which resources a list returns, and from where.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceListing {
    /// Only those carrying every one of these labels.
    pub labels: BTreeMap<String, String>,
    /// Deleted ones too.
    pub show_deleted: bool,
    /// At most this many (1 to 1000).
    pub page_size: usize,
    /// After this id (from the previous page's token).
    pub after: Option<ResourceId>,
}

/// A page of resources and the token of the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePage {
    /// The resources, by id.
    pub resources: Vec<Resource>,
    /// Where the next page starts; `None` when this is the last.
    pub next_after: Option<ResourceId>,
}

/// Resource list pages hold this many unless asked otherwise.
pub const DEFAULT_RESOURCE_PAGE_SIZE: usize = 100;

impl TryFrom<pb::ListResourcesRequest> for ResourceListing {
    type Error = Error;

    fn try_from(req: pb::ListResourcesRequest) -> Result<Self> {
        let page_size = match req.page_size {
            0 => DEFAULT_RESOURCE_PAGE_SIZE,
            n @ 1..=1000 => n as usize,
            _ => return Err(Error::invalid("page_size", "must be 0 to 1000")),
        };
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(decode_resource_token(&req.page_token)?)
        };
        Ok(ResourceListing {
            labels: check_labels(req.labels, "labels")?,
            show_deleted: req.show_deleted,
            page_size,
            after,
        })
    }
}

/// The token of the page after `id`.
pub fn resource_page_token(id: &ResourceId) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("r1:{id}"))
}

fn decode_resource_token(token: &str) -> Result<ResourceId> {
    use base64::Engine as _;
    let bad = || Error::invalid("page_token", "not a token from an earlier ListResources");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let id = text.strip_prefix("r1:").ok_or_else(bad)?;
    ResourceId::parse(id).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use prost_types::FieldMask;

    use super::*;

    fn hotel() -> pb::Resource {
        pb::Resource {
            id: "hotel-double".into(),
            capacity: 12,
            time_zone: "Europe/Paris".into(),
            policy: Some(pb::BookingPolicy {
                min_notice: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            labels: [("kind".to_string(), "room".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_resource_survives_the_wire_both_ways() {
        let spec = ResourceSpec::try_from(hotel()).unwrap();
        assert_eq!(spec.capacity, 12);
        assert_eq!(spec.policy.min_notice, Some(TimeDelta::hours(1)));
        let back = ResourceSpec::try_from(pb::Resource::from(&spec)).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<(pb::Resource, &str)> = vec![
            (
                pb::Resource {
                    capacity: MAX_CAPACITY + 1,
                    ..hotel()
                },
                "resource.capacity",
            ),
            (
                pb::Resource {
                    time_zone: "Mars/Olympus".into(),
                    ..hotel()
                },
                "resource.time_zone",
            ),
            (
                pb::Resource {
                    opening_hours: vec![pb::OpeningHours {
                        day: 1,
                        open_minute: 600,
                        close_minute: 500,
                    }],
                    ..hotel()
                },
                "resource.opening_hours",
            ),
            (
                pb::Resource {
                    policy: Some(pb::BookingPolicy {
                        granularity: Some(prost_types::Duration {
                            seconds: 7 * 60,
                            nanos: 0,
                        }),
                        ..Default::default()
                    }),
                    ..hotel()
                },
                "resource.policy.granularity",
            ),
            (
                pb::Resource {
                    labels: [("bad key".to_string(), "x".to_string())].into(),
                    ..hotel()
                },
                "resource.labels",
            ),
        ];
        for (resource, field) in cases {
            match ResourceSpec::try_from(resource) {
                Err(Error::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_mask_replaces_only_what_it_names() {
        let current = ResourceSpec::try_from(hotel()).unwrap();
        let req = pb::UpdateResourceRequest {
            resource: Some(pb::Resource {
                id: "hotel-double".into(),
                capacity: 10,
                display_name: "not named in the mask".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["capacity".into(), "labels".into()],
            }),
        };
        let next = ResourcePatch::from_request(req)
            .unwrap()
            .apply(&current)
            .unwrap();
        assert_eq!(next.capacity, 10);
        assert!(next.labels.is_empty(), "a named map is replaced");
        assert_eq!(next.display_name, "");
        assert_eq!(next.policy.min_notice, Some(TimeDelta::hours(1)));

        let req = pb::UpdateResourceRequest {
            resource: Some(pb::Resource {
                id: "hotel-double".into(),
                policy: Some(pb::BookingPolicy {
                    max_quantity: 2,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: None,
        };
        let next = ResourcePatch::from_request(req)
            .unwrap()
            .apply(&current)
            .unwrap();
        assert_eq!(next.policy.max_quantity, Some(2));
        assert_eq!(
            next.policy.min_notice,
            Some(TimeDelta::hours(1)),
            "without a mask, only the policy fields set change"
        );

        let req = pb::UpdateResourceRequest {
            resource: Some(pb::Resource {
                id: "hotel-double".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["created_at".into()],
            }),
        };
        assert!(matches!(
            ResourcePatch::from_request(req),
            Err(Error::InvalidArgument {
                field: "update_mask",
                ..
            })
        ));
    }

    #[test]
    fn page_tokens_round_trip_and_bad_ones_are_named() {
        let id = ResourceId::parse("room-1").unwrap();
        let listing = ResourceListing::try_from(pb::ListResourcesRequest {
            page_token: resource_page_token(&id),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(listing.after, Some(id));
        assert_eq!(listing.page_size, DEFAULT_RESOURCE_PAGE_SIZE);
        let bad = ResourceListing::try_from(pb::ListResourcesRequest {
            page_token: "nope".into(),
            ..Default::default()
        });
        assert!(matches!(
            bad,
            Err(Error::InvalidArgument {
                field: "page_token",
                ..
            })
        ));
    }
}
