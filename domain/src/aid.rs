//! «Вызов»: material aid from the region's NGO operator to a family, so that a child is not
//! placed in an institution or can return home.
//!
//! Each request for aid is its own stream (`AidRequest`), keyed to the family: requested
//! (by whom, on what basis, for which purpose) → approved or refused by the NGO → delivered,
//! once or in several parts (date, amount to the kopeck, form of aid, supplier or receipt,
//! an optional scanned receipt) → a delivery corrected or withdrawn, always with a reason.
//! Nothing is edited: the report and the family's history are folds of these events.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use time::Date;
use uuid::Uuid;

use crate::access::Text;
use crate::money::Rubles;
use crate::reference::{labelled_enum, RegionCode};
use crate::{format_date, DatedCommand};

labelled_enum!(
    /// The forms of material aid of seed 004, as a closed list with «other (describe)».
    AidForm, AidForm {
    HousingRepair => ("housing_repair", "ремонт жилья, строительные и отделочные материалы, инструменты"),
    ShortTermRent => ("rent", "краткосрочный наём жилья"),
    Utilities => ("utilities", "оплата коммунальных услуг"),
    Essentials => ("essentials", "одежда, предметы первой необходимости, бытовая техника, школьные принадлежности"),
    AddictionTreatment => ("addiction_treatment", "лечение и реабилитация от зависимостей"),
    SocialRehabilitation => ("social_rehabilitation", "социальная реабилитация"),
    Psychological => ("psychological", "психологическое сопровождение"),
    Pedagogical => ("pedagogical", "педагогическая помощь и репетиторство"),
    HomeCare => ("home_care", "социальное обслуживание на дому (патронаж, сиделка, няня, помощь по хозяйству)"),
    Employment => ("employment", "помощь в трудоустройстве родителей"),
    Medicines => ("medicines", "лекарства, медицинские изделия, средства реабилитации"),
    MedicalExamination => ("medical_examination", "медицинские обследования и освидетельствования"),
    Travel => ("travel", "проезд к месту лечения, проживания, получения услуг"),
    Legal => ("legal", "юридическая поддержка и сопровождение"),
    Smallholding => ("smallholding", "личное подсобное хозяйство (техника, животные, посевные)"),
    Vehicle => ("vehicle", "транспортное средство для семьи"),
    Other => ("other", "другое (опишите)"),
});

labelled_enum!(
    /// Who asked for the aid: the basis of the report.
    AidRequester, AidRequester {
    Consilium => ("consilium", "решение консилиума"),
    Municipality => ("municipality", "администрация муниципального образования"),
    Institution => ("institution", "детское учреждение"),
    Ombudsman => ("ombudsman", "уполномоченный по правам ребёнка в регионе"),
    OtherOrganisation => ("other_organisation", "другая организация"),
    Family => ("family", "обращение самой семьи"),
});

labelled_enum!(AidPurpose, AidPurpose {
    PreventPlacement => ("prevent_placement", "предотвратить помещение ребёнка в учреждение"),
    SupportReturn => ("support_return", "помочь возвращению ребёнка домой"),
    OtherPurpose => ("other", "другое"),
});

/// More children than one family's request can be for: a typing mistake.
pub const MAX_CHILDREN: u16 = 30;

/// The consilium review that decided the aid (a case's `ConsiliumReviewRecorded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewLink {
    pub case: Uuid,
    pub review: Uuid,
}

/// What is asked, by whom and for whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AidRequestFacts {
    pub on: Date,
    pub family: Uuid,
    pub region: RegionCode,
    pub municipality: Option<Uuid>,
    /// The NGO operator asked.
    pub ngo: Uuid,
    pub requester: AidRequester,
    /// The requesting organisation or person, in words («Администрация Кировского района»).
    pub requested_by: Option<Text>,
    pub review: Option<ReviewLink>,
    pub purpose: AidPurpose,
    pub form: AidForm,
    pub form_other: Option<Text>,
    pub description: Option<Text>,
    /// The amount asked for, if the request names one.
    pub amount: Option<Rubles>,
    /// Children in the family that the aid is for.
    pub children: u16,
}

/// A file kept with a delivery (a scanned receipt); its bytes are in the attachment store,
/// sealed, and the event keeps its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: Uuid,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

