app-name = Опора
skip-to-content = Перейти к содержанию
nav-label = Разделы
nav-reference = Справочник
nav-people = Люди
nav-users = Пользователи
nav-access-log = Журнал доступа
nav-sign-in = Войти
nav-sign-out = Выйти
footer = Опора — поддержка семей и безопасность детей. Все изменения записываются в неизменяемый журнал; каждый просмотр личных данных — в журнал доступа.
to-home = На главную
breadcrumbs = Навигационная цепочка
home-title = Главная
home-intro = Система ведения случаев для поддержки семей и безопасности детей: проекты «Вызов» и «Заступник».
home-reference = Субъекты Российской Федерации, их часовые пояса и муниципальные образования.
home-people = Дети и взрослые, чьи личные данные ведутся в системе, — в пределах ваших территорий.
home-users = Учётные записи, роли и территории, журнал доступа и попытки входа.
yes = да
no = нет
all = все
name = Название
no-data = нет данных
not-specified = не указано
save = Сохранить
search = Найти
next-page = Следующая страница
when = Когда
who = Кто
what = Действие
from-where = Откуда
date-placeholder = ДД.ММ.ГГГГ
download-csv = Скачать таблицу (CSV для Excel)
form-has-errors = В форме есть ошибки — они отмечены у полей. Исправьте их и отправьте форму ещё раз.
field-choose = Выберите значение из списка.

error-not-found-title = Страница не найдена
error-not-found-message = Такой страницы нет, или у вас нет к ней доступа. Проверьте адрес или вернитесь на главную.
error-forbidden-title = Недостаточно прав
error-forbidden-message = Этот раздел недоступен для ваших ролей. Если он нужен вам для работы, обратитесь к администратору.
error-unauthorized-title = Нужен вход
error-unauthorized-message = Запрос к API без действующей сессии. Войдите через страницу /vhod (с кодом второго фактора, если он нужен) и передайте полученную сессию и токен X-CSRF-Token из /api/v1/me.
api-invalid-body = Тело запроса не соответствует описанию API (/api/v1/openapi.json): { $problem }. Ничего не записано.
api-not-json = Тело запроса должно быть объектом JSON с заголовком Content-Type: application/json. Ничего не записано.
case-choose-child = Укажите ребёнка (идентификатор записи о человеке).
error-stale-form-title = Форма устарела
error-stale-form-message = Форма была открыта слишком давно или не с этого сайта, поэтому она не принята; ничего не изменено. Обновите страницу и отправьте форму ещё раз.
error-too-large-title = Слишком большой запрос
error-too-large-message = Отправленные данные слишком велики. Сократите текст или приложите файл поменьше.
error-bad-request-title = Запрос не понят
error-bad-request-message = Данные формы не удалось прочитать, поэтому ничего не изменено. Вернитесь к форме, обновите страницу и отправьте её ещё раз.
error-unexpected-title = Что-то пошло не так
error-unexpected-message = Запрос не выполнен, данные не изменены. Попробуйте ещё раз через минуту; если ошибка повторится, сообщите администратору время ошибки.

login-title = Вход в систему
login-login = Имя для входа
login-password = Пароль
login-submit = Войти
login-help = Забыли пароль или имя для входа — обратитесь к администратору вашего региона. После пяти неудачных попыток вход приостанавливается на 15 минут.
login-failed = Неверное имя для входа или пароль.
login-throttled = Слишком много неудачных попыток входа. Подождите 15 минут и попробуйте снова.
code-title = Код подтверждения
code-intro = Ваша роль даёт доступ к личным данным детей, поэтому нужен второй фактор. Откройте приложение-аутентификатор и введите текущий код.
code-label = Код из приложения (6 цифр)
code-submit = Подтвердить
code-failed = Код не подошёл. Введите текущий код из приложения-аутентификатора (6 цифр); каждый код действует один раз.
enrol-title = Подключение второго фактора
enrol-why = Ваша роль даёт доступ к личным данным детей. Вход для неё — только с одноразовым кодом из приложения-аутентификатора на телефоне.
enrol-step-app = Установите приложение-аутентификатор (например, Яндекс Ключ, Google Authenticator, FreeOTP).
enrol-step-scan = Отсканируйте QR-код или введите секретный ключ вручную.
enrol-step-code = Введите код, который покажет приложение.
enrol-qr-label = QR-код для приложения-аутентификатора
enrol-secret = Секретный ключ для ввода вручную:
enrol-submit = Подключить и войти

