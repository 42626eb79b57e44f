//! Demo cases across the 14 «Вызов» regions at 1:100 of the project's figures (seed 004),
//! so that the register, the directory and (later) the dashboards show a plausible picture:
//!
//! | figure (seed 004)                                   | project | demo |
//! |-----------------------------------------------------|--------:|-----:|
//! | children in institutions on 01.07.2024              | 21 152  | 212  |
//! | children in institutions on 01.10.2025 (−22.2 %)    | 16 446  | 164  |
//! | children who left institutions in 2025              | 22 981  | 230  |
//! | … of them back to the birth family                  | 14 825  | 148  |
//! | placements prevented in 2025 (almost 9 000)          |  ~9 000 |  90  |
//!
//! Each region also gets its NGO operator (the real operators' names, from the seed), two
//! institutions and a «Дети в семье» service with the seed's specialist count; children
//! returned home go on accompaniment. The children, their names and every date are
//! fictional and deterministic (a fixed random seed), so every run shows the same figures.

use anyhow::{Context, Result};
use opora_domain::access::Text;
use opora_domain::aid::{
    AidCommand, AidForm, AidPurpose, AidRequest, AidRequestFacts, AidRequester, Delivery,
};
use opora_domain::case::{
    AidDecision, CaseAction, CaseCommand, ChildCase, ExitKind, InstitutionType, LegalStatus,
    PlacementBasis, PlacementReason, Review, ReviewLevel,
};
use opora_domain::family::{Family, FamilyCommand, FamilyData, FamilyStatus};
use opora_domain::money::Rubles;
use opora_domain::organisation::{
    organisation_id, Organisation, OrganisationCommand, OrganisationDetails, OrganisationError,
    OrganisationKind,
};
use opora_domain::person::{AgeBand, Person, PersonCommand, PersonKind, PersonalData, Sex};
use opora_domain::reference::{PlaceName, RegionCode};
use opora_store::{CommandBus, CommandError, CommandMeta, EventLog, Vault};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sqlx::Row;
use time::macros::date;
use time::{Date, Duration};
use uuid::Uuid;

const NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_5049_4c4f_5400_0000_0001);
const ACTOR: &str = "system:demo";

/// The pilot regions: code, «Дети в семье» specialists and families on accompaniment
/// (seed 004's table), and the region's NGO operator.
pub const REGIONS: &[(&str, u32, u32, &str)] = &[
    (
        "22",
        62,
        430,
        "Благотворительный фонд «Российский детский фонд» (краевое отделение)",
    ),
    (
        "29",
        89,
        960,
        "АНО «Губернаторский центр „Вместе мы сильнее“»",
    ),
    (
        "75",
        33,
        689,
        "Забайкальское краевое отделение ВОО «Союз добровольцев России»",
    ),
    ("38", 553, 4577, "Благотворительный фонд «Оберег»"),
    (
        "42",
        372,
        1267,
        "АНО «Центр поддержки несовершеннолетних „DeTvoPa“»",
    ),
    (
        "24",
        30,
        294,
        "РОО «Центр защиты материнства и детства св. Петра и Февронии»",
    ),
    ("56", 42, 376, "АНО «Добрые сердца.56»"),
    (
        "59",
        130,
        3530,
        "АНО «Центр социальных технологий „Радуга“»",
    ),
    ("25", 135, 540, "АНО «Развитие»"),
    ("63", 47, 1002, "Самарское региональное отделение ВОРДИ"),
    (
        "66",
        884,
        3686,
        "Общественная экологическая организация «ЭКА-Екатеринбург»",
    ),
    ("69", 100, 1053, "Благотворительный фонд «Константа»"),
    ("27", 92, 381, "АНО «Особенное детство»"),
    (
        "74",
        347,
        5923,
        "Благотворительный фонд «Российский детский фонд» (региональное отделение)",
    ),
];

pub const BASELINE: Date = date!(2024 - 07 - 01);
pub const MIDPOINT: Date = date!(2025 - 10 - 01);

/// How a demo child's stay goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cohort {
    /// In before the baseline, still in on 01.10.2025 (some leave in the last quarter).
    LongStay { leaves_late_2025: bool },
    /// In before the baseline, left before 01.10.2025.
    LeftEarly { in_2025: bool },
    /// Placed after the baseline, still in on 01.10.2025.
    Recent { leaves_late_2025: bool },
    /// Placed after the baseline for a short stay.
    ShortStay { leaves_in_2025: bool },
    /// A placement prevented in 2025.
    Prevented,
}

