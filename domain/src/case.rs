//! «Вызов»: a child's case, from placement in an institution to the return home.
//!
//! Every fact is an event that carries the date it happened (`on`) — the log adds the moment
//! it was recorded. The rules of the practice are written once, over events
//! ([`CaseState::check`]): a command is turned into its event and checked against the state;
//! a correction (voiding an earlier entry) is accepted only if the remaining history still
//! passes the same rules when replayed. Nothing is ever edited.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use time::Date;
use uuid::Uuid;

use crate::access::Text;
use crate::reference::{labelled_enum, RegionCode};
use crate::{format_date, DatedCommand};

labelled_enum!(InstitutionType, InstitutionType {
    OrphanageCentre => ("orphanage_centre", "центр содействия семейному воспитанию (детский дом)"),
    Rehabilitation => ("rehabilitation", "социально-реабилитационный центр для несовершеннолетних (СРЦН)"),
    BabyHome => ("baby_home", "дом ребёнка"),
    BoardingSchool => ("boarding_school", "школа-интернат"),
    Disability => ("disability", "дом-интернат для детей с инвалидностью"),
    OtherInstitution => ("other", "другое учреждение"),
});

labelled_enum!(PlacementBasis, PlacementBasis {
    ParentsApplication => ("parents_application", "заявление родителей о временном пребывании"),
    GuardianshipRemoval => ("guardianship_removal", "отобрание органом опеки"),
    Police => ("police", "доставлен полицией"),
    LossOfCare => ("loss_of_care", "утрата попечения родителей"),
    Court => ("court", "решение суда"),
});

labelled_enum!(PlacementReason, PlacementReason {
    Addiction => ("addiction", "зависимость родителей"),
    Poverty => ("poverty", "бедность, жилищные условия"),
    Disability => ("disability", "инвалидность ребёнка"),
    Conflict => ("conflict", "конфликт в семье"),
    Neglect => ("neglect", "ненадлежащее исполнение обязанностей"),
    Violence => ("violence", "насилие"),
    ParentIllness => ("parent_illness", "болезнь или смерть родителя"),
    Other => ("other", "другое"),
});

labelled_enum!(LegalStatus, LegalStatus {
    WithStatus => ("with_status", "со статусом (сирота или оставшийся без попечения)"),
    WithoutStatus => ("without_status", "без статуса"),
});

labelled_enum!(ReviewLevel, ReviewLevel {
    Regional => ("regional", "региональный"),
    Municipal => ("municipal", "муниципальный"),
    Institution => ("institution", "уровня учреждения"),
});

labelled_enum!(AidDecision, AidDecision {
    /// Imported reviews whose decision the old register did not keep.
    NotRecorded => ("not_recorded", "решение не указано"),
    NoAid => ("none", "помощь не требуется"),
    MaterialAid => ("material_aid", "материальная помощь через НКО-оператора"),
    Services => ("services", "услуги (психолог, юрист, сопровождение)"),
    MaterialAndServices => ("material_and_services", "материальная помощь и услуги"),
});

impl AidDecision {
    /// The decisions a consilium records: every one but [`AidDecision::NotRecorded`], which
    /// only an import writes (the old register did not keep the decision).
    pub fn decided() -> impl Iterator<Item = &'static (AidDecision, &'static str, &'static str)> {
        Self::ALL
            .iter()
            .filter(|(a, _, _)| *a != AidDecision::NotRecorded)
    }
}

labelled_enum!(ExitKind, ExitKind {
    BirthFamily => ("birth_family", "возврат в кровную семью"),
    Guardianship => ("guardianship", "опека (попечительство)"),
    Foster => ("foster", "приёмная семья"),
    Adoption => ("adoption", "усыновление"),
    ComingOfAge => ("coming_of_age", "совершеннолетие"),
    OtherExit => ("other", "другое"),
});

impl ExitKind {
    /// Exits to a family (birth or substitute), as the ministry counts them.
    pub fn to_family(self) -> bool {
        matches!(
            self,
            Self::BirthFamily | Self::Guardianship | Self::Foster | Self::Adoption
        )
    }
}

