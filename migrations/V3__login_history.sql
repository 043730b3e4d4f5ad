-- Login attempts, partitioned by month so old months can be detached and dropped cheaply.
-- The default partition catches any month that has no partition of its own yet.
CREATE TABLE login_history (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    user_id     uuid NOT NULL,
    login_time  timestamptz NOT NULL DEFAULT now(),
    ip_address  text,
    user_agent  text,
    successful  boolean NOT NULL,
    PRIMARY KEY (id, login_time)
) PARTITION BY RANGE (login_time);

CREATE TABLE login_history_default PARTITION OF login_history DEFAULT;

-- The history page reads one user's rows newest first.
CREATE INDEX login_history_user_time_idx ON login_history (user_id, login_time DESC);

-- Creates the monthly partitions from the current month to `months_ahead` months later.
-- Idempotent; `auth-service migrate` calls it after applying migrations.
CREATE FUNCTION ensure_login_history_partitions(months_ahead integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    created integer := 0;
    month_start date;
    part_name text;
BEGIN
    FOR i IN 0..months_ahead LOOP
        month_start := (date_trunc('month', now()) + make_interval(months => i))::date;
        part_name := format('login_history_%s', to_char(month_start, 'YYYY_MM'));
        IF to_regclass(part_name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF login_history FOR VALUES FROM (%L) TO (%L)',
                part_name, month_start, (month_start + interval '1 month')::date);
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;

SELECT ensure_login_history_partitions(3);
