-- The browser flow: authorization codes, remembered consent, browser sessions, and where a
-- client may send a user after signing out.

-- What a session is: `api` (a login of /api/v1/auth), `browser` (the hosted sign-in, its
-- cookie), or `oauth` (issued to a client through the authorization-code grant).
ALTER TABLE refresh_families ADD COLUMN kind text NOT NULL DEFAULT 'api';
ALTER TABLE refresh_families ADD COLUMN auth_time timestamptz;

ALTER TABLE oauth_clients ADD COLUMN post_logout_redirect_uris text[] NOT NULL DEFAULT '{}';

-- Single-use codes, stored as SHA-256 digests, alive 60 s, bound to the client, the redirect
-- URI, the PKCE challenge and the nonce. `family_id` is the session the first exchange
-- issued, so that a replay can revoke it; `replayed_at` marks a code presented again, so that
-- an exchange still under way when its twin arrives cannot open its session.
CREATE TABLE oauth_codes (
    code_hash      bytea PRIMARY KEY,
    client_id      text NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri   text NOT NULL,
    scope          text NOT NULL,
    code_challenge text NOT NULL,
    nonce          text,
    auth_time      timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    replayed_at    timestamptz,
    family_id      uuid
);
CREATE INDEX oauth_codes_expires_idx ON oauth_codes (expires_at);

-- What a user let a client have, remembered until the user takes it back.
CREATE TABLE oauth_consents (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  text NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    scope      text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_id)
);
