//! «Вызов»: the directory of a region (NGO operator, institutions, «Дети в семье» services,
//! the regional consilium) and the children's cases with their aid requests.
//!
//! A case is rendered from its slot and its own generator: the events it could have had
//! through `ChildCase` (open → place → reviews, action items, personal control, visits →
//! exit → accompaniment → close; or open → accompaniment → prevented placement), each with
//! its `on` date as the effective date and a recording instant after it. Cases of the stock
//! (placed before 2024) were entered when the register was set up, from 9 January to 9
//! February 2024; their recording is therefore late.

use opora_domain::access::Text;
use opora_domain::aid::{
    AidEvent, AidForm, AidPurpose, AidRequestFacts, AidRequester, Delivery, ReviewLink,
};
use opora_domain::case::{
    AidDecision, CaseEvent, ExitKind, InstitutionType, LegalStatus, PlacementBasis,
    PlacementReason, Review, ReviewLevel,
};
use opora_domain::money::Rubles;
use opora_domain::organisation::{OrganisationDetails, OrganisationEvent, OrganisationKind};
use opora_domain::reference::{MunicipalityKind, PlaceName, RegionCode};
use rand::rngs::StdRng;
use rand::Rng;
use time::macros::date;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use super::clock::{between, exp_days, office_hours, recorded, rng_for};
use super::plan::{
    CaseSlot, Institution, Municipality, Org, PreventedIn, RegionPlan, Service, Slot, Stay,
    Targets, World, AID_FROM, BASELINE, HISTORY_START, MIDPOINT, YEAR_2025,
};
use super::{AnyEvent, Planned, NAMESPACE};

const CASE: u64 = 0x4341_5345;
const DIRECTORY: u64 = 0x4449_5245;

pub struct Directory {
    pub ngo: Option<Org>,
    pub consilium: Option<Org>,
    pub institutions: Vec<Institution>,
    pub services: Vec<Service>,
}

fn org_id(seed: u64, code: &RegionCode, what: &str, k: usize) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("{seed}/org/{}/{what}/{k}", code.as_str()).as_bytes(),
    )
}

/// The region's NGO operator's id for `seed` (written first: its presence means the seed's
/// data is in the log).
pub fn marker(seed: u64) -> Uuid {
    RegionCode::parse("22")
        .map(|code| org_id(seed, &code, "ngo", 0))
        .unwrap_or_default()
}

fn place(m: &Municipality) -> String {
    if m.kind == MunicipalityKind::UrbanOkrug && !m.name.starts_with("городской округ")
    {
        format!("г. {}", m.name)
    } else {
        m.name.clone()
    }
}

const NICKNAMES: [&str; 12] = [
    "Надежда",
    "Радуга",
    "Родник",
    "Берег",
    "Парус",
    "Маяк",
    "Забота",
    "Истоки",
    "Улыбка",
    "Солнышко",
    "Росток",
    "Гнёздышко",
];