/// Where the child is, as far as institutions go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub institution: Uuid,
    pub institution_type: InstitutionType,
    pub since: Date,
    pub legal_status: LegalStatus,
}

/// An assessment of a consilium: yes, no, or not assessed.
pub type Assessment = Option<bool>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub review: Uuid,
    pub level: ReviewLevel,
    pub placement_justified: Assessment,
    pub stay_justified: Assessment,
    pub parental_claim_justified: Assessment,
    pub aid: AidDecision,
    pub return_possible: Assessment,
    pub return_by: Option<Date>,
    pub next_review: Option<Date>,
    /// The consilium sitting this review was made at, if recorded through one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParentalRights {
    Full,
    Restricted,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaseEvent {
    CaseOpened {
        on: Date,
        child: Uuid,
        case_number: String,
        region: RegionCode,
        municipality: Option<Uuid>,
        family: Option<Uuid>,
    },
    ChildPlaced {
        on: Date,
        institution: Uuid,
        institution_type: InstitutionType,
        basis: PlacementBasis,
        reasons: Vec<PlacementReason>,
        legal_status: LegalStatus,
    },
    ChildTransferred {
        on: Date,
        institution: Uuid,
        institution_type: InstitutionType,
    },
    LegalStatusChanged {
        on: Date,
        legal_status: LegalStatus,
    },
    ConsiliumReviewRecorded {
        on: Date,
        #[serde(flatten)]
        review: Review,
    },
    ActionItemSet {
        on: Date,
        item: Uuid,
        action: Text,
        executor: Text,
        due: Date,
        review: Option<Uuid>,
    },
    ActionItemDone {
        on: Date,
        item: Uuid,
    },
    TakenUnderPersonalControl {
        on: Date,
    },
    ReleasedFromPersonalControl {
        on: Date,
    },
    FamilyVisited {
        on: Date,
    },
    AccompanimentStarted {
        on: Date,
        service: Uuid,
    },
    AccompanimentEnded {
        on: Date,
    },
    ParentalRightsRestricted {
        on: Date,
    },
    ParentalRightsRemoved {
        on: Date,
    },
    ParentalRightsRestored {
        on: Date,
    },
    ChildLeftInstitution {
        on: Date,
        exit: ExitKind,
    },
    PlacementPrevented {
        on: Date,
    },
    CaseClosed {
        on: Date,
        reason: Text,
    },
    CaseReopened {
        on: Date,
        reason: Text,
    },
    /// An earlier entry (by its sequence number in the case, from 1) was a mistake; it no
    /// longer counts. The entry stays in the log.
    EntryVoided {
        on: Date,
        sequence: usize,
        reason: Text,
    },
}

impl CaseEvent {
    pub fn on(&self) -> Date {
        match self {
            Self::CaseOpened { on, .. }
            | Self::ChildPlaced { on, .. }
            | Self::ChildTransferred { on, .. }
            | Self::LegalStatusChanged { on, .. }
            | Self::ConsiliumReviewRecorded { on, .. }
            | Self::ActionItemSet { on, .. }
            | Self::ActionItemDone { on, .. }
            | Self::TakenUnderPersonalControl { on }
            | Self::ReleasedFromPersonalControl { on }
            | Self::FamilyVisited { on }
            | Self::AccompanimentStarted { on, .. }
            | Self::AccompanimentEnded { on }
            | Self::ParentalRightsRestricted { on }
            | Self::ParentalRightsRemoved { on }
            | Self::ParentalRightsRestored { on }
            | Self::ChildLeftInstitution { on, .. }
            | Self::PlacementPrevented { on }
            | Self::CaseClosed { on, .. }
            | Self::CaseReopened { on, .. }
            | Self::EntryVoided { on, .. } => *on,
        }
    }
}

