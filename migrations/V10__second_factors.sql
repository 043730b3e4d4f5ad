-- Second factors (SPEC §9): TOTP with recovery codes, passkeys (WebAuthn), the pending second
-- step of a login, and how each session was signed in (RFC 8176 `amr`).

-- One TOTP authenticator per user. The shared secret is sealed (AES-256-GCM) under a key the
-- row names (`key_id`), never stored in the clear. `confirmed_at` is NULL while the user has not
-- yet proved with a code that the authenticator holds the secret: such a row is not a factor.
-- `last_step` is the last time step (unix time / 30) whose code was accepted: a code is accepted
-- only for a later step, so a code is never accepted twice.
CREATE TABLE mfa_totp (
    user_id       uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_sealed bytea NOT NULL,
    key_id        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    confirmed_at  timestamptz,
    last_step     bigint NOT NULL DEFAULT -1
);

-- Ten single-use recovery codes per user, issued when TOTP is confirmed, stored as SHA-256
-- digests. Replaced as a set; a used code keeps its row (used_at) so it is refused.
CREATE TABLE mfa_recovery_codes (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    digest     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz,
    PRIMARY KEY (user_id, digest)
);

-- Passkeys. `passkey` is the credential as webauthn-rs serialises it (public key, counter,
-- backup flags); `sign_count`, `backup_eligible` and `backup_state` repeat what the last
-- ceremony reported so they can be listed and checked without parsing it.
CREATE TABLE webauthn_credentials (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id   bytea NOT NULL UNIQUE,
    passkey         jsonb NOT NULL,
    name            text NOT NULL,
    sign_count      bigint NOT NULL DEFAULT 0,
    backup_eligible boolean NOT NULL DEFAULT false,
    backup_state    boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz
);
CREATE INDEX webauthn_credentials_user_idx ON webauthn_credentials (user_id);

-- A WebAuthn ceremony between its start and its finish (either may reach any instance):
-- the server state webauthn-rs keeps (the challenge), single use, alive a few minutes.
-- `user_id` is NULL for a passwordless sign-in (the credential names the user).
CREATE TABLE webauthn_ceremonies (
    id         uuid PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('register', 'authenticate', 'discoverable')),
    user_id    uuid REFERENCES users (id) ON DELETE CASCADE,
    state      jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX webauthn_ceremonies_expires_idx ON webauthn_ceremonies (expires_at);

-- The second step of a login whose password was right: the `mfa_token`'s SHA-256, the user and
-- the password version the first step verified, what the session will be (`api` or `browser`),
-- bounded attempts, single use.
CREATE TABLE mfa_pending (
    digest           bytea PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    password_version integer NOT NULL,
    session_kind     text NOT NULL CHECK (session_kind IN ('api', 'browser')),
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    used_at          timestamptz
);
CREATE INDEX mfa_pending_expires_idx ON mfa_pending (expires_at);

-- How a session was signed in (RFC 8176 values). NULL for sessions opened before this
-- migration: a password.
ALTER TABLE refresh_families ADD COLUMN amr text[];
ALTER TABLE oauth_codes ADD COLUMN amr text[];

-- A client that demands a second factor of every user it signs in.
ALTER TABLE oauth_clients ADD COLUMN require_mfa boolean NOT NULL DEFAULT false;
