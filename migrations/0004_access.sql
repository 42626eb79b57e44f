-- People and access (issue 3). Two kinds of tables:
-- * state that is not history and must be changeable or destroyable: credentials, sessions,
--   personal-data keys (schema `access`, written directly, never rebuilt);
-- * read models of projections (`accounts`, `persons`, and `reference.organisation`).

CREATE SCHEMA access;

-- Secrets of a user. Not in the log: a rotated password hash must not stay forever.
-- `session_epoch` enters every session's auth hash: raising it signs the user out everywhere.
CREATE TABLE access.credential (
    user_id         uuid        PRIMARY KEY,
    password_hash   text        NOT NULL,
    totp_secret     bytea,                 -- sealed with the master key
    totp_last_step  bigint,                -- the last accepted time step: a code works once
    session_epoch   integer     NOT NULL DEFAULT 0,
    password_set_at timestamptz NOT NULL DEFAULT now()
);

-- Server-side sessions (tower-sessions-sqlx-store's layout; the store is pointed here).
CREATE TABLE access.session (
    id          text        PRIMARY KEY NOT NULL,
    data        bytea       NOT NULL,
    expiry_date timestamptz NOT NULL
);
CREATE INDEX session_expiry ON access.session (expiry_date);

-- Every login attempt, successful or not. Throttling counts recent failures per submitted
-- login and per address.
CREATE TABLE access.login_attempt (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    login      text        NOT NULL,
    address    text        NOT NULL,
    user_id    uuid,
    outcome    text        NOT NULL
);
CREATE INDEX login_attempt_by_login ON access.login_attempt (login, at);
CREATE INDEX login_attempt_by_address ON access.login_attempt (address, at);

-- Reads of personal data, exports, refused accesses and administrative acts on access:
-- who, when, which record, from where. Never the data itself. Append-only.
CREATE TABLE access.access_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    user_id     uuid,
    login       text,
    action      text        NOT NULL,
    record_type text,
    record_id   text,
    path        text        NOT NULL,
    address     text        NOT NULL
);
CREATE INDEX access_log_by_record ON access.access_log (record_type, record_id, at);
CREATE INDEX access_log_by_user ON access.access_log (login, at);
CREATE INDEX access_log_by_time ON access.access_log (at);

CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access.access_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access.access_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- One key per person, wrapped (encrypted) by the master key, which is never in the database.
-- Erasure sets `wrapped` to NULL: the only change allowed. The row stays as the record of it.
CREATE TABLE access.personal_key (
    subject_id   uuid        PRIMARY KEY,
    wrapped      bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    erased_at    timestamptz,
    erased_by    text,
    erase_reason text,
    CHECK ((wrapped IS NULL) = (erased_at IS NOT NULL))
);

CREATE FUNCTION access.personal_key_only_erase() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.wrapped IS NOT NULL AND NEW.wrapped IS NULL
       AND NEW.subject_id = OLD.subject_id AND NEW.created_at = OLD.created_at THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'personal_key: % is not allowed (a key can only be erased)', TG_OP
        USING ERRCODE = 'OP002';
END
$$;
CREATE TRIGGER personal_key_only_erase BEFORE UPDATE OR DELETE ON access.personal_key
    FOR EACH ROW EXECUTE FUNCTION access.personal_key_only_erase();

-- A value sealed with the master key at first start: a server given another master key
-- refuses to start instead of failing on every page.
CREATE TABLE access.master_key_check (
    id     boolean PRIMARY KEY DEFAULT true CHECK (id),
    sealed bytea   NOT NULL
);

-- Read model of the `accounts` projection.
CREATE SCHEMA accounts;

CREATE TABLE accounts.user_account (
    id            uuid        PRIMARY KEY,
    login         text        NOT NULL UNIQUE,
    display_name  text        NOT NULL,
    contact       text,
    grants        jsonb       NOT NULL,
    disabled      boolean     NOT NULL DEFAULT false,
    second_factor boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

INSERT INTO projection_checkpoint (name) VALUES ('accounts');

-- Read model of the `persons` projection. Personal fields stay sealed here too: a page
-- opens them for a permitted reader, and after erasure nobody can.
CREATE SCHEMA persons;

CREATE TABLE persons.person (
    id            uuid        PRIMARY KEY,
    kind          text        NOT NULL,
    region_code   text        NOT NULL,
    municipality  uuid,
    sex           text        NOT NULL,
    age_band      text        NOT NULL,
    sealed        jsonb,
    erased        boolean     NOT NULL DEFAULT false,
    registered_at timestamptz NOT NULL,
    registered_by text
);
CREATE INDEX person_by_region ON persons.person (region_code, registered_at);

INSERT INTO projection_checkpoint (name) VALUES ('persons');

-- Organisations roles are scoped to (NGOs, institutions): part of the reference projection.
CREATE TABLE reference.organisation (
    id           uuid PRIMARY KEY,
    kind         text NOT NULL,
    region_code  text NOT NULL,
    municipality uuid,
    name         text NOT NULL
);
CREATE INDEX organisation_by_region ON reference.organisation (region_code, kind, name);
