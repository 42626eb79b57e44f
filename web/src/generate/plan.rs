//! The plan of a synthetic history: which regions, how many children in institutions on the
//! seed's dates, how many exits of which kind, which services, and every case's slot. The
//! figures the seeds fix are met exactly by construction: a case's category bounds its dates
//! (placed before the baseline and still in after 01.10.2025, say), and each region has as
//! many cases of each category as its targets need. Dates inside a category are random.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use opora_domain::case::ExitKind;
use opora_domain::reference::{
    municipality_id, MunicipalityCommand, MunicipalityKind, PlaceName, RegionCode, RegionCommand,
};
use rand::Rng;
use time::macros::date;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use super::clock::{self, rng_for};
use super::Scale;

/// 01.07.2024: the baseline of the project's monitoring.
pub const BASELINE: Date = date!(2024 - 07 - 01);
/// 01.10.2025: the seed's latest figures.
pub const MIDPOINT: Date = date!(2025 - 10 - 01);
/// 01.01.2025: exits "in 2025" are counted from here to [`MIDPOINT`], both included.
pub const YEAR_2025: Date = date!(2025 - 01 - 01);
/// The register starts: events before it are the stock entered when it was set up.
pub const HISTORY_START: Date = date!(2024 - 01 - 01);
/// NGO operators take requests from the project's start.
pub const AID_FROM: Date = date!(2024 - 10 - 01);

/// Seed 004: the 14 «Вызов» regions with their children in institutions on 01.07.2024 (the
/// split between regions is ours; the total is the seed's), the fall by 01.10.2025 we give
/// each region (the total is the seed's), and the «Дети в семье» table: services,
/// specialists, families on accompaniment.
pub const PILOT: [PilotRegion; 14] = [
    ("22", 1_582, 0.240, 30, 62, 430),
    ("29", 820, 0.195, 4, 89, 960),
    ("75", 1_050, 0.170, 2, 33, 689),
    ("38", 2_200, 0.235, 42, 553, 4_577),
    ("42", 1_700, 0.250, 55, 372, 1_267),
    ("24", 4_620, 0.210, 5, 30, 294),
    ("56", 950, 0.200, 5, 42, 376),
    ("59", 1_500, 0.265, 9, 130, 3_530),
    ("25", 1_150, 0.185, 30, 135, 540),
    ("63", 900, 0.220, 6, 47, 1_002),
    ("66", 1_900, 0.270, 77, 884, 3_686),
    ("69", 600, 0.245, 27, 100, 1_053),
    ("27", 780, 0.160, 19, 92, 381),
    ("74", 1_400, 0.230, 96, 347, 5_923),
];

/// Code, children in institutions on the baseline, fall by the midpoint, services,
/// specialists, families on accompaniment.
pub type PilotRegion = (&'static str, u32, f64, u32, u32, u32);

/// The seed's totals for the 14 regions.
pub const PILOT_IN_INSTITUTIONS_BASELINE: u64 = 21_152;
pub const PILOT_IN_INSTITUTIONS_MIDPOINT: u64 = 16_446;
pub const PILOT_EXITS_2025: u64 = 22_981;
pub const PILOT_EXITS_HOME_2025: u64 = 14_825;
/// «почти 9 тысячам детей удалось избежать попадания в учреждение» (2025).
pub const PILOT_PREVENTED_2025: u64 = 8_941;

/// What the history must show in one region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Targets {
    /// Children in institutions on [`BASELINE`].
    pub baseline: u64,
    /// Children in institutions on [`MIDPOINT`].
    pub midpoint: u64,
    /// Exits from [`YEAR_2025`] to [`MIDPOINT`].
    pub exits: u64,
    /// … of them back to the birth family.
    pub exits_home: u64,
    /// Placements prevented in 2025.
    pub prevented: u64,
    pub services: u64,
    pub specialists: u64,
    /// Cases on accompaniment by the region's services on [`MIDPOINT`].
    pub families: u64,
}

/// Stays in an institution, by where their dates fall against the seed's dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stay {
    /// In before the baseline, still in on the midpoint.
    A,
    /// In before the baseline, left in the second half of 2024.
    B,
    /// In before the baseline, left in 2025 before the midpoint.
    C,
    /// Placed after the baseline, still in on the midpoint.
    D,
    /// Placed after the baseline, left in 2025 before the midpoint.
    E,
    /// Placed after the baseline, left before 2025.
    F,
    /// Placed and left before the baseline.
    G,
    /// Placed after the midpoint.
    H,
}

