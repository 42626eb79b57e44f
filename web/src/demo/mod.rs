//! Demo data for `opora serve --demo` (what `./scripts/run` starts): two organisations, one
//! user per role, and a few fictional people. Never loaded without `--demo`: the demo
//! passwords are public (README).

use anyhow::{Context, Result};
use opora_domain::access::{Grant, Login, Role, Scope, Text};
use opora_domain::organisation::{
    organisation_id, Organisation, OrganisationCommand, OrganisationDetails, OrganisationKind,
};
use opora_domain::person::{AgeBand, Person, PersonCommand, PersonKind, PersonalData, Sex};
use opora_domain::reference::{municipality_id, PlaceName, RegionCode};
use opora_store::{CommandBus, CommandMeta, EventLog, Vault};
use time::macros::date;
use time::Date;
use uuid::Uuid;

pub mod pilot;
pub mod signals;
pub mod weekly;

use crate::pages::admin::{create_user, CreateUserError, NewUser};

/// Demo organisations: region, city, kind, name, details.
fn demo_organisations() -> Vec<(
    &'static str,
    &'static str,
    OrganisationKind,
    &'static str,
    OrganisationDetails,
)> {
    use opora_domain::case::{InstitutionType, ReviewLevel};
    let institution = |kind, capacity| OrganisationDetails {
        institution_type: Some(kind),
        capacity: Some(capacity),
        ..Default::default()
    };
    let service = |specialists| OrganisationDetails {
        specialists: Some(specialists),
        ..Default::default()
    };
    vec![
        (
            "16",
            "Казань",
            OrganisationKind::Ngo,
            "АНО «Семья рядом»",
            OrganisationDetails::default(),
        ),
        (
            "16",
            "Казань",
            OrganisationKind::Institution,
            "ГБУ «Детский дом № 1» (демо)",
            institution(InstitutionType::OrphanageCentre, 80),
        ),
        (
            "16",
            "Казань",
            OrganisationKind::Institution,
            "ГБУ «СРЦН „Ласточка“» (демо)",
            institution(InstitutionType::Rehabilitation, 45),
        ),
        (
            "16",
            "Казань",
            OrganisationKind::FamilyService,
            "Служба «Дети в семье» Казани (демо)",
            service(9),
        ),
        (
            "16",
            "Казань",
            OrganisationKind::Consilium,
            "Региональный консилиум Республики Татарстан (демо)",
            OrganisationDetails {
                level: Some(ReviewLevel::Regional),
                ..Default::default()
            },
        ),
        (
            "22",
            "Барнаул",
            OrganisationKind::Institution,
            "КГБУ «Барнаульский центр помощи детям» (демо)",
            institution(InstitutionType::OrphanageCentre, 120),
        ),
        (
            "22",
            "Барнаул",
            OrganisationKind::Ngo,
            pilot::REGIONS[0].3,
            OrganisationDetails::default(),
        ),
        (
            "22",
            "Барнаул",
            OrganisationKind::FamilyService,
            "Служба «Дети в семье» Барнаула (демо)",
            service(7),
        ),
    ]
}

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
    let altai_ngo = organisation_id(&altai, &name(pilot::REGIONS[0].3)?);
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
            "ngo22",
            "Оператор НКО Алтайского края (демо)",
            Grant::new(
                Role::NgoOperator,
                Scope::Ngo {
                    region: altai.clone(),
                    ngo: altai_ngo,
                },
            )?,
        ),
        (
            "minobr16",
            "Министерство образования и науки Татарстана (демо)",
            Grant::new(
                Role::MinistryAnalyst,
                Scope::Region {
                    region: tatarstan.clone(),
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
                    regions: vec![
                        tatarstan,
                        altai,
                        code("55")?,
                        code("52")?,
                        code("72")?,
                        code("73")?,
                    ],
                },
            )?,
        ),
    ])
}

