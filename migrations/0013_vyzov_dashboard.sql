-- «Вызов» dashboards (issue 8): the `vyzov` projection. Every figure is a counter whose sum
-- over the facts effective on or before a date is the figure on that date: stocks (children
-- in institutions, under personal control, …) as +1/−1 at the ends of their intervals, flows
-- (exits, reviews, aid, …) as +n on their day; a period's flow is the difference of two sums.
--
-- Each fact carries two dates: `eff`, when it happened, and `rec`, when Opora learned it
-- (the day its event was recorded). "As known on K" sums only facts with rec <= K. To answer
-- any (D, K) from a few hundred rows per region, facts are kept at six grains:
--   0 (eff month, rec ∞)   1 (eff day, rec ∞)       — as known now
--   2 (eff month, rec month) 3 (eff month, rec day) 4 (eff day, rec month) 5 (eff day, rec day)
-- so that sum(eff <= D, rec <= K) = whole months before D's month and K's month from grain 2,
-- plus the days of K's month from 3, the days of D's month from 4, both from 5 (see
-- projections/src/vyzov.rs). Months are their first day; ∞ is 9999-12-31.

CREATE SCHEMA vyzov;

CREATE TABLE vyzov.region_fact (
    grain              smallint NOT NULL,
    region_code        text     NOT NULL,
    eff                date     NOT NULL,
    rec                date     NOT NULL,
    inst               bigint   NOT NULL DEFAULT 0,
    control            bigint   NOT NULL DEFAULT 0,
    accompanied        bigint   NOT NULL DEFAULT 0,
    unreviewed         bigint   NOT NULL DEFAULT 0,
    overdue            bigint   NOT NULL DEFAULT 0,
    placed             bigint   NOT NULL DEFAULT 0,
    exit_birth_family  bigint   NOT NULL DEFAULT 0,
    exit_guardianship  bigint   NOT NULL DEFAULT 0,
    exit_foster        bigint   NOT NULL DEFAULT 0,
    exit_adoption      bigint   NOT NULL DEFAULT 0,
    exit_coming_of_age bigint   NOT NULL DEFAULT 0,
    exit_other         bigint   NOT NULL DEFAULT 0,
    prevented          bigint   NOT NULL DEFAULT 0,
    reviews            bigint   NOT NULL DEFAULT 0,
    late               bigint   NOT NULL DEFAULT 0,
    services           bigint   NOT NULL DEFAULT 0,
    specialists        bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (grain, region_code, eff, rec)
);
CREATE INDEX region_fact_eff ON vyzov.region_fact (grain, eff);
CREATE INDEX region_fact_rec ON vyzov.region_fact (grain, rec);

-- The same counters per municipality, as known now (grains 0 and 1 only: the bitemporal
-- grains are kept per region). Facts of a case without a municipality are not here.
CREATE TABLE vyzov.municipality_fact (
    grain              smallint NOT NULL,
    region_code        text     NOT NULL,
    municipality       uuid     NOT NULL,
    eff                date     NOT NULL,
    inst               bigint   NOT NULL DEFAULT 0,
    control            bigint   NOT NULL DEFAULT 0,
    accompanied        bigint   NOT NULL DEFAULT 0,
    unreviewed         bigint   NOT NULL DEFAULT 0,
    overdue            bigint   NOT NULL DEFAULT 0,
    placed             bigint   NOT NULL DEFAULT 0,
    exit_birth_family  bigint   NOT NULL DEFAULT 0,
    exit_guardianship  bigint   NOT NULL DEFAULT 0,
    exit_foster        bigint   NOT NULL DEFAULT 0,
    exit_adoption      bigint   NOT NULL DEFAULT 0,
    exit_coming_of_age bigint   NOT NULL DEFAULT 0,
    exit_other         bigint   NOT NULL DEFAULT 0,
    prevented          bigint   NOT NULL DEFAULT 0,
    reviews            bigint   NOT NULL DEFAULT 0,
    late               bigint   NOT NULL DEFAULT 0,
    services           bigint   NOT NULL DEFAULT 0,
    specialists        bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (grain, region_code, municipality, eff)
);
CREATE INDEX municipality_fact_eff ON vyzov.municipality_fact (grain, region_code, eff);

-- NGO aid per region and form of aid, at the six grains: kopecks delivered, deliveries,
-- requests first delivered (a family's request) and the children those requests are for.
CREATE TABLE vyzov.aid_fact (
    grain        smallint NOT NULL,
    region_code  text     NOT NULL,
    form         text     NOT NULL,
    eff          date     NOT NULL,
    rec          date     NOT NULL,
    kopecks      bigint   NOT NULL DEFAULT 0,
    deliveries   bigint   NOT NULL DEFAULT 0,
    requests     bigint   NOT NULL DEFAULT 0,
    children     bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (grain, region_code, form, eff, rec)
);
CREATE INDEX aid_fact_eff ON vyzov.aid_fact (grain, eff);
CREATE INDEX aid_fact_rec ON vyzov.aid_fact (grain, rec);

-- What each stream has contributed so far, folded compactly: a new event re-derives the
-- stream's facts and writes the difference, dated by the event's recording day. Voided
-- entries and corrections are thereby exact.
CREATE TABLE vyzov.track (
    kind   text  NOT NULL,
    id     text  NOT NULL,
    track  jsonb NOT NULL,
    PRIMARY KEY (kind, id)
);

INSERT INTO projection_checkpoint (name) VALUES ('vyzov');
