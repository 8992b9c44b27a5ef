-- Issue #29 gives PostgreSQL a narrow search table (see the postgres folder). This engine
-- counts through its own search index (SQLite: FTS5; MySQL / MariaDB: the posting table of
-- migration 9), so nothing changes here; the version exists in every folder so that the
-- schemas keep one history.
select 1;