/// When a prevented placement happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreventedIn {
    FirstHalf2024,
    SecondHalf2024,
    /// In 2025; `active`: the family was still accompanied on the midpoint.
    Year2025 {
        active: bool,
    },
    Year2026,
}

/// What a case is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A stay; `window` is its rank among the region's exits of 2025 (C and E stays).
    Stay {
        stay: Stay,
        window: Option<u32>,
    },
    Prevented(PreventedIn),
    /// A family accompanied without a placement; `active` on the midpoint.
    Accompanied {
        active: bool,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct CaseSlot {
    pub region: u16,
    pub slot: Slot,
}

/// An organisation the generator registers.
#[derive(Debug, Clone)]
pub struct Org {
    pub id: Uuid,
    pub name: String,
    pub municipality: Uuid,
}

#[derive(Debug, Clone)]
pub struct Institution {
    pub org: Org,
    pub kind: opora_domain::case::InstitutionType,
    pub capacity: u32,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub org: Org,
    pub specialists: u32,
}

#[derive(Debug, Clone)]
pub struct Municipality {
    pub id: Uuid,
    pub name: String,
    pub kind: MunicipalityKind,
}

/// One region of the plan.
#[derive(Debug, Clone)]
pub struct RegionPlan {
    pub code: RegionCode,
    pub name: String,
    pub zone: String,
    pub municipalities: Vec<Municipality>,
    pub targets: Targets,
    pub ngo: Option<Org>,
    pub consilium: Option<Org>,
    pub institutions: Vec<Institution>,
    pub services: Vec<Service>,
    /// Kinds of the region's exits of 2025, by rank (exactly `exits_home` birth family).
    pub window_exits: Vec<ExitKind>,
    /// Which of those exits home went on accompaniment still running on the midpoint.
    pub window_accompanied: Vec<bool>,
    /// Share of other exits home that go on (shorter) accompaniment.
    pub accompany_share: f64,
}

/// Everything rendering needs, shared and read-only.
pub struct World {
    pub seed: u64,
    pub scale: Scale,
    pub today: Date,
    /// The last day with facts: the day before `today`.
    pub last_day: Date,
    /// Nothing is recorded from this instant on (the start of `today`, Moscow time).
    pub horizon: OffsetDateTime,
    pub regions: Vec<RegionPlan>,
    pub cases: Vec<CaseSlot>,
    pub zastupnik: Option<super::zastupnik::Plan>,
    /// How many family visits and similar routine entries a case gets (national volume).
    pub routine: f64,
}

/// Splits `total` in proportion to `weights`, each share at least `min[i]`, largest
/// remainders first; the shares sum to `total` exactly (if the minimums allow).
pub fn apportion(total: u64, weights: &[f64], min: &[u64]) -> Vec<u64> {
    let floor: u64 = min.iter().sum();
    let rest = total.saturating_sub(floor) as f64;
    let sum: f64 = weights.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let exact: Vec<f64> = weights.iter().map(|w| rest * w / sum).collect();
    let mut shares: Vec<u64> = exact
        .iter()
        .zip(min)
        .map(|(e, m)| e.floor() as u64 + m)
        .collect();
    let mut left = total.saturating_sub(shares.iter().sum());
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| {
        let (ra, rb) = (exact[*a] - exact[*a].floor(), exact[*b] - exact[*b].floor());
        rb.total_cmp(&ra).then(a.cmp(b))
    });
    for i in order.iter().cycle() {
        if left == 0 || weights.is_empty() {
            break;
        }
        shares[*i] += 1;
        left -= 1;
    }
    shares
}

fn round(x: f64) -> u64 {
    x.round().max(0.0) as u64
}