/// One delivery of aid (a request may be delivered in parts: monthly rent, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: Uuid,
    pub on: Date,
    pub amount: Rubles,
    pub form: AidForm,
    pub form_other: Option<Text>,
    pub supplier: Option<Text>,
    pub receipt: Option<Text>,
    pub attachment: Option<Attachment>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AidCommand {
    Request {
        today: Date,
        facts: AidRequestFacts,
    },
    Approve {
        on: Date,
        today: Date,
        amount: Option<Rubles>,
        note: Option<Text>,
    },
    Refuse {
        on: Date,
        today: Date,
        reason: Text,
    },
    Deliver {
        today: Date,
        delivery: Delivery,
    },
    /// Replaces the figures of an earlier delivery (same id).
    Correct {
        today: Date,
        delivery: Delivery,
        reason: Text,
    },
    /// A delivery entered by mistake no longer counts.
    Withdraw {
        on: Date,
        delivery: Uuid,
        reason: Text,
    },
}

impl DatedCommand for AidCommand {
    fn effective_date(&self) -> Option<Date> {
        Some(match self {
            Self::Request { facts, .. } => facts.on,
            Self::Approve { on, .. } | Self::Refuse { on, .. } | Self::Withdraw { on, .. } => *on,
            Self::Deliver { delivery, .. } | Self::Correct { delivery, .. } => delivery.on,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AidEvent {
    AidRequested(AidRequestFacts),
    AidApproved {
        on: Date,
        amount: Option<Rubles>,
        note: Option<Text>,
    },
    AidRefused {
        on: Date,
        reason: Text,
    },
    AidDelivered(Delivery),
    AidDeliveryCorrected {
        delivery: Delivery,
        reason: Text,
    },
    AidDeliveryWithdrawn {
        on: Date,
        delivery: Uuid,
        reason: Text,
    },
}

impl DomainEvent for AidEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AidRequested(_) => "AidRequested",
            Self::AidApproved { .. } => "AidApproved",
            Self::AidRefused { .. } => "AidRefused",
            Self::AidDelivered(_) => "AidDelivered",
            Self::AidDeliveryCorrected { .. } => "AidDeliveryCorrected",
            Self::AidDeliveryWithdrawn { .. } => "AidDeliveryWithdrawn",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AidError {
    #[error("Запрос уже записан.")]
    AlreadyRequested,
    #[error("Запрос на помощь не найден.")]
    NotRequested,
    #[error("Дата {date} ещё не наступила: записывается то, что уже произошло.")]
    FutureDate { date: String },
    #[error("Для запроса по решению консилиума укажите рассмотрение, на котором оно принято.")]
    ConsiliumWithoutReview,
    #[error("Рассмотрение консилиума указывается только для запроса по решению консилиума.")]
    ReviewWithoutConsilium,
    #[error("Для формы помощи «другое» опишите, какая это помощь.")]
    OtherFormUndescribed,
    #[error("Укажите, скольким детям в семье помогает помощь (от 1 до {MAX_CHILDREN}).")]
    ChildrenOutOfRange,
    #[error("Сумма должна быть больше нуля.")]
    AmountNotPositive,
    #[error("Сумма больше 10 000 000 ₽ — проверьте, нет ли лишних цифр.")]
    AmountTooLarge,
    #[error("По запросу уже принято решение.")]
    AlreadyDecided,
    #[error("Дата {date} раньше даты запроса ({requested}).")]
    BeforeRequest { date: String, requested: String },
    #[error("Помощь выдаётся только по одобренному запросу.")]
    NotApproved,
    #[error("Дата выдачи {date} раньше одобрения ({approved}).")]
    BeforeApproval { date: String, approved: String },
    #[error("Эта выдача уже записана.")]
    DuplicateDelivery,
    #[error("Выдача не найдена в этом запросе.")]
    UnknownDelivery,
    #[error("Выдача уже отозвана.")]
    DeliveryWithdrawn,
    #[error("Исправление ничего не меняет.")]
    NothingCorrected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AidStatus {
    Requested,
    Approved,
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DeliveryState {
    delivery: Delivery,
    withdrawn: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AidRequest {
    status: Option<AidStatus>,
    requested_on: Option<Date>,
    decided_on: Option<Date>,
    deliveries: Vec<DeliveryState>,
}

fn check_amount(amount: Rubles) -> Result<(), AidError> {
    if amount.kopecks() <= 0 {
        return Err(AidError::AmountNotPositive);
    }
    if amount > Rubles::MAX_AID {
        return Err(AidError::AmountTooLarge);
    }
    Ok(())
}

fn not_future(on: Date, today: Date) -> Result<(), AidError> {
    if on > today {
        return Err(AidError::FutureDate {
            date: format_date(on),
        });
    }
    Ok(())
}

impl AidRequest {
    pub fn status(&self) -> Option<AidStatus> {
        self.status
    }

    fn check_delivery(&self, delivery: &Delivery, today: Date) -> Result<(), AidError> {
        if self.status != Some(AidStatus::Approved) {
            return Err(AidError::NotApproved);
        }
        not_future(delivery.on, today)?;
        if let Some(approved) = self.decided_on.filter(|d| delivery.on < *d) {
            return Err(AidError::BeforeApproval {
                date: format_date(delivery.on),
                approved: format_date(approved),
            });
        }
        check_amount(delivery.amount)?;
        if delivery.form == AidForm::Other && delivery.form_other.is_none() {
            return Err(AidError::OtherFormUndescribed);
        }
        Ok(())
    }

    fn delivery(&self, id: Uuid) -> Result<&DeliveryState, AidError> {
        let found = self
            .deliveries
            .iter()
            .find(|d| d.delivery.id == id)
            .ok_or(AidError::UnknownDelivery)?;
        if found.withdrawn {
            return Err(AidError::DeliveryWithdrawn);
        }
        Ok(found)
    }

    fn decide(&self, on: Date, today: Date) -> Result<(), AidError> {
        if self.status != Some(AidStatus::Requested) {
            return Err(AidError::AlreadyDecided);
        }
        not_future(on, today)?;
        if let Some(requested) = self.requested_on.filter(|r| on < *r) {
            return Err(AidError::BeforeRequest {
                date: format_date(on),
                requested: format_date(requested),
            });
        }
        Ok(())
    }
}

impl Aggregate for AidRequest {
    const TYPE: &'static str = "AidRequest";
    type Command = AidCommand;
    type Event = AidEvent;
    type Error = AidError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AidCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), AidError> {
        if !matches!(command, AidCommand::Request { .. }) && self.status.is_none() {
            return Err(AidError::NotRequested);
        }
        let event = match command {
            AidCommand::Request { today, facts } => {
                if self.status.is_some() {
                    return Err(AidError::AlreadyRequested);
                }
                not_future(facts.on, today)?;
                match (facts.requester, facts.review) {
                    (AidRequester::Consilium, None) => {
                        return Err(AidError::ConsiliumWithoutReview)
                    }
                    (r, Some(_)) if r != AidRequester::Consilium => {
                        return Err(AidError::ReviewWithoutConsilium)
                    }
                    _ => {}
                }
                if facts.form == AidForm::Other && facts.form_other.is_none() {
                    return Err(AidError::OtherFormUndescribed);
                }
                if !(1..=MAX_CHILDREN).contains(&facts.children) {
                    return Err(AidError::ChildrenOutOfRange);
                }
                if let Some(amount) = facts.amount {
                    check_amount(amount)?;
                }
                AidEvent::AidRequested(facts)
            }
            AidCommand::Approve {
                on,
                today,
                amount,
                note,
            } => {
                self.decide(on, today)?;
                if let Some(amount) = amount {
                    check_amount(amount)?;
                }
                AidEvent::AidApproved { on, amount, note }
            }
            AidCommand::Refuse { on, today, reason } => {
                self.decide(on, today)?;
                AidEvent::AidRefused { on, reason }
            }
            AidCommand::Deliver { today, delivery } => {
                if self.deliveries.iter().any(|d| d.delivery.id == delivery.id) {
                    return Err(AidError::DuplicateDelivery);
                }
                self.check_delivery(&delivery, today)?;
                AidEvent::AidDelivered(delivery)
            }
            AidCommand::Correct {
                today,
                mut delivery,
                reason,
            } => {
                let before = &self.delivery(delivery.id)?.delivery;
                // A correction that sends no new file keeps the one already there.
                if delivery.attachment.is_none() {
                    delivery.attachment.clone_from(&before.attachment);
                }
                if *before == delivery {
                    return Err(AidError::NothingCorrected);
                }
                self.check_delivery(&delivery, today)?;
                AidEvent::AidDeliveryCorrected { delivery, reason }
            }
            AidCommand::Withdraw {
                on,
                delivery,
                reason,
            } => {
                self.delivery(delivery)?;
                AidEvent::AidDeliveryWithdrawn {
                    on,
                    delivery,
                    reason,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: AidEvent) {
        match event {
            AidEvent::AidRequested(facts) => {
                self.status = Some(AidStatus::Requested);
                self.requested_on = Some(facts.on);
            }
            AidEvent::AidApproved { on, .. } => {
                self.status = Some(AidStatus::Approved);
                self.decided_on = Some(on);
            }
            AidEvent::AidRefused { on, .. } => {
                self.status = Some(AidStatus::Refused);
                self.decided_on = Some(on);
            }
            AidEvent::AidDelivered(delivery) => self.deliveries.push(DeliveryState {
                delivery,
                withdrawn: false,
            }),
            AidEvent::AidDeliveryCorrected { delivery, .. } => {
                if let Some(d) = self
                    .deliveries
                    .iter_mut()
                    .find(|d| d.delivery.id == delivery.id)
                {
                    d.delivery = delivery;
                }
            }
            AidEvent::AidDeliveryWithdrawn { delivery, .. } => {
                if let Some(d) = self
                    .deliveries
                    .iter_mut()
                    .find(|d| d.delivery.id == delivery)
                {
                    d.withdrawn = true;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use time::macros::date;

    const TODAY: Date = date!(2025 - 10 - 01);

    fn text(s: &str) -> Text {
        Text::parse(s).unwrap()
    }

    fn facts() -> AidRequestFacts {
        AidRequestFacts {
            on: date!(2025 - 03 - 03),
            family: Uuid::from_u128(1),
            region: RegionCode::parse("22").unwrap(),
            municipality: None,
            ngo: Uuid::from_u128(2),
            requester: AidRequester::Consilium,
            requested_by: None,
            review: Some(ReviewLink {
                case: Uuid::from_u128(3),
                review: Uuid::from_u128(4),
            }),
            purpose: AidPurpose::SupportReturn,
            form: AidForm::HousingRepair,
            form_other: None,
            description: Some(text("ремонт печи")),
            amount: Some(Rubles::from_kopecks(15_000_000)),
            children: 3,
        }
    }

    fn delivery(kopecks: i64) -> Delivery {
        Delivery {
            id: Uuid::from_u128(10),
            on: date!(2025 - 03 - 20),
            amount: Rubles::from_kopecks(kopecks),
            form: AidForm::HousingRepair,
            form_other: None,
            supplier: Some(text("ООО «Стройбаза»")),
            receipt: Some(text("№ 1234")),
            attachment: None,
        }
    }

    fn requested() -> AidEvent {
        AidEvent::AidRequested(facts())
    }

    fn approved() -> AidEvent {
        AidEvent::AidApproved {
            on: date!(2025 - 03 - 10),
            amount: None,
            note: None,
        }
    }

    #[test]
    fn a_request_is_approved_delivered_corrected_and_withdrawn() {
        TestFramework::<AidRequest>::with(())
            .given_no_previous_events()
            .when(AidCommand::Request {
                today: TODAY,
                facts: facts(),
            })
            .then_expect_events(vec![requested()]);
        TestFramework::<AidRequest>::with(())
            .given(vec![requested()])
            .when(AidCommand::Approve {
                on: date!(2025 - 03 - 10),
                today: TODAY,
                amount: None,
                note: None,
            })
            .then_expect_events(vec![approved()]);
        TestFramework::<AidRequest>::with(())
            .given(vec![requested(), approved()])
            .when(AidCommand::Deliver {
                today: TODAY,
                delivery: delivery(14_999_950),
            })
            .then_expect_events(vec![AidEvent::AidDelivered(delivery(14_999_950))]);
        TestFramework::<AidRequest>::with(())
            .given(vec![
                requested(),
                approved(),
                AidEvent::AidDelivered(delivery(14_999_950)),
            ])
            .when(AidCommand::Correct {
                today: TODAY,
                delivery: delivery(1_499_995),
                reason: text("лишний ноль"),
            })
            .then_expect_events(vec![AidEvent::AidDeliveryCorrected {
                delivery: delivery(1_499_995),
                reason: text("лишний ноль"),
            }]);
        TestFramework::<AidRequest>::with(())
            .given(vec![
                requested(),
                approved(),
                AidEvent::AidDelivered(delivery(100)),
            ])
            .when(AidCommand::Withdraw {
                on: TODAY,
                delivery: Uuid::from_u128(10),
                reason: text("записано дважды"),
            })
            .then_expect_events(vec![AidEvent::AidDeliveryWithdrawn {
                on: TODAY,
                delivery: Uuid::from_u128(10),
                reason: text("записано дважды"),
            }]);
    }

    #[test]
    fn a_request_is_refused_with_a_reason_and_then_takes_no_delivery() {
        let refused = AidEvent::AidRefused {
            on: date!(2025 - 03 - 05),
            reason: text("есть региональная мера поддержки"),
        };
        TestFramework::<AidRequest>::with(())
            .given(vec![requested()])
            .when(AidCommand::Refuse {
                on: date!(2025 - 03 - 05),
                today: TODAY,
                reason: text("есть региональная мера поддержки"),
            })
            .then_expect_events(vec![refused.clone()]);
        TestFramework::<AidRequest>::with(())
            .given(vec![requested(), refused.clone()])
            .when(AidCommand::Deliver {
                today: TODAY,
                delivery: delivery(100),
            })
            .then_expect_error(AidError::NotApproved);
        TestFramework::<AidRequest>::with(())
            .given(vec![requested(), refused])
            .when(AidCommand::Approve {
                on: TODAY,
                today: TODAY,
                amount: None,
                note: None,
            })
            .then_expect_error(AidError::AlreadyDecided);
    }

    #[test]
    fn requests_that_make_no_sense_are_refused() {
        let refused = |facts: AidRequestFacts, error: AidError| {
            TestFramework::<AidRequest>::with(())
                .given_no_previous_events()
                .when(AidCommand::Request {
                    today: TODAY,
                    facts,
                })
                .then_expect_error(error);
        };
        refused(
            AidRequestFacts {
                review: None,
                ..facts()
            },
            AidError::ConsiliumWithoutReview,
        );
        refused(
            AidRequestFacts {
                requester: AidRequester::Family,
                ..facts()
            },
            AidError::ReviewWithoutConsilium,
        );
        refused(
            AidRequestFacts {
                form: AidForm::Other,
                ..facts()
            },
            AidError::OtherFormUndescribed,
        );
        refused(
            AidRequestFacts {
                children: 0,
                ..facts()
            },
            AidError::ChildrenOutOfRange,
        );
        refused(
            AidRequestFacts {
                on: date!(2025 - 10 - 02),
                ..facts()
            },
            AidError::FutureDate {
                date: "02.10.2025".into(),
            },
        );
        refused(
            AidRequestFacts {
                amount: Some(Rubles::from_kopecks(-1)),
                ..facts()
            },
            AidError::AmountNotPositive,
        );
        TestFramework::<AidRequest>::with(())
            .given(vec![requested()])
            .when(AidCommand::Request {
                today: TODAY,
                facts: facts(),
            })
            .then_expect_error(AidError::AlreadyRequested);
        TestFramework::<AidRequest>::with(())
            .given_no_previous_events()
            .when(AidCommand::Approve {
                on: TODAY,
                today: TODAY,
                amount: None,
                note: None,
            })
            .then_expect_error(AidError::NotRequested);
        TestFramework::<AidRequest>::with(())
            .given(vec![requested()])
            .when(AidCommand::Approve {
                on: date!(2025 - 03 - 01),
                today: TODAY,
                amount: None,
                note: None,
            })
            .then_expect_error(AidError::BeforeRequest {
                date: "01.03.2025".into(),
                requested: "03.03.2025".into(),
            });
    }

    #[test]
    fn deliveries_that_make_no_sense_are_refused() {
        let deliver = |given: Vec<AidEvent>, delivery: Delivery, error: AidError| {
            TestFramework::<AidRequest>::with(())
                .given(given)
                .when(AidCommand::Deliver {
                    today: TODAY,
                    delivery,
                })
                .then_expect_error(error);
        };
        deliver(vec![requested()], delivery(100), AidError::NotApproved);
        deliver(
            vec![requested(), approved()],
            delivery(0),
            AidError::AmountNotPositive,
        );
        deliver(
            vec![requested(), approved()],
            delivery(Rubles::MAX_AID.kopecks() + 1),
            AidError::AmountTooLarge,
        );
        deliver(
            vec![requested(), approved()],
            Delivery {
                on: date!(2025 - 03 - 09),
                ..delivery(100)
            },
            AidError::BeforeApproval {
                date: "09.03.2025".into(),
                approved: "10.03.2025".into(),
            },
        );
        deliver(
            vec![
                requested(),
                approved(),
                AidEvent::AidDelivered(delivery(100)),
            ],
            delivery(100),
            AidError::DuplicateDelivery,
        );
        let correct = |given: Vec<AidEvent>, delivery: Delivery, error: AidError| {
            TestFramework::<AidRequest>::with(())
                .given(given)
                .when(AidCommand::Correct {
                    today: TODAY,
                    delivery,
                    reason: text("ошибка"),
                })
                .then_expect_error(error);
        };
        correct(
            vec![requested(), approved()],
            delivery(100),
            AidError::UnknownDelivery,
        );
        correct(
            vec![
                requested(),
                approved(),
                AidEvent::AidDelivered(delivery(100)),
            ],
            delivery(100),
            AidError::NothingCorrected,
        );
        correct(
            vec![
                requested(),
                approved(),
                AidEvent::AidDelivered(delivery(100)),
                AidEvent::AidDeliveryWithdrawn {
                    on: TODAY,
                    delivery: Uuid::from_u128(10),
                    reason: text("ошибка"),
                },
            ],
            delivery(200),
            AidError::DeliveryWithdrawn,
        );
    }
}
