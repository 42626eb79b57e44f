-- Read model of the `reference` projection. Each projection owns one schema named after it;
-- `opora projections rebuild NAME` builds a copy of the schema's tables (CREATE TABLE ... LIKE)
-- from the log and swaps it in. Read models hold no foreign keys: they are derived data.

CREATE SCHEMA reference;

CREATE TABLE reference.region (
    code             text PRIMARY KEY,
    name             text NOT NULL,
    kind             text NOT NULL,
    federal_district text NOT NULL,
    time_zone        text NOT NULL
);

CREATE TABLE reference.municipality (
    id          uuid PRIMARY KEY,
    region_code text NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL
);

CREATE INDEX municipality_by_region ON reference.municipality (region_code, name);

INSERT INTO projection_checkpoint (name) VALUES ('reference');
