-- The circuit breaker state a connector last reported for the vehicle.
ALTER TABLE vehicles ADD COLUMN circuit_state TEXT NOT NULL DEFAULT 'closed';
