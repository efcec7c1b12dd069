-- Lanyard CA schema, version 1: cards, their one-time enrolment codes, issued
-- certificates and the append-only, hash-chained audit log.
-- Times are Unix seconds (UTC) so they compare as integers.

CREATE TABLE cards (
    card_id      TEXT PRIMARY KEY NOT NULL,
    holder_name  TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    role         TEXT NOT NULL,
    -- issued: waiting for enrolment; active: a certificate was issued; revoked.
    state        TEXT NOT NULL DEFAULT 'issued' CHECK (state IN ('issued', 'active', 'revoked')),
    created_at   INTEGER NOT NULL,
    created_by   TEXT NOT NULL
);

-- Only the SHA-256 of the normalised code is kept, never the code.
CREATE TABLE enrolment_codes (
    code_hash    TEXT PRIMARY KEY NOT NULL,
    card_id      TEXT NOT NULL REFERENCES cards(card_id),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER,
    used_from    TEXT
);
CREATE INDEX enrolment_codes_card ON enrolment_codes(card_id);

CREATE TABLE certificates (
    serial       TEXT PRIMARY KEY NOT NULL,  -- lower-case hex of the DER serial
    card_id      TEXT NOT NULL REFERENCES cards(card_id),
    der          BLOB NOT NULL,
    key_kind     TEXT NOT NULL,
    not_before   INTEGER NOT NULL,
    not_after    INTEGER NOT NULL,
    issued_at    INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX certificates_card ON certificates(card_id);

-- Append-only: each row's hash covers the previous row's hash and its own content.
CREATE TABLE audit (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,               -- RFC 3339, UTC
    actor        TEXT NOT NULL,               -- e.g. "admin:root" or "peer:127.0.0.1"
    action       TEXT NOT NULL,               -- e.g. "card_issued", "enrolled", "enrol_failed"
    card_id      TEXT,
    peer         TEXT,
    detail       TEXT NOT NULL,               -- JSON object
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
