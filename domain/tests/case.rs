//! Every command of a child's case, accepted and refused.
#![allow(clippy::unwrap_used)]

use cqrs_es::test::TestFramework;
use opora_domain::access::Text;
use opora_domain::case::*;
use opora_domain::reference::RegionCode;
use time::macros::date;
use time::Date;
use uuid::Uuid;

type Case = TestFramework<ChildCase>;

const TODAY: Date = date!(2026 - 11 - 20);
const CHILD: Uuid = Uuid::from_u128(1);
const HOME: Uuid = Uuid::from_u128(10);
const OTHER_HOME: Uuid = Uuid::from_u128(11);
const SERVICE: Uuid = Uuid::from_u128(20);
const ITEM: Uuid = Uuid::from_u128(30);
const REVIEW: Uuid = Uuid::from_u128(40);

fn text(s: &str) -> Text {
    Text::parse(s).unwrap()
}

fn cmd(on: Date, action: CaseAction) -> CaseCommand {
    CaseCommand {
        on,
        today: TODAY,
        born: Some(date!(2014 - 03 - 05)),
        action,
    }
}

fn opened() -> CaseEvent {
    CaseEvent::CaseOpened {
        on: date!(2025 - 02 - 01),
        child: CHILD,
        case_number: "16-2025-0001".into(),
        region: RegionCode::parse("16").unwrap(),
        municipality: None,
        family: None,
    }
}

fn placed() -> CaseEvent {
    CaseEvent::ChildPlaced {
        on: date!(2025 - 03 - 10),
        institution: HOME,
        institution_type: InstitutionType::Rehabilitation,
        basis: PlacementBasis::ParentsApplication,
        reasons: vec![PlacementReason::Poverty],
        legal_status: LegalStatus::WithoutStatus,
    }
}

fn place() -> CaseAction {
    CaseAction::Place {
        institution: HOME,
        institution_type: InstitutionType::Rehabilitation,
        basis: PlacementBasis::ParentsApplication,
        reasons: vec![PlacementReason::Poverty],
        legal_status: LegalStatus::WithoutStatus,
    }
}

fn review(next: Option<Date>, return_by: Option<Date>) -> Review {
    Review {
        review: REVIEW,
        level: ReviewLevel::Regional,
        placement_justified: Some(true),
        stay_justified: Some(false),
        parental_claim_justified: Some(false),
        aid: AidDecision::MaterialAid,
        return_possible: Some(true),
        return_by,
        next_review: next,
        session: None,
    }
}

fn closed() -> CaseEvent {
    CaseEvent::CaseClosed {
        on: date!(2025 - 02 - 10),
        reason: text("помещение предотвращено"),
    }
}

#[test]
fn opening() {
    let open = cmd(
        date!(2025 - 02 - 01),
        CaseAction::Open {
            child: CHILD,
            case_number: "16-2025-0001".into(),
            region: RegionCode::parse("16").unwrap(),
            municipality: None,
            family: None,
        },
    );
    Case::with(())
        .given_no_previous_events()
        .when(open.clone())
        .then_expect_events(vec![opened()]);
    Case::with(())
        .given(vec![opened()])
        .when(open.clone())
        .then_expect_error(CaseError::AlreadyOpened);
    let mut future = open.clone();
    future.on = date!(2026 - 11 - 21);
    Case::with(())
        .given_no_previous_events()
        .when(future)
        .then_expect_error(CaseError::FutureDate {
            date: "21.11.2026".into(),
        });
    let mut unborn = open;
    unborn.on = date!(2014 - 03 - 04);
    Case::with(())
        .given_no_previous_events()
        .when(unborn)
        .then_expect_error(CaseError::BeforeBirth {
            date: "04.03.2014".into(),
        });
}

#[test]
fn nothing_before_opening() {
    Case::with(())
        .given_no_previous_events()
        .when(cmd(date!(2025 - 03 - 10), place()))
        .then_expect_error(CaseError::NotOpened);
}

#[test]
fn placement_once_and_with_reasons() {
    Case::with(())
        .given(vec![opened()])
        .when(cmd(date!(2025 - 03 - 10), place()))
        .then_expect_events(vec![placed()]);
    Case::with(())
        .given(vec![opened(), placed()])
        .when(cmd(date!(2025 - 04 - 10), place()))
        .then_expect_error(CaseError::AlreadyPlaced);
    Case::with(())
        .given(vec![opened()])
        .when(cmd(
            date!(2025 - 03 - 10),
            CaseAction::Place {
                institution: HOME,
                institution_type: InstitutionType::Rehabilitation,
                basis: PlacementBasis::Police,
                reasons: vec![],
                legal_status: LegalStatus::WithoutStatus,
            },
        ))
        .then_expect_error(CaseError::NoReasons);
}