/// The region's organisations: an NGO operator, institutions for its children (about 55
/// places each), its «Дети в семье» services with the seed's specialists, a consilium.
pub fn directory(
    seed: u64,
    code: &RegionCode,
    region_name: &str,
    municipalities: &[Municipality],
    t: &Targets,
) -> Directory {
    let mut rng = rng_for(
        seed,
        DIRECTORY,
        code.as_str().parse::<u64>().unwrap_or_default(),
    );
    let urban: Vec<&Municipality> = municipalities
        .iter()
        .filter(|m| m.kind == MunicipalityKind::UrbanOkrug)
        .collect();
    let pick = |rng: &mut StdRng, k: usize| -> &Municipality {
        if !urban.is_empty() && (k == 0 || rng.gen_bool(0.6)) {
            urban[rng.gen_range(0..urban.len())]
        } else {
            &municipalities[rng.gen_range(0..municipalities.len())]
        }
    };
    let ngo_name = crate::demo::pilot::REGIONS
        .iter()
        .find(|r| r.0 == code.as_str())
        .map(|r| r.3.to_owned())
        .unwrap_or_else(|| format!("АНО «Семья рядом» ({region_name})"));
    let capital = pick(&mut rng, 0);
    let ngo = Org {
        id: org_id(seed, code, "ngo", 0),
        name: ngo_name,
        municipality: capital.id,
    };
    let consilium = Org {
        id: org_id(seed, code, "consilium", 0),
        name: format!("Региональный межведомственный консилиум ({region_name})"),
        municipality: capital.id,
    };
    let count = (t.baseline.div_ceil(55)).max(2) as usize;
    let mut institutions = Vec::new();
    for k in 0..count {
        let kind = match rng.gen_range(0..10) {
            0..=3 => InstitutionType::Rehabilitation,
            4..=6 => InstitutionType::OrphanageCentre,
            7 => InstitutionType::BabyHome,
            8 => InstitutionType::BoardingSchool,
            _ => InstitutionType::Disability,
        };
        let prefix = match kind {
            InstitutionType::Rehabilitation => "СРЦН",
            InstitutionType::OrphanageCentre => "Центр содействия семейному воспитанию",
            InstitutionType::BabyHome => "Дом ребёнка",
            InstitutionType::BoardingSchool => "Школа-интернат",
            _ => "Дом-интернат для детей с инвалидностью",
        };
        let m = pick(&mut rng, k);
        institutions.push(Institution {
            org: Org {
                id: org_id(seed, code, "institution", k),
                name: format!(
                    "{prefix} № {} «{}», {}",
                    k + 1,
                    NICKNAMES[rng.gen_range(0..NICKNAMES.len())],
                    place(m)
                ),
                municipality: m.id,
            },
            kind,
            capacity: rng.gen_range(40..90),
        });
    }
    let n = t.services as usize;
    let weights: Vec<f64> = (0..n)
        .map(|k| if k == 0 { 3.0 } else { rng.gen_range(0.5..2.0) })
        .collect();
    let specialists = super::plan::apportion(t.specialists, &weights, &vec![1; n]);
    let services = (0..n)
        .map(|k| {
            let m = pick(&mut rng, k);
            Service {
                org: Org {
                    id: org_id(seed, code, "service", k),
                    name: if k == 0 {
                        format!("Региональная служба «Дети в семье» ({region_name})")
                    } else {
                        format!("Служба «Дети в семье» № {k}, {}", place(m))
                    },
                    municipality: m.id,
                },
                specialists: specialists[k] as u32,
            }
        })
        .collect();
    Directory {
        ngo: Some(ngo),
        consilium: Some(consilium),
        institutions,
        services,
    }
}

/// `OrganisationRegistered` for every organisation of a region, recorded before the
/// register started (the directory was set up first).
pub fn organisation_events(world: &World, region: &RegionPlan) -> Vec<Planned> {
    let mut rng = rng_for(
        world.seed,
        DIRECTORY ^ 1,
        u64::from(region_index(world, region)),
    );
    let mut out = Vec::new();
    let mut register = |rng: &mut StdRng, org: &Org, kind, details| {
        // The names built by `directory` are never empty nor longer than 200 characters.
        let Ok(name) = PlaceName::parse(&org.name) else {
            return;
        };
        out.push(Planned {
            aggregate_type: "Organisation",
            stream: org.id,
            event: AnyEvent::Organisation(OrganisationEvent::OrganisationRegistered {
                kind,
                region: region.code.clone(),
                municipality: Some(org.municipality),
                name,
                details,
            }),
            effective: None,
            at: {
                let day = between(rng, date!(2023 - 12 - 25), date!(2023 - 12 - 29));
                office_hours(rng, day)
            },
            last: true,
        });
    };
    if let Some(ngo) = &region.ngo {
        register(
            &mut rng,
            ngo,
            OrganisationKind::Ngo,
            OrganisationDetails::default(),
        );
    }
    if let Some(consilium) = &region.consilium {
        register(
            &mut rng,
            consilium,
            OrganisationKind::Consilium,
            OrganisationDetails {
                level: Some(ReviewLevel::Regional),
                ..OrganisationDetails::default()
            },
        );
    }
    for institution in &region.institutions {
        register(
            &mut rng,
            &institution.org,
            OrganisationKind::Institution,
            OrganisationDetails {
                institution_type: Some(institution.kind),
                capacity: Some(institution.capacity),
                ..OrganisationDetails::default()
            },
        );
    }
    for service in &region.services {
        register(
            &mut rng,
            &service.org,
            OrganisationKind::FamilyService,
            OrganisationDetails {
                specialists: Some(service.specialists),
                ..OrganisationDetails::default()
            },
        );
    }
    out
}

fn region_index(world: &World, region: &RegionPlan) -> u16 {
    world
        .regions
        .iter()
        .position(|r| r.code == region.code)
        .unwrap_or_default() as u16
}

/// The id of case `index` of `seed`.
pub fn case_id(seed: u64, index: usize) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{seed}/case/{index}").as_bytes())
}

/// The order of facts of one day: a placement before a review on its day, an exit before
/// the accompaniment that follows it, the closing last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Open,
    Place,
    During,
    ItemDone,
    Exit,
    After,
    AccompanimentEnd,
    Close,
}

struct Facts {
    list: Vec<(Date, Phase, CaseEvent)>,
}

impl Facts {
    fn add(&mut self, on: Date, phase: Phase, event: CaseEvent) {
        self.list.push((on, phase, event));
    }
    fn last_date(&self) -> Date {
        self.list.iter().map(|f| f.0).max().unwrap_or(HISTORY_START)
    }
}

