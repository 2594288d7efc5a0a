-- The highest seq the publisher has put on each audit stream. Only the publisher writes
-- here, so audit_log itself stays append-only. Verification also reads it: a log that
-- ends below a published seq has lost records at its end.
CREATE TABLE audit_published (
    stream   TEXT   NOT NULL PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

-- Indexes for the filters of GET /audit/records.
CREATE INDEX audit_log_recorded_at ON audit_log (recorded_at);
CREATE INDEX audit_log_provider ON audit_log (provider, seq);
CREATE INDEX audit_log_outcome ON audit_log (outcome, seq);