impl DomainEvent for CaseEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CaseOpened { .. } => "CaseOpened",
            Self::ChildPlaced { .. } => "ChildPlaced",
            Self::ChildTransferred { .. } => "ChildTransferred",
            Self::LegalStatusChanged { .. } => "LegalStatusChanged",
            Self::ConsiliumReviewRecorded { .. } => "ConsiliumReviewRecorded",
            Self::ActionItemSet { .. } => "ActionItemSet",
            Self::ActionItemDone { .. } => "ActionItemDone",
            Self::TakenUnderPersonalControl { .. } => "TakenUnderPersonalControl",
            Self::ReleasedFromPersonalControl { .. } => "ReleasedFromPersonalControl",
            Self::FamilyVisited { .. } => "FamilyVisited",
            Self::AccompanimentStarted { .. } => "AccompanimentStarted",
            Self::AccompanimentEnded { .. } => "AccompanimentEnded",
            Self::ParentalRightsRestricted { .. } => "ParentalRightsRestricted",
            Self::ParentalRightsRemoved { .. } => "ParentalRightsRemoved",
            Self::ParentalRightsRestored { .. } => "ParentalRightsRestored",
            Self::ChildLeftInstitution { .. } => "ChildLeftInstitution",
            Self::PlacementPrevented { .. } => "PlacementPrevented",
            Self::CaseClosed { .. } => "CaseClosed",
            Self::CaseReopened { .. } => "CaseReopened",
            Self::EntryVoided { .. } => "EntryVoided",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CaseError {
    #[error("Дело уже открыто.")]
    AlreadyOpened,
    #[error("Дело не найдено: сначала его нужно открыть.")]
    NotOpened,
    #[error("Дело закрыто: чтобы внести новые сведения, сначала откройте его снова.")]
    Closed,
    #[error("Дело не закрыто.")]
    NotClosed,
    #[error("Дата {date} ещё не наступила: сведения вносятся о том, что уже произошло.")]
    FutureDate { date: String },
    #[error("Дата {date} раньше рождения ребёнка.")]
    BeforeBirth { date: String },
    #[error("Дата {date} раньше помещения в учреждение ({since}).")]
    BeforePlacement { date: String, since: String },
    #[error("Ребёнок уже находится в учреждении: сначала отметьте выбытие или перевод.")]
    AlreadyPlaced,
    #[error("Ребёнок сейчас не находится в учреждении.")]
    NotPlaced,
    #[error("Перевод возможен только в другое учреждение.")]
    SameInstitution,
    #[error("У ребёнка уже этот правовой статус.")]
    SameLegalStatus,
    #[error("Укажите хотя бы одну причину помещения.")]
    NoReasons,
    #[error("Дата следующего консилиума должна быть позже даты этого ({date}).")]
    NextReviewNotAfter { date: String },
    #[error("Срок возврата домой должен быть не раньше даты консилиума ({date}).")]
    ReturnByBeforeReview { date: String },
    #[error("Срок мероприятия не может быть раньше даты его назначения ({date}).")]
    DueBeforeSet { date: String },
    #[error("Мероприятие не найдено в этом деле.")]
    UnknownActionItem,
    #[error("Мероприятие уже отмечено выполненным.")]
    ActionItemAlreadyDone,
    #[error("Мероприятие не может быть выполнено раньше, чем назначено ({date}).")]
    DoneBeforeSet { date: String },
    #[error("Дело уже на личном контроле куратора.")]
    AlreadyUnderControl,
    #[error("Дело не на личном контроле куратора.")]
    NotUnderControl,
    #[error("Сопровождение семьи уже идёт: сначала завершите текущее.")]
    AccompanimentActive,
    #[error("Сопровождение семьи сейчас не идёт.")]
    NoAccompaniment,
    #[error("Родительские права уже ограничены или лишены.")]
    RightsNotFull,
    #[error("Родители уже лишены родительских прав.")]
    RightsAlreadyRemoved,
    #[error("Родительские права не ограничены и не лишены — восстанавливать нечего.")]
    RightsAlreadyFull,
    #[error("Предотвращение помещения отмечается, пока ребёнок не в учреждении.")]
    PreventedWhilePlaced,
    #[error("Нельзя закрыть дело, пока ребёнок в учреждении: сначала отметьте выбытие.")]
    CloseWhilePlaced,
    #[error("Запись № {sequence} не найдена в деле.")]
    UnknownEntry { sequence: usize },
    #[error(
        "Запись № {sequence} нельзя отменить: это открытие дела, отмена или она уже отменена."
    )]
    EntryNotVoidable { sequence: usize },
    #[error("Отмена записи № {sequence} оставила бы дело противоречивым: {problem}")]
    VoidWouldBreak { sequence: usize, problem: String },
}

