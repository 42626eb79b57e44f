-- «Заступник» ministry dashboard (issue 8): the `zastupnik` projection. Small tables that a
-- page reads a few rows of, whatever the size of the log (see projections/src/zastupnik.rs).
CREATE SCHEMA zastupnik;

-- Weekly connection reports -------------------------------------------------------------

-- Each municipality's filing for a week as it stands now: the latest figures (a correction
-- overwrites them) and the first filing's timeliness (`on_time`, `late`, `imported`). The
-- figures are in force from that Friday until the municipality's next filed week.
CREATE TABLE zastupnik.filing (
    municipality uuid    NOT NULL,
    friday       date    NOT NULL,
    region_code  text    NOT NULL,
    children     integer NOT NULL,
    adults       integer NOT NULL,
    timeliness   text    NOT NULL,
    PRIMARY KEY (municipality, friday)
);

-- The same rows as known at the end of each recording day (Moscow time): one version per
-- (municipality, Friday, day on which it changed). "As known on K" reads the latest version
-- with known_on <= K.
CREATE TABLE zastupnik.filing_version (
    municipality uuid    NOT NULL,
    friday       date    NOT NULL,
    known_on     date    NOT NULL,
    region_code  text    NOT NULL,
    children     integer NOT NULL,
    adults       integer NOT NULL,
    timeliness   text    NOT NULL,
    PRIMARY KEY (municipality, friday, known_on)
);

-- A region's week (region_code '*': every region): the connected children and adults in
-- force on that Friday (each municipality's latest filing at or before it, summed) and who
-- filed for exactly that Friday. A row exists for every Friday someone filed for; a Friday
-- without a row has the stock of the latest row before it and nobody filed.
CREATE TABLE zastupnik.region_week (
    region_code text    NOT NULL,
    friday      date    NOT NULL,
    children    bigint  NOT NULL,
    adults      bigint  NOT NULL,
    filed       integer NOT NULL,
    on_time     integer NOT NULL,
    late        integer NOT NULL,
    PRIMARY KEY (region_code, friday)
);

-- region_week as known at the end of each recording day (Moscow time).
CREATE TABLE zastupnik.region_week_version (
    region_code text    NOT NULL,
    friday      date    NOT NULL,
    known_on    date    NOT NULL,
    children    bigint  NOT NULL,
    adults      bigint  NOT NULL,
    filed       integer NOT NULL,
    on_time     integer NOT NULL,
    late        integer NOT NULL,
    PRIMARY KEY (region_code, friday, known_on)
);

-- Emergency signals ---------------------------------------------------------------------

-- Running totals per region, kind ('*': every kind) and local date of the press: every
-- figure counts the signals pressed on or before `day` (drills only in `drills`). A period's
-- figure is the row at its last day minus the row before its first day (the latest row at
-- or before each). `by_kind`: signals per kind in the order of SignalKind::ALL. `help`: a
-- histogram of the time from the press to help on the spot, in fixed buckets
-- (zastupnik::HELP_BOUNDS, the last bucket open-ended).
CREATE TABLE zastupnik.signal_day (
    region_code text     NOT NULL,
    kind        text     NOT NULL,
    day         date     NOT NULL,
    signals     bigint   NOT NULL,
    drills      bigint   NOT NULL,
    resolved    bigint   NOT NULL,
    circle      bigint   NOT NULL,
    by_kind     bigint[] NOT NULL,
    help        integer[] NOT NULL,
    PRIMARY KEY (region_code, kind, day)
);

-- Signals not yet resolved (drills never): what a later step needs to find its row. A
-- resolved signal takes no more steps that count, so its row goes.
CREATE TABLE zastupnik.open_signal (
    id           uuid        PRIMARY KEY,
    region_code  text        NOT NULL,
    kind         text        NOT NULL,
    day          date        NOT NULL,
    pressed_at   timestamptz NOT NULL,
    help_seconds float8
);

INSERT INTO projection_checkpoint (name) VALUES ('zastupnik');
