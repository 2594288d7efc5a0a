-- The append-only, hash-chained audit log. Times are Unix milliseconds.
CREATE TABLE audit_log (
    seq             BIGINT NOT NULL PRIMARY KEY,
    event_id        TEXT   NOT NULL UNIQUE,
    event_type      TEXT   NOT NULL,
    event_time      BIGINT,
    recorded_at     BIGINT NOT NULL,
    approval_id     TEXT,
    step_id         TEXT,
    challenge_id    TEXT,
    approver        TEXT,
    provider        TEXT,
    outcome         TEXT   NOT NULL,
    reason_code     TEXT,
    acr             TEXT,
    amr             TEXT,
    acrs            TEXT,
    auth_time       BIGINT,
    idp_subject     TEXT,
    id_token_sha256 TEXT,
    trace_id        TEXT,
    event_json      TEXT   NOT NULL,
    prev_hash       TEXT   NOT NULL,
    hash            TEXT   NOT NULL
);

CREATE INDEX audit_log_approval ON audit_log (approval_id, seq);
CREATE INDEX audit_log_challenge ON audit_log (challenge_id, seq);
CREATE INDEX audit_log_approver ON audit_log (approver, seq);

-- The database itself rejects changes to recorded rows, on top of the hash chain that
-- makes such changes detectable.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
