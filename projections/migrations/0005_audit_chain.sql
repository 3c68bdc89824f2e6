-- Tamper evidence: each audit row carries the hash of the row before it and its own hash over
-- that and its content, so changing, deleting or reordering a row breaks the chain
-- (`sovd audit verify`). Insert and verification use the same canonical text.
CREATE FUNCTION audit_row_text(occurred_at TIMESTAMPTZ, actor TEXT, actor_user_id UUID, action TEXT, target TEXT,
                               vin TEXT, details JSONB, correlation_id TEXT, stream TEXT, stream_sequence BIGINT)
RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_array((extract(epoch FROM occurred_at) * 1000000)::bigint, actor, actor_user_id, action,
                             target, vin, details, correlation_id, stream, stream_sequence)::text
$$;

CREATE FUNCTION audit_row_hash(prev_hash TEXT, row_text TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(prev_hash || row_text, 'UTF8')), 'hex')
$$;

ALTER TABLE audit_log ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '', ADD COLUMN row_hash TEXT NOT NULL DEFAULT '';

-- Chain the rows written before this migration, in the order they were written.
DO $$
DECLARE
    r RECORD;
    prev TEXT := '';
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        UPDATE audit_log SET prev_hash = prev,
               row_hash = audit_row_hash(prev, audit_row_text(r.occurred_at, r.actor, r.actor_user_id, r.action,
                                                               r.target, r.vin, r.details, r.correlation_id,
                                                               r.stream, r.stream_sequence))
        WHERE id = r.id RETURNING row_hash INTO prev;
    END LOOP;
END $$;