const ACTIONS: [(&str, &str); 8] = [
    (
        "Подбор жилья для семьи",
        "Администрация муниципального образования",
    ),
    ("Лечение зависимости матери", "Наркологический диспансер"),
    ("Трудоустройство отца", "Центр занятости населения"),
    (
        "Оформление мер социальной поддержки",
        "Управление социальной защиты",
    ),
    (
        "Психологическое консультирование семьи",
        "Служба «Дети в семье»",
    ),
    ("Восстановление документов", "Орган опеки и попечительства"),
    ("Ремонт жилого помещения", "НКО-оператор"),
    ("Устройство ребёнка в детский сад", "Управление образования"),
];

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

fn weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|i| i.1).sum();
    let mut pick = rng.gen_range(0..total.max(1));
    for (item, weight) in items {
        if pick < *weight {
            return *item;
        }
        pick -= weight;
    }
    items[0].0
}

fn text(raw: &str) -> Text {
    Text::parse(raw).unwrap_or_else(|| unreachable!("literal texts are short and non-empty"))
}

/// A stock placement date: before 2024, most within two years.
fn stock_date(rng: &mut StdRng) -> Date {
    date!(2023 - 12 - 31) - Duration::days(exp_days(rng, 600.0, 2_900))
}

/// An accompaniment from `start`: running on the midpoint (`active`) or not; `None` when an
/// inactive one cannot fit before the midpoint.
fn accompaniment(
    rng: &mut StdRng,
    start: Date,
    active: bool,
    last_day: Date,
) -> Option<(Date, Option<Date>)> {
    let ends = |rng: &mut StdRng, from: Date, mean: f64| {
        let end = from + Duration::days(exp_days(rng, mean, 1_200));
        (end <= last_day).then_some(end)
    };
    if active {
        if start >= MIDPOINT {
            return None;
        }
        let end = MIDPOINT + Duration::days(1);
        return Some((start, ends(rng, end, 220.0)));
    }
    if start < MIDPOINT {
        let latest = MIDPOINT - Duration::days(1);
        if start + Duration::days(14) > latest {
            return None;
        }
        let end = between(rng, start + Duration::days(14), latest);
        return Some((start, Some(end)));
    }
    let start = start.max(MIDPOINT + Duration::days(1));
    if start > last_day {
        return None;
    }
    Some((start, ends(rng, start + Duration::days(60), 250.0)))
}

