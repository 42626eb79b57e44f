-- Read model of the `stream_head` projection: the last event of every stream as the runner
-- saw it. `opora verify` compares it with the log, which finds a deleted or rewritten last
-- event (a per-stream chain alone cannot). It is never rebuilt from the log it guards.

CREATE SCHEMA stream_head;

CREATE TABLE stream_head.stream (
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_sequence  bigint NOT NULL,
    last_hash      bytea  NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

INSERT INTO projection_checkpoint (name) VALUES ('stream_head');