/// The region targets of a scale, by region code.
pub fn targets(scale: Scale, all_regions: &[(RegionCode, f64)]) -> BTreeMap<String, Targets> {
    let pilot_weights =
        |f: &dyn Fn(&PilotRegion) -> f64| -> Vec<f64> { PILOT.iter().map(f).collect() };
    let zeros = vec![0_u64; PILOT.len()];
    // The pilot's own split first; tiny divides every total by 100 over the same weights.
    let divide = if scale == Scale::Tiny { 100.0 } else { 1.0 };
    let total = |n: u64| round(n as f64 / divide);
    let baseline = if scale == Scale::Tiny {
        apportion(
            total(PILOT_IN_INSTITUTIONS_BASELINE),
            &pilot_weights(&|r| f64::from(r.1)),
            &zeros,
        )
    } else {
        PILOT.iter().map(|r| u64::from(r.1)).collect()
    };
    let midpoint = apportion(
        total(PILOT_IN_INSTITUTIONS_MIDPOINT),
        &PILOT
            .iter()
            .zip(&baseline)
            .map(|(r, b)| *b as f64 * (1.0 - r.2))
            .collect::<Vec<_>>(),
        &zeros,
    );
    // Turnover differs by region: where the fall is steeper, more children left.
    let exits = apportion(
        total(PILOT_EXITS_2025),
        &PILOT
            .iter()
            .zip(&baseline)
            .map(|(r, b)| *b as f64 * (0.85 + r.2))
            .collect::<Vec<_>>(),
        &zeros,
    );
    // Where services accompany many families, more children went home.
    let home = apportion(
        total(PILOT_EXITS_HOME_2025),
        &PILOT
            .iter()
            .zip(&exits)
            .map(|(r, e)| {
                let reach = f64::from(r.5) / f64::from(r.1).max(1.0);
                *e as f64 * (0.55 + 0.05 * reach.min(4.0))
            })
            .collect::<Vec<_>>(),
        &zeros,
    );
    let prevented = apportion(
        total(PILOT_PREVENTED_2025),
        &pilot_weights(&|r| f64::from(r.5) + 0.3 * f64::from(r.1)),
        &zeros,
    );
    let ones = vec![1_u64; PILOT.len()];
    let (services, specialists, families) = if scale == Scale::Tiny {
        let services = ones.clone();
        let specialists = apportion(
            total(PILOT.iter().map(|r| u64::from(r.4)).sum()).max(PILOT.len() as u64),
            &pilot_weights(&|r| f64::from(r.4)),
            &services,
        );
        let families = apportion(
            total(PILOT.iter().map(|r| u64::from(r.5)).sum()),
            &pilot_weights(&|r| f64::from(r.5)),
            &ones,
        );
        (services, specialists, families)
    } else {
        (
            PILOT.iter().map(|r| u64::from(r.3)).collect(),
            PILOT.iter().map(|r| u64::from(r.4)).collect(),
            PILOT.iter().map(|r| u64::from(r.5)).collect(),
        )
    };
    let mut out = BTreeMap::new();
    for (i, region) in PILOT.iter().enumerate() {
        out.insert(
            region.0.to_owned(),
            Targets {
                baseline: baseline[i],
                midpoint: midpoint[i],
                exits: exits[i],
                exits_home: home[i].min(exits[i]),
                prevented: prevented[i],
                services: services[i],
                specialists: specialists[i],
                families: families[i],
            },
        );
    }
    if scale != Scale::National {
        return out;
    }
    // The other regions: the 14 held 35 % of the country's children in institutions (seed
    // 004); the country fell by 18.2 % over the same period; 630 services in 26 regions.
    let others: Vec<&(RegionCode, f64)> = all_regions
        .iter()
        .filter(|(code, _)| !out.contains_key(code.as_str()))
        .collect();
    let weights: Vec<f64> = others.iter().map(|(_, w)| *w).collect();
    let none = vec![0_u64; others.len()];
    let some = vec![1_u64; others.len()];
    let baseline = apportion(39_282, &weights, &none);
    let split = |total: u64, factor: &dyn Fn(usize) -> f64, min: &[u64]| {
        apportion(
            total,
            &(0..others.len())
                .map(|i| baseline[i] as f64 * factor(i))
                .collect::<Vec<_>>(),
            min,
        )
    };
    let midpoint = split(32_133, &|_| 1.0, &none);
    let exits = split(41_000, &|_| 1.0, &none);
    let home = split(24_600, &|_| 1.0, &none);
    let prevented = split(11_800, &|_| 1.0, &none);
    let services = split(223, &|_| 1.0, &some);
    let specialists = apportion(
        1_650,
        &services.iter().map(|s| *s as f64).collect::<Vec<_>>(),
        &services,
    );
    let families = split(15_000, &|_| 1.0, &some);
    for (i, (code, _)) in others.iter().enumerate() {
        out.insert(
            code.as_str().to_owned(),
            Targets {
                baseline: baseline[i],
                midpoint: midpoint[i].min(baseline[i]),
                exits: exits[i],
                exits_home: home[i].min(exits[i]),
                prevented: prevented[i],
                services: services[i],
                specialists: specialists[i],
                families: families[i],
            },
        );
    }
    out
}

