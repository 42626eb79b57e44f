#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use opora_domain::aid::AidEvent;
use opora_domain::case::{CaseEvent, CaseState};
use opora_domain::weekly::WeeklyEvent;
use time::macros::date;
use time::Date;

use super::plan::{self, Targets, World};
use super::{figures, AnyEvent, Entity, Scale};

const TODAY: Date = date!(2026 - 11 - 22);

fn total(figures: &HashMap<String, Targets>, pick: fn(&Targets) -> u64) -> u64 {
    figures.values().map(pick).sum()
}

/// The six figures of seed 004 (and the prevented placements), recomputed from the events
/// the pilot renders, not from the plan's tables.
#[test]
fn the_pilot_holds_seed_004s_figures() {
    let world = World::new(4, Scale::Pilot, TODAY).unwrap();
    let f = figures(&world);
    assert_eq!(f.len(), 14);
    assert_eq!(total(&f, |t| t.baseline), 21_152);
    assert_eq!(total(&f, |t| t.midpoint), 16_446);
    assert_eq!(total(&f, |t| t.exits), 22_981);
    assert_eq!(total(&f, |t| t.exits_home), 14_825);
    assert_eq!(total(&f, |t| t.services), 407);
    assert_eq!(total(&f, |t| t.specialists), 2_916);
    assert_eq!(total(&f, |t| t.families), 24_708);
    let prevented = total(&f, |t| t.prevented);
    assert!((8_500..=9_000).contains(&prevented), "{prevented}");
    // Per region, the «Дети в семье» table as the seed has it.
    for (code, _, _, services, specialists, families) in plan::PILOT {
        let t = &f[code];
        assert_eq!(
            (t.services, t.specialists, t.families),
            (
                u64::from(services),
                u64::from(specialists),
                u64::from(families)
            ),
            "region {code}"
        );
        assert!(t.midpoint < t.baseline, "region {code} falls");
    }
    assert!(f["24"].baseline > 4_500, "Красноярский край");
    // Aid by the end of Q3 2025 (seed 004: almost 60 million rubles, more than 600 families,
    // 1,600 children).
    let (mut families, mut kopecks) = (HashMap::new(), 0_i64);
    let end_q3 = date!(2025 - 09 - 30);
    for i in 0..world.cases.len() {
        for p in world.render(Entity::Case(i as u32)) {
            match p.event {
                AnyEvent::Aid(AidEvent::AidRequested(facts)) if facts.on <= end_q3 => {
                    families.entry(facts.family).or_insert(facts.children);
                }
                AnyEvent::Aid(AidEvent::AidDelivered(d)) if d.on <= end_q3 => {
                    kopecks += d.amount.kopecks()
                }
                _ => {}
            }
        }
    }
    let children: u64 = families.values().map(|c| u64::from(*c)).sum();
    assert!((600..=720).contains(&families.len()), "{}", families.len());
    assert!((1_500..=2_000).contains(&children), "{children}");
    assert!(
        (4_500_000_000..=7_000_000_000).contains(&kopecks),
        "{kopecks}"
    );
    // The same figures with another seed and another today: the dates move, the totals hold.
    let other = figures(&World::new(77, Scale::Pilot, date!(2025 - 10 - 02)).unwrap());
    assert_eq!(total(&other, |t| t.baseline), 21_152);
    assert_eq!(total(&other, |t| t.midpoint), 16_446);
    assert_eq!(total(&other, |t| t.exits_home), 14_825);
    assert_eq!(total(&other, |t| t.families), 24_708);
}

#[test]
fn tiny_is_the_pilot_divided_by_a_hundred() {
    let world = World::new(1, Scale::Tiny, TODAY).unwrap();
    let f = figures(&world);
    assert_eq!(total(&f, |t| t.baseline), 212);
    assert_eq!(total(&f, |t| t.midpoint), 164);
    assert_eq!(total(&f, |t| t.exits), 230);
    assert_eq!(total(&f, |t| t.exits_home), 148);
    assert_eq!(total(&f, |t| t.services), 14);
    assert_eq!(total(&f, |t| t.families), 247);
}

