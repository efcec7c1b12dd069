-- Lanyard CA schema, version 3: a card may carry a second, document-signing
-- certificate (the role of a PIV card's slot 9C) issued together with its
-- authentication certificate. `purpose` says which one a row is; rows from
-- before this version are authentication certificates. Additive only; the
-- migration of the same number for the other database makes the same schema.
ALTER TABLE certificates ADD COLUMN purpose TEXT NOT NULL DEFAULT 'authentication';