/// How many cases of each category a region gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mix {
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub d: u64,
    pub e: u64,
    pub f: u64,
    pub g: u64,
    pub h: u64,
    pub prevented_h1_2024: u64,
    pub prevented_h2_2024: u64,
    pub prevented_2025_active: u64,
    pub prevented_2025: u64,
    pub prevented_2026: u64,
    /// Accompaniment started at a return home in 2025 and still running on the midpoint.
    pub home_active: u64,
    pub accompanied_active: u64,
    pub accompanied_other: u64,
}

/// The categories that make a region's targets hold; `volume` scales the free ones (more
/// turnover before and after the seed's dates).
pub fn mix(t: &Targets, months_after_midpoint: f64, volume: f64) -> Mix {
    let a = round(0.40 * t.baseline as f64).min(t.midpoint);
    let c = round(0.25 * t.baseline as f64)
        .min(t.baseline - a)
        .min(t.exits);
    let home_active = round(0.30 * t.families as f64).min(round(0.6 * t.exits_home as f64));
    let prevented_2025_active =
        round(0.25 * t.families as f64).min(round(0.6 * t.prevented as f64));
    let accompanied_active = t
        .families
        .saturating_sub(home_active + prevented_2025_active);
    let y2026 = (months_after_midpoint - 3.0).clamp(0.0, 12.0) / 12.0;
    Mix {
        a,
        b: t.baseline - a - c,
        c,
        d: t.midpoint - a,
        e: t.exits - c,
        f: round(0.45 * t.baseline as f64 * volume),
        g: round(0.40 * t.baseline as f64 * volume),
        h: round(months_after_midpoint * 0.085 * t.midpoint as f64 * volume),
        prevented_h1_2024: round(0.12 * t.prevented as f64 * volume),
        prevented_h2_2024: round(0.30 * t.prevented as f64 * volume),
        prevented_2025_active,
        prevented_2025: t.prevented - prevented_2025_active,
        prevented_2026: round(0.9 * t.prevented as f64 * y2026 * volume),
        home_active,
        accompanied_active,
        accompanied_other: round(0.6 * accompanied_active as f64 * volume),
    }
}

/// The slots of one region's cases, in a fixed order.
pub fn slots(region: u16, mix: &Mix) -> Vec<CaseSlot> {
    let mut out = Vec::new();
    let mut add = |n: u64, slot: &dyn Fn(u64) -> Slot| {
        for i in 0..n {
            out.push(CaseSlot {
                region,
                slot: slot(i),
            });
        }
    };
    let stay = |stay: Stay| move |_| Slot::Stay { stay, window: None };
    add(mix.a, &stay(Stay::A));
    add(mix.b, &stay(Stay::B));
    add(mix.c, &|i| Slot::Stay {
        stay: Stay::C,
        window: Some(i as u32),
    });
    add(mix.d, &stay(Stay::D));
    let c = mix.c;
    add(mix.e, &|i| Slot::Stay {
        stay: Stay::E,
        window: Some((c + i) as u32),
    });
    add(mix.f, &stay(Stay::F));
    add(mix.g, &stay(Stay::G));
    add(mix.h, &stay(Stay::H));
    let prevented = |when: PreventedIn| move |_| Slot::Prevented(when);
    add(
        mix.prevented_h1_2024,
        &prevented(PreventedIn::FirstHalf2024),
    );
    add(
        mix.prevented_h2_2024,
        &prevented(PreventedIn::SecondHalf2024),
    );
    add(
        mix.prevented_2025_active,
        &prevented(PreventedIn::Year2025 { active: true }),
    );
    add(
        mix.prevented_2025,
        &prevented(PreventedIn::Year2025 { active: false }),
    );
    add(mix.prevented_2026, &prevented(PreventedIn::Year2026));
    add(mix.accompanied_active, &|_| Slot::Accompanied {
        active: true,
    });
    add(mix.accompanied_other, &|_| Slot::Accompanied {
        active: false,
    });
    out
}