#[test]
fn transfer_and_legal_status() {
    let transfer = |to| {
        cmd(
            date!(2025 - 05 - 01),
            CaseAction::Transfer {
                institution: to,
                institution_type: InstitutionType::OrphanageCentre,
            },
        )
    };
    Case::with(())
        .given(vec![opened(), placed()])
        .when(transfer(OTHER_HOME))
        .then_expect_events(vec![CaseEvent::ChildTransferred {
            on: date!(2025 - 05 - 01),
            institution: OTHER_HOME,
            institution_type: InstitutionType::OrphanageCentre,
        }]);
    Case::with(())
        .given(vec![opened(), placed()])
        .when(transfer(HOME))
        .then_expect_error(CaseError::SameInstitution);
    Case::with(())
        .given(vec![opened()])
        .when(transfer(OTHER_HOME))
        .then_expect_error(CaseError::NotPlaced);
    let mut early = transfer(OTHER_HOME);
    early.on = date!(2025 - 03 - 01);
    Case::with(())
        .given(vec![opened(), placed()])
        .when(early)
        .then_expect_error(CaseError::BeforePlacement {
            date: "01.03.2025".into(),
            since: "10.03.2025".into(),
        });
    let status = |s| {
        cmd(
            date!(2025 - 06 - 01),
            CaseAction::ChangeLegalStatus { legal_status: s },
        )
    };
    Case::with(())
        .given(vec![opened(), placed()])
        .when(status(LegalStatus::WithStatus))
        .then_expect_events(vec![CaseEvent::LegalStatusChanged {
            on: date!(2025 - 06 - 01),
            legal_status: LegalStatus::WithStatus,
        }]);
    Case::with(())
        .given(vec![opened(), placed()])
        .when(status(LegalStatus::WithoutStatus))
        .then_expect_error(CaseError::SameLegalStatus);
    Case::with(())
        .given(vec![opened()])
        .when(status(LegalStatus::WithStatus))
        .then_expect_error(CaseError::NotPlaced);
}

#[test]
fn consilium_reviews() {
    let on = date!(2025 - 09 - 01);
    Case::with(())
        .given(vec![opened(), placed()])
        .when(cmd(
            on,
            CaseAction::RecordReview(review(
                Some(date!(2026 - 03 - 01)),
                Some(date!(2025 - 12 - 01)),
            )),
        ))
        .then_expect_events(vec![CaseEvent::ConsiliumReviewRecorded {
            on,
            review: review(Some(date!(2026 - 03 - 01)), Some(date!(2025 - 12 - 01))),
        }]);
    Case::with(())
        .given(vec![opened(), placed()])
        .when(cmd(on, CaseAction::RecordReview(review(Some(on), None))))
        .then_expect_error(CaseError::NextReviewNotAfter {
            date: "01.09.2025".into(),
        });
    Case::with(())
        .given(vec![opened(), placed()])
        .when(cmd(
            on,
            CaseAction::RecordReview(review(None, Some(date!(2025 - 08 - 01)))),
        ))
        .then_expect_error(CaseError::ReturnByBeforeReview {
            date: "01.09.2025".into(),
        });
}

fn item_set() -> CaseEvent {
    CaseEvent::ActionItemSet {
        on: date!(2025 - 09 - 01),
        item: ITEM,
        action: text("Ремонт жилья семьи"),
        executor: text("Администрация Казани"),
        due: date!(2025 - 10 - 01),
        review: Some(REVIEW),
    }
}

#[test]
fn action_items() {
    Case::with(())
        .given(vec![opened(), placed()])
        .when(cmd(
            date!(2025 - 09 - 01),
            CaseAction::SetActionItem {
                item: ITEM,
                action: text("Ремонт жилья семьи"),
                executor: text("Администрация Казани"),
                due: date!(2025 - 10 - 01),
                review: Some(REVIEW),
            },
        ))
        .then_expect_events(vec![item_set()]);
    Case::with(())
        .given(vec![opened(), placed()])
        .when(cmd(
            date!(2025 - 09 - 01),
            CaseAction::SetActionItem {
                item: ITEM,
                action: text("Ремонт"),
                executor: text("Администрация"),
                due: date!(2025 - 08 - 01),
                review: None,
            },
        ))
        .then_expect_error(CaseError::DueBeforeSet {
            date: "01.09.2025".into(),
        });
    let done = |on| cmd(on, CaseAction::CompleteActionItem { item: ITEM });
    Case::with(())
        .given(vec![opened(), placed(), item_set()])
        .when(done(date!(2025 - 09 - 20)))
        .then_expect_events(vec![CaseEvent::ActionItemDone {
            on: date!(2025 - 09 - 20),
            item: ITEM,
        }]);
    Case::with(())
        .given(vec![opened(), placed()])
        .when(done(date!(2025 - 09 - 20)))
        .then_expect_error(CaseError::UnknownActionItem);
    Case::with(())
        .given(vec![
            opened(),
            placed(),
            item_set(),
            CaseEvent::ActionItemDone {
                on: date!(2025 - 09 - 20),
                item: ITEM,
            },
        ])
        .when(done(date!(2025 - 09 - 21)))
        .then_expect_error(CaseError::ActionItemAlreadyDone);
    Case::with(())
        .given(vec![opened(), placed(), item_set()])
        .when(done(date!(2025 - 08 - 20)))
        .then_expect_error(CaseError::DoneBeforeSet {
            date: "01.09.2025".into(),
        });
}