/// The events of case `index` and of its aid requests, in recording order.
pub fn case_events(world: &World, index: usize) -> Vec<Planned> {
    let CaseSlot { region, slot } = world.cases[index];
    let region = &world.regions[usize::from(region)];
    let mut rng = rng_for(world.seed, CASE, index as u64);
    let id = case_id(world.seed, index);
    let last_day = world.last_day;
    let municipality = {
        let ms = &region.municipalities;
        let urban: Vec<&Municipality> = ms
            .iter()
            .filter(|m| m.kind == MunicipalityKind::UrbanOkrug)
            .collect();
        if !urban.is_empty() && rng.gen_bool(0.55) {
            urban[rng.gen_range(0..urban.len())].id
        } else {
            ms[rng.gen_range(0..ms.len())].id
        }
    };
    let family = Uuid::new_v5(&id, b"family");
    let mut facts = Facts { list: Vec::new() };
    let mut reviews: Vec<(Date, Uuid, AidDecision)> = Vec::new();
    let mut accompanied: Option<(Date, Option<Date>)> = None;
    let mut placed_now = false;
    let mut pending: Vec<AidRequestFacts> = Vec::new();
    let opened;
    // Close: when, and why.
    let mut closing: Option<(Date, &str)> = None;

    match slot {
        Slot::Stay { stay, window } => {
            let (placed, exit) = stay_dates(&mut rng, stay, last_day);
            opened = if placed < HISTORY_START {
                placed
            } else {
                (placed - Duration::days(rng.gen_range(0..5))).max(HISTORY_START)
            };
            let kind = match window {
                Some(rank) => region.window_exits[rank as usize],
                None => weighted(
                    &mut rng,
                    &[
                        (ExitKind::BirthFamily, 62),
                        (ExitKind::Guardianship, 14),
                        (ExitKind::Foster, 9),
                        (ExitKind::Adoption, 3),
                        (ExitKind::ComingOfAge, 8),
                        (ExitKind::OtherExit, 4),
                    ],
                ),
            };
            let institution = &region.institutions[rng.gen_range(0..region.institutions.len())];
            let (basis, legal_status) = match institution.kind {
                InstitutionType::Rehabilitation => (
                    if rng.gen_bool(0.7) {
                        PlacementBasis::ParentsApplication
                    } else {
                        PlacementBasis::Police
                    },
                    LegalStatus::WithoutStatus,
                ),
                _ => match rng.gen_range(0..4) {
                    0 => (
                        PlacementBasis::GuardianshipRemoval,
                        LegalStatus::WithoutStatus,
                    ),
                    1 => (PlacementBasis::Court, LegalStatus::WithStatus),
                    _ => (PlacementBasis::LossOfCare, LegalStatus::WithStatus),
                },
            };
            let mut reasons = vec![weighted(
                &mut rng,
                &[
                    (PlacementReason::Addiction, 25),
                    (PlacementReason::Poverty, 20),
                    (PlacementReason::Neglect, 20),
                    (PlacementReason::Conflict, 10),
                    (PlacementReason::Violence, 7),
                    (PlacementReason::ParentIllness, 8),
                    (PlacementReason::Disability, 6),
                    (PlacementReason::Other, 4),
                ],
            )];
            if rng.gen_bool(0.3) {
                let second = PlacementReason::Poverty;
                if !reasons.contains(&second) {
                    reasons.push(second);
                }
            }
            facts.add(
                placed,
                Phase::Place,
                CaseEvent::ChildPlaced {
                    on: placed,
                    institution: institution.org.id,
                    institution_type: institution.kind,
                    basis,
                    reasons,
                    legal_status,
                },
            );
            // The stay's last day in the institution (or the last day of the history).
            let until = exit.map_or(last_day, |x| x - Duration::days(1));
            stay_facts(
                world,
                region,
                &mut rng,
                &mut facts,
                &mut reviews,
                (id, placed, until, exit.is_some()),
                (legal_status, kind, institution.org.id),
            );
            match exit {
                Some(x) => {
                    facts.add(
                        x,
                        Phase::Exit,
                        CaseEvent::ChildLeftInstitution { on: x, exit: kind },
                    );
                    if kind == ExitKind::BirthFamily {
                        let active = window
                            .map(|rank| region.window_accompanied[rank as usize])
                            .unwrap_or(false);
                        if active || rng.gen_bool(region.accompany_share) {
                            accompanied = accompaniment(&mut rng, x, active, last_day);
                        }
                        closing = match accompanied {
                            Some(_) => None,
                            None => Some((
                                x + Duration::days(rng.gen_range(30..120)),
                                "Ребёнок возвращён в семью, помощь не требуется",
                            )),
                        };
                    } else {
                        closing = Some((
                            x + Duration::days(rng.gen_range(10..60)),
                            match kind {
                                ExitKind::ComingOfAge => "Достиг совершеннолетия",
                                ExitKind::OtherExit => "Выбыл из учреждения",
                                _ => "Ребёнок устроен в замещающую семью",
                            },
                        ));
                    }
                }
                None => placed_now = true,
            }
        }
        Slot::Prevented(when) => {
            let prevented = match when {
                PreventedIn::FirstHalf2024 => {
                    between(&mut rng, date!(2024 - 01 - 15), date!(2024 - 06 - 30))
                }
                PreventedIn::SecondHalf2024 => between(&mut rng, BASELINE, date!(2024 - 12 - 31)),
                PreventedIn::Year2025 { active: true } => {
                    between(&mut rng, YEAR_2025, MIDPOINT - Duration::days(1))
                }
                PreventedIn::Year2025 { active: false } => {
                    between(&mut rng, YEAR_2025, date!(2025 - 12 - 31).min(last_day))
                }
                PreventedIn::Year2026 => between(&mut rng, date!(2026 - 01 - 01), last_day),
            }
            .min(last_day);
            opened = (prevented - Duration::days(rng.gen_range(10..120))).max(HISTORY_START);
            let active = matches!(when, PreventedIn::Year2025 { active: true });
            if active || rng.gen_bool(0.7) {
                accompanied = accompaniment(&mut rng, opened, active, last_day);
            }
            facts.add(
                prevented,
                Phase::During,
                CaseEvent::PlacementPrevented { on: prevented },
            );
            if accompanied.is_none() {
                closing = Some((
                    prevented + Duration::days(rng.gen_range(30..120)),
                    "Помещение в учреждение предотвращено",
                ));
            }
            if rng.gen_bool(0.02) {
                aid_request(
                    world,
                    region,
                    &mut rng,
                    family,
                    municipality,
                    opened,
                    None,
                    &mut pending,
                );
            }
        }
        Slot::Accompanied { active } => {
            let start = if active {
                (MIDPOINT - Duration::days(1 + exp_days(&mut rng, 250.0, 600))).max(HISTORY_START)
            } else if rng.gen_bool(0.5) || MIDPOINT >= last_day {
                between(&mut rng, HISTORY_START, MIDPOINT - Duration::days(60))
            } else {
                between(&mut rng, MIDPOINT + Duration::days(1), last_day)
            };
            opened = start;
            accompanied = accompaniment(&mut rng, start, active, last_day);
        }
    }

    facts.add(
        opened,
        Phase::Open,
        CaseEvent::CaseOpened {
            on: opened,
            child: Uuid::new_v5(&id, b"child"),
            case_number: format!(
                "{}-{}-С{}-{index:06}",
                region.code.as_str(),
                opened.year(),
                world.seed
            ),
            region: region.code.clone(),
            municipality: Some(municipality),
            family: None,
        },
    );
    if let Some((start, end)) = accompanied {
        let service = pick_service(&mut rng, &region.services);
        if let Some(service) = service {
            facts.add(
                start,
                Phase::After,
                CaseEvent::AccompanimentStarted { on: start, service },
            );
            let until = end.unwrap_or(last_day);
            let mut visit = start + Duration::days(rng.gen_range(20..60));
            if rng.gen_bool((0.6 * world.routine).min(0.95)) {
                while visit < until {
                    facts.add(visit, Phase::During, CaseEvent::FamilyVisited { on: visit });
                    visit += visit_gap(&mut rng, world.routine);
                }
            }
            if let Some(end) = end {
                facts.add(
                    end,
                    Phase::AccompanimentEnd,
                    CaseEvent::AccompanimentEnded { on: end },
                );
                closing = Some((
                    end + Duration::days(rng.gen_range(0..30)),
                    "Сопровождение семьи завершено",
                ));
            }
            if !placed_now && matches!(slot, Slot::Accompanied { .. }) && rng.gen_bool(0.013) {
                aid_request(
                    world,
                    region,
                    &mut rng,
                    family,
                    municipality,
                    start,
                    None,
                    &mut pending,
                );
            }
        }
    }
    // Aid decided by a consilium: the NGO operator is asked for it.
    for (on, review, decision) in reviews.clone() {
        let material = matches!(
            decision,
            AidDecision::MaterialAid | AidDecision::MaterialAndServices
        );
        if material && on >= AID_FROM && rng.gen_bool(0.021) {
            aid_request(
                world,
                region,
                &mut rng,
                family,
                municipality,
                on,
                Some(ReviewLink { case: id, review }),
                &mut pending,
            );
        }
    }
    if let Some((on, reason)) = closing {
        let on = on.max(facts.last_date());
        if on <= last_day {
            facts.add(
                on,
                Phase::Close,
                CaseEvent::CaseClosed {
                    on,
                    reason: text(reason),
                },
            );
        }
    }
    facts.list.sort_by_key(|(on, phase, _)| (*on, *phase));
    let mut out = Vec::with_capacity(facts.list.len() + 8);
    let rollout_day = between(&mut rng, date!(2024 - 01 - 09), date!(2024 - 02 - 09));
    let rollout = office_hours(&mut rng, rollout_day);
    let mut previous = OffsetDateTime::UNIX_EPOCH;
    let count = facts.list.len();
    for (k, (on, _, event)) in facts.list.into_iter().enumerate() {
        let at = if on < HISTORY_START {
            rollout + Duration::seconds(k as i64)
        } else {
            recorded(&mut rng, on, world.horizon)
        }
        .max(previous);
        previous = at;
        out.push(Planned {
            aggregate_type: "ChildCase",
            stream: id,
            event: AnyEvent::Case(event),
            effective: Some(on),
            at,
            last: k + 1 == count,
        });
    }
    out.append(&mut take_aid(&mut rng, world, id, pending));
    out.sort_by_key(|p| p.at);
    out
}