/// The kinds of a region's exits of 2025: exactly `home` back to the birth family, the
/// rest to substitute families, coming of age and other, shuffled.
pub fn window_exits(rng: &mut impl Rng, exits: u64, home: u64) -> Vec<ExitKind> {
    let others = apportion(
        exits - home,
        &[0.40, 0.25, 0.08, 0.17, 0.10],
        &[0, 0, 0, 0, 0],
    );
    let mut kinds = vec![ExitKind::BirthFamily; home as usize];
    for (kind, n) in [
        ExitKind::Guardianship,
        ExitKind::Foster,
        ExitKind::Adoption,
        ExitKind::ComingOfAge,
        ExitKind::OtherExit,
    ]
    .into_iter()
    .zip(others)
    {
        kinds.extend(std::iter::repeat_n(kind, n as usize));
    }
    // Fisher–Yates with our generator (the order must not depend on a library's shuffle).
    for i in (1..kinds.len()).rev() {
        let j = rng.gen_range(0..=i);
        kinds.swap(i, j);
    }
    kinds
}

/// Regions and municipalities from the seed files (and the synthetic municipalities of the
/// national scale).
pub struct Reference {
    /// Code, name, time zone.
    pub regions: Vec<(RegionCode, String, String)>,
    pub municipalities: BTreeMap<String, Vec<Municipality>>,
}

pub fn reference(synthetic: bool) -> Result<Reference> {
    let mut regions = Vec::new();
    for (code, command) in crate::seed::regions()? {
        if let RegionCommand::RegisterRegion {
            name, time_zone, ..
        } = command
        {
            regions.push((
                code,
                name.as_str().to_owned(),
                time_zone.as_str().to_owned(),
            ));
        }
    }
    let mut municipalities: BTreeMap<String, Vec<Municipality>> = BTreeMap::new();
    for (id, command) in crate::seed::municipalities()? {
        if let MunicipalityCommand::RegisterMunicipality {
            region_code,
            name,
            kind,
        } = command
        {
            municipalities
                .entry(region_code.as_str().to_owned())
                .or_default()
                .push(Municipality {
                    id,
                    name: name.as_str().to_owned(),
                    kind,
                });
        }
    }
    if synthetic {
        for (code, list) in synthetic_municipalities(&regions, &municipalities)? {
            municipalities.insert(code, list);
        }
    }
    Ok(Reference {
        regions,
        municipalities,
    })
}

/// Stems of the synthetic municipalities' names (real names repeat across regions too).
const STEMS: [&str; 48] = [
    "Берёзов",
    "Заречн",
    "Первомайск",
    "Октябрьск",
    "Советск",
    "Кировск",
    "Ленинск",
    "Центральн",
    "Северн",
    "Южн",
    "Восточн",
    "Западн",
    "Лесн",
    "Озёрн",
    "Речн",
    "Лугов",
    "Сосновск",
    "Никольск",
    "Покровск",
    "Троицк",
    "Успенск",
    "Вознесенск",
    "Каменск",
    "Красногорск",
    "Новосёловск",
    "Михайловск",
    "Александровск",
    "Ивановск",
    "Петровск",
    "Знаменск",
    "Ключевск",
    "Родниковск",
    "Светл",
    "Ясненск",
    "Майск",
    "Солнечн",
    "Приозёрн",
    "Нагорн",
    "Подгорн",
    "Долинск",
    "Степн",
    "Полев",
    "Кедров",
    "Рябиновск",
    "Ольховск",
    "Дубовск",
    "Липовск",
    "Вишнёвск",
];

/// How many municipalities each seed region without any gets, for about 2,300 in all; names
/// like «Берёзовский муниципальный район», «городской округ Заречный». The same for every
/// seed, so a second seed finds them registered.
pub fn synthetic_municipalities(
    regions: &[(RegionCode, String, String)],
    existing: &BTreeMap<String, Vec<Municipality>>,
) -> Result<BTreeMap<String, Vec<Municipality>>> {
    let known: usize = existing.values().map(Vec::len).sum();
    let empty: Vec<&RegionCode> = regions
        .iter()
        .map(|(code, ..)| code)
        .filter(|code| !existing.contains_key(code.as_str()))
        .collect();
    let weights: Vec<f64> = empty.iter().map(|code| region_weight(code)).collect();
    let counts = apportion(
        2_300_u64.saturating_sub(known as u64),
        &weights,
        &vec![8; empty.len()],
    );
    let mut out = BTreeMap::new();
    for (code, count) in empty.into_iter().zip(counts) {
        let mut list = Vec::new();
        for k in 0..count as usize {
            let stem = STEMS[k % STEMS.len()];
            let (name, kind) = match (k / STEMS.len(), k % 5) {
                (0, 0) => (
                    format!("городской округ {stem}ый"),
                    MunicipalityKind::UrbanOkrug,
                ),
                (0, 1 | 2) => (
                    format!("{stem}ий муниципальный район"),
                    MunicipalityKind::MunicipalDistrict,
                ),
                (0, _) => (
                    format!("{stem}ий муниципальный округ"),
                    MunicipalityKind::MunicipalOkrug,
                ),
                (round, _) => (
                    format!("{stem}ий муниципальный район № {}", round + 1),
                    MunicipalityKind::MunicipalDistrict,
                ),
            };
            let name = PlaceName::parse(&name).context("synthetic municipality name")?;
            list.push(Municipality {
                id: municipality_id(code, &name),
                name: name.as_str().to_owned(),
                kind,
            });
        }
        out.insert(code.as_str().to_owned(), list);
    }
    Ok(out)
}

