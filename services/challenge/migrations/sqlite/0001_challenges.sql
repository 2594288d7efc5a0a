-- Challenges: one per approval step that requires step-up.
CREATE TABLE challenges (
    id TEXT PRIMARY KEY NOT NULL,
    -- The id of the stepup.approval.requested event, so a redelivered event creates nothing.
    request_event_id TEXT NOT NULL UNIQUE,
    approval_id TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    requirement_json TEXT NOT NULL,
    approver_json TEXT NOT NULL,
    requester_id TEXT,
    resource_json TEXT,
    return_url TEXT,
    status TEXT NOT NULL,
    -- The state is looked up by its hash; the value itself goes to the IdP in the redirect.
    state_sha256 TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    nonce TEXT NOT NULL,
    -- Single-use secrets, cleared when the challenge reaches a final status.
    pkce_verifier TEXT,
    authorization_code TEXT,
    browser_binding_sha256 TEXT,
    reason_code TEXT,
    message TEXT,
    evidence_json TEXT,
    -- W3C traceparent of the approval event, so later hops of the flow join its trace.
    traceparent TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX challenges_by_approval ON challenges (approval_id);
CREATE INDEX challenges_open_by_expiry ON challenges (status, expires_at);