/// A command: what happened (`action`), on which date (`on`), checked against the local
/// `today` and, where known to the caller, the child's birth date (`born`, used for the
/// check only and never stored).
#[derive(Debug, Clone, PartialEq)]
pub struct CaseCommand {
    pub on: Date,
    pub today: Date,
    pub born: Option<Date>,
    pub action: CaseAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CaseAction {
    Open {
        child: Uuid,
        case_number: String,
        region: RegionCode,
        municipality: Option<Uuid>,
        family: Option<Uuid>,
    },
    Place {
        institution: Uuid,
        institution_type: InstitutionType,
        basis: PlacementBasis,
        reasons: Vec<PlacementReason>,
        legal_status: LegalStatus,
    },
    Transfer {
        institution: Uuid,
        institution_type: InstitutionType,
    },
    ChangeLegalStatus {
        legal_status: LegalStatus,
    },
    RecordReview(Review),
    SetActionItem {
        item: Uuid,
        action: Text,
        executor: Text,
        due: Date,
        review: Option<Uuid>,
    },
    CompleteActionItem {
        item: Uuid,
    },
    TakeUnderControl,
    ReleaseFromControl,
    RecordFamilyVisit,
    StartAccompaniment {
        service: Uuid,
    },
    EndAccompaniment,
    RestrictParentalRights,
    RemoveParentalRights,
    RestoreParentalRights,
    RecordExit {
        exit: ExitKind,
    },
    RecordPreventedPlacement,
    Close {
        reason: Text,
    },
    Reopen {
        reason: Text,
    },
    VoidEntry {
        sequence: usize,
        reason: Text,
    },
}

impl DatedCommand for CaseCommand {
    fn effective_date(&self) -> Option<Date> {
        Some(self.on)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionItem {
    pub item: Uuid,
    pub set_on: Date,
    pub due: Date,
    pub done_on: Option<Date>,
}

/// The case as the rules see it: the fold of the entries that count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseState {
    pub opened: Option<Date>,
    pub closed: bool,
    pub placement: Option<Placement>,
    pub under_control: bool,
    pub accompaniment: Option<Uuid>,
    pub rights: Option<ParentalRights>,
    pub items: Vec<ActionItem>,
    pub last_review: Option<Date>,
    pub next_review: Option<Date>,
    pub exits: Vec<(Date, ExitKind)>,
}

fn date_text(date: Date) -> String {
    format_date(date)
}

impl CaseState {
    /// The rules of the practice, over one event, given the state before it.
    pub fn check(&self, event: &CaseEvent) -> Result<(), CaseError> {
        if let CaseEvent::CaseOpened { .. } = event {
            return match self.opened {
                Some(_) => Err(CaseError::AlreadyOpened),
                None => Ok(()),
            };
        }
        if self.opened.is_none() {
            return Err(CaseError::NotOpened);
        }
        match event {
            CaseEvent::CaseReopened { .. } => {
                return if self.closed {
                    Ok(())
                } else {
                    Err(CaseError::NotClosed)
                }
            }
            // A correction may be entered on a closed case (it fixes history).
            CaseEvent::EntryVoided { .. } => return Ok(()),
            _ if self.closed => return Err(CaseError::Closed),
            _ => {}
        }
        let on = event.on();
        let after_placement = |p: &Placement| {
            if on < p.since {
                Err(CaseError::BeforePlacement {
                    date: date_text(on),
                    since: date_text(p.since),
                })
            } else {
                Ok(())
            }
        };
        match event {
            CaseEvent::CaseOpened { .. }
            | CaseEvent::CaseReopened { .. }
            | CaseEvent::EntryVoided { .. } => Ok(()),
            CaseEvent::ChildPlaced { reasons, .. } => {
                if self.placement.is_some() {
                    return Err(CaseError::AlreadyPlaced);
                }
                if reasons.is_empty() {
                    return Err(CaseError::NoReasons);
                }
                Ok(())
            }
            CaseEvent::ChildTransferred { institution, .. } => {
                let placement = self.placement.as_ref().ok_or(CaseError::NotPlaced)?;
                after_placement(placement)?;
                if placement.institution == *institution {
                    return Err(CaseError::SameInstitution);
                }
                Ok(())
            }
            CaseEvent::LegalStatusChanged { legal_status, .. } => {
                let placement = self.placement.as_ref().ok_or(CaseError::NotPlaced)?;
                if placement.legal_status == *legal_status {
                    return Err(CaseError::SameLegalStatus);
                }
                Ok(())
            }
            CaseEvent::ConsiliumReviewRecorded { review, .. } => {
                if review.next_review.is_some_and(|next| next <= on) {
                    return Err(CaseError::NextReviewNotAfter {
                        date: date_text(on),
                    });
                }
                if review.return_by.is_some_and(|by| by < on) {
                    return Err(CaseError::ReturnByBeforeReview {
                        date: date_text(on),
                    });
                }
                Ok(())
            }
            CaseEvent::ActionItemSet { due, .. } => {
                if *due < on {
                    return Err(CaseError::DueBeforeSet {
                        date: date_text(on),
                    });
                }
                Ok(())
            }
            CaseEvent::ActionItemDone { item, .. } => {
                let found = self
                    .items
                    .iter()
                    .find(|i| i.item == *item)
                    .ok_or(CaseError::UnknownActionItem)?;
                if found.done_on.is_some() {
                    return Err(CaseError::ActionItemAlreadyDone);
                }
                if on < found.set_on {
                    return Err(CaseError::DoneBeforeSet {
                        date: date_text(found.set_on),
                    });
                }
                Ok(())
            }
            CaseEvent::TakenUnderPersonalControl { .. } => {
                if self.under_control {
                    Err(CaseError::AlreadyUnderControl)
                } else {
                    Ok(())
                }
            }
            CaseEvent::ReleasedFromPersonalControl { .. } => {
                if self.under_control {
                    Ok(())
                } else {
                    Err(CaseError::NotUnderControl)
                }
            }
            CaseEvent::FamilyVisited { .. } => Ok(()),
            CaseEvent::AccompanimentStarted { .. } => {
                if self.accompaniment.is_some() {
                    Err(CaseError::AccompanimentActive)
                } else {
                    Ok(())
                }
            }
            CaseEvent::AccompanimentEnded { .. } => {
                if self.accompaniment.is_some() {
                    Ok(())
                } else {
                    Err(CaseError::NoAccompaniment)
                }
            }
            CaseEvent::ParentalRightsRestricted { .. } => match self.rights() {
                ParentalRights::Full => Ok(()),
                _ => Err(CaseError::RightsNotFull),
            },
            CaseEvent::ParentalRightsRemoved { .. } => match self.rights() {
                ParentalRights::Removed => Err(CaseError::RightsAlreadyRemoved),
                _ => Ok(()),
            },
            CaseEvent::ParentalRightsRestored { .. } => match self.rights() {
                ParentalRights::Full => Err(CaseError::RightsAlreadyFull),
                _ => Ok(()),
            },
            CaseEvent::ChildLeftInstitution { .. } => {
                let placement = self.placement.as_ref().ok_or(CaseError::NotPlaced)?;
                after_placement(placement)
            }
            CaseEvent::PlacementPrevented { .. } => {
                if self.placement.is_some() {
                    Err(CaseError::PreventedWhilePlaced)
                } else {
                    Ok(())
                }
            }
            CaseEvent::CaseClosed { .. } => {
                if self.placement.is_some() {
                    Err(CaseError::CloseWhilePlaced)
                } else {
                    Ok(())
                }
            }
        }
    }

