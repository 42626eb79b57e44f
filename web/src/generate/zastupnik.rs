//! «Заступник»: the municipal education departments' weekly connection reports (every
//! Friday, two years back) and the children's signals with their whole response.
//!
//! Connected users grow along a logistic curve to about a million (children 62 %, adults
//! the rest) by the last Friday; a week's report is filed on time by 93 % of the
//! departments, late (Saturday to Tuesday) by 4 %, not at all by 3 %; most are accepted by
//! the region within days, a few corrected or returned. Signals follow the users: more
//! where and when more are connected, more in the afternoon; 79 % are settled by the trusted
//! circle, the rest by the operators (see `demo::signals` for the same lifecycle).

use anyhow::Result;
use opora_domain::access::Text;
use opora_domain::reference::{MunicipalityKind, RegionCode};
use opora_domain::signal::{
    Channel, ClientEvent, Recipient, ResponderKind, SignalEvent, SignalKind, SignalOutcome,
};
use opora_domain::weekly::{report_id, Figures, Filing, Period, Schedule, Week, WeeklyEvent};
use rand::rngs::StdRng;
use rand::Rng;
use time::{Date, Duration, OffsetDateTime, Time};
use uuid::Uuid;

use super::clock::{office_hours, rng_for};
use super::plan::{Reference, World};
use super::{AnyEvent, Planned, Scale, NAMESPACE};

const WEEKLY: u64 = 0x5745_454b;
const SIGNAL: u64 = 0x5349_474e;
const PLACES: u64 = 0x504c_4143;

/// One reporting municipality.
#[derive(Debug, Clone)]
pub struct Place {
    pub region: RegionCode,
    pub schedule: Schedule,
    /// The region's offset from UTC in seconds (Russia has no daylight saving).
    pub offset: i64,
    pub municipality: Uuid,
    pub name: String,
    /// Connected users (children and adults) on the last Friday.
    pub users: u32,
    pub schools: u32,
}

pub struct Plan {
    pub client: Uuid,
    /// The reporting weeks, oldest first.
    pub weeks: Vec<Week>,
    pub places: Vec<Place>,
    pub signals: u32,
    /// Cumulative weights of the weeks (signals follow the users) and of the places.
    week_cdf: Vec<f64>,
    place_cdf: Vec<f64>,
}

impl Plan {
    pub fn reports(&self) -> usize {
        self.places.len() * self.weeks.len()
    }
}

/// Share of the final users connected in week `w` of the last `n`: a logistic rise from 5 %
/// over two years (a shorter history is its end).
pub fn growth(w: usize, n: usize) -> f64 {
    const SPAN: usize = 104;
    let l = |t: f64| 1.0 / (1.0 + (-8.0 * (t - 0.45)).exp());
    let t = ((w + SPAN).saturating_sub(n)) as f64 / (SPAN - 1) as f64;
    let t = t.min(1.0);
    0.05 + 0.95 * (l(t) - l(0.0)) / (l(1.0) - l(0.0))
}

fn offset_of(zone: &str) -> i64 {
    let tz = jiff::tz::TimeZone::get(zone).unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::from_second(1_750_000_000)
        .map(|ts| i64::from(tz.to_offset(ts).seconds()))
        .unwrap_or(0)
}

/// The «Заступник» part of a scale: all municipalities for two years (national), one
/// region for eight weeks (tiny), none for the pilot.
pub fn plan(seed: u64, scale: Scale, reference: &Reference, today: Date) -> Result<Option<Plan>> {
    let (regions, week_count, signals, users): (Option<&[&str]>, u16, u32, u64) = match scale {
        Scale::Pilot => return Ok(None),
        Scale::Tiny => (Some(&["16"]), 8, 60, 20_000),
        Scale::National => (None, 104, 600_000, 1_000_000),
    };
    // The latest Friday before today.
    let latest = Week::containing(today - Duration::days(1));
    let last_friday = if latest.friday() >= today {
        latest.previous()
    } else {
        latest
    };
    let weeks = last_friday.last(week_count);
    let mut places = Vec::new();
    let mut weights = Vec::new();
    let mut rng = rng_for(seed, PLACES, 0);
    for (code, _, zone) in &reference.regions {
        if regions.is_some_and(|r| !r.contains(&code.as_str())) {
            continue;
        }
        let Some(list) = reference.municipalities.get(code.as_str()) else {
            continue;
        };
        let size = super::plan::region_weight(code);
        for m in list {
            let urban = if m.kind == MunicipalityKind::UrbanOkrug {
                3.0
            } else {
                1.0
            };
            // Sizes spread like towns' do: a few large, many small.
            let spread: f64 = (rng.gen_range(-1.2_f64..1.2)).exp();
            weights.push(size * urban * spread);
            places.push(Place {
                region: code.clone(),
                schedule: Schedule::default_in(zone),
                offset: offset_of(zone),
                municipality: m.id,
                name: m.name.clone(),
                users: 0,
                schools: 0,
            });
        }
    }
    let shares = super::plan::apportion(users, &weights, &vec![40; places.len()]);
    for (place, users) in places.iter_mut().zip(shares) {
        place.users = users as u32;
        place.schools = (place.users / 250).clamp(3, 1_500);
    }
    let mut sum = 0.0;
    let week_cdf = (0..weeks.len())
        .map(|w| {
            sum += growth(w, weeks.len());
            sum
        })
        .collect();
    let mut sum = 0.0;
    let place_cdf = places
        .iter()
        .map(|p| {
            sum += f64::from(p.users);
            sum
        })
        .collect();
    Ok(Some(Plan {
        client: Uuid::new_v5(&NAMESPACE, format!("{seed}/client").as_bytes()),
        weeks,
        places,
        signals,
        week_cdf,
        place_cdf,
    }))
}