fn cohorts() -> Vec<Cohort> {
    use Cohort::*;
    let mut all = Vec::new();
    let mut add = |n: usize, c: Cohort| all.extend(std::iter::repeat_n(c, n));
    add(
        20,
        LongStay {
            leaves_late_2025: true,
        },
    );
    add(
        100,
        LongStay {
            leaves_late_2025: false,
        },
    );
    add(40, LeftEarly { in_2025: false });
    add(52, LeftEarly { in_2025: true });
    add(
        10,
        Recent {
            leaves_late_2025: true,
        },
    );
    add(
        34,
        Recent {
            leaves_late_2025: false,
        },
    );
    add(
        30,
        ShortStay {
            leaves_in_2025: false,
        },
    );
    add(
        148,
        ShortStay {
            leaves_in_2025: true,
        },
    );
    add(90, Prevented);
    all
}

/// Exit kinds of the 230 exits of 2025: 148 home, the others to substitute families,
/// coming of age, other.
fn exits_2025() -> Vec<ExitKind> {
    let mut all = Vec::new();
    for (n, kind) in [
        (148, ExitKind::BirthFamily),
        (42, ExitKind::Guardianship),
        (20, ExitKind::Foster),
        (8, ExitKind::Adoption),
        (7, ExitKind::ComingOfAge),
        (5, ExitKind::OtherExit),
    ] {
        all.extend(std::iter::repeat_n(kind, n));
    }
    all
}

const FAMILY_NAMES: &[(&str, &str)] = &[
    ("Иванов", "Иванова"),
    ("Смирнов", "Смирнова"),
    ("Кузнецов", "Кузнецова"),
    ("Попов", "Попова"),
    ("Соколов", "Соколова"),
    ("Лебедев", "Лебедева"),
    ("Новиков", "Новикова"),
    ("Морозов", "Морозова"),
    ("Волков", "Волкова"),
    ("Зайцев", "Зайцева"),
    ("Павлов", "Павлова"),
    ("Семёнов", "Семёнова"),
    ("Голубев", "Голубева"),
    ("Виноградов", "Виноградова"),
    ("Богданов", "Богданова"),
    ("Воробьёв", "Воробьёва"),
];
const BOYS: &[&str] = &[
    "Артём",
    "Максим",
    "Иван",
    "Михаил",
    "Даниил",
    "Кирилл",
    "Егор",
    "Никита",
    "Матвей",
    "Тимофей",
    "Роман",
    "Савелий",
];
const GIRLS: &[&str] = &[
    "Анна",
    "Мария",
    "Софья",
    "Виктория",
    "Полина",
    "Алиса",
    "Ева",
    "Дарья",
    "Варвара",
    "Ксения",
    "Вероника",
    "Милана",
];

fn between(rng: &mut StdRng, from: Date, to: Date) -> Date {
    let days = (to - from).whole_days().max(0);
    from + Duration::days(rng.gen_range(0..=days))
}

fn meta(key: &str) -> CommandMeta {
    CommandMeta::new(ACTOR).with_command_id(Uuid::new_v5(&NAMESPACE, key.as_bytes()))
}

struct Places {
    region: RegionCode,
    municipalities: Vec<Uuid>,
    ngo: Uuid,
    orphanage: Uuid,
    centre: Uuid,
    service: Uuid,
}

