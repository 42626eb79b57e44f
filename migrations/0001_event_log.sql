-- The event log: the one source of truth. Append-only, hash-chained, globally ordered.
--
-- Global order is (tx_id, position): tx_id is the id of the writing transaction
-- (pg_current_xact_id, as a bigint), position a sequence value. A reader only takes
-- events whose tx_id is below the xmin of its snapshot, i.e. written by transactions that
-- have all finished, so an event committed late by a slow transaction can never appear
-- behind a reader's checkpoint. See ARCHITECTURE.md, "The position rule".

CREATE TABLE event (
    position       bigint GENERATED ALWAYS AS IDENTITY,
    tx_id          bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL CHECK (sequence >= 1),
    event_type     text        NOT NULL,
    event_version  text        NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    -- Copied from metadata by the trigger below, so that they cannot disagree with it.
    actor          text,
    command_id     uuid,
    correlation_id uuid,
    effective_date date,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    prev_hash      bytea       NOT NULL,
    hash           bytea       NOT NULL,
    CONSTRAINT event_stream_sequence PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX event_global_order ON event (tx_id, position);
CREATE INDEX event_command ON event (command_id);
CREATE INDEX event_recorded_at ON event (recorded_at);

-- The bytes a hash covers. `opora verify` recomputes exactly this in Rust (store/src/verify.rs);
-- change one, change both, and add a migration that never alters rows already written.
CREATE FUNCTION event_hash_input(e event) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_to(concat_ws(E'\x1f',
        e.aggregate_type, e.aggregate_id, e.sequence::text, e.event_type, e.event_version,
        e.payload::text, e.metadata::text,
        to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')), 'UTF8')
$$;

-- Before each insert: derive the metadata columns, refuse a gap in the stream, and chain the
-- hash to the previous event of the same stream. Rows inserted earlier by the same statement
-- are visible here, so a multi-event append chains correctly.
CREATE FUNCTION event_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    previous bytea;
BEGIN
    NEW.actor := NEW.metadata->>'actor';
    NEW.command_id := (NEW.metadata->>'command_id')::uuid;
    NEW.correlation_id := (NEW.metadata->>'correlation_id')::uuid;
    NEW.effective_date := (NEW.metadata->>'effective_date')::date;
    IF NEW.sequence = 1 THEN
        previous := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    ELSE
        SELECT hash INTO previous FROM event
         WHERE aggregate_type = NEW.aggregate_type AND aggregate_id = NEW.aggregate_id
           AND sequence = NEW.sequence - 1;
        IF previous IS NULL THEN
            RAISE EXCEPTION 'event % of %/% does not follow the last event of its stream',
                NEW.sequence, NEW.aggregate_type, NEW.aggregate_id
                USING ERRCODE = 'OP001';
        END IF;
    END IF;
    NEW.prev_hash := previous;
    NEW.hash := sha256(previous || event_hash_input(NEW));
    RETURN NEW;
END
$$;

CREATE TRIGGER event_before_insert BEFORE INSERT ON event
    FOR EACH ROW EXECUTE FUNCTION event_before_insert();

-- Immutability: the log and the command journal are never updated, deleted or truncated.
-- Mistakes are fixed by correcting events. (A superuser can disable triggers; `opora verify`
-- then finds what was changed.)
CREATE FUNCTION refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'OP002',
              HINT = 'Record a correcting event instead of changing history.';
END
$$;

CREATE TRIGGER event_append_only BEFORE UPDATE OR DELETE ON event
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER event_no_truncate BEFORE TRUNCATE ON event
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- The command journal: one row per executed command id, written in the same statement as its
-- events (accepted) or alone (rejected, with the domain error). A second execution of the
-- same command id returns this first outcome and appends nothing.
CREATE TABLE command (
    command_id     uuid        PRIMARY KEY,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    outcome        text        NOT NULL CHECK (outcome IN ('accepted', 'rejected')),
    first_sequence bigint,
    last_sequence  bigint,
    error          jsonb,
    actor          text,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((outcome = 'accepted') = (error IS NULL))
);

CREATE TRIGGER command_append_only BEFORE UPDATE OR DELETE ON command
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER command_no_truncate BEFORE TRUNCATE ON command
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Projection checkpoints: the last (tx_id, position) each projection has applied. Written in
-- the same transaction as the projection's read-model rows.
CREATE TABLE projection_checkpoint (
    name        text        PRIMARY KEY,
    tx_id       bigint      NOT NULL DEFAULT 0,
    position    bigint      NOT NULL DEFAULT 0,
    applied     bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