#[allow(clippy::too_many_arguments)]
fn aid_request(
    world: &World,
    region: &RegionPlan,
    rng: &mut StdRng,
    family: Uuid,
    municipality: Uuid,
    from: Date,
    review: Option<ReviewLink>,
    pending: &mut Vec<AidRequestFacts>,
) {
    let Some(ngo) = &region.ngo else { return };
    let on = (from.max(AID_FROM) + Duration::days(rng.gen_range(1..30))).min(world.last_day);
    if on < from {
        return;
    }
    let forms: Vec<(usize, u32)> = AID_FORMS
        .iter()
        .enumerate()
        .map(|(i, f)| (i, f.1))
        .collect();
    let (form, ..) = AID_FORMS[weighted(rng, &forms)];
    let requester = match review {
        Some(_) => AidRequester::Consilium,
        None => weighted(
            rng,
            &[
                (AidRequester::Municipality, 30),
                (AidRequester::Institution, 10),
                (AidRequester::Family, 30),
                (AidRequester::Ombudsman, 10),
                (AidRequester::OtherOrganisation, 20),
            ],
        ),
    };
    let first = AidRequestFacts {
        on,
        family,
        region: region.code.clone(),
        municipality: Some(municipality),
        ngo: ngo.id,
        requester,
        requested_by: None,
        review,
        purpose: if review.is_some() {
            AidPurpose::SupportReturn
        } else {
            AidPurpose::PreventPlacement
        },
        form,
        form_other: None,
        description: None,
        amount: None,
        children: weighted(rng, &[(1_u16, 20), (2, 30), (3, 25), (4, 15), (5, 10)]),
    };
    // Two families in five ask again for something else (seed 004: about 100,000 rubles
    // per family).
    let again = first.on + Duration::days(rng.gen_range(20..90));
    if rng.gen_bool(0.4) && again <= world.last_day {
        let (form, ..) = AID_FORMS[weighted(rng, &forms)];
        pending.push(first.clone());
        pending.push(AidRequestFacts {
            on: again,
            form,
            ..first
        });
    } else {
        pending.push(first);
    }
}

