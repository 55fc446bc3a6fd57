//! Who is calling: a principal and its role. The rules of what each may do
//! live in the `reservation` library's `access` module; this is the value
//! they are decided from.

use std::{fmt, str::FromStr};

use super::UserId;
use crate::{error::InvalidValue, pb};

/// What a caller may do in general; a resource's `admins` add to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything, including resources, blocks and `override_policy`.
    Admin,
    /// Acts for any user and reads everything: a backend booking for its
    /// own customers.
    Service,
    /// Acts only as itself and reads only its own reservations (and those
    /// of resources it administers).
    User,
}

impl Role {
    /// The role's name: `admin`, `service` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Service => "service",
            Role::User => "user",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "service" => Ok(Role::Service),
            "user" => Ok(Role::User),
            other => Err(InvalidValue::new(format!(
                "must be admin, service or user, got {other:?}"
            ))),
        }
    }
}

impl From<Role> for pb::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => pb::Role::Admin,
            Role::Service => pb::Role::Service,
            Role::User => pb::Role::User,
        }
    }
}

/// The caller of one request, as authentication established it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    principal: Option<UserId>,
    role: Role,
}

impl Caller {
    /// A caller that may do everything, with no name of its own: an
    /// embedded program with no users of its own, or a server running
    /// without authentication. The resources' policies still bind it
    /// unless it asks to override them.
    pub fn system() -> Self {
        Caller {
            principal: None,
            role: Role::Admin,
        }
    }

    /// An authenticated caller.
    pub fn new(principal: UserId, role: Role) -> Self {
        Caller {
            principal: Some(principal),
            role,
        }
    }

    /// The caller's name; `None` for [`Caller::system`].
    pub fn principal(&self) -> Option<&UserId> {
        self.principal.as_ref()
    }

    /// The caller's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the caller is `user`.
    pub fn is(&self, user: &UserId) -> bool {
        self.principal.as_ref() == Some(user)
    }

    /// Fills an empty `user_id` of a request with the caller's principal:
    /// an empty `user_id` means the caller. Applied to the wire request
    /// before it is read, so that the rest of the code sees a user id.
    pub fn fill_user_id(&self, user_id: &mut String) {
        if user_id.is_empty()
            && let Some(principal) = &self.principal
        {
            user_id.push_str(principal.as_str());
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.principal {
            Some(p) => write!(f, "{p} ({})", self.role),
            None => write!(f, "system ({})", self.role),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_back_their_names() {
        for role in [Role::Admin, Role::Service, Role::User] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn an_empty_user_id_means_the_caller() {
        let alice = Caller::new(UserId::parse("alice").unwrap(), Role::User);
        let mut empty = String::new();
        alice.fill_user_id(&mut empty);
        assert_eq!(empty, "alice");
        let mut named = "bob".to_string();
        alice.fill_user_id(&mut named);
        assert_eq!(named, "bob");
        let mut system = String::new();
        Caller::system().fill_user_id(&mut system);
        assert_eq!(system, "", "the system caller has no name to fill in");
    }
}
