-- Events a projection could not apply (their data, not the database, was the problem): set
-- aside so the projection goes on, shown by `sovd projections status`, retried by
-- `sovd projections retry` after a fix. The event itself stays in the log; `event` is a
-- printable rendering of it for the operator.
CREATE TABLE projection_quarantine (
    projection TEXT NOT NULL,
    stream TEXT NOT NULL,
    stream_sequence BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    event TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    first_failed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_failed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, stream, stream_sequence)
);
