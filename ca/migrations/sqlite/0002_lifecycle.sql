-- Lanyard CA schema, version 2: the card lifecycle (suspension, revocation
-- with RFC 5280 reasons, renewal), PIN reset codes, IT-desk operators,
-- dual-control approvals and CRLs. Additive only, so version-1 databases
-- upgrade in place. The PostgreSQL migration of the same number makes the
-- same schema.

-- A card is suspended while suspended_at is set (state stays 'active');
-- state 'revoked' is final for the card's certificates, and a re-issue moves
-- the card back to 'issued' with a new enrolment code.
ALTER TABLE cards ADD COLUMN suspended_at INTEGER;
ALTER TABLE cards ADD COLUMN revoked_at INTEGER;
-- RFC 5280 CRLReason code of the card's revocation.
ALTER TABLE cards ADD COLUMN revocation_reason INTEGER;

-- RFC 5280 CRLReason code when revoked_at is set.
ALTER TABLE certificates ADD COLUMN revocation_reason INTEGER;
-- Set when a renewal replaced this certificate (not a revocation: the
-- device destroyed the old key, so it is not put on the CRL).
ALTER TABLE certificates ADD COLUMN superseded_at INTEGER;

-- One-time PIN reset codes, bound to one card, with their own try limit.
-- Only the SHA-256 of the normalised code is kept. At most one code per card
-- is live (used_at and dead_at both NULL); releasing a new one kills the old.
CREATE TABLE reset_codes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    card_id      TEXT NOT NULL REFERENCES cards(card_id),
    code_hash    TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    tries_left   INTEGER NOT NULL,
    used_at      INTEGER,
    dead_at      INTEGER
);
CREATE INDEX reset_codes_card ON reset_codes(card_id);

-- IT-desk operators: the certificates issued to them (id-kp-cmcRA).
CREATE TABLE operators (
    serial       TEXT PRIMARY KEY NOT NULL,   -- lower-case hex
    name         TEXT NOT NULL,
    der          BLOB NOT NULL,
    not_after    INTEGER NOT NULL,
    added_at     INTEGER NOT NULL,
    added_by     TEXT NOT NULL,
    revoked_at   INTEGER
);

-- Actions waiting for a second operator (require_second_operator).
CREATE TABLE approvals (
    approval_id  TEXT PRIMARY KEY NOT NULL,
    action       TEXT NOT NULL,               -- 'add-operator' or 'reset-pin'
    subject      TEXT NOT NULL,               -- card id or new operator's name
    request      TEXT NOT NULL,               -- JSON of what to do; never a secret
    requested_by TEXT NOT NULL,               -- operator serial
    requested_at INTEGER NOT NULL,
    decided_by   TEXT,
    decided_at   INTEGER
);

-- Every CRL issued; the newest is served.
CREATE TABLE crls (
    crl_number   INTEGER PRIMARY KEY NOT NULL,
    der          BLOB NOT NULL,
    this_update  INTEGER NOT NULL,
    next_update  INTEGER NOT NULL
);

-- CRL numbers: PostgreSQL has a SEQUENCE; SQLite a one-row counter.
CREATE TABLE crl_number_seq (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    value        INTEGER NOT NULL
);
INSERT INTO crl_number_seq (id, value) VALUES (1, 0);