/// The synthetic ingestion client the signals come from. Its key hash is no SHA-256, so
/// no key opens it: it cannot be used to send signals.
pub fn client_events(world: &World, plan: &Plan) -> Vec<Planned> {
    let mut rng = rng_for(world.seed, SIGNAL ^ 1, 0);
    vec![Planned {
        aggregate_type: "IntegrationClient",
        stream: plan.client,
        event: AnyEvent::Client(ClientEvent::ClientRegistered {
            name: format!("Заступник (синтетические данные, seed {})", world.seed),
            key_hash: "synthetic:no-key".to_owned(),
            rate_per_second: 50,
        }),
        effective: None,
        at: office_hours(&mut rng, plan.weeks[0].first_day() - Duration::days(7)),
        last: true,
    }]
}

/// A local date and second of the day in the place's region, as an instant.
fn local(place: &Place, date: Date, seconds: i64) -> OffsetDateTime {
    OffsetDateTime::new_utc(date, Time::MIDNIGHT) - Duration::seconds(place.offset)
        + Duration::seconds(seconds)
}

/// The events of report `index` (a municipality and a week), in recording order.
pub fn weekly_events(world: &World, plan: &Plan, index: usize) -> Vec<Planned> {
    let weeks = plan.weeks.len();
    let (m, w) = (index / weeks, index % weeks);
    let place = &plan.places[m];
    let week = plan.weeks[w];
    let mut rng = rng_for(world.seed, WEEKLY, index as u64);
    let stream = report_id(place.municipality, week);
    let g = growth(w, weeks);
    let noise = |rng: &mut StdRng| rng.gen_range(0.99..1.01);
    let children = ((f64::from(place.users) * 0.62 * g * noise(&mut rng)) as u32).max(20);
    let adults = ((f64::from(place.users) * 0.38 * g * noise(&mut rng)) as u32).max(10);
    let schools = ((f64::from(place.schools) * (0.3 + 0.7 * g)).round() as u32).max(1);
    let figures = Figures {
        children,
        adults,
        schools,
        schools_with_responsible: ((f64::from(schools) * (0.75 + 0.25 * g)).round() as u32)
            .min(schools),
    };
    let period = Period {
        region: place.region.clone(),
        municipality: place.municipality,
        week,
    };
    let friday = week.friday();
    let filed_at = match rng.gen_range(0..100) {
        0..=2 => return Vec::new(),
        3..=6 => local(
            place,
            friday + Duration::days(rng.gen_range(1..=4)),
            rng.gen_range(9 * 3600..18 * 3600),
        ),
        _ => local(place, friday, rng.gen_range(9 * 3600..20 * 3600)),
    } + Duration::milliseconds(rng.gen_range(0..1000));
    let mut events: Vec<(OffsetDateTime, Option<Date>, WeeklyEvent)> = Vec::new();
    let mut filed = 0_u32;
    let mut file = |at: OffsetDateTime, filing: Filing, events: &mut Vec<_>| {
        events.push((
            at,
            Some(friday),
            WeeklyEvent::ReportFiled {
                period: period.clone(),
                filing,
                filed_at: at,
                timeliness: place.schedule.timeliness(week, at),
                supersedes: filed,
            },
        ));
        filed += 1;
    };
    let filing = Filing {
        figures,
        schools: vec![],
        comment: None,
    };
    file(filed_at, filing.clone(), &mut events);
    let mut last = filed_at;
    if rng.gen_bool(0.02) {
        let at = last + Duration::minutes(rng.gen_range(60..1_800));
        let mut corrected = filing.clone();
        corrected.figures.children += 1 + children / 50;
        corrected.comment = Text::parse("Уточнены данные школ");
        if at < place.schedule.locks_at(week) {
            file(at, corrected, &mut events);
            last = at;
        }
    }
    let reviewed = local(
        place,
        (last + Duration::days(rng.gen_range(1..=5))).date(),
        rng.gen_range(10 * 3600..17 * 3600),
    )
    .max(last + Duration::minutes(5));
    match rng.gen_range(0..100) {
        0 => {
            events.push((
                reviewed,
                None,
                WeeklyEvent::ReportReturned {
                    comment: Text::parse("Число взрослых не совпадает с данными школ; уточните.")
                        .unwrap_or_else(|| unreachable!("a short literal")),
                },
            ));
            let at = reviewed + Duration::hours(rng.gen_range(4..30));
            let mut corrected = filing;
            corrected.figures.adults = corrected.figures.adults * 98 / 100;
            corrected.comment = Text::parse("Исправлено по замечанию министерства");
            if at < place.schedule.locks_at(week) {
                file(at, corrected, &mut events);
                events.push((
                    at + Duration::hours(rng.gen_range(20..50)),
                    None,
                    WeeklyEvent::ReportAccepted { comment: None },
                ));
            }
        }
        1..=85 => events.push((
            reviewed,
            None,
            WeeklyEvent::ReportAccepted { comment: None },
        )),
        _ => {}
    }
    let kept: Vec<_> = events
        .into_iter()
        .take_while(|(at, ..)| *at < world.horizon)
        .collect();
    let count = kept.len();
    kept.into_iter()
        .enumerate()
        .map(|(k, (at, effective, event))| Planned {
            aggregate_type: "WeeklyReport",
            stream,
            event: AnyEvent::Weekly(event),
            effective,
            at,
            last: k + 1 == count,
        })
        .collect()
}

