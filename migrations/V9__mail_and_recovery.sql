-- Mail and the ways back into an account: a verified flag on the address, the outbox the
-- Mailer delivers from, and the single-use tokens that mails carry.

-- Whether the account's current address was confirmed by a link mailed to it. An email change
-- applies only on confirmation, so the new address is verified when it lands.
ALTER TABLE users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;

-- Mail to send, written in the same transaction as the change that needs it. The Mailer leases
-- due rows with FOR UPDATE SKIP LOCKED (so several instances never take the same row while a
-- lease holds), sends, and marks them `sent`, or schedules a retry, or after the last attempt
-- marks them `dead`. `id` is also the Message-ID's left part, stable across retries. The
-- bodies may carry a one-time link: they are cleared once the mail is sent or dead.
CREATE TABLE mail_outbox (
    id              uuid PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    kind            text NOT NULL,
    recipient       text NOT NULL,
    subject         text NOT NULL,
    body_text       text,
    body_html       text,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_until    timestamptz,
    last_error      text,
    finished_at     timestamptz
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX mail_outbox_finished_idx ON mail_outbox (finished_at) WHERE status <> 'pending';

-- Tokens that mails carry: 256 random bits, stored only as their SHA-256 digest, single use,
-- bound to one account and to the address they were sent to (for an email change, the new
-- address). A newer token of the same purpose voids the account's older ones.
CREATE TABLE account_tokens (
    digest     bytea PRIMARY KEY,
    purpose    text NOT NULL CHECK (purpose IN ('verify_email', 'password_reset', 'email_change')),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expires_idx ON account_tokens (expires_at);
