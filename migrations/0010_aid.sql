-- «Вызов»: NGO material aid (issue 5).

-- Families an NGO operator works with (part of the `persons` projection).
CREATE TABLE persons.family_ngo (
    family uuid NOT NULL,
    ngo    uuid NOT NULL,
    PRIMARY KEY (family, ngo)
);
CREATE INDEX family_ngo_by_ngo ON persons.family_ngo (ngo);

-- Read model of the `aid` projection: one row per request and one per delivery, as of the
-- last applied event. Amounts are whole kopecks (bigint), never a float.
CREATE SCHEMA aid;

CREATE TABLE aid.request (
    id              uuid        PRIMARY KEY,
    family          uuid        NOT NULL,
    region_code     text        NOT NULL,
    municipality    uuid,
    ngo             uuid        NOT NULL,
    requester       text        NOT NULL,
    requested_by    text,
    review_case     uuid,
    review          uuid,
    purpose         text        NOT NULL,
    form            text        NOT NULL,
    form_other      text,
    description     text,
    amount          bigint,
    children        integer     NOT NULL,
    requested_on    date        NOT NULL,
    status          text        NOT NULL,
    decided_on      date,
    approved_amount bigint,
    decision_note   text,
    refusal_reason  text,
    entries         integer     NOT NULL,
    recorded_at     timestamptz NOT NULL
);
CREATE INDEX request_by_family ON aid.request (family);
CREATE INDEX request_by_status ON aid.request (region_code, status);
CREATE INDEX request_by_review ON aid.request (review) WHERE review IS NOT NULL;

CREATE TABLE aid.delivery (
    id           uuid    PRIMARY KEY,
    request      uuid    NOT NULL,
    family       uuid    NOT NULL,
    region_code  text    NOT NULL,
    municipality uuid,
    ngo          uuid    NOT NULL,
    requester    text    NOT NULL,
    purpose      text    NOT NULL,
    children     integer NOT NULL,
    delivered_on date    NOT NULL,
    amount       bigint  NOT NULL CHECK (amount > 0),
    form         text    NOT NULL,
    form_other   text,
    supplier     text,
    receipt      text,
    attachment   jsonb,
    withdrawn    boolean NOT NULL DEFAULT false,
    -- The entries of the request's stream (sequence numbers) that make these figures: the
    -- delivery and each correction. The report's drill-down shows them.
    entries      integer[] NOT NULL
);
CREATE INDEX delivery_report ON aid.delivery (region_code, delivered_on) WHERE NOT withdrawn;
CREATE INDEX delivery_by_request ON aid.delivery (request);
CREATE INDEX delivery_by_family ON aid.delivery (family);

INSERT INTO projection_checkpoint (name) VALUES ('aid');

-- Files kept with deliveries (scanned receipts): primary data, not a projection. The bytes
-- are sealed with the master key; the delivery event keeps name, type, size and SHA-256.
CREATE TABLE access.aid_attachment (
    id           uuid        PRIMARY KEY,
    sealed       bytea       NOT NULL,
    name         text        NOT NULL,
    content_type text        NOT NULL,
    size         bigint      NOT NULL,
    sha256       text        NOT NULL,
    uploaded_by  text        NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now()
);