/// Loads the demo data; appends nothing when it is already there.
pub async fn load(log: &EventLog, vault: &Vault) -> Result<()> {
    let organisations = CommandBus::<Organisation>::new(log.clone(), ());
    for (region, city, kind, org_name, details) in demo_organisations() {
        let region = code(region)?;
        let org_name = name(org_name)?;
        let id = organisation_id(&region, &org_name);
        organisations
            .execute(
                &id.to_string(),
                OrganisationCommand::RegisterOrganisation {
                    kind,
                    municipality: Some(municipality_id(&region, &name(city)?)),
                    region,
                    name: org_name,
                    details,
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
    load_cases(log).await
}

/// A case per demo child: one placed long ago and never reviewed (the register flags it),
/// one reviewed with an overdue action item, one in Barnaul.
async fn load_cases(log: &EventLog) -> Result<()> {
    use opora_domain::case::*;
    let cases = CommandBus::<ChildCase>::new(log.clone(), ());
    // Dates relative to today, so that the demo always shows the same picture: one child
    // over six months without a review, one reviewed with an overdue action item.
    let today = crate::i18n::today_in("Europe/Moscow");
    let ago = |days: i64| today - time::Duration::days(days);
    let person = |region: &str, family: &str, given: &str| {
        Uuid::new_v5(
            &DEMO_NAMESPACE,
            format!("person/{region}/{family}/{given}").as_bytes(),
        )
    };
    let institution = |region: &str, org: &str| -> Result<Uuid> {
        Ok(organisation_id(&code(region)?, &name(org)?))
    };
    let alisa = person("16", "Демонстрационная", "Алиса");
    let timur = person("16", "Демонстрационный", "Тимур");
    let egor = person("22", "Примерный", "Егор");
    let home16 = institution("16", "ГБУ «СРЦН „Ласточка“» (демо)")?;
    let home22 = institution("22", "КГБУ «Барнаульский центр помощи детям» (демо)")?;
    let stories: Vec<Story> = vec![
        (
            alisa,
            "16",
            "16-2025-Д0001",
            vec![
                (ago(280), place(home16, PlacementReason::Poverty)),
                (ago(250), CaseAction::TakeUnderControl),
            ],
        ),
        (
            timur,
            "16",
            "16-2025-Д0002",
            vec![
                (ago(240), place(home16, PlacementReason::Addiction)),
                (
                    ago(40),
                    CaseAction::RecordReview(Review {
                        review: Uuid::new_v5(&DEMO_NAMESPACE, b"review/timur/1"),
                        level: ReviewLevel::Regional,
                        placement_justified: Some(true),
                        stay_justified: Some(false),
                        parental_claim_justified: Some(false),
                        aid: AidDecision::MaterialAndServices,
                        return_possible: Some(true),
                        return_by: Some(ago(-90)),
                        next_review: Some(ago(-140)),
                        session: None,
                    }),
                ),
                (
                    ago(40),
                    CaseAction::SetActionItem {
                        item: Uuid::new_v5(&DEMO_NAMESPACE, b"item/timur/1"),
                        action: Text::parse("Лечение зависимости матери").context("demo")?,
                        executor: Text::parse("Республиканский наркологический диспансер")
                            .context("demo")?,
                        due: ago(7),
                        review: Some(Uuid::new_v5(&DEMO_NAMESPACE, b"review/timur/1")),
                    },
                ),
            ],
        ),
        (
            egor,
            "22",
            "22-2025-Д0001",
            vec![(ago(90), place(home22, PlacementReason::Conflict))],
        ),
    ];
    for (child, region, number, facts) in stories {
        let id = Uuid::new_v5(&DEMO_NAMESPACE, format!("case/{number}").as_bytes());
        let region_code = code(region)?;
        let municipality = Some(municipality_id(
            &region_code,
            &name(if region == "16" {
                "Казань"
            } else {
                "Барнаул"
            })?,
        ));
        let mut all = vec![(
            ago(300),
            CaseAction::Open {
                child,
                case_number: number.to_owned(),
                region: region_code,
                municipality,
                family: None,
            },
        )];
        all.extend(facts);
        for (index, (on, action)) in all.into_iter().enumerate() {
            cases
                .execute(
                    &id.to_string(),
                    CaseCommand {
                        on,
                        today,
                        born: None,
                        action,
                    },
                    &meta(&format!("case/{number}/{index}")),
                )
                .await
                .map_err(|e| anyhow::anyhow!("demo case {number}: {e}"))?;
        }
    }
    Ok(())
}

/// A demo case: the child, its region, the case number and the facts in order.
type Story = (
    Uuid,
    &'static str,
    &'static str,
    Vec<(Date, opora_domain::case::CaseAction)>,
);

fn place(
    institution: Uuid,
    reason: opora_domain::case::PlacementReason,
) -> opora_domain::case::CaseAction {
    use opora_domain::case::*;
    CaseAction::Place {
        institution,
        institution_type: InstitutionType::Rehabilitation,
        basis: PlacementBasis::ParentsApplication,
        reasons: vec![reason],
        legal_status: LegalStatus::WithoutStatus,
    }
}
