-- The audit chain as a running aggregate, so a whole batch of rows is hashed and linked in
-- one INSERT: audit_chain(head, row_text) OVER (ORDER BY n) is each row's hash, starting
-- from `head`, the hash of the last row already in the table.
CREATE FUNCTION audit_chain_step(state TEXT, head TEXT, row_text TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT audit_row_hash(COALESCE(state, head), row_text)
$$;

CREATE AGGREGATE audit_chain(TEXT, TEXT) (SFUNC = audit_chain_step, STYPE = TEXT);