fn search(cdf: &[f64], x: f64) -> usize {
    cdf.partition_point(|c| *c <= x)
        .min(cdf.len().saturating_sub(1))
}

const KINDS: &[(SignalKind, u32)] = &[
    (SignalKind::Panic, 55),
    (SignalKind::Lost, 15),
    (SignalKind::Threat, 10),
    (SignalKind::Bullying, 8),
    (SignalKind::Health, 6),
    (SignalKind::Accident, 4),
    (SignalKind::Other, 2),
];

/// Relative frequency of presses by local hour.
const HOURS: [u32; 24] = [
    1, 1, 1, 1, 1, 1, 2, 4, 6, 5, 4, 4, 5, 7, 9, 10, 10, 9, 8, 7, 6, 4, 2, 1,
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

/// The events of signal `index`, in recording order: raised with its notification
/// request, receipts, then the trusted circle's or the operators' response.
pub fn signal_events(world: &World, plan: &Plan, index: usize) -> Vec<Planned> {
    let mut rng = rng_for(world.seed, SIGNAL, index as u64);
    let total_weeks = plan.week_cdf.last().copied().unwrap_or(1.0);
    let week = plan.weeks[search(&plan.week_cdf, rng.gen_range(0.0..total_weeks))];
    let total_users = plan.place_cdf.last().copied().unwrap_or(1.0);
    let place = &plan.places[search(&plan.place_cdf, rng.gen_range(0.0..total_users))];
    let day = week.first_day() + Duration::days(rng.gen_range(0..7));
    let hours: Vec<(i64, u32)> = HOURS
        .iter()
        .enumerate()
        .map(|(h, w)| (h as i64, *w))
        .collect();
    let hour = weighted(&mut rng, &hours);
    let mut pressed_at = local(place, day, hour * 3600 + rng.gen_range(0..3600))
        + Duration::milliseconds(rng.gen_range(0..1000));
    if pressed_at > world.horizon - Duration::hours(3) {
        pressed_at -= Duration::days(7);
    }
    let s = |seconds: f64| pressed_at + Duration::milliseconds((seconds * 1000.0) as i64);
    let id = Uuid::new_v5(
        &NAMESPACE,
        format!("{}/signal/{index}", world.seed).as_bytes(),
    );
    let kind = weighted(&mut rng, KINDS);
    let child = format!(
        "syn{}-{}-{}",
        world.seed,
        place.region.as_str(),
        rng.gen_range(0..place.users.max(1))
    );
    let mut recipients = Vec::new();
    for a in 0..rng.gen_range(1..=3_u32) {
        let adult = format!("{child}-a{a}");
        recipients.push(Recipient {
            adult: adult.clone(),
            channel: Channel::Push,
        });
        if a == 0 {
            recipients.push(Recipient {
                adult,
                channel: Channel::Sms,
            });
        }
    }
    let received_at = s(rng.gen_range(0.4..3.0));
    let effective = Some(pressed_at.date());
    let mut events: Vec<(OffsetDateTime, Option<Date>, SignalEvent)> = vec![
        (
            received_at,
            effective,
            SignalEvent::SignalRaised {
                child,
                client: plan.client,
                region: place.region.clone(),
                city: Some(place.name.clone()),
                kind,
                pressed_at,
                received_at,
                location: None,
                drill: rng.gen_bool(0.02),
            },
        ),
        (
            received_at,
            effective,
            SignalEvent::NotificationRequested {
                recipients: recipients.clone(),
            },
        ),
    ];
    for recipient in recipients.iter().cloned() {
        let at = s(rng.gen_range(1.0..4.0)).max(received_at);
        let event = if recipient.channel == Channel::Sms && rng.gen_bool(0.01) {
            SignalEvent::NotificationFailed {
                recipient,
                at,
                attempts: 5,
                reason: "абонент недоступен".to_owned(),
            }
        } else {
            SignalEvent::NotificationDelivered {
                recipient,
                at,
                attempts: 1,
            }
        };
        events.push((at, None, event));
    }
    let adult = recipients[0].adult.clone();
    let path = rng.gen_range(0..100);
    let mut push = |at: OffsetDateTime, event: SignalEvent| events.push((at, None, event));
    if path < 79 {
        let on_scene = rng.gen_range(60.0..240.0);
        let acknowledged = s(rng.gen_range(8.0..50.0));
        push(
            acknowledged,
            SignalEvent::AdultAcknowledged {
                adult,
                at: acknowledged,
            },
        );
        let resolved = s(on_scene + rng.gen_range(60.0..900.0));
        push(
            resolved,
            SignalEvent::ResponderOnScene {
                responder: ResponderKind::TrustedAdult,
                at: s(on_scene),
            },
        );
        push(
            resolved,
            SignalEvent::SignalResolved {
                outcome: SignalOutcome::TrustedCircle,
                at: resolved,
                note: None,
            },
        );
    } else if path < 83 {
        let at = s(rng.gen_range(5.0..40.0));
        push(
            at,
            SignalEvent::SignalResolved {
                outcome: SignalOutcome::Cancelled,
                at,
                note: None,
            },
        );
    } else {
        let escalated = rng.gen_bool(0.05);
        let ack = if escalated {
            push(
                s(61.0),
                SignalEvent::SignalEscalated {
                    at: s(61.0),
                    after_seconds: 60,
                },
            );
            rng.gen_range(65.0..120.0)
        } else {
            rng.gen_range(5.0..40.0)
        };
        push(
            s(ack),
            SignalEvent::OperatorAcknowledged {
                operator: "signals".to_owned(),
                at: s(ack),
            },
        );
        if path < 86 {
            let at = s(ack + rng.gen_range(30.0..300.0));
            push(
                at,
                SignalEvent::SignalResolved {
                    outcome: SignalOutcome::FalseAlarm,
                    at,
                    note: Some("Ребёнок нажал кнопку случайно".to_owned()),
                },
            );
        } else {
            let responder = match kind {
                SignalKind::Threat => ResponderKind::Police,
                SignalKind::Health | SignalKind::Accident => ResponderKind::Medics,
                SignalKind::Lost if rng.gen_bool(0.3) => ResponderKind::SearchTeam,
                _ => ResponderKind::Volunteer,
            };
            let dispatched = ack + rng.gen_range(5.0..30.0);
            let en_route = dispatched + rng.gen_range(10.0..40.0);
            let on_scene = (en_route + rng.gen_range(40.0..200.0)).max(90.0);
            push(
                s(dispatched),
                SignalEvent::ResponderDispatched {
                    responder,
                    at: s(dispatched),
                    note: None,
                },
            );
            push(
                s(en_route),
                SignalEvent::ResponderEnRoute {
                    responder,
                    at: s(en_route),
                },
            );
            push(
                s(on_scene),
                SignalEvent::ResponderOnScene {
                    responder,
                    at: s(on_scene),
                },
            );
            let outcome = if matches!(responder, ResponderKind::Police | ResponderKind::Medics) {
                SignalOutcome::EmergencyServices
            } else {
                SignalOutcome::Operators
            };
            let at = s(on_scene + rng.gen_range(300.0..1800.0));
            push(
                at,
                SignalEvent::SignalResolved {
                    outcome,
                    at,
                    note: None,
                },
            );
        }
    }
    let count = events.len();
    let mut previous = OffsetDateTime::UNIX_EPOCH;
    events
        .into_iter()
        .enumerate()
        .map(|(k, (at, effective, event))| {
            let at = at.max(previous);
            previous = at;
            Planned {
                aggregate_type: "Signal",
                stream: id,
                event: AnyEvent::Signal(event),
                effective,
                at,
                last: k + 1 == count,
            }
        })
        .collect()
}
