-- Families (issue 4), part of the `persons` projection: status, large family, children.
CREATE TABLE persons.family (
    id            uuid        PRIMARY KEY,
    region_code   text        NOT NULL,
    municipality  uuid,
    status        text        NOT NULL,
    large         boolean     NOT NULL,
    sealed        jsonb,
    registered_at timestamptz NOT NULL
);
CREATE INDEX family_by_region ON persons.family (region_code);

CREATE TABLE persons.family_child (
    family uuid NOT NULL,
    child  uuid NOT NULL,
    PRIMARY KEY (family, child)
);
CREATE INDEX family_child_by_child ON persons.family_child (child);
