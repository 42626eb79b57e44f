-- The region's directory (issue 4): what the curator records about each organisation.
ALTER TABLE reference.organisation
    ADD COLUMN institution_type text,
    ADD COLUMN capacity         integer,
    ADD COLUMN specialists      integer,
    ADD COLUMN level            text;