#[test]
fn personal_control_visits_and_accompaniment() {
    let on = date!(2025 - 04 - 01);
    Case::with(())
        .given(vec![opened()])
        .when(cmd(on, CaseAction::TakeUnderControl))
        .then_expect_events(vec![CaseEvent::TakenUnderPersonalControl { on }]);
    Case::with(())
        .given(vec![opened(), CaseEvent::TakenUnderPersonalControl { on }])
        .when(cmd(on, CaseAction::TakeUnderControl))
        .then_expect_error(CaseError::AlreadyUnderControl);
    Case::with(())
        .given(vec![opened(), CaseEvent::TakenUnderPersonalControl { on }])
        .when(cmd(on, CaseAction::ReleaseFromControl))
        .then_expect_events(vec![CaseEvent::ReleasedFromPersonalControl { on }]);
    Case::with(())
        .given(vec![opened()])
        .when(cmd(on, CaseAction::ReleaseFromControl))
        .then_expect_error(CaseError::NotUnderControl);
    Case::with(())
        .given(vec![opened()])
        .when(cmd(on, CaseAction::RecordFamilyVisit))
        .then_expect_events(vec![CaseEvent::FamilyVisited { on }]);
    Case::with(())
        .given(vec![opened()])
        .when(cmd(on, CaseAction::StartAccompaniment { service: SERVICE }))
        .then_expect_events(vec![CaseEvent::AccompanimentStarted {
            on,
            service: SERVICE,
        }]);
    Case::with(())
        .given(vec![
            opened(),
            CaseEvent::AccompanimentStarted {
                on,
                service: SERVICE,
            },
        ])
        .when(cmd(on, CaseAction::StartAccompaniment { service: SERVICE }))
        .then_expect_error(CaseError::AccompanimentActive);
    Case::with(())
        .given(vec![
            opened(),
            CaseEvent::AccompanimentStarted {
                on,
                service: SERVICE,
            },
        ])
        .when(cmd(on, CaseAction::EndAccompaniment))
        .then_expect_events(vec![CaseEvent::AccompanimentEnded { on }]);
    Case::with(())
        .given(vec![opened()])
        .when(cmd(on, CaseAction::EndAccompaniment))
        .then_expect_error(CaseError::NoAccompaniment);
}

#[test]
fn parental_rights() {
    let on = date!(2025 - 05 - 01);
    Case::with(())
        .given(vec![opened()])
        .when(cmd(on, CaseAction::RestrictParentalRights))
        .then_expect_events(vec![CaseEvent::ParentalRightsRestricted { on }]);
    Case::with(())
        .given(vec![opened(), CaseEvent::ParentalRightsRestricted { on }])
        .when(cmd(on, CaseAction::RestrictParentalRights))
        .then_expect_error(CaseError::RightsNotFull);
    Case::with(())
        .given(vec![opened(), CaseEvent::ParentalRightsRestricted { on }])
        .when(cmd(on, CaseAction::RemoveParentalRights))
        .then_expect_events(vec![CaseEvent::ParentalRightsRemoved { on }]);
    Case::with(())
        .given(vec![opened(), CaseEvent::ParentalRightsRemoved { on }])
        .when(cmd(on, CaseAction::RemoveParentalRights))
        .then_expect_error(CaseError::RightsAlreadyRemoved);
    Case::with(())
        .given(vec![opened(), CaseEvent::ParentalRightsRemoved { on }])
        .when(cmd(on, CaseAction::RestoreParentalRights))
        .then_expect_events(vec![CaseEvent::ParentalRightsRestored { on }]);
    Case::with(())
        .given(vec![opened()])
        .when(cmd(on, CaseAction::RestoreParentalRights))
        .then_expect_error(CaseError::RightsAlreadyFull);
}

