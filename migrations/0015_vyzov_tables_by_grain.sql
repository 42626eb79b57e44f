-- «Вызов» dashboards at national scale (issue 8): the six grains of 0013 in tables of their
-- own, so that a page reads a few thousand rows that lie together.
--
--   region_now, aid_now            grains 0 (eff month) and 1 (eff day), as known now: small
--                                  and hot; every page "as known now" reads only these.
--   region_known_month,            grain 2, made cumulative over recording months: the row
--   aid_known_month                (eff month M, rec month R) holds every fact effective in M
--                                  and recorded in R or before. A row exists for every month R
--                                  from the first fact of (region, M) up to `horizon`, the
--                                  latest recording month the projection has seen (new months
--                                  are carried forward from the previous one), so "whole
--                                  months recorded before K's month" is one row per (region, M)
--                                  instead of one per recording month.
--   region_known, aid_known        grains 3, 4 and 5 (the days of K's or D's month), as before.
--
-- The projection is rebuilt from the log: the checkpoint goes back to the start.

DROP TABLE vyzov.region_fact, vyzov.aid_fact;
TRUNCATE vyzov.municipality_fact, vyzov.track;
UPDATE projection_checkpoint SET tx_id = 0, position = 0, applied = 0, updated_at = now()
 WHERE name = 'vyzov';

-- The counters of `vyzov.METRICS`, in order: a template the tables below take their columns
-- from (it holds no rows).
CREATE TABLE vyzov.counters (
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
    specialists        bigint   NOT NULL DEFAULT 0
);
CREATE TABLE vyzov.aid_counters (
    kopecks     bigint NOT NULL DEFAULT 0,
    deliveries  bigint NOT NULL DEFAULT 0,
    requests    bigint NOT NULL DEFAULT 0,
    children    bigint NOT NULL DEFAULT 0
);

CREATE TABLE vyzov.region_now (
    grain       smallint NOT NULL,
    region_code text     NOT NULL,
    eff         date     NOT NULL,
    LIKE vyzov.counters INCLUDING DEFAULTS,
    PRIMARY KEY (grain, eff, region_code)
);
CREATE TABLE vyzov.region_known_month (
    rec         date NOT NULL,
    region_code text NOT NULL,
    eff         date NOT NULL,
    LIKE vyzov.counters INCLUDING DEFAULTS,
    PRIMARY KEY (rec, region_code, eff)
);
CREATE TABLE vyzov.region_known (
    grain       smallint NOT NULL,
    region_code text     NOT NULL,
    eff         date     NOT NULL,
    rec         date     NOT NULL,
    LIKE vyzov.counters INCLUDING DEFAULTS,
    PRIMARY KEY (grain, region_code, eff, rec)
);
CREATE INDEX region_known_eff ON vyzov.region_known (grain, eff, rec);
CREATE INDEX region_known_rec ON vyzov.region_known (grain, rec);

CREATE TABLE vyzov.aid_now (
    grain       smallint NOT NULL,
    region_code text     NOT NULL,
    form        text     NOT NULL,
    eff         date     NOT NULL,
    LIKE vyzov.aid_counters INCLUDING DEFAULTS,
    PRIMARY KEY (grain, eff, region_code, form)
);
CREATE TABLE vyzov.aid_known_month (
    rec         date NOT NULL,
    region_code text NOT NULL,
    form        text NOT NULL,
    eff         date NOT NULL,
    LIKE vyzov.aid_counters INCLUDING DEFAULTS,
    PRIMARY KEY (rec, region_code, form, eff)
);
CREATE TABLE vyzov.aid_known (
    grain       smallint NOT NULL,
    region_code text     NOT NULL,
    form        text     NOT NULL,
    eff         date     NOT NULL,
    rec         date     NOT NULL,
    LIKE vyzov.aid_counters INCLUDING DEFAULTS,
    PRIMARY KEY (grain, region_code, form, eff, rec)
);
CREATE INDEX aid_known_eff ON vyzov.aid_known (grain, eff, rec);
CREATE INDEX aid_known_rec ON vyzov.aid_known (grain, rec);

-- The latest recording month seen: the *_known_month tables have rows up to it.
CREATE TABLE vyzov.horizon (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    rec_month date NOT NULL
);

-- Tracks are MessagePack now (smaller, and nothing to parse on the server), rewritten in
-- place: room on each page lets the rewrite stay on it (a HOT update, no index entry).
ALTER TABLE vyzov.track ALTER COLUMN track TYPE bytea USING convert_to(track::text, 'UTF8');
ALTER TABLE vyzov.track SET (fillfactor = 70);
ALTER TABLE vyzov.region_now SET (fillfactor = 80);
ALTER TABLE vyzov.region_known_month SET (fillfactor = 80);
ALTER TABLE vyzov.municipality_fact SET (fillfactor = 80);

-- When the projection last wrote a figure: the dashboards keep figures they have read
-- until it changes (`vyzov::FigureCache`).
CREATE TABLE vyzov.written (
    one boolean     PRIMARY KEY DEFAULT true CHECK (one),
    at  timestamptz NOT NULL
);
