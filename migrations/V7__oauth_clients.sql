-- OAuth 2.1 clients (RFC 7591 metadata names), their secrets, and sessions bound to a client.

CREATE TABLE oauth_clients (
    client_id                  text PRIMARY KEY,
    client_name                text NOT NULL,
    -- client_secret_basic | client_secret_post | private_key_jwt | none
    token_endpoint_auth_method text NOT NULL,
    grant_types                text[] NOT NULL,
    -- Exact URIs; no wildcards, no prefixes.
    redirect_uris              text[] NOT NULL DEFAULT '{}',
    -- The scopes the client may be granted, space-separated (RFC 6749 §3.3).
    scope                      text NOT NULL DEFAULT '',
    -- The `aud` of its access tokens; NULL: the service's JWT_AUDIENCE.
    audience                   text,
    -- Access-token lifetime of its tokens in seconds; NULL: ACCESS_TOKEN_TTL.
    access_token_ttl           integer CHECK (access_token_ttl > 0),
    first_party                boolean NOT NULL DEFAULT false,
    -- For private_key_jwt: the client's public keys, inline or by reference.
    jwks                       jsonb,
    jwks_uri                   text,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    CHECK (jwks IS NULL OR jwks_uri IS NULL)
);

-- A client's secrets, as SHA-256 digests (a secret is 256 random bits: no password hashing
-- needed). The current secret has no end; a rotated-out one works until `expires_at`.
CREATE TABLE oauth_client_secrets (
    id         uuid PRIMARY KEY,
    client_id  text NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    digest     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
CREATE INDEX oauth_client_secrets_client_idx ON oauth_client_secrets (client_id);

-- A session (refresh-token family) issued to a client through /oauth2/token is bound to it:
-- only that client can refresh it. NULL: a first-party session of /api/v1/auth.
ALTER TABLE refresh_families
    ADD COLUMN client_id text REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    ADD COLUMN scope text;