profile-title = Мой профиль
profile-change-password = Смена пароля
profile-current-password = Текущий пароль
profile-new-password = Новый пароль
profile-repeat-password = Новый пароль ещё раз
profile-save-password = Сменить пароль
profile-sessions = Сеансы
profile-sign-out-everywhere = Выйти на всех устройствах
profile-sign-out-everywhere-help = Завершает все ваши сеансы, в том числе на других компьютерах и телефонах.
password-hint = Не короче 12 символов; не должен содержать имя для входа. Лучше всего — фраза из нескольких слов.
password-too-short = Пароль слишком короткий: нужно не меньше 12 символов.
password-too-long = Пароль слишком длинный: не больше 128 символов.
password-contains-login = Пароль не должен содержать имя для входа.
password-mismatch = Новый пароль и его повтор не совпадают.
password-current-wrong = Текущий пароль указан неверно.
notice-password-changed = Пароль изменён.

user-new = Новый пользователь
user-create = Создать пользователя
user-name = Имя и фамилия
user-contact = Контакт (телефон, эл. почта)
user-first-password = Первый пароль
user-new-password = Новый пароль
user-set-password = Задать пароль
user-roles = Роли
user-status = Состояние
user-active = действует
user-disabled-status = отключён
user-second-factor = Второй фактор подключён
user-access = Доступ
user-enable = Включить
user-disable = Отключить
user-disable-reason = Причина отключения
user-reset-code = Сбросить второй фактор
user-their-accesses = Его действия в журнале доступа
user-bad-login = Имя для входа: от 3 до 64 латинских букв, цифр, точек, дефисов или подчёркиваний.
user-needs-name = Укажите имя и фамилию.
user-exists = Пользователь с таким именем для входа уже есть.
user-not-found = Пользователь не найден.
user-no-grants = Нужна хотя бы одна роль.
user-duplicate-grant = Такая роль с той же территорией уже есть.
user-already-disabled = Пользователь уже отключён.
user-not-disabled = Пользователь не отключён.
user-disabled = Пользователь отключён; сначала включите его.
user-same-grants = Роли не изменились.
user-no-second-factor = Второй фактор не был подключён.
reason-required = Укажите причину.
notice-grants-changed = Роли изменены.
notice-disabled = Пользователь отключён; все его сеансы завершены.
notice-enabled = Пользователь включён.
notice-code-reset = Второй фактор сброшен: при следующем входе пользователь подключит его заново.
notice-signed-out = Все сеансы пользователя завершены.
notice-password-set = Пароль задан; все сеансы пользователя завершены.

grant-legend = Роль и территория
grant-hint = Администратор — вся Россия; аналитик — вся Россия или регион; куратор — регион; секретарь консилиума — регион, муниципалитет или организация; оператор НКО — НКО; орган образования — муниципалитет; оператор сигналов — список регионов.
grant-role = Роль
grant-organisation = Организация (НКО или учреждение)
grant-regions = Регионы (для оператора сигналов)
grant-regions-hint = Коды через запятую, например: 16, 02
grant-add = Добавить роль
grant-remove = Убрать
grant-choose-role = Выберите роль.
grant-bad-region = Неизвестный регион: укажите код из справочника, например 16.
grant-bad-municipality = Неизвестное муниципальное образование.
grant-bad-organisation = Неизвестная организация.
grant-needs-region = Для этой роли выберите регион.
grant-needs-regions = Для оператора сигналов укажите регионы.
grant-needs-municipality = Для этой роли выберите муниципальное образование.
grant-needs-ngo = Для оператора НКО выберите НКО.
grant-needs-institution = Секретарь консилиума организации: выберите учреждение, а не НКО.
grant-scope-not-allowed = Эта роль не может действовать на выбранной территории.
scope-federal = вся Россия

