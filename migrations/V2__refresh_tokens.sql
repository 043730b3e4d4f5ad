-- Refresh tokens and the sessions (token families) they belong to.
-- A family is one login; every rotation adds a token whose parent is the one it replaced.
-- Only a SHA-256 digest of each token is stored, never the token itself.
CREATE TABLE refresh_families (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ip_address   text,
    user_agent   text,
    revoked_at   timestamptz,
    revoke_reason text
);
CREATE INDEX refresh_families_user_id_idx ON refresh_families (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    token_hash  bytea NOT NULL,
    family_id   uuid NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    parent_id   uuid REFERENCES refresh_tokens (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    revoked_at  timestamptz
);
CREATE UNIQUE INDEX refresh_tokens_token_hash_key ON refresh_tokens (token_hash);
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_id_idx ON refresh_tokens (user_id);
-- One successor per parent: a rotation can never fork a family, whatever the concurrency.
CREATE UNIQUE INDEX refresh_tokens_parent_id_key ON refresh_tokens (parent_id) WHERE parent_id IS NOT NULL;
