-- Who did what: one row per event a person or the system caused. Built from the streams like
-- every read model; (stream, stream_sequence) makes re-applying an event a no-op.
CREATE TABLE audit_log (
    id              BIGSERIAL   PRIMARY KEY,
    occurred_at     TIMESTAMPTZ NOT NULL,
    actor           TEXT        NOT NULL,
    actor_user_id   UUID,
    action          TEXT        NOT NULL,
    target          TEXT        NOT NULL,
    vin             TEXT,
    details         JSONB       NOT NULL DEFAULT '{}',
    correlation_id  TEXT        NOT NULL,
    stream          TEXT        NOT NULL,
    stream_sequence BIGINT      NOT NULL,
    UNIQUE (stream, stream_sequence)
);
CREATE INDEX audit_by_time ON audit_log (occurred_at DESC, id DESC);
CREATE INDEX audit_by_actor ON audit_log (actor_user_id, occurred_at DESC);
CREATE INDEX audit_by_action ON audit_log (action, occurred_at DESC);
CREATE INDEX audit_by_vin ON audit_log (vin, occurred_at DESC);