role-administrator = администратор
role-ministry_analyst = аналитик министерства
role-regional_curator = региональный куратор
role-consilium_secretary = секретарь консилиума
role-ngo_operator = оператор НКО
role-municipal_education = муниципальный орган управления образованием
role-signal_operator = оператор сигналов
organisation-ngo = НКО
organisation-institution = учреждение для детей-сирот

nav-access-log-title = Журнал доступа
log-intro = Каждый просмотр и выгрузка личных данных, каждый отказ в доступе и каждое удаление личных данных. Сами данные в журнал не пишутся. Время — московское.
log-record = Запись
log-path = Адрес
log-from = С даты
log-to = По дату
log-bad-date = Дата не распознана: укажите её в виде ДД.ММ.ГГГГ.
access-action-view = просмотр
access-action-list = просмотр списка
access-action-export = выгрузка
access-action-refused = отказ в доступе
access-action-erase = удаление личных данных
attempts-title = Попытки входа
attempt-outcome = Результат
attempt-ok = вход выполнен
attempt-password_ok = пароль верен, ожидается код
attempt-bad_password = неверное имя или пароль
attempt-bad_code = неверный код
attempt-throttled = отклонено: слишком много попыток

regions-title = Справочник: субъекты РФ
regions-heading = Субъекты Российской Федерации
regions-count = { $count ->
    [one] { $count } субъект
    [few] { $count } субъекта
   *[many] { $count } субъектов
}
municipalities-count = { $count ->
    [one] { $count } муниципальное образование
    [few] { $count } муниципальных образования
   *[many] { $count } муниципальных образований
}
regions-local-time = Сроки отчётов и «сегодня» считаются по местному времени субъекта.
regions-caption = Субъекты РФ с часовыми поясами
region-code = Код субъекта
municipalities-heading = Муниципальные образования
municipalities-none = Муниципальные образования этого субъекта ещё не внесены в справочник.
csv-code = Код
csv-region = Субъект РФ
csv-kind = Вид
csv-federal-district = Федеральный округ
csv-time-zone = Часовой пояс
csv-offset = Смещение
csv-municipalities = Муниципальных образований
csv-municipality = Муниципальное образование
csv-id = Идентификатор
csv-family-name = Фамилия
csv-given-name = Имя
csv-patronymic = Отчество
csv-birth-date = Дата рождения
csv-sex = Пол
csv-age-band = Возрастная группа
region-kind-republic = республика
region-kind-krai = край
region-kind-oblast = область
region-kind-federal_city = город федерального значения
region-kind-autonomous_oblast = автономная область
region-kind-autonomous_okrug = автономный округ
municipality-kind-municipal_district = муниципальный район
municipality-kind-municipal_okrug = муниципальный округ
municipality-kind-urban_okrug = городской округ
municipality-kind-intra_city_territory = внутригородская территория

people-title = Люди
people-intro = Дети и взрослые, чьи личные данные ведутся в системе, — только на ваших территориях. Каждый просмотр записывается в журнал доступа.
people-new = Новая запись о человеке
people-new-privacy = Личные данные (ФИО, дата рождения, документ, адрес, телефон) шифруются ключом этого человека; в открытом виде хранятся только регион, муниципалитет, пол и возрастная группа.
people-summary = Сводка
people-count = { $count ->
    [one] { $count } человек
    [few] { $count } человека
   *[many] { $count } человек
}
people-children = Дети
people-adults = Взрослые
people-recent = Последние записи
people-none = Записей пока нет.
person-title = Карточка человека
person-name = ФИО
person-kind-child = ребёнок
person-kind-adult = взрослый
sex-female = женский
sex-male = мужской
person-analytic = Сведения для статистики
person-personal = Личные данные
person-document = Документ
person-address = Адрес
person-phone = Телефон
person-registered = Внесён в систему
person-accesses = Кто открывал эту карточку
person-erased = Личные данные удалены
person-erased-explained = Ключ этого человека уничтожен: его личные данные больше нельзя прочитать ни здесь, ни в журнале событий, ни в резервных копиях. Сведения для статистики сохранены.
person-municipality-elsewhere = Муниципальное образование не относится к выбранному региону.
erase-title = Удаление личных данных
erase-explained = Ключ шифрования будет уничтожен безвозвратно: ФИО, дата рождения, документ, адрес и телефон станут нечитаемы везде. Счётчики и статистика не изменятся.
erase-reason = Основание удаления
erase-submit = Удалить личные данные безвозвратно