    pub fn rights(&self) -> ParentalRights {
        self.rights.unwrap_or(ParentalRights::Full)
    }

    /// Folds one (counting) event.
    pub fn fold(&mut self, event: &CaseEvent) {
        match event {
            CaseEvent::CaseOpened { on, .. } => self.opened = Some(*on),
            CaseEvent::ChildPlaced {
                on,
                institution,
                institution_type,
                legal_status,
                ..
            } => {
                self.placement = Some(Placement {
                    institution: *institution,
                    institution_type: *institution_type,
                    since: *on,
                    legal_status: *legal_status,
                })
            }
            CaseEvent::ChildTransferred {
                institution,
                institution_type,
                ..
            } => {
                if let Some(p) = self.placement.as_mut() {
                    p.institution = *institution;
                    p.institution_type = *institution_type;
                }
            }
            CaseEvent::LegalStatusChanged { legal_status, .. } => {
                if let Some(p) = self.placement.as_mut() {
                    p.legal_status = *legal_status;
                }
            }
            CaseEvent::ConsiliumReviewRecorded { on, review } => {
                self.last_review = Some(self.last_review.map_or(*on, |d| d.max(*on)));
                self.next_review = review.next_review;
            }
            CaseEvent::ActionItemSet { on, item, due, .. } => self.items.push(ActionItem {
                item: *item,
                set_on: *on,
                due: *due,
                done_on: None,
            }),
            CaseEvent::ActionItemDone { on, item } => {
                if let Some(found) = self.items.iter_mut().find(|i| i.item == *item) {
                    found.done_on = Some(*on);
                }
            }
            CaseEvent::TakenUnderPersonalControl { .. } => self.under_control = true,
            CaseEvent::ReleasedFromPersonalControl { .. } => self.under_control = false,
            CaseEvent::FamilyVisited { .. } | CaseEvent::PlacementPrevented { .. } => {}
            CaseEvent::AccompanimentStarted { service, .. } => self.accompaniment = Some(*service),
            CaseEvent::AccompanimentEnded { .. } => self.accompaniment = None,
            CaseEvent::ParentalRightsRestricted { .. } => {
                self.rights = Some(ParentalRights::Restricted)
            }
            CaseEvent::ParentalRightsRemoved { .. } => self.rights = Some(ParentalRights::Removed),
            CaseEvent::ParentalRightsRestored { .. } => self.rights = Some(ParentalRights::Full),
            CaseEvent::ChildLeftInstitution { on, exit } => {
                self.placement = None;
                self.exits.push((*on, *exit));
            }
            CaseEvent::CaseClosed { .. } => self.closed = true,
            CaseEvent::CaseReopened { .. } => self.closed = false,
            CaseEvent::EntryVoided { .. } => {}
        }
    }