/// Every case of a tiny and of a pilot history passes the aggregate's own rules, each event
/// carries its date as the effective date, and recording follows the brief: after the fact,
/// in stream order, before `today`, mostly within a week.
#[test]
fn every_case_is_one_the_aggregate_could_have_made() {
    for (scale, today) in [(Scale::Tiny, TODAY), (Scale::Pilot, date!(2025 - 12 - 01))] {
        let world = World::new(9, scale, today).unwrap();
        let (mut dated, mut week, mut late) = (0_u64, 0_u64, 0_u64);
        for i in 0..world.cases.len() {
            let events = world.render(Entity::Case(i as u32));
            let mut history = Vec::new();
            let mut last_at: HashMap<uuid::Uuid, time::OffsetDateTime> = HashMap::new();
            for p in &events {
                assert!(p.at < world.horizon, "case {i}: recorded after today");
                let previous = last_at.insert(p.stream, p.at);
                assert!(
                    previous.is_none_or(|at| at <= p.at),
                    "case {i}: out of order"
                );
                let on = p.effective.unwrap();
                assert!(on <= world.last_day);
                assert!(
                    p.at >= super::clock::moscow(on, 0),
                    "case {i}: recorded before it happened"
                );
                if on >= plan::HISTORY_START {
                    dated += 1;
                    let lag = (p.at.date() - on).whole_days();
                    week += u64::from(lag <= 7);
                    late += u64::from(lag > 30);
                }
                if let AnyEvent::Case(event) = &p.event {
                    assert_eq!(event.on(), on);
                    history.push(event.clone());
                }
            }
            assert!(matches!(
                history.first(),
                Some(CaseEvent::CaseOpened { .. })
            ));
            if let Err(problem) = CaseState::replay(&history) {
                panic!(
                    "case {i} ({:?}): {problem}\n{history:#?}",
                    world.cases[i].slot
                );
            }
        }
        let (week, late) = (week as f64 / dated as f64, late as f64 / dated as f64);
        eprintln!("{scale:?}: entered within a week {week:.3}, after 30 days {late:.3}");
        assert!(week > 0.85, "{scale:?}: share entered within a week {week}");
        assert!((0.03..0.06).contains(&late), "{scale:?}: late share {late}");
    }
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_others() {
    let render = |seed: u64| {
        let world = World::new(seed, Scale::Tiny, TODAY).unwrap();
        world
            .entities()
            .flat_map(|e| world.render(e))
            .map(|p| {
                let payload = match &p.event {
                    AnyEvent::Case(e) => serde_json::to_string(e),
                    AnyEvent::Aid(e) => serde_json::to_string(e),
                    AnyEvent::Organisation(e) => serde_json::to_string(e),
                    AnyEvent::Weekly(e) => serde_json::to_string(e),
                    AnyEvent::Signal(e) => serde_json::to_string(e),
                    AnyEvent::Client(e) => serde_json::to_string(e),
                }
                .unwrap();
                format!("{}/{} {} {payload}", p.aggregate_type, p.stream, p.at)
            })
            .collect::<Vec<_>>()
    };
    let first = render(5);
    assert!(first.len() > 5_000, "{}", first.len());
    assert_eq!(first, render(5));
    assert_ne!(first, render(6));
}

/// Weekly filings obey the filing rules against the week before (no sharp change without a
/// comment) and are on time or late as the region's schedule says.
#[test]
fn weekly_reports_pass_the_filing_rules() {
    let world = World::new(3, Scale::Tiny, TODAY).unwrap();
    let z = world.zastupnik.as_ref().unwrap();
    let weeks = z.weeks.len();
    let mut filed = 0;
    for m in 0..z.places.len() {
        let mut previous = None;
        for w in 0..weeks {
            let mut current = None;
            for p in world.render(Entity::Report((m * weeks + w) as u32)) {
                assert!(p.at < world.horizon);
                if let AnyEvent::Weekly(WeeklyEvent::ReportFiled {
                    filing,
                    filed_at,
                    timeliness,
                    period,
                    ..
                }) = p.event
                {
                    filing.check(None).unwrap();
                    if filing.comment.is_none() {
                        assert!(filing.sharp_change(previous).is_none());
                    }
                    assert_eq!(
                        timeliness,
                        z.places[m].schedule.timeliness(period.week, filed_at)
                    );
                    assert!(!z.places[m].schedule.is_locked(period.week, filed_at));
                    current = Some(filing.figures);
                    filed += 1;
                }
            }
            previous = current.or(previous);
        }
    }
    assert!(filed > z.places.len() * weeks * 9 / 10, "{filed}");
}