# «Вызов»: register and cases
nav-register = Реестр «Вызов»
home-register = Дети в учреждениях вашего региона: сроки, консилиумы, мероприятия, личный контроль.
person-open-case = Открыть дело «Вызов»
person-cases = Дела «Вызов»
register-title = Реестр детей в учреждениях
register-filters = Отбор
register-search = ФИО или номер дела
register-months-at-least = В учреждении не меньше, мес.
register-sort = Порядок
register-marks = Отметки
register-rule = правило практики: ребёнок в учреждении больше 6 месяцев должен быть рассмотрен консилиумом за последние 6 месяцев
register-children = { $count ->
    [one] { $count } ребёнок в учреждении
    [few] { $count } ребёнка в учреждениях
   *[many] { $count } детей в учреждениях
}
register-needing-review = { $count ->
    [one] { $count } — больше 6 месяцев без консилиума
    [few] { $count } — больше 6 месяцев без консилиума
   *[many] { $count } — больше 6 месяцев без консилиума
}
months-count = { $count ->
    [one] { $count } месяц
    [few] { $count } месяца
   *[many] { $count } месяцев
}
pages = Страницы
previous-page = Предыдущая страница
case-number = Номер дела
case-institution = Учреждение
case-institution-type = Тип учреждения
case-legal-status = Правовой статус
case-placed-on = В учреждении с
case-months = Месяцев в учреждении
case-last-review = Последний консилиум
case-next-review = следующий
case-needs-review = больше 6 месяцев без консилиума
case-under-control = на личном контроле
case-overdue-items = просроченные мероприятия
case-new = Новое дело
case-open = Открыть дело
case-opened-on = Дата открытия
case-bad-date = Дата не распознана: укажите её в виде ДД.ММ.ГГГГ.
case-stale-form = Дело изменилось с тех пор, как вы открыли эту форму (кто-то внёс новые сведения). Ничего не записано: посмотрите обновлённое дело ниже и внесите сведения ещё раз, если они по-прежнему нужны.
case-recorded = Сведения внесены в дело.
case-situation = Положение ребёнка
case-status = Состояние
case-closed = дело закрыто
case-in-institution = в учреждении
case-at-home = в семье
case-parental-rights = Родительские права
case-accompaniment = Сопровождение семьи
case-last-exit = Последнее выбытие
case-action-items = Мероприятия
case-no-items = Мероприятий нет.
case-item-action = Мероприятие
case-item-executor = Ответственный исполнитель
case-item-due = Срок
case-item-done = выполнено
case-item-overdue = просрочено
case-item-mark-done = Отметить выполненным
case-item-needs-action = Опишите мероприятие.
case-item-needs-executor = Укажите ответственного исполнителя.
case-item-needs-due = Укажите срок в виде ДД.ММ.ГГГГ.
case-unknown-item = Мероприятие не найдено.
case-unknown-entry = Запись не найдена.
case-unknown-action = Неизвестное действие формы.
case-choose-organisation = Выберите организацию из списка (справочник организаций региона ведёт куратор).
case-reviews = Консилиумы
case-no-reviews = Консилиумов ещё не было.
case-record-fact = Внести сведения
case-fact-date = Дата события
case-place = Помещение в учреждение
case-basis = Основание помещения
case-reasons = Причины помещения
case-exit = Выбытие из учреждения
case-exit-kind = Куда выбыл
case-transfer = Перевод в другое учреждение
case-review = Консилиум
case-new-item = Новое мероприятие
case-service = Служба «Дети в семье»
case-other-facts = Другие сведения
case-close = Закрыть дело
case-reopen = Открыть дело снова
case-reason = Основание
case-timeline = История дела
case-timeline-help = Прямо из журнала событий: дата события и время записи различаются; ошибки исправляются отменой записи с указанием основания, история не редактируется.
case-recorded-at = Записано
case-void = Отменить запись
case-voided = отменена
review-level = Уровень консилиума
review-placement-justified = помещение обосновано
review-stay-justified = пребывание обосновано
review-claim-justified = иск об ограничении/лишении прав обоснован
review-return-possible = возврат домой возможен
review-return-by = срок возврата
review-aid = Решение о помощи семье
institution-type-orphanage_centre = центр содействия семейному воспитанию (детский дом)
institution-type-rehabilitation = социально-реабилитационный центр (СРЦН)
institution-type-baby_home = дом ребёнка
institution-type-boarding_school = школа-интернат
institution-type-disability = дом-интернат для детей с инвалидностью
institution-type-other = другое учреждение
basis-parents_application = заявление родителей о временном пребывании
basis-guardianship_removal = отобрание органом опеки
basis-police = доставлен полицией
basis-loss_of_care = утрата попечения родителей
basis-court = решение суда
reason-addiction = зависимость родителей
reason-poverty = бедность, жилищные условия
reason-disability = инвалидность ребёнка
reason-conflict = конфликт в семье
reason-neglect = ненадлежащее исполнение обязанностей
reason-violence = насилие
reason-parent_illness = болезнь или смерть родителя
reason-other = другое
legal-status-with_status = со статусом
legal-status-without_status = без статуса
level-regional = региональный
level-municipal = муниципальный
level-institution = уровня учреждения
aid-none = помощь не требуется
aid-material_aid = материальная помощь через НКО-оператора
aid-services = услуги (психолог, юрист, сопровождение)
aid-material_and_services = материальная помощь и услуги
exit-birth_family = возврат в кровную семью
exit-guardianship = опека (попечительство)
exit-foster = приёмная семья
exit-adoption = усыновление
exit-coming_of_age = совершеннолетие
exit-other = другое
rights-full = не ограничены
rights-restricted = ограничены
rights-removed = родители лишены прав
event-CaseOpened = Дело открыто
event-ChildPlaced = Помещён в учреждение
event-ChildTransferred = Переведён в другое учреждение
event-LegalStatusChanged = Изменён правовой статус
event-ConsiliumReviewRecorded = Консилиум
event-ActionItemSet = Назначено мероприятие
event-ActionItemDone = Мероприятие выполнено
event-TakenUnderPersonalControl = Взято на личный контроль
event-ReleasedFromPersonalControl = Снято с личного контроля
event-FamilyVisited = Посещение семьи
event-AccompanimentStarted = Начато сопровождение семьи
event-AccompanimentEnded = Сопровождение завершено
event-ParentalRightsRestricted = Родительские права ограничены
event-ParentalRightsRemoved = Родители лишены прав
event-ParentalRightsRestored = Родительские права восстановлены
event-ChildLeftInstitution = Выбыл из учреждения
event-PlacementPrevented = Помещение предотвращено
event-CaseClosed = Дело закрыто
event-CaseReopened = Дело открыто снова
event-EntryVoided = Запись отменена
case-error-AlreadyOpened = Дело уже открыто.
case-error-NotOpened = Дело не найдено: сначала его нужно открыть.
case-error-Closed = Дело закрыто: чтобы внести новые сведения, сначала откройте его снова.
case-error-NotClosed = Дело не закрыто.
case-error-FutureDate = Дата { $date } ещё не наступила: вносятся сведения о том, что уже произошло.
case-error-BeforeBirth = Дата { $date } раньше рождения ребёнка.
case-error-BeforePlacement = Дата { $date } раньше помещения в учреждение ({ $since }).
case-error-AlreadyPlaced = Ребёнок уже находится в учреждении: сначала отметьте выбытие или перевод.
case-error-NotPlaced = Ребёнок сейчас не находится в учреждении.
case-error-SameInstitution = Перевод возможен только в другое учреждение.
case-error-SameLegalStatus = У ребёнка уже этот правовой статус.
case-error-NoReasons = Укажите хотя бы одну причину помещения.
case-error-NextReviewNotAfter = Дата следующего консилиума должна быть позже даты этого ({ $date }).
case-error-ReturnByBeforeReview = Срок возврата домой должен быть не раньше даты консилиума ({ $date }).
case-error-DueBeforeSet = Срок мероприятия не может быть раньше даты его назначения ({ $date }).
case-error-UnknownActionItem = Мероприятие не найдено в этом деле.
case-error-ActionItemAlreadyDone = Мероприятие уже отмечено выполненным.
case-error-DoneBeforeSet = Мероприятие не может быть выполнено раньше, чем назначено ({ $date }).
case-error-AlreadyUnderControl = Дело уже на личном контроле куратора.
case-error-NotUnderControl = Дело не на личном контроле куратора.
case-error-AccompanimentActive = Сопровождение семьи уже идёт: сначала завершите текущее.
case-error-NoAccompaniment = Сопровождение семьи сейчас не идёт.
case-error-RightsNotFull = Родительские права уже ограничены или лишены.
case-error-RightsAlreadyRemoved = Родители уже лишены родительских прав.
case-error-RightsAlreadyFull = Родительские права не ограничены и не лишены — восстанавливать нечего.
case-error-PreventedWhilePlaced = Предотвращение помещения отмечается, пока ребёнок не в учреждении.
case-error-CloseWhilePlaced = Нельзя закрыть дело, пока ребёнок в учреждении: сначала отметьте выбытие.
case-error-UnknownEntry = Запись № { $sequence } не найдена в деле.
case-error-EntryNotVoidable = Запись № { $sequence } нельзя отменить: это открытие дела, отмена или она уже отменена.
case-error-VoidWouldBreak = Отмена записи № { $sequence } оставила бы дело противоречивым: { $problem }
organisation-family_service = служба «Дети в семье»

