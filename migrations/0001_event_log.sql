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
    -- Metadata: the keys Opora knows live in the typed columns below; `metadata` keeps any
    -- other key (usually none). Readers see the union (store/src/log.rs), and the hash
    -- covers it (store/src/chain.rs).
    metadata       jsonb       NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    actor          text,
    command_id     uuid,
    correlation_id uuid,
    effective_date date,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    -- True on the first event a command appended (false on the others of a multi-event
    -- command): a command id opens at most one append (index below).
    opens_command  boolean     NOT NULL DEFAULT true,
    prev_hash      bytea       NOT NULL,
    hash           bytea       NOT NULL,
    CONSTRAINT event_stream_sequence PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX event_global_order ON event (tx_id, position);
-- Idempotent commands: executing a command id a second time cannot append again.
CREATE UNIQUE INDEX event_command_once ON event (command_id) WHERE opens_command;
-- Deliberately no other index: each one costs every append. "As known on a date" queries
-- will read projections, not this table.

-- prev_hash and hash are computed before the insert (store/src/chain.rs): prev_hash is the
-- hash of the previous event of the same stream (32 zero bytes for the first), hash =
-- sha256(prev_hash || fields). Not a plpgsql trigger: that halved append throughput.
-- `opora verify` recomputes every hash.

-- Immutability: the log and the refusals are never updated, deleted or truncated.
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

-- Refused commands, with the domain error, so that re-executing the same command id gives
-- the same refusal. (Accepted commands need no row of their own: their events carry the
-- command id, unique per command through `event_command_once`.)
CREATE TABLE command_refusal (
    command_id     uuid        PRIMARY KEY,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    error          jsonb       NOT NULL,
    actor          text,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER command_refusal_append_only BEFORE UPDATE OR DELETE ON command_refusal
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER command_refusal_no_truncate BEFORE TRUNCATE ON command_refusal
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