/// The aid requests decided for `case`: requested → approved (or refused) → delivered once
/// or, for rent and utilities, monthly.
fn take_aid(
    rng: &mut StdRng,
    world: &World,
    case: Uuid,
    requests: Vec<AidRequestFacts>,
) -> Vec<Planned> {
    let mut out = Vec::new();
    for (k, facts) in requests.into_iter().enumerate() {
        let id = Uuid::new_v5(&case, format!("aid/{k}").as_bytes());
        let form = facts.form;
        let (_, _, low, high) = AID_FORMS
            .iter()
            .copied()
            .find(|f| f.0 == form)
            .unwrap_or(AID_FORMS[0]);
        let mut events: Vec<(Date, AidEvent)> =
            vec![(facts.on, AidEvent::AidRequested(facts.clone()))];
        let decided = facts.on + Duration::days(rng.gen_range(1..8));
        if decided <= world.last_day {
            if rng.gen_bool(0.07) {
                events.push((
                    decided,
                    AidEvent::AidRefused {
                        on: decided,
                        reason: text("помощь предусмотрена региональной мерой поддержки"),
                    },
                ));
            } else {
                events.push((
                    decided,
                    AidEvent::AidApproved {
                        on: decided,
                        amount: None,
                        note: None,
                    },
                ));
                let parts = if matches!(form, AidForm::ShortTermRent | AidForm::Utilities) {
                    rng.gen_range(1..=3)
                } else {
                    1
                };
                for part in 0..parts {
                    let on = decided + Duration::days(rng.gen_range(3..20) + 30 * part);
                    if on > world.last_day {
                        break;
                    }
                    let rubles = rng.gen_range(low..=high);
                    events.push((
                        on,
                        AidEvent::AidDelivered(Delivery {
                            id: Uuid::new_v5(&id, format!("delivery/{part}").as_bytes()),
                            on,
                            amount: Rubles::from_kopecks(rubles * 100 + rng.gen_range(0..100)),
                            form,
                            form_other: None,
                            supplier: None,
                            receipt: Text::parse(&format!("№ {}", rng.gen_range(1000..99999))),
                            attachment: None,
                        }),
                    ));
                }
            }
        }
        let count = events.len();
        let mut previous = OffsetDateTime::UNIX_EPOCH;
        for (n, (on, event)) in events.into_iter().enumerate() {
            let at = recorded(rng, on, world.horizon).max(previous);
            previous = at;
            out.push(Planned {
                aggregate_type: "AidRequest",
                stream: id,
                event: AnyEvent::Aid(event),
                effective: Some(on),
                at,
                last: n + 1 == count,
            });
        }
    }
    out
}

/// Days to the next family visit: every two to four months, more often where `routine`
/// asks for more (the national scale).
fn visit_gap(rng: &mut StdRng, routine: f64) -> Duration {
    let scale = routine.max(1.0);
    Duration::days(rng.gen_range((45.0 / scale) as i64..(120.0 / scale) as i64))
}

fn pick_service(rng: &mut StdRng, services: &[Service]) -> Option<Uuid> {
    let total: u32 = services.iter().map(|s| s.specialists).sum();
    if total == 0 {
        return None;
    }
    let mut pick = rng.gen_range(0..total);
    for service in services {
        if pick < service.specialists {
            return Some(service.org.id);
        }
        pick -= service.specialists;
    }
    services.first().map(|s| s.org.id)
}

