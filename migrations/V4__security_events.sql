-- Security-relevant events kept for the admin endpoint. user_id and actor_id carry no foreign
-- key on purpose: an event about a deleted user must outlive that user.
CREATE TABLE security_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    event_type  text NOT NULL,
    user_id     uuid,
    actor_id    uuid,
    ip_address  text,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX security_events_created_idx ON security_events (created_at DESC, id DESC);
CREATE INDEX security_events_type_created_idx ON security_events (event_type, created_at DESC);
CREATE INDEX security_events_user_created_idx ON security_events (user_id, created_at DESC);
