-- Consilium sittings (issue 4), part of the `cases` projection.
ALTER TABLE cases.review ADD COLUMN session uuid;
CREATE INDEX review_by_session ON cases.review (session) WHERE session IS NOT NULL;

CREATE TABLE cases.session (
    id          uuid    PRIMARY KEY,
    region_code text    NOT NULL,
    held_on     date    NOT NULL,
    level       text    NOT NULL,
    consilium   uuid,
    chair       text    NOT NULL,
    members     jsonb   NOT NULL,
    agenda      uuid[]  NOT NULL
);
CREATE INDEX session_by_region ON cases.session (region_code, held_on);