/// Loads the pilot regions' directory and cases (the reference projection must be caught
/// up: municipalities are read from it). Loading twice writes nothing new.
pub async fn load(log: &EventLog, vault: &Vault, today: Date) -> Result<()> {
    // Every command has a fixed id, so a second run writes nothing; when the last case is
    // there, the whole demo is (commands are recorded in order).
    // The aid is written last: when its last family is there, the whole demo is. Were a
    // load cut short, a second run re-sends the same commands, which the bus answers with
    // their first outcome.
    let last = Uuid::new_v5(
        &NAMESPACE,
        format!("family/{}", AID_FAMILIES - 1).as_bytes(),
    );
    let already = log.stream_length("Family", &last.to_string()).await? > 0;
    if already {
        return Ok(());
    }
    let mut rng = StdRng::seed_from_u64(20240701);
    let mut places = Vec::new();
    for (code, specialists, _, ngo) in REGIONS {
        places.push(directory(log, code, *specialists, ngo).await?);
    }
    // Regions weighted by the families their services accompany (a proxy for their size).
    let weights: Vec<u32> = REGIONS.iter().map(|r| r.2).collect();
    let total: u32 = weights.iter().sum();
    let mut stories = cohorts();
    stories.shuffle(&mut rng);
    let mut exits = exits_2025();
    exits.shuffle(&mut rng);
    let persons = CommandBus::<Person>::new(log.clone(), ());
    let cases = CommandBus::<ChildCase>::new(log.clone(), ());
    let mut numbers = vec![0u32; REGIONS.len()];
    for (index, cohort) in stories.into_iter().enumerate() {
        let mut pick = rng.gen_range(0..total);
        let region_index = weights
            .iter()
            .position(|w| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(0);
        let place = &places[region_index];
        let facts = story(&mut rng, cohort, &mut exits, place, today);
        let Some((opened, _)) = facts.first() else {
            continue;
        };
        numbers[region_index] += 1;
        let number = format!(
            "{}-{}-Д{:04}",
            place.region.as_str(),
            opened.year(),
            numbers[region_index]
        );
        // The child: born so that the story fits (18 at a coming-of-age exit).
        let coming_of_age = facts.iter().find_map(|(on, a)| match a {
            CaseAction::RecordExit {
                exit: ExitKind::ComingOfAge,
            } => Some(*on),
            _ => None,
        });
        let born = match coming_of_age {
            Some(on) => on - Duration::days(365 * 18 + rng.gen_range(5..200)),
            None => *opened - Duration::days(rng.gen_range(300..365 * 12)),
        };
        let sex = if rng.gen_bool(0.5) {
            Sex::Male
        } else {
            Sex::Female
        };
        let (he, she) = FAMILY_NAMES[rng.gen_range(0..FAMILY_NAMES.len())];
        let (family_name, given_name) = match sex {
            Sex::Male => (he, BOYS[rng.gen_range(0..BOYS.len())]),
            _ => (she, GIRLS[rng.gen_range(0..GIRLS.len())]),
        };
        let municipality = place.municipalities[rng.gen_range(0..place.municipalities.len())];
        let child = Uuid::new_v5(&NAMESPACE, format!("child/{index}").as_bytes());
        let personal = PersonalData {
            family_name: family_name.into(),
            given_name: given_name.into(),
            patronymic: None,
            birth_date: born,
            document: None,
            address: None,
            phone: None,
        };
        let sealed = match vault.seal(child, &personal).await {
            Ok(sealed) => sealed,
            Err(opora_store::VaultError::Erased) => continue,
            Err(e) => return Err(e.into()),
        };
        persons
            .execute(
                &child.to_string(),
                PersonCommand::RegisterPerson {
                    kind: PersonKind::Child,
                    region: place.region.clone(),
                    municipality: Some(municipality),
                    sex,
                    age_band: AgeBand::at(born, *opened),
                    personal: sealed,
                    effective_date: *opened,
                },
                &meta(&format!("child/{index}")),
            )
            .await
            .map_err(|e| anyhow::anyhow!("pilot child {index}: {e}"))?;
        let id = Uuid::new_v5(&NAMESPACE, format!("case/{index}").as_bytes());
        let mut all = vec![(
            *opened,
            CaseAction::Open {
                child,
                case_number: number.clone(),
                region: place.region.clone(),
                municipality: Some(municipality),
                family: None,
            },
        )];
        all.extend(facts.into_iter().skip(1));
        for (step, (on, action)) in all.into_iter().enumerate() {
            cases
                .execute(
                    &id.to_string(),
                    CaseCommand {
                        on,
                        today,
                        born: Some(born),
                        action,
                    },
                    &meta(&format!("case/{index}/{step}")),
                )
                .await
                .map_err(|e| anyhow::anyhow!("pilot case {number} step {step}: {e}"))?;
        }
    }
    load_aid(log, vault, &places, &weights, &mut rng, today).await
}

/// Families helped by the pilot NGO operators (seed 004: «more than 600 families and 1,600
/// children», «almost 60 million rubles» by Q3 2025), at full scale: the demo's aid is the
/// one figure not divided by a hundred, so the report shows the seed's order of magnitude.
pub const AID_FAMILIES: usize = 620;

/// Forms of aid with their weight and the range of one delivery, in rubles.
const AID_FORMS: &[(AidForm, u32, i64, i64)] = &[
    (AidForm::HousingRepair, 18, 60_000, 350_000),
    (AidForm::ShortTermRent, 8, 15_000, 60_000),
    (AidForm::Utilities, 12, 5_000, 45_000),
    (AidForm::Essentials, 20, 5_000, 60_000),
    (AidForm::AddictionTreatment, 6, 30_000, 150_000),
    (AidForm::SocialRehabilitation, 3, 10_000, 60_000),
    (AidForm::Psychological, 4, 5_000, 30_000),
    (AidForm::Pedagogical, 3, 5_000, 30_000),
    (AidForm::HomeCare, 3, 10_000, 50_000),
    (AidForm::Employment, 2, 5_000, 25_000),
    (AidForm::Medicines, 7, 3_000, 60_000),
    (AidForm::MedicalExamination, 3, 3_000, 30_000),
    (AidForm::Travel, 4, 2_000, 20_000),
    (AidForm::Legal, 3, 5_000, 40_000),
    (AidForm::Smallholding, 3, 30_000, 180_000),
    (AidForm::Vehicle, 1, 300_000, 750_000),
];

const REQUESTERS: &[(AidRequester, u32)] = &[
    (AidRequester::Municipality, 30),
    (AidRequester::Institution, 20),
    (AidRequester::Family, 25),
    (AidRequester::Ombudsman, 10),
    (AidRequester::OtherOrganisation, 15),
];

fn weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|i| i.1).sum();
    let mut pick = rng.gen_range(0..total);
    for (item, weight) in items {
        if pick < *weight {
            return *item;
        }
        pick -= weight;
    }
    items[0].0
}

