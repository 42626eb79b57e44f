-- «Вызов» dashboards, region figures as running totals (issue 8): a page for any date reads
-- one row per region and date instead of every month and day before it.
--
--   region_day   the counters of every fact effective on `day` or before, as known now: a
--                row for every day from the region's first fact to `horizon.day` (the
--                latest effective day seen; a later date reads that row).
--   region_late  X(em, rm): the late facts (recorded after the day they concern) effective
--                in a month before `em` and recorded in a month after `rm`. "As known on
--                K" is "as known now" less the late facts effective on D or before and
--                recorded after K: this table's row (D's month, K's month), and the days of
--                D's and K's months from region_known (grains 3 to 5). A row for every
--                `em` from the month after the region's first late fact to the month after
--                `horizon.rec_month`, and every `rm` from July 2024 (the baseline: nothing is
--                asked as known earlier) to the month before `horizon.rec_month`.
--
-- region_known_month (grain 2 cumulative over recording months) is replaced by region_late;
-- region_now keeps grains 0 and 1 for the record but is no longer read.
--
-- The projection is rebuilt from the log: the checkpoint goes back to the start.

DROP TABLE vyzov.region_known_month;
TRUNCATE vyzov.region_now, vyzov.municipality_fact, vyzov.aid_now,
         vyzov.aid_known_month, vyzov.aid_known, vyzov.track, vyzov.horizon, vyzov.written;
UPDATE projection_checkpoint SET tx_id = 0, position = 0, applied = 0, updated_at = now()
 WHERE name = 'vyzov';

CREATE TABLE vyzov.region_day (
    day         date NOT NULL,
    region_code text NOT NULL,
    LIKE vyzov.counters INCLUDING DEFAULTS,
    PRIMARY KEY (day, region_code)
);
CREATE TABLE vyzov.region_late (
    rm          date NOT NULL,
    em          date NOT NULL,
    region_code text NOT NULL,
    LIKE vyzov.counters INCLUDING DEFAULTS,
    PRIMARY KEY (rm, em, region_code)
);
-- Live writes rewrite the days from a fact's to the horizon: room for HOT updates.
ALTER TABLE vyzov.region_day SET (fillfactor = 80);
ALTER TABLE vyzov.region_late SET (fillfactor = 80);

-- region_known (grains 3 to 5) in recording order: a page as known on K reads the days of
-- K's month after K (grains 3 and 5) and, for D's month, the later recording months (grain
-- 4); in this key's order they lie together. A rebuild CLUSTERs it so; live writes append
-- today's recording dates at the end, which keeps the order. (Recreated rather than
-- altered: a rebuild gives the indexes of a live table other names.)
DROP TABLE vyzov.region_known;
CREATE TABLE vyzov.region_known (
    grain       smallint NOT NULL,
    region_code text     NOT NULL,
    eff         date     NOT NULL,
    rec         date     NOT NULL,
    LIKE vyzov.counters INCLUDING DEFAULTS,
    PRIMARY KEY (grain, rec, eff, region_code)
);
CREATE INDEX region_known_eff ON vyzov.region_known (grain, eff, rec);

ALTER TABLE vyzov.horizon ADD COLUMN day date;
ALTER TABLE vyzov.horizon ALTER COLUMN rec_month DROP NOT NULL;

-- municipality_month  the counters of every fact effective in `month` or before, per
--                     municipality, as known now: a row for every month from the
--                     municipality's first fact to the month of `horizon.day`. A date reads
--                     the row of the month before its own and adds its month's days from
--                     municipality_fact (which now holds grain 1 only).
CREATE TABLE vyzov.municipality_month (
    month        date NOT NULL,
    region_code  text NOT NULL,
    municipality uuid NOT NULL,
    LIKE vyzov.counters INCLUDING DEFAULTS,
    PRIMARY KEY (month, region_code, municipality)
);
ALTER TABLE vyzov.municipality_month SET (fillfactor = 80);