/// Placement and exit of a stay of `stay`'s category (the exit `None` when it has not
/// happened by `last_day`). No date falls on the baseline or the midpoint, so "in an
/// institution on that day" means the same whether the day of an exit counts or not.
pub fn stay_dates(rng: &mut StdRng, stay: Stay, last_day: Date) -> (Date, Option<Date>) {
    let day = Duration::days(1);
    let before_baseline = |rng: &mut StdRng, stock_share: f64| {
        if rng.gen_bool(stock_share) {
            stock_date(rng)
        } else {
            between(rng, HISTORY_START, BASELINE - day)
        }
    };
    let after_midpoint = |rng: &mut StdRng, mean: f64| {
        let x = MIDPOINT + day + Duration::days(exp_days(rng, mean, 2_000));
        (x <= last_day).then_some(x)
    };
    match stay {
        Stay::A => (before_baseline(rng, 0.7), after_midpoint(rng, 420.0)),
        Stay::B => (
            before_baseline(rng, 0.5),
            Some(between(rng, BASELINE + day, date!(2024 - 12 - 31))),
        ),
        Stay::C => (
            before_baseline(rng, 0.55),
            Some(between(rng, YEAR_2025, MIDPOINT - day)),
        ),
        Stay::D => (
            between(rng, BASELINE + day, MIDPOINT - day),
            after_midpoint(rng, 240.0),
        ),
        Stay::E => {
            let x = between(rng, YEAR_2025, MIDPOINT - day);
            let stay = Duration::days(14 + exp_days(rng, 100.0, 400));
            ((x - stay).max(BASELINE + day), Some(x))
        }
        Stay::F => {
            let p = between(rng, BASELINE + day, date!(2024 - 12 - 20));
            (
                p,
                Some(between(rng, p + Duration::days(7), date!(2024 - 12 - 31))),
            )
        }
        Stay::G => {
            if rng.gen_bool(0.3) {
                (
                    stock_date(rng),
                    Some(between(rng, HISTORY_START, BASELINE - day)),
                )
            } else {
                let p = between(rng, HISTORY_START, BASELINE - Duration::days(15));
                (p, Some(between(rng, p + Duration::days(7), BASELINE - day)))
            }
        }
        Stay::H => {
            let p = between(rng, MIDPOINT + day, last_day);
            let x = p + Duration::days(14 + exp_days(rng, 150.0, 900));
            (p, (x <= last_day).then_some(x))
        }
    }
}