# «Вызов»: directory and tasks
directory-title = Справочник региона «Вызов»
directory-intro = Учреждения, службы «Дети в семье», консилиумы и НКО-оператор региона. Его ведёт куратор; формы дел выбирают организации отсюда.
directory-details = Сведения
directory-details-hint = Для учреждения — тип и число мест; для службы — число специалистов; для консилиума — уровень.
directory-now = Сейчас (детей в учреждении / семей на сопровождении)
directory-change = Изменить
directory-capacity = мест
directory-specialists = специалистов
directory-add = Добавить организацию
directory-added = Организация добавлена в справочник.
directory-changed = Сведения об организации изменены.
directory-fill-in = Укажите вид, название и регион организации.
directory-bad-number = Число мест или специалистов — целое число от 0 до 100 000.
directory-exists = Такая организация в этом регионе уже есть.
directory-not-found = Организация не найдена.
directory-detail-not-for-kind = Эти сведения не относятся к организации такого вида.
directory-same-details = Сведения не изменились.
organisation-consilium = межведомственный консилиум
nav-directory = Справочник региона
nav-tasks = Мероприятия
tasks-title = Мероприятия: просроченные и ближайшие
tasks-intro = Невыполненные мероприятия по делам на ваших территориях со сроком до 60 дней вперёд.
tasks-overdue-count = { $count ->
    [one] { $count } просроченное мероприятие
    [few] { $count } просроченных мероприятия
   *[many] { $count } просроченных мероприятий
}
tasks-all = Все ближайшие
tasks-overdue-only = Только просроченные
register-sheet = Реестр
download-xlsx = Скачать таблицу (XLSX)

