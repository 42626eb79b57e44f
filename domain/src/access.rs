//! People who use Opora: their accounts, and the roles they hold over places.
//!
//! A role is always held over a scope (the whole federation, a region, a municipality, an
//! institution, an NGO, or a list of regions), and which scopes a role may have is a rule
//! of the domain: a regional curator works in one region, an NGO operator for one NGO. A
//! user may hold several roles. Accounts are never deleted: a disabled user keeps its
//! history, and its actor name stays meaningful in the log.
//!
//! Secrets (the password hash, the second factor's seed) are not facts and are not in the
//! log; the events only record that they were set.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::reference::{labelled_enum, RegionCode};
use crate::{clean_text, DatedCommand};

/// Namespace of user ids: a user's id is derived from its login, so a login is unique by
/// construction (two creations of the same login meet in one stream).
const USER_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_5553_4552_5300_0000_0001);

labelled_enum!(
    /// What a user does. Labels are the Russian names shown in the interface.
    Role, Role {
        Administrator => ("administrator", "администратор"),
        MinistryAnalyst => ("ministry_analyst", "аналитик министерства"),
        RegionalCurator => ("regional_curator", "региональный куратор"),
        ConsiliumSecretary => ("consilium_secretary", "секретарь консилиума"),
        NgoOperator => ("ngo_operator", "оператор НКО"),
        MunicipalEducation => ("municipal_education", "муниципальный орган управления образованием"),
        SignalOperator => ("signal_operator", "оператор сигналов"),
    }
);

impl Role {
    /// Roles that see children's personal data must sign in with a second factor.
    pub fn requires_second_factor(self) -> bool {
        matches!(
            self,
            Role::Administrator | Role::RegionalCurator | Role::ConsiliumSecretary
        )
    }

    /// Roles that may read the personal data of children and families in their scope.
    pub fn sees_personal_data(self) -> bool {
        matches!(
            self,
            Role::Administrator
                | Role::RegionalCurator
                | Role::ConsiliumSecretary
                | Role::NgoOperator
        )
    }
}

/// The places a role is held over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "level", rename_all = "snake_case")]
pub enum Scope {
    Federal,
    Region {
        region: RegionCode,
    },
    Municipality {
        region: RegionCode,
        municipality: Uuid,
    },
    Institution {
        region: RegionCode,
        institution: Uuid,
    },
    Ngo {
        region: RegionCode,
        ngo: Uuid,
    },
    Regions {
        regions: Vec<RegionCode>,
    },
}

impl Scope {
    /// The regions this scope lies in; `None` for the whole federation.
    pub fn regions(&self) -> Option<Vec<RegionCode>> {
        match self {
            Scope::Federal => None,
            Scope::Region { region }
            | Scope::Municipality { region, .. }
            | Scope::Institution { region, .. }
            | Scope::Ngo { region, .. } => Some(vec![region.clone()]),
            Scope::Regions { regions } => Some(regions.clone()),
        }
    }

    fn level(&self) -> &'static str {
        match self {
            Scope::Federal => "federal",
            Scope::Region { .. } => "region",
            Scope::Municipality { .. } => "municipality",
            Scope::Institution { .. } => "institution",
            Scope::Ngo { .. } => "ngo",
            Scope::Regions { .. } => "regions",
        }
    }
}

/// One role over one scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub role: Role,
    pub scope: Scope,
}

impl Grant {
    /// Checks that the role may be held over the scope.
    pub fn new(role: Role, scope: Scope) -> Result<Self, UserError> {
        let allowed = match role {
            Role::Administrator => matches!(scope, Scope::Federal),
            Role::MinistryAnalyst => matches!(scope, Scope::Federal | Scope::Region { .. }),
            Role::RegionalCurator => matches!(scope, Scope::Region { .. }),
            Role::ConsiliumSecretary => matches!(
                scope,
                Scope::Region { .. } | Scope::Municipality { .. } | Scope::Institution { .. }
            ),
            Role::NgoOperator => matches!(scope, Scope::Ngo { .. }),
            Role::MunicipalEducation => matches!(scope, Scope::Municipality { .. }),
            Role::SignalOperator => {
                matches!(&scope, Scope::Regions { regions } if !regions.is_empty())
            }
        };
        if allowed {
            Ok(Self { role, scope })
        } else {
            Err(UserError::ScopeNotAllowed {
                role: role.label_ru().to_owned(),
                level: scope.level().to_owned(),
            })
        }
    }
}

/// A login: 3 to 64 characters of latin letters, digits, dot, dash and underscore, kept in
/// lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Login(String);

