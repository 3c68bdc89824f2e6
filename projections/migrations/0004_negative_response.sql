-- A command the ECU refused: its UDS negative response, {"code": "0x31", "name": "requestOutOfRange"}.
ALTER TABLE commands ADD COLUMN negative_response JSONB;