/// What happens during a stay (from `placed` to `until`, the last day in): consilium
/// reviews with their action items, a change of legal status or of parental rights, a
/// transfer, the curator's personal control, family visits.
fn stay_facts(
    world: &World,
    region: &RegionPlan,
    rng: &mut StdRng,
    facts: &mut Facts,
    reviews: &mut Vec<(Date, Uuid, AidDecision)>,
    (id, placed, until, leaves): (Uuid, Date, Date, bool),
    (legal_status, exit_kind, institution): (LegalStatus, ExitKind, Uuid),
) {
    let last_day = world.last_day;
    let day = Duration::days(1);
    // Consilium reviews: the first some months in (not before the consilia started), then
    // every 4–8 months; one stay in eight is never reviewed.
    if rng.gen_bool(0.88) {
        let mut on = (placed + Duration::days(rng.gen_range(30..150)))
            .max(date!(2024 - 03 - 01) + Duration::days(rng.gen_range(0..120)));
        let mut n = 0_u32;
        while on <= until {
            let review = Uuid::new_v5(&id, format!("review/{n}").as_bytes());
            let aid = if on >= AID_FROM {
                weighted(
                    rng,
                    &[
                        (AidDecision::MaterialAid, 12),
                        (AidDecision::MaterialAndServices, 10),
                        (AidDecision::Services, 40),
                        (AidDecision::NoAid, 38),
                    ],
                )
            } else {
                weighted(
                    rng,
                    &[(AidDecision::Services, 50), (AidDecision::NoAid, 50)],
                )
            };
            let return_possible = rng.gen_bool(if exit_kind == ExitKind::BirthFamily {
                0.7
            } else {
                0.2
            });
            let level = weighted(
                rng,
                &[
                    (ReviewLevel::Regional, 20),
                    (ReviewLevel::Municipal, 50),
                    (ReviewLevel::Institution, 30),
                ],
            );
            facts.add(
                on,
                Phase::During,
                CaseEvent::ConsiliumReviewRecorded {
                    on,
                    review: Review {
                        review,
                        level,
                        placement_justified: Some(rng.gen_bool(0.7)),
                        stay_justified: Some(!return_possible),
                        parental_claim_justified: Some(rng.gen_bool(0.15)),
                        aid,
                        return_possible: Some(return_possible),
                        return_by: return_possible
                            .then(|| on + Duration::days(rng.gen_range(60..180))),
                        next_review: Some(on + Duration::days(180)),
                        session: None,
                    },
                },
            );
            reviews.push((on, review, aid));
            let items = weighted(rng, &[(0_u32, 35), (1, 35), (2, 20), (3, 10)]);
            for k in 0..items {
                let (action, executor) = ACTIONS[rng.gen_range(0..ACTIONS.len())];
                let item = Uuid::new_v5(&review, format!("item/{k}").as_bytes());
                let due = on + Duration::days(rng.gen_range(20..120));
                facts.add(
                    on,
                    Phase::During,
                    CaseEvent::ActionItemSet {
                        on,
                        item,
                        action: text(action),
                        executor: text(executor),
                        due,
                        review: Some(review),
                    },
                );
                // Most done by the due date, some late, one in five not at all.
                let done = match rng.gen_range(0..100) {
                    0..=64 => Some(between(rng, on, due)),
                    65..=79 => Some(due + Duration::days(rng.gen_range(1..90))),
                    _ => None,
                };
                if let Some(done) = done.filter(|d| *d <= last_day) {
                    facts.add(
                        done,
                        Phase::ItemDone,
                        CaseEvent::ActionItemDone { on: done, item },
                    );
                }
            }
            n += 1;
            on += Duration::days(rng.gen_range(120..240));
        }
    }
    // Stock stays began before the register: what happens during them is dated from it.
    let base = placed.max(HISTORY_START);
    let span = (until - base).whole_days();
    let during = |rng: &mut StdRng, from: i64, to: i64| -> Option<Date> {
        let (from, to) = (from.max(1), to.min(span));
        (from <= to).then(|| base + Duration::days(rng.gen_range(from..=to)))
    };
    let from_history = |d: Date| d.max(HISTORY_START);
    if legal_status == LegalStatus::WithoutStatus && rng.gen_bool(0.06) {
        if let Some(on) = during(rng, 60, 300)
            .map(from_history)
            .filter(|d| *d <= until)
        {
            facts.add(
                on,
                Phase::During,
                CaseEvent::LegalStatusChanged {
                    on,
                    legal_status: LegalStatus::WithStatus,
                },
            );
        }
    }
    if legal_status == LegalStatus::WithStatus && rng.gen_bool(0.25) {
        if let Some(restricted) = during(rng, 20, 200)
            .map(from_history)
            .filter(|d| *d <= until)
        {
            facts.add(
                restricted,
                Phase::During,
                CaseEvent::ParentalRightsRestricted { on: restricted },
            );
            let home = leaves && exit_kind == ExitKind::BirthFamily;
            if home {
                let restored = (until - Duration::days(rng.gen_range(0..15))).max(restricted);
                facts.add(
                    restored,
                    Phase::ItemDone,
                    CaseEvent::ParentalRightsRestored { on: restored },
                );
            } else if rng.gen_bool(0.4) {
                let removed = restricted + Duration::days(rng.gen_range(60..300));
                if removed <= until {
                    facts.add(
                        removed,
                        Phase::ItemDone,
                        CaseEvent::ParentalRightsRemoved { on: removed },
                    );
                }
            }
        }
    }
    if span > 200 && rng.gen_bool(0.04) {
        let others: Vec<&Institution> = region
            .institutions
            .iter()
            .filter(|i| i.org.id != institution)
            .collect();
        if let (Some(on), false) = (
            during(rng, 60, span - 30).map(from_history),
            others.is_empty(),
        ) {
            if on <= until {
                let to = others[rng.gen_range(0..others.len())];
                facts.add(
                    on,
                    Phase::During,
                    CaseEvent::ChildTransferred {
                        on,
                        institution: to.org.id,
                        institution_type: to.kind,
                    },
                );
            }
        }
    }
    if rng.gen_bool(0.04) {
        if let Some(taken) = during(rng, 10, 90)
            .map(from_history)
            .filter(|d| *d <= until)
        {
            facts.add(
                taken,
                Phase::During,
                CaseEvent::TakenUnderPersonalControl { on: taken },
            );
            let released = if leaves {
                Some(until + day + Duration::days(rng.gen_range(0..30)))
            } else if rng.gen_bool(0.5) {
                Some(taken + Duration::days(rng.gen_range(90..300)))
            } else {
                None
            };
            if let Some(released) = released.filter(|d| *d <= last_day) {
                facts.add(
                    released,
                    if released > until {
                        Phase::After
                    } else {
                        Phase::ItemDone
                    },
                    CaseEvent::ReleasedFromPersonalControl { on: released },
                );
            }
        }
    }
    if rng.gen_bool((0.5 * world.routine).min(0.95)) {
        let mut visit = base + Duration::days(rng.gen_range(20..60));
        while visit <= until {
            facts.add(visit, Phase::During, CaseEvent::FamilyVisited { on: visit });
            visit += visit_gap(rng, world.routine);
        }
    }
}