impl Login {
    pub fn parse(raw: &str) -> Result<Self, UserError> {
        let login = raw.trim().to_lowercase();
        let valid = (3..=64).contains(&login.len())
            && login
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if valid {
            Ok(Self(login))
        } else {
            Err(UserError::BadLogin)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The id of the user with this login.
    pub fn user_id(&self) -> Uuid {
        Uuid::new_v5(&USER_NAMESPACE, self.0.as_bytes())
    }
}

/// Free text written by staff (a name, a contact, a reason): trimmed, 1 to 300 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(String);

impl Text {
    pub const MAX_CHARS: usize = 300;
    pub fn parse(raw: &str) -> Option<Self> {
        let text = clean_text(raw)?;
        (text.chars().count() <= Self::MAX_CHARS).then_some(Self(text))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    CreateUser {
        login: Login,
        display_name: Text,
        contact: Option<Text>,
        grants: Vec<Grant>,
    },
    ChangeGrants {
        grants: Vec<Grant>,
    },
    DisableUser {
        reason: Text,
    },
    EnableUser,
    RecordPasswordSet,
    RecordSecondFactorEnrolled,
    ResetSecondFactor,
    SignOutEverywhere,
}

impl DatedCommand for UserCommand {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    UserCreated {
        login: Login,
        display_name: Text,
        contact: Option<Text>,
        grants: Vec<Grant>,
    },
    UserGrantsChanged {
        grants: Vec<Grant>,
    },
    UserDisabled {
        reason: Text,
    },
    UserEnabled,
    UserPasswordSet,
    UserSecondFactorEnrolled,
    UserSecondFactorReset,
    UserSignedOutEverywhere,
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserCreated { .. } => "UserCreated",
            Self::UserGrantsChanged { .. } => "UserGrantsChanged",
            Self::UserDisabled { .. } => "UserDisabled",
            Self::UserEnabled => "UserEnabled",
            Self::UserPasswordSet => "UserPasswordSet",
            Self::UserSecondFactorEnrolled => "UserSecondFactorEnrolled",
            Self::UserSecondFactorReset => "UserSecondFactorReset",
            Self::UserSignedOutEverywhere => "UserSignedOutEverywhere",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum UserError {
    #[error("Имя для входа: от 3 до 64 латинских букв, цифр, точек, дефисов или подчёркиваний.")]
    BadLogin,
    #[error("Пользователь с таким именем для входа уже есть.")]
    AlreadyExists,
    #[error("Пользователь не найден.")]
    NotFound,
    #[error("Нужна хотя бы одна роль.")]
    NoGrants,
    #[error("Одна и та же роль с той же областью указана дважды.")]
    DuplicateGrant,
    #[error("Роль «{role}» не может действовать на уровне «{level}».")]
    ScopeNotAllowed { role: String, level: String },
    #[error("Пользователь уже отключён.")]
    AlreadyDisabled,
    #[error("Пользователь не отключён.")]
    NotDisabled,
    #[error("Пользователь отключён; сначала включите его.")]
    Disabled,
    #[error("Роли не изменились.")]
    SameGrants,
    #[error("Второй фактор не был подключён.")]
    NoSecondFactor,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    login: Option<Login>,
    grants: Vec<Grant>,
    disabled: bool,
    second_factor: bool,
}

impl User {
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }
    fn require_active(&self) -> Result<(), UserError> {
        if self.login.is_none() {
            Err(UserError::NotFound)
        } else if self.disabled {
            Err(UserError::Disabled)
        } else {
            Ok(())
        }
    }
}

fn check_grants(grants: &[Grant]) -> Result<(), UserError> {
    if grants.is_empty() {
        return Err(UserError::NoGrants);
    }
    for (i, grant) in grants.iter().enumerate() {
        Grant::new(grant.role, grant.scope.clone())?;
        if grants[..i].contains(grant) {
            return Err(UserError::DuplicateGrant);
        }
    }
    Ok(())
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: UserCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), UserError> {
        let event = match command {
            UserCommand::CreateUser {
                login,
                display_name,
                contact,
                grants,
            } => {
                if self.login.is_some() {
                    return Err(UserError::AlreadyExists);
                }
                check_grants(&grants)?;
                UserEvent::UserCreated {
                    login,
                    display_name,
                    contact,
                    grants,
                }
            }
            UserCommand::ChangeGrants { grants } => {
                if self.login.is_none() {
                    return Err(UserError::NotFound);
                }
                check_grants(&grants)?;
                if grants == self.grants {
                    return Err(UserError::SameGrants);
                }
                UserEvent::UserGrantsChanged { grants }
            }
            UserCommand::DisableUser { reason } => {
                if self.login.is_none() {
                    return Err(UserError::NotFound);
                }
                if self.disabled {
                    return Err(UserError::AlreadyDisabled);
                }
                UserEvent::UserDisabled { reason }
            }
            UserCommand::EnableUser => {
                if self.login.is_none() {
                    return Err(UserError::NotFound);
                }
                if !self.disabled {
                    return Err(UserError::NotDisabled);
                }
                UserEvent::UserEnabled
            }
            UserCommand::RecordPasswordSet => {
                self.require_active()?;
                UserEvent::UserPasswordSet
            }
            UserCommand::RecordSecondFactorEnrolled => {
                self.require_active()?;
                UserEvent::UserSecondFactorEnrolled
            }
            UserCommand::ResetSecondFactor => {
                if self.login.is_none() {
                    return Err(UserError::NotFound);
                }
                if !self.second_factor {
                    return Err(UserError::NoSecondFactor);
                }
                UserEvent::UserSecondFactorReset
            }
            UserCommand::SignOutEverywhere => {
                if self.login.is_none() {
                    return Err(UserError::NotFound);
                }
                UserEvent::UserSignedOutEverywhere
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: UserEvent) {
        match event {
            UserEvent::UserCreated { login, grants, .. } => {
                self.login = Some(login);
                self.grants = grants;
            }
            UserEvent::UserGrantsChanged { grants } => self.grants = grants,
            UserEvent::UserDisabled { .. } => self.disabled = true,
            UserEvent::UserEnabled => self.disabled = false,
            UserEvent::UserSecondFactorEnrolled => self.second_factor = true,
            UserEvent::UserSecondFactorReset => self.second_factor = false,
            UserEvent::UserPasswordSet | UserEvent::UserSignedOutEverywhere => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn tatarstan() -> Scope {
        Scope::Region {
            region: RegionCode::parse("16").unwrap(),
        }
    }

    fn create(grants: Vec<Grant>) -> UserCommand {
        UserCommand::CreateUser {
            login: Login::parse("Curator.16").unwrap(),
            display_name: Text::parse("Ирина Петрова").unwrap(),
            contact: None,
            grants,
        }
    }

    fn curator() -> Grant {
        Grant::new(Role::RegionalCurator, tatarstan()).unwrap()
    }

    #[test]
    fn roles_only_hold_the_scopes_the_practice_gives_them() {
        assert!(Grant::new(Role::RegionalCurator, Scope::Federal).is_err());
        assert!(Grant::new(Role::Administrator, tatarstan()).is_err());
        assert!(Grant::new(Role::MinistryAnalyst, Scope::Federal).is_ok());
        assert!(Grant::new(Role::MinistryAnalyst, tatarstan()).is_ok());
        assert!(Grant::new(Role::SignalOperator, Scope::Regions { regions: vec![] }).is_err());
        assert!(Grant::new(Role::ConsiliumSecretary, tatarstan()).is_ok());
    }

    #[test]
    fn logins_are_normalised_and_give_stable_ids() {
        let login = Login::parse("  Curator.16 ").unwrap();
        assert_eq!(login.as_str(), "curator.16");
        assert_eq!(
            login.user_id(),
            Login::parse("CURATOR.16").unwrap().user_id()
        );
        assert_eq!(Login::parse("иван"), Err(UserError::BadLogin));
        assert_eq!(Login::parse("ab"), Err(UserError::BadLogin));
    }

    #[test]
    fn a_user_is_created_once_with_valid_grants() {
        TestFramework::<User>::with(())
            .given_no_previous_events()
            .when(create(vec![]))
            .then_expect_error(UserError::NoGrants);
        TestFramework::<User>::with(())
            .given_no_previous_events()
            .when(create(vec![curator(), curator()]))
            .then_expect_error(UserError::DuplicateGrant);
        let created = UserEvent::UserCreated {
            login: Login::parse("curator.16").unwrap(),
            display_name: Text::parse("Ирина Петрова").unwrap(),
            contact: None,
            grants: vec![curator()],
        };
        TestFramework::<User>::with(())
            .given_no_previous_events()
            .when(create(vec![curator()]))
            .then_expect_events(vec![created.clone()]);
        TestFramework::<User>::with(())
            .given(vec![created])
            .when(create(vec![curator()]))
            .then_expect_error(UserError::AlreadyExists);
    }

    #[test]
    fn a_disabled_user_keeps_its_history_and_can_be_enabled() {
        let created = UserEvent::UserCreated {
            login: Login::parse("curator.16").unwrap(),
            display_name: Text::parse("Ирина Петрова").unwrap(),
            contact: None,
            grants: vec![curator()],
        };
        let reason = Text::parse("уволилась").unwrap();
        TestFramework::<User>::with(())
            .given(vec![
                created.clone(),
                UserEvent::UserDisabled {
                    reason: reason.clone(),
                },
            ])
            .when(UserCommand::RecordPasswordSet)
            .then_expect_error(UserError::Disabled);
        TestFramework::<User>::with(())
            .given(vec![created, UserEvent::UserDisabled { reason }])
            .when(UserCommand::EnableUser)
            .then_expect_events(vec![UserEvent::UserEnabled]);
    }
}
