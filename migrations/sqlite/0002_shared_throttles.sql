-- gatehouse store schema 2 (SQLite). Paired with migrations/postgres/0002_shared_throttles.sql,
-- which adds the table through which replicas share their throttles. A SQLite store has one
-- gatehouse process, whose throttles stay in its memory: nothing to add, the version keeps
-- the engines in step.
SELECT 1;