/// The pilot NGOs' families and their aid: requests from January to September 2025 (most
/// approved and delivered, a few refused), and a few recent ones still waiting, so that
/// every NGO's desk has work on it.
async fn load_aid(
    log: &EventLog,
    vault: &Vault,
    places: &[Places],
    weights: &[u32],
    rng: &mut StdRng,
    today: Date,
) -> Result<()> {
    let families = CommandBus::<Family>::new(log.clone(), ());
    let aid = CommandBus::<AidRequest>::new(log.clone(), ());
    let total: u32 = weights.iter().sum();
    let forms: Vec<(usize, u32)> = AID_FORMS
        .iter()
        .enumerate()
        .map(|(i, f)| (i, f.1))
        .collect();
    let mut seen = vec![0u32; places.len()];
    for index in 0..AID_FAMILIES {
        let mut pick = rng.gen_range(0..total);
        let region = weights
            .iter()
            .position(|w| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(0);
        let place = &places[region];
        seen[region] += 1;
        // Each region's first families have recent requests still on the NGO's desk: the
        // first waiting for a decision, the next two approved and not yet given.
        let desk = seen[region] <= 3;
        let waiting = seen[region] == 1;
        let family = Uuid::new_v5(&NAMESPACE, format!("family/{index}").as_bytes());
        let (he, _) = FAMILY_NAMES[rng.gen_range(0..FAMILY_NAMES.len())];
        let large = rng.gen_bool(0.7);
        let children: u16 = if large {
            rng.gen_range(3..=5)
        } else {
            rng.gen_range(1..=2)
        };
        let municipality = place.municipalities[rng.gen_range(0..place.municipalities.len())];
        let data = FamilyData {
            name: format!("семья {he}ых"),
            address: None,
            phone: None,
        };
        let personal = vault.seal(family, &data).await?;
        families
            .execute(
                &family.to_string(),
                FamilyCommand::Register {
                    on: date!(2025 - 01 - 09),
                    region: place.region.clone(),
                    municipality: Some(municipality),
                    status: if rng.gen_bool(0.8) {
                        FamilyStatus::DifficultSituation
                    } else {
                        FamilyStatus::DangerousSituation
                    },
                    large,
                    personal,
                    ngo: Some(place.ngo),
                },
                &meta(&format!("family/{index}")),
            )
            .await
            .map_err(|e| anyhow::anyhow!("pilot family {index}: {e}"))?;
        let requests = rng.gen_range(1..=2);
        for r in 0..requests {
            // A few recent requests stay on the desk (waiting, or approved and not given).
            let recent = desk && r == 0;
            let on = if recent {
                today - Duration::days(rng.gen_range(2..20))
            } else {
                date!(2025 - 01 - 10) + Duration::days(rng.gen_range(0..250))
            };
            let (form, _, low, high) = AID_FORMS[weighted(rng, &forms)];
            let id = Uuid::new_v5(&NAMESPACE, format!("aid/{index}/{r}").as_bytes());
            let key = |step: &str| format!("aid/{index}/{r}/{step}");
            let facts = AidRequestFacts {
                on,
                family,
                region: place.region.clone(),
                municipality: Some(municipality),
                ngo: place.ngo,
                requester: weighted(rng, REQUESTERS),
                requested_by: None,
                review: None,
                purpose: if rng.gen_bool(0.6) {
                    AidPurpose::PreventPlacement
                } else {
                    AidPurpose::SupportReturn
                },
                form,
                form_other: None,
                description: None,
                amount: None,
                children,
            };
            let mut steps = vec![AidCommand::Request { today, facts }];
            let decided = (on + Duration::days(rng.gen_range(1..6))).min(today);
            if recent && waiting {
                // Waiting for the NGO's decision.
            } else if !recent && rng.gen_bool(0.06) {
                steps.push(AidCommand::Refuse {
                    on: decided,
                    today,
                    reason: Text::parse("помощь предусмотрена региональной мерой поддержки")
                        .context("reason")?,
                });
            } else {
                steps.push(AidCommand::Approve {
                    on: decided,
                    today,
                    amount: None,
                    note: None,
                });
                if !recent {
                    let parts = if matches!(form, AidForm::ShortTermRent | AidForm::Utilities) {
                        rng.gen_range(1..=3)
                    } else {
                        1
                    };
                    for part in 0..parts {
                        let rubles = rng.gen_range(low..=high);
                        let kopecks = rubles * 100 + rng.gen_range(0..100);
                        steps.push(AidCommand::Deliver {
                            today,
                            delivery: Delivery {
                                id: Uuid::new_v5(&NAMESPACE, key(&format!("d{part}")).as_bytes()),
                                on: (decided + Duration::days(5 + 30 * part)).min(today),
                                amount: Rubles::from_kopecks(kopecks),
                                form,
                                form_other: None,
                                supplier: None,
                                receipt: Text::parse(&format!("№ {}", rng.gen_range(1000..99999))),
                                attachment: None,
                            },
                        });
                    }
                }
            }
            for (step, command) in steps.into_iter().enumerate() {
                aid.execute(&id.to_string(), command, &meta(&key(&step.to_string())))
                    .await
                    .map_err(|e| anyhow::anyhow!("pilot aid {index}/{r}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// A region's NGO operator, two institutions and a «Дети в семье» service.
async fn directory(log: &EventLog, code: &str, specialists: u32, ngo: &str) -> Result<Places> {
    let region = RegionCode::parse(code)?;
    let rows = sqlx::query(
        "SELECT id, name FROM reference.municipality WHERE region_code = $1 \
          ORDER BY kind <> 'urban_okrug', name LIMIT 6",
    )
    .bind(code)
    .fetch_all(log.pool())
    .await?;
    anyhow::ensure!(!rows.is_empty(), "region {code} has no municipalities");
    let municipalities: Vec<Uuid> = rows
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
    let city: String = rows[0].try_get("name")?;
    let bus = CommandBus::<Organisation>::new(log.clone(), ());
    let register = |kind, org: String, details| {
        let region = region.clone();
        let bus = &bus;
        let municipality = municipalities[0];
        async move {
            let name = PlaceName::parse(&org).with_context(|| format!("name {org}"))?;
            let id = organisation_id(&region, &name);
            match bus
                .execute(
                    &id.to_string(),
                    OrganisationCommand::RegisterOrganisation {
                        kind,
                        region,
                        municipality: Some(municipality),
                        name,
                        details,
                    },
                    &meta(&format!("organisation/{id}")),
                )
                .await
            {
                // The base demo registers region 22's NGO for its operator `ngo22`.
                Ok(_) | Err(CommandError::Rejected(OrganisationError::AlreadyRegistered)) => {}
                Err(e) => anyhow::bail!("pilot organisation {org}: {e}"),
            }
            Ok::<Uuid, anyhow::Error>(id)
        }
    };
    let ngo = register(
        OrganisationKind::Ngo,
        ngo.to_owned(),
        OrganisationDetails::default(),
    )
    .await?;
    let orphanage = register(
        OrganisationKind::Institution,
        format!("Центр помощи детям, г. {city} (демо)"),
        OrganisationDetails {
            institution_type: Some(InstitutionType::OrphanageCentre),
            capacity: Some(90),
            ..Default::default()
        },
    )
    .await?;
    let centre = register(
        OrganisationKind::Institution,
        format!("СРЦН, г. {city} (демо)"),
        OrganisationDetails {
            institution_type: Some(InstitutionType::Rehabilitation),
            capacity: Some(50),
            ..Default::default()
        },
    )
    .await?;
    let service = register(
        OrganisationKind::FamilyService,
        format!("Служба «Дети в семье», г. {city} (демо)"),
        OrganisationDetails {
            specialists: Some(specialists),
            ..Default::default()
        },
    )
    .await?;
    register(
        OrganisationKind::Consilium,
        format!("Региональный консилиум, г. {city} (демо)"),
        OrganisationDetails {
            level: Some(ReviewLevel::Regional),
            ..Default::default()
        },
    )
    .await?;
    Ok(Places {
        region,
        municipalities,
        ngo,
        orphanage,
        centre,
        service,
    })
}

/// The facts of one child's case, in order; the first is the opening date.
fn story(
    rng: &mut StdRng,
    cohort: Cohort,
    exits: &mut Vec<ExitKind>,
    place: &Places,
    today: Date,
) -> Vec<(Date, CaseAction)> {
    use Cohort::*;
    let late_2025 = |rng: &mut StdRng| between(rng, date!(2025 - 10 - 05), date!(2025 - 12 - 20));
    let (placed, exit): (Option<Date>, Option<Date>) = match cohort {
        LongStay { leaves_late_2025 } => (
            Some(between(rng, date!(2022 - 03 - 01), date!(2024 - 06 - 15))),
            leaves_late_2025.then(|| late_2025(rng)),
        ),
        LeftEarly { in_2025 } => (
            Some(between(rng, date!(2023 - 01 - 10), date!(2024 - 06 - 15))),
            Some(if in_2025 {
                between(rng, date!(2025 - 01 - 10), date!(2025 - 09 - 25))
            } else {
                between(rng, date!(2024 - 07 - 05), date!(2024 - 12 - 25))
            }),
        ),
        Recent { leaves_late_2025 } => (
            Some(between(rng, date!(2024 - 07 - 05), date!(2025 - 09 - 20))),
            leaves_late_2025.then(|| late_2025(rng)),
        ),
        ShortStay { leaves_in_2025 } => {
            if leaves_in_2025 {
                let placed = between(rng, date!(2024 - 12 - 01), date!(2025 - 08 - 31));
                let stay = Duration::days(rng.gen_range(14..90));
                let exit = (placed + stay)
                    .max(date!(2025 - 01 - 05))
                    .min(date!(2025 - 09 - 28));
                (Some(placed), Some(exit))
            } else {
                let placed = between(rng, date!(2024 - 07 - 05), date!(2024 - 10 - 31));
                let stay = Duration::days(rng.gen_range(14..60));
                (
                    Some(placed),
                    Some((placed + stay).min(date!(2024 - 12 - 28))),
                )
            }
        }
        Prevented => (None, None),
    };
    let mut facts = Vec::new();
    let Some(placed) = placed else {
        let opened = between(rng, date!(2025 - 01 - 10), date!(2025 - 11 - 30));
        let prevented = opened + Duration::days(rng.gen_range(1..10));
        return opening(
            vec![(prevented, CaseAction::RecordPreventedPlacement)],
            opened,
        );
    };
    let opened = placed - Duration::days(rng.gen_range(0..5));
    let reasons = [
        PlacementReason::Poverty,
        PlacementReason::Addiction,
        PlacementReason::Conflict,
        PlacementReason::Neglect,
        PlacementReason::ParentIllness,
    ];
    let (institution, institution_type, basis) = if rng.gen_bool(0.6) {
        (
            place.centre,
            InstitutionType::Rehabilitation,
            PlacementBasis::ParentsApplication,
        )
    } else {
        (
            place.orphanage,
            InstitutionType::OrphanageCentre,
            PlacementBasis::LossOfCare,
        )
    };
    facts.push((
        placed,
        CaseAction::Place {
            institution,
            institution_type,
            basis,
            reasons: vec![reasons[rng.gen_range(0..reasons.len())]],
            legal_status: if basis == PlacementBasis::LossOfCare {
                LegalStatus::WithStatus
            } else {
                LegalStatus::WithoutStatus
            },
        },
    ));
    match exit {
        Some(exit) => {
            let kind = if exit.year() == 2025 {
                exits.pop().unwrap_or(ExitKind::BirthFamily)
            } else if rng.gen_bool(0.6) {
                ExitKind::BirthFamily
            } else {
                ExitKind::Guardianship
            };
            let reviewed = placed + Duration::days(((exit - placed).whole_days() / 2).max(1));
            if reviewed < exit && rng.gen_bool(0.7) {
                facts.push((reviewed, review(rng, reviewed, true)));
            }
            facts.push((exit, CaseAction::RecordExit { exit: kind }));
            if kind == ExitKind::BirthFamily {
                facts.push((
                    exit,
                    CaseAction::StartAccompaniment {
                        service: place.service,
                    },
                ));
                let ends = exit + Duration::days(rng.gen_range(120..300));
                if ends <= today {
                    facts.push((ends, CaseAction::EndAccompaniment));
                }
            }
        }
        None => {
            // Still in: most reviewed in the last six months, some with an action item
            // (a few overdue), some under the curator's personal control.
            if rng.gen_bool(0.7) {
                let on = (today - Duration::days(rng.gen_range(10..170))).max(placed);
                let return_possible = rng.gen_bool(0.5);
                facts.push((on, review(rng, on, return_possible)));
                if rng.gen_bool(0.5) {
                    let item = Uuid::from_u128(rng.gen());
                    let executor = [
                        "Орган опеки",
                        "Служба «Дети в семье»",
                        "Центр занятости",
                        "Наркологический диспансер",
                    ];
                    let action = [
                        "Подбор жилья для семьи",
                        "Лечение зависимости матери",
                        "Трудоустройство отца",
                        "Оформление мер поддержки",
                    ];
                    let k = rng.gen_range(0..action.len());
                    if let (Some(action), Some(executor)) =
                        (Text::parse(action[k]), Text::parse(executor[k]))
                    {
                        facts.push((
                            on,
                            CaseAction::SetActionItem {
                                item,
                                action,
                                executor,
                                due: on + Duration::days(rng.gen_range(20..120)),
                                review: None,
                            },
                        ));
                    }
                }
            }
            if rng.gen_bool(0.15) {
                facts.push((placed + Duration::days(3), CaseAction::TakeUnderControl));
            }
        }
    }
    facts.sort_by_key(|(on, _)| *on);
    opening(facts, opened)
}

/// The opening date first (the caller puts the opening fact in its place), then the facts.
fn opening(mut facts: Vec<(Date, CaseAction)>, opened: Date) -> Vec<(Date, CaseAction)> {
    facts.insert(0, (opened, CaseAction::RecordFamilyVisit));
    facts
}

fn review(rng: &mut StdRng, on: Date, return_possible: bool) -> CaseAction {
    CaseAction::RecordReview(Review {
        review: Uuid::from_u128(rng.gen()),
        level: ReviewLevel::Regional,
        placement_justified: Some(rng.gen_bool(0.6)),
        stay_justified: Some(!return_possible),
        parental_claim_justified: Some(false),
        aid: if return_possible {
            AidDecision::MaterialAndServices
        } else {
            AidDecision::Services
        },
        return_possible: Some(return_possible),
        return_by: return_possible.then(|| on + Duration::days(90)),
        next_review: Some(on + Duration::days(180)),
        session: None,
    })
}

/// The ids of the pilot demo's cases (for tests and checks).
pub fn case_ids() -> Vec<Uuid> {
    (0..cohorts().len())
        .map(|index| Uuid::new_v5(&NAMESPACE, format!("case/{index}").as_bytes()))
        .collect()
}
