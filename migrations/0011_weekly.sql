-- «Заступник»: weekly connection reports (issue 6).

-- Read model of the `weekly` projection.
CREATE SCHEMA weekly;

-- A region's schedule; a region with no row keeps the default (Friday 23:59, locking
-- seven days later) in its own time zone.
CREATE TABLE weekly.schedule (
    region_code     text     PRIMARY KEY,
    deadline_day    smallint NOT NULL,
    deadline_minute smallint NOT NULL,
    lock_days       smallint NOT NULL
);

-- Each municipality's education department as the region keeps it: pupils (where known)
-- and how to reach it.
CREATE TABLE weekly.department (
    municipality uuid    PRIMARY KEY,
    region_code  text    NOT NULL,
    pupils       integer,
    contact      text,
    email        text
);

-- One row per municipality and week that has a stream: its figures in force (NULL while
-- only an unlock has been recorded), the first filing's timeliness and the review.
CREATE TABLE weekly.report (
    id                       uuid        PRIMARY KEY,
    municipality             uuid        NOT NULL,
    region_code              text        NOT NULL,
    friday                   date        NOT NULL,
    children                 integer,
    adults                   integer,
    schools                  integer,
    schools_with_responsible integer,
    per_school               jsonb,
    comment                  text,
    timeliness               text,
    first_filed_at           timestamptz,
    filed_at                 timestamptz,
    filed_by                 text,
    filings                  integer     NOT NULL DEFAULT 0,
    review                   text        NOT NULL DEFAULT 'waiting',
    review_comment           text,
    reviewed_by              text,
    unlocked_until           timestamptz,
    entries                  integer     NOT NULL,
    UNIQUE (municipality, friday)
);
CREATE INDEX report_by_region_week ON weekly.report (region_code, friday);
-- The stock figure of a municipality is its latest report at or before a Friday.
CREATE INDEX report_latest ON weekly.report (municipality, friday DESC) WHERE children IS NOT NULL;

INSERT INTO projection_checkpoint (name) VALUES ('weekly');
