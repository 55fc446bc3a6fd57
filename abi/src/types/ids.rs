//! Identifiers: user, resource and request ids (bounded strings) and
//! reservation ids (UUIDs).

use std::{fmt, str::FromStr};

use uuid::Uuid;

use crate::error::InvalidValue;

/// The most characters a user, resource or request id may have.
pub const MAX_ID_CHARS: usize = 64;

fn check_bounded_id(value: &str) -> Result<(), InvalidValue> {
    if value.is_empty() {
        return Err(InvalidValue::new("must not be empty"));
    }
    let chars = value.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(InvalidValue::new(format!(
            "must be at most {MAX_ID_CHARS} characters, got {chars}"
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(InvalidValue::new(format!(
            "must not contain control characters, found {c:?}"
        )));
    }
    Ok(())
}

macro_rules! bounded_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses an id: 1 to 64 characters, none of them a control character.
            ///
            /// # Errors
            /// When the value is empty, too long or holds a control character.
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
                let value = value.into();
                check_bounded_id(&value)?;
                Ok(Self(value))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidValue;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

bounded_id! {
    /// Who holds a reservation.
    UserId
}

impl UserId {
    /// The empty user id of a redacted reservation: never parsed, only
    /// made by [`crate::Reservation::redacted`].
    pub(crate) fn redacted() -> Self {
        UserId(String::new())
    }
}

bounded_id! {
    /// What is reserved: a room, a seat, a slot.
    ResourceId
}

bounded_id! {
    /// A client-chosen idempotency key: a retried reserve with the same
    /// (user, request id) returns the first result.
    RequestId
}

/// An id that is a UUID assigned by rsvp.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }

            /// Parses a UUID in any of its usual spellings.
            ///
            /// # Errors
            /// When the text is not a UUID.
            pub fn parse(value: &str) -> Result<Self, InvalidValue> {
                if value.is_empty() {
                    return Err(InvalidValue::new("must not be empty"));
                }
                Uuid::parse_str(value)
                    .map($name)
                    .map_err(|_| InvalidValue::new("must be a UUID"))
            }

            /// The UUID.
            pub fn uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                $name(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

uuid_id! {
    /// A reservation's id, a UUID assigned by rsvp.
    ReservationId
}

uuid_id! {
    /// An API token's id: what `token list` shows and `token revoke`
    /// takes; it is not the secret.
    TokenId
}

uuid_id! {
    /// A booking's id (several reservations made together), a UUID
    /// assigned by rsvp.
    BookingId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_ids_accept_up_to_64_characters() {
        let ok = "é".repeat(64);
        assert!(UserId::parse(ok).is_ok());
        assert!(UserId::parse("x".repeat(65)).is_err());
        assert!(ResourceId::parse("").is_err());
        assert!(ResourceId::parse("room\n1").is_err());
        assert!(ResourceId::parse("room\u{0}1").is_err());
        assert!(ResourceId::parse("room\u{85}1").is_err());
        assert_eq!(
            ResourceId::parse("x' OR '1'='1").unwrap().as_str(),
            "x' OR '1'='1"
        );
    }

    #[test]
    fn reservation_ids_parse_uuids_only() {
        let id = ReservationId::new();
        assert_eq!(ReservationId::parse(&id.to_string()).unwrap(), id);
        assert!(ReservationId::parse("not-a-uuid").is_err());
        assert!(ReservationId::parse("").is_err());
    }
}
