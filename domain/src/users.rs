//! User accounts: names, passwords and the rules of the account lifecycle.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::events::*;
use crate::ids::UserId;
use crate::text::{self, Email, TextError};
use crate::vehicle::Role;

/// A login name: 3 to 32 of `a-z 0-9 . _ -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("username must be 3 to 32 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit")]
    BadUsername,
    #[error("password must be at least 8 characters")]
    WeakPassword,
    #[error("password {0}")]
    BadPassword(TextError),
    #[error("email {0}")]
    BadEmail(TextError),
    #[error("username is taken")]
    UsernameTaken,
    #[error("user does not exist")]
    NotFound,
    #[error("user already exists")]
    AlreadyExists,
    #[error("user is already {0}")]
    Unchanged(&'static str),
    #[error("you cannot {0} your own account")]
    SelfChange(&'static str),
}

impl Username {
    pub fn parse(raw: &str) -> Result<Self, UserError> {
        let ok = (3..=32).contains(&raw.len())
            && raw.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
        if ok { Ok(Self(raw.to_owned())) } else { Err(UserError::BadUsername) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks the password policy; the gateway hashes what passes.
pub fn check_password(password: &str) -> Result<(), UserError> {
    text::check(password, text::PASSWORD_MAX).map_err(UserError::BadPassword)?;
    if password.chars().count() >= 8 { Ok(()) } else { Err(UserError::WeakPassword) }
}

/// An optional e-mail address, checked.
pub fn parse_email(raw: Option<&str>) -> Result<Option<Email>, UserError> {
    raw.map(Email::parse).transpose().map_err(UserError::BadEmail)
}

/// What an admin may let a user do beyond their role. New variants go at the end: the
/// position is what postcard stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    /// Run operations that change a vehicle ([`crate::risk::Risk::Change`]).
    VehicleChanges,
}

impl Permission {
    pub const ALL: [Self; 1] = [Self::VehicleChanges];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::VehicleChanges => "vehicle-changes",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }
}

/// An account as its events say it is: what sign-in, refresh and every token check decide on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserState {
    pub user_id: Option<UserId>,
    pub username: Option<String>,
    pub role: Option<Role>,
    pub active: bool,
    /// PHC string of the current password.
    pub password_hash: Option<String>,
    /// Granted beyond the role.
    pub permissions: BTreeSet<Permission>,
}

impl UserState {
    /// Whether the account may do what `permission` guards: admins may do everything.
    pub fn holds(&self, permission: Permission) -> bool {
        self.role == Some(Role::Admin) || self.permissions.contains(&permission)
    }

    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        events.into_iter().fold(Self::default(), evolve)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserIntent {
    Create(UserCreated),
    SetRole { role: Role, by: UserId, at: OffsetDateTime },
    SetPassword { password_hash: String, by: UserId, at: OffsetDateTime },
    Deactivate { by: UserId, at: OffsetDateTime },
    Reactivate { by: UserId, at: OffsetDateTime },
    Grant { permission: Permission, by: UserId, at: OffsetDateTime },
    Revoke { permission: Permission, by: UserId, at: OffsetDateTime },
}

pub fn decide(state: &UserState, intent: UserIntent) -> Result<Vec<Event>, UserError> {
    let Some(user_id) = state.user_id else {
        return match intent {
            UserIntent::Create(created) => Ok(vec![Event::UserCreated(created)]),
            _ => Err(UserError::NotFound),
        };
    };
    let event = match intent {
        UserIntent::Create(_) => return Err(UserError::AlreadyExists),
        UserIntent::SetRole { role, by, at } => {
            if state.role == Some(role) {
                return Err(UserError::Unchanged(role.as_str()));
            }
            if by == user_id {
                return Err(UserError::SelfChange("change the role of"));
            }
            Event::RoleChanged(RoleChanged { user_id, role, changed_by: by, at })
        }
        UserIntent::SetPassword { password_hash, by, at } => {
            Event::PasswordChanged(PasswordChanged { user_id, password_hash, changed_by: by, at })
        }
        UserIntent::Deactivate { by, at } => {
            if !state.active {
                return Err(UserError::Unchanged("deactivated"));
            }
            if by == user_id {
                return Err(UserError::SelfChange("deactivate"));
            }
            Event::UserDeactivated(UserDeactivated { user_id, changed_by: by, at })
        }
        UserIntent::Reactivate { by, at } => {
            if state.active {
                return Err(UserError::Unchanged("active"));
            }
            Event::UserReactivated(UserReactivated { user_id, changed_by: by, at })
        }
        UserIntent::Grant { permission, by, at } => {
            if state.permissions.contains(&permission) {
                return Err(UserError::Unchanged("granted that"));
            }
            Event::PermissionGranted(PermissionGranted { user_id, permission, changed_by: by, at })
        }
        UserIntent::Revoke { permission, by, at } => {
            if !state.permissions.contains(&permission) {
                return Err(UserError::Unchanged("without that"));
            }
            Event::PermissionRevoked(PermissionRevoked { user_id, permission, changed_by: by, at })
        }
    };
    Ok(vec![event])
}

/// The account an account event belongs to (`None` for every other event).
pub fn account_of(event: &Event) -> Option<UserId> {
    match event {
        Event::UserCreated(e) => Some(e.user_id),
        Event::RoleChanged(e) => Some(e.user_id),
        Event::PasswordChanged(e) => Some(e.user_id),
        Event::UserDeactivated(e) => Some(e.user_id),
        Event::UserReactivated(e) => Some(e.user_id),
        Event::PermissionGranted(e) => Some(e.user_id),
        Event::PermissionRevoked(e) => Some(e.user_id),
        _ => None,
    }
}

pub fn evolve(mut state: UserState, event: &Event) -> UserState {
    match event {
        Event::UserCreated(e) => {
            state.user_id = Some(e.user_id);
            state.username = Some(e.username.clone());
            state.role = Some(e.role);
            state.active = true;
            state.password_hash = Some(e.password_hash.clone());
        }
        Event::RoleChanged(e) => state.role = Some(e.role),
        Event::PasswordChanged(e) => state.password_hash = Some(e.password_hash.clone()),
        Event::UserDeactivated(_) => state.active = false,
        Event::UserReactivated(_) => state.active = true,
        Event::PermissionGranted(e) => {
            state.permissions.insert(e.permission);
        }
        Event::PermissionRevoked(e) => {
            state.permissions.remove(&e.permission);
        }
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn at() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
    }
    fn alice() -> UserId {
        UserId::from_uuid(Uuid::from_u128(1))
    }
    fn admin() -> UserId {
        UserId::from_uuid(Uuid::from_u128(2))
    }
    fn created() -> Event {
        Event::UserCreated(UserCreated {
            user_id: alice(),
            username: "alice".into(),
            role: Role::Engineer,
            email: None,
            password_hash: "$argon2id$x".into(),
            created_at: at(),
        })
    }

    #[test]
    fn usernames_are_plain_lowercase_names() {
        assert!(Username::parse("engineer").is_ok());
        assert!(Username::parse("j.doe-2").is_ok());
        for bad in ["ab", "Alice", "-x1", "a b", "x".repeat(33).as_str(), "ünï"] {
            assert_eq!(Username::parse(bad), Err(UserError::BadUsername), "{bad}");
        }
    }

    #[test]
    fn passwords_need_eight_characters() {
        assert_eq!(check_password("short"), Err(UserError::WeakPassword));
        assert!(check_password("admin123").is_ok());
    }

    #[test]
    fn passwords_and_emails_with_control_characters_or_over_the_cap_are_refused() {
        assert_eq!(check_password("admin\0pass123"), Err(UserError::BadPassword(TextError::ControlCharacter)));
        let long = "x".repeat(text::PASSWORD_MAX + 1);
        assert_eq!(check_password(&long), Err(UserError::BadPassword(TextError::TooLong { max: text::PASSWORD_MAX })));
        assert!(matches!(parse_email(Some("a\0@example.com")), Err(UserError::BadEmail(_))));
        assert_eq!(parse_email(None), Ok(None));
    }

    #[test]
    fn given_nothing_when_create_then_created_and_active() {
        let Event::UserCreated(c) = created() else { unreachable!() };
        let events = decide(&UserState::default(), UserIntent::Create(c)).unwrap();
        let state = UserState::replay(&events);
        assert_eq!((state.role, state.active), (Some(Role::Engineer), true));
    }

    #[test]
    fn given_nothing_when_anything_else_then_not_found() {
        let intent = UserIntent::Deactivate { by: admin(), at: at() };
        assert_eq!(decide(&UserState::default(), intent), Err(UserError::NotFound));
    }

    #[test]
    fn given_user_when_create_again_then_already_exists() {
        let Event::UserCreated(c) = created() else { unreachable!() };
        assert_eq!(decide(&UserState::replay(&[created()]), UserIntent::Create(c)), Err(UserError::AlreadyExists));
    }

    #[test]
    fn given_user_when_role_changed_then_new_role_and_same_role_is_refused() {
        let state = UserState::replay(&[created()]);
        let events = decide(&state, UserIntent::SetRole { role: Role::Viewer, by: admin(), at: at() }).unwrap();
        let mut all = vec![created()];
        all.extend(events);
        assert_eq!(UserState::replay(&all).role, Some(Role::Viewer));
        let again = decide(&UserState::replay(&all), UserIntent::SetRole { role: Role::Viewer, by: admin(), at: at() });
        assert_eq!(again, Err(UserError::Unchanged("viewer")));
    }

    #[test]
    fn nobody_demotes_or_deactivates_themselves() {
        let state = UserState::replay(&[created()]);
        let demote = UserIntent::SetRole { role: Role::Viewer, by: alice(), at: at() };
        assert_eq!(decide(&state, demote), Err(UserError::SelfChange("change the role of")));
        assert_eq!(
            decide(&state, UserIntent::Deactivate { by: alice(), at: at() }),
            Err(UserError::SelfChange("deactivate"))
        );
    }

    #[test]
    fn deactivate_and_reactivate_toggle_and_refuse_repeats() {
        let deactivated = Event::UserDeactivated(UserDeactivated { user_id: alice(), changed_by: admin(), at: at() });
        let state = UserState::replay(&[created(), deactivated.clone()]);
        assert!(!state.active);
        assert_eq!(
            decide(&state, UserIntent::Deactivate { by: admin(), at: at() }),
            Err(UserError::Unchanged("deactivated"))
        );
        let events = decide(&state, UserIntent::Reactivate { by: admin(), at: at() }).unwrap();
        assert!(UserState::replay(&[created(), deactivated, events[0].clone()]).active);
    }

    #[test]
    fn given_user_when_granted_vehicle_changes_then_held_until_revoked_and_repeats_are_refused() {
        let state = UserState::replay(&[created()]);
        assert!(!state.holds(Permission::VehicleChanges));
        let grant = UserIntent::Grant { permission: Permission::VehicleChanges, by: admin(), at: at() };
        let granted = decide(&state, grant.clone()).unwrap();
        let mut all = vec![created()];
        all.extend(granted);
        let state = UserState::replay(&all);
        assert!(state.holds(Permission::VehicleChanges));
        assert_eq!(decide(&state, grant), Err(UserError::Unchanged("granted that")));
        let revoke = UserIntent::Revoke { permission: Permission::VehicleChanges, by: admin(), at: at() };
        all.extend(decide(&state, revoke.clone()).unwrap());
        let state = UserState::replay(&all);
        assert!(!state.holds(Permission::VehicleChanges));
        assert_eq!(decide(&state, revoke), Err(UserError::Unchanged("without that")));
    }

    #[test]
    fn admins_hold_every_permission() {
        let Event::UserCreated(c) = created() else { unreachable!() };
        let admin = Event::UserCreated(UserCreated { role: Role::Admin, ..c });
        assert!(UserState::replay(&[admin]).holds(Permission::VehicleChanges));
    }

    #[test]
    fn a_password_change_is_recorded_as_a_hash() {
        let state = UserState::replay(&[created()]);
        let events =
            decide(&state, UserIntent::SetPassword { password_hash: "$argon2id$new".into(), by: admin(), at: at() })
                .unwrap();
        assert!(matches!(&events[..], [Event::PasswordChanged(p)] if p.password_hash == "$argon2id$new"));
    }
}
