-- Issue 3: the per-trace tables check once per request or batch, not once per row.

-- The api's claim checks project and tenant once per request and the detector once per batch
-- (projects are archived, never deleted; cluster members are inserted from a join with their
-- cluster). A foreign-key trigger repeated that check for every row: about a third of
-- PostgreSQL's time under bench/ingest.
ALTER TABLE ingest_ids
    DROP CONSTRAINT ingest_ids_project_id_fkey,
    DROP CONSTRAINT ingest_ids_tenant_id_fkey;
ALTER TABLE traces
    DROP CONSTRAINT traces_tenant_id_fkey,
    DROP CONSTRAINT traces_project_id_fkey;
ALTER TABLE cluster_members
    DROP CONSTRAINT cluster_members_cluster_id_fkey,
    DROP CONSTRAINT cluster_members_tenant_id_fkey;

-- Trace ids are opaque client strings: byte order compares them with memcmp instead of the
-- locale's strcoll in every index probe. A non-default column collation wins over the default
-- one in comparisons, so joins with other text keep working.
ALTER TABLE ingest_ids ALTER COLUMN trace_id TYPE text COLLATE "C";
ALTER TABLE traces ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE cluster_members ALTER COLUMN trace_id TYPE text COLLATE "C";
ALTER TABLE monitor_observations ALTER COLUMN trace_id TYPE text COLLATE "C";