    /// The state of a history, the voided entries left out; the first entry that breaks a
    /// rule, if any.
    pub fn replay(history: &[CaseEvent]) -> Result<Self, CaseError> {
        let voided: Vec<usize> = history
            .iter()
            .filter_map(|e| match e {
                CaseEvent::EntryVoided { sequence, .. } => Some(*sequence),
                _ => None,
            })
            .collect();
        let mut state = Self::default();
        for (index, event) in history.iter().enumerate() {
            if voided.contains(&(index + 1)) || matches!(event, CaseEvent::EntryVoided { .. }) {
                continue;
            }
            state.check(event)?;
            state.fold(event);
        }
        Ok(state)
    }
}

/// The aggregate: the whole history of the case (entries are few) and its current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChildCase {
    history: Vec<CaseEvent>,
    state: CaseState,
}

impl ChildCase {
    pub fn state(&self) -> &CaseState {
        &self.state
    }
    pub fn history(&self) -> &[CaseEvent] {
        &self.history
    }

    fn event_for(&self, on: Date, action: CaseAction) -> Result<CaseEvent, CaseError> {
        Ok(match action {
            CaseAction::Open {
                child,
                case_number,
                region,
                municipality,
                family,
            } => CaseEvent::CaseOpened {
                on,
                child,
                case_number,
                region,
                municipality,
                family,
            },
            CaseAction::Place {
                institution,
                institution_type,
                basis,
                mut reasons,
                legal_status,
            } => {
                reasons.dedup();
                CaseEvent::ChildPlaced {
                    on,
                    institution,
                    institution_type,
                    basis,
                    reasons,
                    legal_status,
                }
            }
            CaseAction::Transfer {
                institution,
                institution_type,
            } => CaseEvent::ChildTransferred {
                on,
                institution,
                institution_type,
            },
            CaseAction::ChangeLegalStatus { legal_status } => {
                CaseEvent::LegalStatusChanged { on, legal_status }
            }
            CaseAction::RecordReview(review) => CaseEvent::ConsiliumReviewRecorded { on, review },
            CaseAction::SetActionItem {
                item,
                action,
                executor,
                due,
                review,
            } => CaseEvent::ActionItemSet {
                on,
                item,
                action,
                executor,
                due,
                review,
            },
            CaseAction::CompleteActionItem { item } => CaseEvent::ActionItemDone { on, item },
            CaseAction::TakeUnderControl => CaseEvent::TakenUnderPersonalControl { on },
            CaseAction::ReleaseFromControl => CaseEvent::ReleasedFromPersonalControl { on },
            CaseAction::RecordFamilyVisit => CaseEvent::FamilyVisited { on },
            CaseAction::StartAccompaniment { service } => {
                CaseEvent::AccompanimentStarted { on, service }
            }
            CaseAction::EndAccompaniment => CaseEvent::AccompanimentEnded { on },
            CaseAction::RestrictParentalRights => CaseEvent::ParentalRightsRestricted { on },
            CaseAction::RemoveParentalRights => CaseEvent::ParentalRightsRemoved { on },
            CaseAction::RestoreParentalRights => CaseEvent::ParentalRightsRestored { on },
            CaseAction::RecordExit { exit } => CaseEvent::ChildLeftInstitution { on, exit },
            CaseAction::RecordPreventedPlacement => CaseEvent::PlacementPrevented { on },
            CaseAction::Close { reason } => CaseEvent::CaseClosed { on, reason },
            CaseAction::Reopen { reason } => CaseEvent::CaseReopened { on, reason },
            CaseAction::VoidEntry { sequence, reason } => {
                let entry = self
                    .history
                    .get(sequence.wrapping_sub(1))
                    .ok_or(CaseError::UnknownEntry { sequence })?;
                let already = self.history.iter().any(
                    |e| matches!(e, CaseEvent::EntryVoided { sequence: s, .. } if *s == sequence),
                );
                if already
                    || matches!(
                        entry,
                        CaseEvent::CaseOpened { .. } | CaseEvent::EntryVoided { .. }
                    )
                {
                    return Err(CaseError::EntryNotVoidable { sequence });
                }
                let event = CaseEvent::EntryVoided {
                    on,
                    sequence,
                    reason,
                };
                let mut after = self.history.clone();
                after.push(event.clone());
                CaseState::replay(&after).map_err(|problem| CaseError::VoidWouldBreak {
                    sequence,
                    problem: problem.to_string(),
                })?;
                event
            }
        })
    }
}

impl Aggregate for ChildCase {
    const TYPE: &'static str = "ChildCase";
    type Command = CaseCommand;
    type Event = CaseEvent;
    type Error = CaseError;
    type Services = ();

    async fn handle(
        &mut self,
        command: CaseCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CaseError> {
        let CaseCommand {
            on,
            today,
            born,
            action,
        } = command;
        if on > today {
            return Err(CaseError::FutureDate {
                date: date_text(on),
            });
        }
        if born.is_some_and(|born| on < born) {
            return Err(CaseError::BeforeBirth {
                date: date_text(on),
            });
        }
        let event = self.event_for(on, action)?;
        self.state.check(&event)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: CaseEvent) {
        self.history.push(event);
        // A voiding changes what counts: recompute; otherwise fold the one event.
        match self.history.last() {
            Some(CaseEvent::EntryVoided { .. }) => {
                if let Ok(state) = CaseState::replay(&self.history) {
                    self.state = state;
                }
            }
            Some(event) => {
                let event = event.clone();
                self.state.fold(&event);
            }
            None => {}
        }
    }
}
