-- Transactional outbox: each event the service publishes is first written here in the same
-- transaction as the state change it reports, then published by the relay. A process that
-- dies between the commit and the publish publishes the row after its restart.
CREATE TABLE outbox (
    -- Publishing order.
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The CloudEvents id, also sent as Nats-Msg-Id so JetStream drops a repeated publish.
    event_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    -- The structured-mode JSON CloudEvent.
    payload TEXT NOT NULL,
    -- W3C trace context of the span that wrote the row.
    traceparent TEXT,
    tracestate TEXT,
    created_at BIGINT NOT NULL,
    published_at BIGINT
);

CREATE INDEX outbox_unpublished ON outbox (published_at, seq);
