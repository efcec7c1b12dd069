-- Lanyard CA schema, version 4: derived enrolment from a physical smartcard.
-- One-time challenges (only their SHA-256 is kept; each is consumed once,
-- atomically, before or at its expiry) and, per derived card, the physical
-- card it was derived from. Additive only; the migration of the same number
-- for the other database makes the same schema.

CREATE TABLE derive_challenges (
    challenge_hash TEXT PRIMARY KEY NOT NULL,  -- lower-case hex SHA-256 of the 32 bytes
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    requested_from TEXT,
    used_at        INTEGER
);
CREATE INDEX derive_challenges_expiry ON derive_challenges(expires_at);

CREATE TABLE derived_cards (
    card_id           TEXT PRIMARY KEY NOT NULL REFERENCES cards(card_id),
    physical_issuer   TEXT NOT NULL,           -- the physical certificate's issuer DN
    physical_serial   TEXT NOT NULL,           -- lower-case hex
    physical_subject  TEXT NOT NULL,
    policy_oid        TEXT NOT NULL,           -- the allowed policy it carried
    derived_at        INTEGER NOT NULL
);
CREATE INDEX derived_cards_physical ON derived_cards(physical_issuer, physical_serial);
