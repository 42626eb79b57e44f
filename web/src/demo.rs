//! Demo data for `opora serve --demo` (what `./scripts/run` starts): two organisations, one
//! user per role, and a few fictional people. Never loaded without `--demo`: the demo
//! passwords are public (README).

use anyhow::{Context, Result};
use opora_domain::access::{Grant, Login, Role, Scope, Text};
use opora_domain::organisation::{
    organisation_id, Organisation, OrganisationCommand, OrganisationKind,
};
use opora_domain::person::{AgeBand, Person, PersonCommand, PersonKind, PersonalData, Sex};
use opora_domain::reference::{municipality_id, PlaceName, RegionCode};
use opora_store::{CommandBus, CommandMeta, EventLog, Vault};
use time::macros::date;
use uuid::Uuid;

use crate::pages::admin::{create_user, CreateUserError, NewUser};

/// The password of every demo user.
pub const DEMO_PASSWORD: &str = "opora-demo-2026";
const DEMO_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_4445_4d4f_0000_0000_0001);
const ACTOR: &str = "system:demo";

fn meta(key: &str) -> CommandMeta {
    CommandMeta::new(ACTOR).with_command_id(Uuid::new_v5(&DEMO_NAMESPACE, key.as_bytes()))
}

fn code(raw: &str) -> Result<RegionCode> {
    Ok(RegionCode::parse(raw)?)
}

fn name(raw: &str) -> Result<PlaceName> {
    Ok(PlaceName::parse(raw)?)
}

/// The demo users: login, name, role, and what the README says of them.
pub fn demo_users() -> Result<Vec<(&'static str, &'static str, Grant)>> {
    let tatarstan = code("16")?;
    let altai = code("22")?;
    let ngo = organisation_id(&tatarstan, &name("АНО «Семья рядом»")?);
    let kazan = municipality_id(&tatarstan, &name("Казань")?);
    Ok(vec![
        (
            "admin",
            "Администратор (демо)",
            Grant::new(Role::Administrator, Scope::Federal)?,
        ),
        (
            "analyst",
            "Аналитик министерства (демо)",
            Grant::new(Role::MinistryAnalyst, Scope::Federal)?,
        ),
        (
            "curator16",
            "Куратор Татарстана (демо)",
            Grant::new(
                Role::RegionalCurator,
                Scope::Region {
                    region: tatarstan.clone(),
                },
            )?,
        ),
        (
            "curator22",
            "Куратор Алтайского края (демо)",
            Grant::new(
                Role::RegionalCurator,
                Scope::Region {
                    region: altai.clone(),
                },
            )?,
        ),
        (
            "secretary16",
            "Секретарь регионального консилиума (демо)",
            Grant::new(
                Role::ConsiliumSecretary,
                Scope::Region {
                    region: tatarstan.clone(),
                },
            )?,
        ),
        (
            "ngo16",
            "Оператор НКО (демо)",
            Grant::new(
                Role::NgoOperator,
                Scope::Ngo {
                    region: tatarstan.clone(),
                    ngo,
                },
            )?,
        ),
        (
            "edu-kazan",
            "Управление образования Казани (демо)",
            Grant::new(
                Role::MunicipalEducation,
                Scope::Municipality {
                    region: tatarstan.clone(),
                    municipality: kazan,
                },
            )?,
        ),
        (
            "signals",
            "Оператор сигналов (демо)",
            Grant::new(
                Role::SignalOperator,
                Scope::Regions {
                    regions: vec![tatarstan, altai],
                },
            )?,
        ),
    ])
}

/// Loads the demo data; appends nothing when it is already there.
pub async fn load(log: &EventLog, vault: &Vault) -> Result<()> {
    let tatarstan = code("16")?;
    let organisations = CommandBus::<Organisation>::new(log.clone(), ());
    for (kind, org_name) in [
        (OrganisationKind::Ngo, "АНО «Семья рядом»"),
        (
            OrganisationKind::Institution,
            "ГБУ «Детский дом № 1» (демо)",
        ),
    ] {
        let org_name = name(org_name)?;
        let id = organisation_id(&tatarstan, &org_name);
        organisations
            .execute(
                &id.to_string(),
                OrganisationCommand::RegisterOrganisation {
                    kind,
                    region: tatarstan.clone(),
                    municipality: Some(municipality_id(&tatarstan, &name("Казань")?)),
                    name: org_name,
                },
                &meta(&format!("organisation/{id}")),
            )
            .await
            .map_err(|e| anyhow::anyhow!("demo organisation: {e}"))?;
    }
    let users = CommandBus::new(log.clone(), ());
    for (login, display_name, grant) in demo_users()? {
        match create_user(
            &users,
            log.pool(),
            NewUser {
                login: Login::parse(login)?,
                display_name: Text::parse(display_name).context("demo name")?,
                contact: None,
                grants: vec![grant],
                password: DEMO_PASSWORD,
            },
            &meta(&format!("user/{login}")),
        )
        .await
        {
            Ok(_) => {}
            Err(CreateUserError::Unexpected(e)) => return Err(e),
            Err(e) => anyhow::bail!("demo user {login}: {e}"),
        }
    }
    let persons = CommandBus::<Person>::new(log.clone(), ());
    let people = [
        (
            "16",
            "Казань",
            PersonKind::Child,
            Sex::Female,
            "Демонстрационная",
            "Алиса",
            date!(2014 - 03 - 05),
        ),
        (
            "16",
            "Казань",
            PersonKind::Child,
            Sex::Male,
            "Демонстрационный",
            "Тимур",
            date!(2011 - 09 - 17),
        ),
        (
            "16",
            "Казань",
            PersonKind::Adult,
            Sex::Female,
            "Демонстрационная",
            "Гульнара",
            date!(1988 - 01 - 22),
        ),
        (
            "22",
            "Барнаул",
            PersonKind::Child,
            Sex::Male,
            "Примерный",
            "Егор",
            date!(2016 - 06 - 30),
        ),
    ];
    let registered_on = date!(2026 - 11 - 01);
    for (region, municipality, kind, sex, family_name, given_name, birth_date) in people {
        let region = code(region)?;
        let key = format!("person/{region}/{family_name}/{given_name}");
        let id = Uuid::new_v5(&DEMO_NAMESPACE, key.as_bytes());
        let personal = PersonalData {
            family_name: family_name.into(),
            given_name: given_name.into(),
            patronymic: None,
            birth_date,
            document: None,
            address: None,
            phone: None,
        };
        let sealed = match vault.seal(id, &personal).await {
            Ok(sealed) => sealed,
            // Erased in an earlier run of the demo: leave it erased.
            Err(opora_store::VaultError::Erased) => continue,
            Err(e) => return Err(e.into()),
        };
        persons
            .execute(
                &id.to_string(),
                PersonCommand::RegisterPerson {
                    kind,
                    municipality: Some(municipality_id(&region, &name(municipality)?)),
                    region,
                    sex,
                    age_band: AgeBand::at(birth_date, registered_on),
                    personal: sealed,
                    effective_date: registered_on,
                },
                &meta(&key),
            )
            .await
            .map_err(|e| anyhow::anyhow!("demo person: {e}"))?;
    }
    Ok(())
}
