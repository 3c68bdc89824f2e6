-- Read models built from the event streams. Postgres is never the source of truth for these
-- tables: every row can be rebuilt by replaying the streams from sequence 1.

-- Last stream sequence applied, per projection and stream, written in the same
-- transaction as the rows it produced.
CREATE TABLE projection_checkpoints (
    projection    TEXT        NOT NULL,
    stream        TEXT        NOT NULL,
    last_sequence BIGINT      NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, stream)
);

-- One row per command. Request fields come from SOVD_COMMANDS, status from SOVD_RESPONSES;
-- the two streams are applied independently, so a status may arrive before its request and
-- every column the request fills is nullable. status_rank keeps status from moving back.
CREATE TABLE commands (
    command_id     UUID        PRIMARY KEY,
    user_id        UUID,
    vehicle_id     UUID,
    vin            TEXT,
    command_name   TEXT,
    command_params JSONB,
    correlation_id TEXT,
    status         TEXT        NOT NULL,
    status_rank    SMALLINT    NOT NULL,
    error_message  TEXT,
    attempts       INT         NOT NULL DEFAULT 0,
    submitted_at   TIMESTAMPTZ,
    completed_at   TIMESTAMPTZ
);
CREATE INDEX commands_by_submitted ON commands (submitted_at DESC, command_id DESC);
CREATE INDEX commands_by_user ON commands (user_id, submitted_at DESC);
CREATE INDEX commands_by_vehicle ON commands (vehicle_id, submitted_at DESC);
CREATE INDEX commands_by_status ON commands (status, submitted_at DESC);

CREATE TABLE responses (
    response_id      UUID        PRIMARY KEY,
    command_id       UUID        NOT NULL,
    sequence_number  INT         NOT NULL,
    response_payload JSONB       NOT NULL,
    is_final         BOOLEAN     NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (command_id, sequence_number)
);

CREATE TABLE vehicles (
    vehicle_id        UUID        PRIMARY KEY,
    vin               TEXT        NOT NULL UNIQUE,
    make              TEXT        NOT NULL,
    model             TEXT        NOT NULL,
    year              INT         NOT NULL,
    metadata          JSONB       NOT NULL DEFAULT '{}',
    connection_status TEXT        NOT NULL DEFAULT 'disconnected',
    last_seen_at      TIMESTAMPTZ,
    registered_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    user_id       UUID        PRIMARY KEY,
    username      TEXT        NOT NULL UNIQUE,
    role          TEXT        NOT NULL,
    email         TEXT,
    password_hash TEXT        NOT NULL,
    active        BOOLEAN     NOT NULL DEFAULT true,
    created_at    TIMESTAMPTZ NOT NULL
);