#[test]
fn exits_and_prevented_placements() {
    let on = date!(2025 - 11 - 01);
    let exit = cmd(
        on,
        CaseAction::RecordExit {
            exit: ExitKind::BirthFamily,
        },
    );
    Case::with(())
        .given(vec![opened(), placed()])
        .when(exit.clone())
        .then_expect_events(vec![CaseEvent::ChildLeftInstitution {
            on,
            exit: ExitKind::BirthFamily,
        }]);
    Case::with(())
        .given(vec![opened()])
        .when(exit)
        .then_expect_error(CaseError::NotPlaced);
    Case::with(())
        .given(vec![opened(), placed()])
        .when(cmd(
            date!(2025 - 03 - 09),
            CaseAction::RecordExit {
                exit: ExitKind::Foster,
            },
        ))
        .then_expect_error(CaseError::BeforePlacement {
            date: "09.03.2025".into(),
            since: "10.03.2025".into(),
        });
    Case::with(())
        .given(vec![opened()])
        .when(cmd(on, CaseAction::RecordPreventedPlacement))
        .then_expect_events(vec![CaseEvent::PlacementPrevented { on }]);
    Case::with(())
        .given(vec![opened(), placed()])
        .when(cmd(on, CaseAction::RecordPreventedPlacement))
        .then_expect_error(CaseError::PreventedWhilePlaced);
}

#[test]
fn closing_and_reopening() {
    let on = date!(2025 - 02 - 10);
    let close = cmd(
        on,
        CaseAction::Close {
            reason: text("помещение предотвращено"),
        },
    );
    Case::with(())
        .given(vec![opened()])
        .when(close.clone())
        .then_expect_events(vec![closed()]);
    Case::with(())
        .given(vec![opened(), placed()])
        .when(close)
        .then_expect_error(CaseError::CloseWhilePlaced);
    Case::with(())
        .given(vec![opened(), closed()])
        .when(cmd(date!(2025 - 03 - 10), place()))
        .then_expect_error(CaseError::Closed);
    let reopen = cmd(
        date!(2025 - 03 - 01),
        CaseAction::Reopen {
            reason: text("повторное обращение"),
        },
    );
    Case::with(())
        .given(vec![opened(), closed()])
        .when(reopen.clone())
        .then_expect_events(vec![CaseEvent::CaseReopened {
            on: date!(2025 - 03 - 01),
            reason: text("повторное обращение"),
        }]);
    Case::with(())
        .given(vec![opened()])
        .when(reopen)
        .then_expect_error(CaseError::NotClosed);
}

#[test]
fn mistakes_are_voided_never_edited_and_only_if_history_stays_consistent() {
    let on = date!(2025 - 11 - 02);
    let void = |sequence| {
        cmd(
            on,
            CaseAction::VoidEntry {
                sequence,
                reason: text("ошибка ввода"),
            },
        )
    };
    let left = CaseEvent::ChildLeftInstitution {
        on: date!(2025 - 11 - 01),
        exit: ExitKind::BirthFamily,
    };
    // The exit was a mistake: voided, the child counts as placed again.
    Case::with(())
        .given(vec![opened(), placed(), left.clone()])
        .when(void(3))
        .then_expect_events(vec![CaseEvent::EntryVoided {
            on,
            sequence: 3,
            reason: text("ошибка ввода"),
        }]);
    let mut case = ChildCase::default();
    for event in [opened(), placed(), left.clone()] {
        cqrs_es::Aggregate::apply(&mut case, event);
    }
    cqrs_es::Aggregate::apply(
        &mut case,
        CaseEvent::EntryVoided {
            on,
            sequence: 3,
            reason: text("ошибка ввода"),
        },
    );
    assert!(
        case.state().placement.is_some(),
        "the voided exit no longer counts"
    );
    // Voiding the placement would leave an exit without a placement.
    Case::with(())
        .given(vec![opened(), placed(), left])
        .when(void(2))
        .then_expect_error(CaseError::VoidWouldBreak {
            sequence: 2,
            problem: CaseError::NotPlaced.to_string(),
        });
    Case::with(())
        .given(vec![opened(), placed()])
        .when(void(1))
        .then_expect_error(CaseError::EntryNotVoidable { sequence: 1 });
    Case::with(())
        .given(vec![opened(), placed()])
        .when(void(9))
        .then_expect_error(CaseError::UnknownEntry { sequence: 9 });
    Case::with(())
        .given(vec![
            opened(),
            placed(),
            CaseEvent::EntryVoided {
                on,
                sequence: 2,
                reason: text("ошибка"),
            },
        ])
        .when(void(2))
        .then_expect_error(CaseError::EntryNotVoidable { sequence: 2 });
}