/// A region's relative size for the national scale (children, municipalities, users): the
/// most populous subjects larger, the others a fixed pseudo-random 0.4–2.0.
pub fn region_weight(code: &RegionCode) -> f64 {
    let big = [
        ("77", 8.0),
        ("50", 6.0),
        ("78", 4.5),
        ("23", 4.0),
        ("02", 3.0),
        ("16", 3.0),
        ("61", 3.0),
        ("05", 2.8),
        ("52", 2.5),
        ("54", 2.3),
    ];
    if let Some((_, w)) = big.iter().find(|(c, _)| *c == code.as_str()) {
        return *w;
    }
    let mut rng = rng_for(
        0,
        0x5245_4749_4f4e,
        code.as_str().parse::<u64>().unwrap_or(0),
    );
    rng.gen_range(0.4..2.0)
}

impl World {
    pub fn new(seed: u64, scale: Scale, today: Date) -> Result<Self> {
        let reference = reference(scale == Scale::National)?;
        let weights: Vec<(RegionCode, f64)> = reference
            .regions
            .iter()
            .map(|(code, ..)| (code.clone(), region_weight(code)))
            .collect();
        let targets = targets(scale, &weights);
        let last_day = today - Duration::days(1);
        let months_after = ((last_day - MIDPOINT).whole_days().max(0) as f64) / 30.44;
        let volume = if scale == Scale::National { 1.45 } else { 1.0 };
        let mut regions = Vec::new();
        let mut cases = Vec::new();
        // Pilot regions first, in the seed's order; the others by code.
        let mut order: Vec<&(RegionCode, String, String)> = Vec::new();
        for (code, ..) in PILOT {
            if let Some(r) = reference.regions.iter().find(|r| r.0.as_str() == code) {
                order.push(r);
            }
        }
        for r in &reference.regions {
            if targets.contains_key(r.0.as_str()) && !order.iter().any(|o| o.0 == r.0) {
                order.push(r);
            }
        }
        for (code, name, zone) in order {
            let Some(t) = targets.get(code.as_str()) else {
                continue;
            };
            let municipalities = reference
                .municipalities
                .get(code.as_str())
                .cloned()
                .with_context(|| format!("region {code} has no municipalities"))?;
            let index = regions.len() as u16;
            let mix = mix(t, months_after, volume);
            let mut rng = rng_for(seed, 0x504c_414e, u64::from(index));
            let window = window_exits(&mut rng, t.exits, t.exits_home);
            let mut home_left = mix.home_active;
            let window_accompanied = window
                .iter()
                .map(|k| {
                    let on = *k == ExitKind::BirthFamily && home_left > 0;
                    if on {
                        home_left -= 1;
                    }
                    on
                })
                .collect();
            let directory = super::vyzov::directory(seed, code, name, &municipalities, t);
            cases.extend(slots(index, &mix));
            regions.push(RegionPlan {
                code: code.clone(),
                name: name.clone(),
                zone: zone.clone(),
                municipalities,
                targets: *t,
                ngo: directory.ngo,
                consilium: directory.consilium,
                institutions: directory.institutions,
                services: directory.services,
                window_exits: window,
                window_accompanied,
                accompany_share: (0.25 * t.families as f64 / (t.exits_home as f64 + 1.0))
                    .clamp(0.05, 0.5),
            });
        }
        let zastupnik = super::zastupnik::plan(seed, scale, &reference, today)?;
        Ok(Self {
            seed,
            scale,
            today,
            last_day,
            horizon: clock::moscow(today, 0),
            regions,
            cases,
            zastupnik,
            routine: if scale == Scale::National { 2.2 } else { 0.6 },
        })
    }
}
