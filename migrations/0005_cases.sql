-- «Вызов» (issue 4): the register of children's cases.

-- Case numbers «16-2026-00012»: the next number per region and year. State, not history:
-- the number itself is in the CaseOpened event. (Demo cases use their own series «Д0001».)
CREATE TABLE access.case_number (
    region_code text    NOT NULL,
    year        integer NOT NULL,
    last        integer NOT NULL,
    PRIMARY KEY (region_code, year)
);

-- Read model of the `cases` projection: one row per case, as of its last applied event.
CREATE SCHEMA cases;

CREATE TABLE cases.child_case (
    id               uuid    PRIMARY KEY,
    case_number      text    NOT NULL,
    child            uuid    NOT NULL,
    region_code      text    NOT NULL,
    municipality     uuid,
    family           uuid,
    opened_on        date    NOT NULL,
    closed           boolean NOT NULL DEFAULT false,
    institution      uuid,
    institution_type text,
    placed_on        date,
    legal_status     text,
    under_control    boolean NOT NULL DEFAULT false,
    last_review      date,
    next_review      date,
    accompaniment    uuid,
    parental_rights  text    NOT NULL DEFAULT 'full',
    last_exit        text,
    last_exit_on     date,
    prevented        boolean NOT NULL DEFAULT false,
    entries          integer NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX child_case_register ON cases.child_case (region_code, placed_on);
CREATE INDEX child_case_number ON cases.child_case (case_number);

CREATE TABLE cases.action_item (
    case_id  uuid NOT NULL,
    item     uuid NOT NULL,
    action   text NOT NULL,
    executor text NOT NULL,
    set_on   date NOT NULL,
    due      date NOT NULL,
    done_on  date,
    review   uuid,
    PRIMARY KEY (case_id, item)
);
CREATE INDEX action_item_due ON cases.action_item (due) WHERE done_on IS NULL;

CREATE TABLE cases.review (
    case_id                  uuid NOT NULL,
    review                   uuid NOT NULL,
    held_on                  date NOT NULL,
    level                    text NOT NULL,
    placement_justified      boolean,
    stay_justified           boolean,
    parental_claim_justified boolean,
    aid                      text NOT NULL,
    return_possible          boolean,
    return_by                date,
    next_review              date,
    PRIMARY KEY (case_id, review)
);

INSERT INTO projection_checkpoint (name) VALUES ('cases');

-- The practice's rule: a child in an institution for more than six months must have been
-- before a consilium within the last six months. One definition for every query.
CREATE FUNCTION cases.needs_review(placed_on date, last_review date, today date)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT placed_on IS NOT NULL
       AND placed_on < (today - interval '6 months')::date
       AND (last_review IS NULL OR last_review < (today - interval '6 months')::date)
$$;
