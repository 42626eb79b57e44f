-- «Заступник»: emergency signals (issue 7). Read model of the `signals` projection.
CREATE SCHEMA signals;

-- One row per signal: where and when, and the moment of each step of the response.
-- Only pseudonymous ids of the app (child, adults) are kept: Opora never sees a name.
CREATE TABLE signals.signal (
    id                    uuid        PRIMARY KEY,
    client                uuid        NOT NULL,
    child                 text        NOT NULL,
    region_code           text        NOT NULL,
    city                  text,
    kind                  text        NOT NULL,
    drill                 boolean     NOT NULL,
    pressed_at            timestamptz NOT NULL,
    received_at           timestamptz NOT NULL,
    -- The hour of the press on the region's clock (0–23), for the KPIs by hour of day.
    local_hour            smallint    NOT NULL,
    latitude              float8,
    longitude             float8,
    accuracy_m            float8,
    located_at            timestamptz,
    recipients            integer     NOT NULL DEFAULT 0,
    delivered             integer     NOT NULL DEFAULT 0,
    failed                integer     NOT NULL DEFAULT 0,
    first_delivered_at    timestamptz,
    adult_acknowledged_at timestamptz,
    acknowledged_at       timestamptz,
    acknowledged_by       text,
    escalated_at          timestamptz,
    -- [{"kind", "dispatched_at", "en_route_at", "on_scene_at", "note"}] in dispatch order.
    responders            jsonb       NOT NULL DEFAULT '[]',
    first_dispatched_at   timestamptz,
    first_en_route_at     timestamptz,
    first_on_scene_at     timestamptz,
    resolved_at           timestamptz,
    outcome               text,
    resolution_note       text,
    cases                 uuid[]      NOT NULL DEFAULT '{}',
    entries               integer     NOT NULL
);
CREATE INDEX signal_open ON signals.signal (region_code, pressed_at) WHERE resolved_at IS NULL;
CREATE INDEX signal_by_region_time ON signals.signal (region_code, pressed_at);
CREATE INDEX signal_by_case ON signals.signal USING gin (cases);

-- The outbox: one row per trusted adult and channel to notify, made from the
-- NotificationRequested event (appended with the raise, in its transaction). The delivery
-- worker leases due rows, delivers, and records the receipt as an event.
CREATE TABLE signals.notification (
    -- The receiver's idempotency key: the same for every attempt.
    id              uuid        PRIMARY KEY,
    signal          uuid        NOT NULL,
    adult           text        NOT NULL,
    channel         text        NOT NULL,
    requested_at    timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    delivered_at    timestamptz,
    failed_at       timestamptz,
    last_error      text
);
CREATE INDEX notification_due ON signals.notification (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX notification_by_signal ON signals.notification (signal);

-- Children's registrations as the app sent them (pseudonymous).
CREATE TABLE signals.circle (
    id          uuid PRIMARY KEY,
    client      uuid NOT NULL,
    child       text NOT NULL,
    region_code text NOT NULL,
    city        text,
    adults      jsonb NOT NULL
);

-- Ingestion clients: the SHA-256 of each key, never the key.
CREATE TABLE signals.client (
    id              uuid        PRIMARY KEY,
    name            text        NOT NULL,
    key_hash        text        NOT NULL,
    old_key_hash    text,
    old_valid_until timestamptz,
    rate_per_second integer     NOT NULL,
    revoked         boolean     NOT NULL DEFAULT false,
    registered_at   timestamptz NOT NULL
);
CREATE UNIQUE INDEX client_key ON signals.client (key_hash);
CREATE INDEX client_old_key ON signals.client (old_key_hash);

INSERT INTO projection_checkpoint (name) VALUES ('signals');
