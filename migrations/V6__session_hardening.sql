-- How many times a rotated refresh token was replayed within the grace window and answered
-- with its successor. Past REFRESH_GRACE_RETRIES the next replay counts as reuse.
ALTER TABLE refresh_tokens ADD COLUMN grace_retries integer NOT NULL DEFAULT 0;

-- Raised by every password change, and only by one (a re-hash with new parameters keeps it).
-- A session starts only if the version the login verified is still current, and a password
-- change applies only over the version whose password the caller proved.
ALTER TABLE users ADD COLUMN password_version integer NOT NULL DEFAULT 0;
