-- Backfills (pl-admin replay): which rule set evaluated each stored trace, so that a replay
-- re-evaluates a stored trace against exactly the rules added or changed since, once.
--
-- projects.eval_rules_version rises by one with every rule created or changed (the trigger
-- below, in the writer's transaction); a rule records the version its change made; a trace
-- records the version its project had before its rules were loaded for it. A backfill
-- evaluates a stored trace against the enabled rules whose version is above the trace's, then
-- raises the trace's version: a second backfill of the same range finds nothing to do.
ALTER TABLE projects ADD COLUMN eval_rules_version bigint NOT NULL DEFAULT 0;
ALTER TABLE eval_rules ADD COLUMN rules_version bigint NOT NULL DEFAULT 0;
ALTER TABLE traces ADD COLUMN eval_rules_version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION pl_eval_rules_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE projects SET eval_rules_version = eval_rules_version + 1 WHERE id = NEW.project_id
        RETURNING eval_rules_version INTO NEW.rules_version;
    RETURN NEW;
END $$;
CREATE TRIGGER eval_rules_version BEFORE INSERT OR UPDATE OF metric_name, evaluator_type, config,
    enabled ON eval_rules FOR EACH ROW EXECUTE FUNCTION pl_eval_rules_version();

-- One backfill: a consumer group of its own over one topic, from the offsets of from_time to
-- end_offsets (exclusive; the high watermarks when it was created, or the offsets of to_time).
CREATE TABLE backfills (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    stage         text NOT NULL CHECK (stage IN ('detector')),
    group_id      text NOT NULL UNIQUE,
    topic         text NOT NULL,
    from_time     timestamptz NOT NULL,
    to_time       timestamptz,
    start_offsets jsonb NOT NULL, -- [offset of partition 0, of partition 1, ...]
    end_offsets   jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