# «Вызов»: consilium sittings
nav-sessions = Консилиумы
sessions-title = Заседания консилиумов
sessions-none = Заседаний ещё не было.
session-new = Новое заседание
session-hold = Записать заседание
session-date = Дата заседания
session-chair = Председатель
session-members = Члены консилиума
session-members-hint = По одному в строке: должность и фамилия.
session-agenda = Повестка
session-agenda-hint = Отмечены дела, которым пора на консилиум (больше 6 месяцев без рассмотрения).
session-reviewed = Рассмотрено дел
session-protocol = Протокол заседания межведомственного консилиума
session-decisions = Рассмотренные дела и решения
session-decided = Решение
session-record-review = Записать решение по делу
session-already-reviewed = Решение по этому делу на заседании уже записано.
session-fill-in = Укажите дату, регион, уровень и председателя.
session-print-hint = Страницу можно распечатать: формы при печати не выводятся.
aid-not_recorded = решение не указано (импорт)

# «Вызов»: import
nav-import = Загрузка реестра
import-title = Загрузка реестра из таблицы
import-intro = Заполните шаблон (по строке на ребёнка в учреждении) или приведите к нему свою таблицу и загрузите её. Сначала вы увидите проверку каждой строки и возможные дубли; в базу ничего не попадёт, пока вы не подтвердите загрузку.
import-template-xlsx = Шаблон (XLSX)
import-template-csv = Шаблон (CSV)
import-file = Файл таблицы
import-file-hint = XLSX, XLS, ODS или CSV до 2 МБ (около 10 000 строк); первая строка — заголовки столбцов, как в шаблоне. Учреждения должны быть в справочнике региона.
import-check = Проверить
import-accepted = Допустимые значения
import-preview = Проверка загрузки
import-valid-count = { $count ->
    [one] { $count } строка без ошибок
    [few] { $count } строки без ошибок
   *[many] { $count } строк без ошибок
}
import-invalid-count = { $count ->
    [one] { $count } строка с ошибками
    [few] { $count } строки с ошибками
   *[many] { $count } строк с ошибками
}
import-duplicate-count = { $count ->
    [one] { $count } возможный дубль
    [few] { $count } возможных дубля
   *[many] { $count } возможных дублей
}
import-only-valid = Загрузить только строки без ошибок (строки с ошибками будут пропущены)
import-skip-duplicates = Не загружать возможные дубли (та же фамилия, имя и дата рождения уже есть в регионе или выше в файле)
import-run = Загрузить
import-line = Строка
import-result = Проверка
import-row-ok = без ошибок
import-duplicate = возможный дубль
import-already-done = Эта загрузка уже выполнена.
import-has-errors = В таблице есть строки с ошибками: исправьте их и загрузите файл снова, или явно выберите загрузку только строк без ошибок. Ничего не записано.
import-done = Загрузка выполнена.
import-unknown-value = значение не из списка допустимых (см. страницу загрузки)
import-unknown-municipality = нет такого муниципального образования в регионе
import-unknown-institution = нет такого учреждения в справочнике региона — добавьте его или исправьте название
import-future-date = дата ещё не наступила
import-before-birth = дата раньше рождения
import-not-utf8 = CSV-файл не в кодировке UTF-8: сохраните его из Excel как «CSV UTF-8».
import-bad-file = Файл не удалось прочитать как таблицу XLSX, XLS, ODS или CSV.
import-empty = В файле нет строк с данными.
import-too-many = В файле больше 10 000 строк: разделите его на части.
import-too-large = Файл больше 2 МБ: разделите его на части.
import-choose-region = Выберите регион.
import-choose-file = Выберите файл.

# Families
nav-families = Семьи
families-title = Семьи
families-none = Семей пока нет.
family-title = Карточка семьи
family-new = Новая семья
family-name = Как называть семью
family-name-example = например: семья Ивановых
family-status = Статус семьи
family-large = Многодетная семья
family-mark-large = Отметить как многодетную
family-not-large = Снять отметку «многодетная»
family-no-children = Дети к семье ещё не привязаны.
family-link = Привязать ребёнка
family-unlink = Отвязать
family-change = Изменить сведения
family-fill-in = Заполните поля формы: название, регион, статус; для изменения статуса и отвязки — основание.
family-exists = Семья уже зарегистрирована.
family-not-found = Семья не найдена.
family-already-linked = Ребёнок уже в этой семье.
family-not-linked = Ребёнок не числится в этой семье.
family-status-tzhs = трудная жизненная ситуация (ТЖС)
family-status-sop = социально опасное положение (СОП)
family-status-none = без статуса
