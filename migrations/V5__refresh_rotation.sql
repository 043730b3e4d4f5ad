-- The successor of a rotated refresh token, sealed with a pad derived from the parent token
-- itself (SHA-256 of the parent's secret). Only a client that presents the parent can unseal
-- it, which lets a retry within the grace window receive the very same successor instead of
-- forking the family, without the server keeping any token in a usable form.
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed bytea;
