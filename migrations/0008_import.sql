-- Imports of an existing register (issue 4): the uploaded rows, sealed with the master key
-- (they hold personal data), kept between the preview and the confirmation.
CREATE TABLE access.import_batch (
    id          uuid        PRIMARY KEY,
    login       text        NOT NULL,
    region_code text        NOT NULL,
    sealed      bytea       NOT NULL,
    rows        integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz
);
