-- Issue #29 gives MySQL / MariaDB a trigram posting table (see the mysql folder). This engine
-- has its trigram index since migration 5, so nothing changes here; the version exists in
-- every folder so that the schemas keep one history.
select 1;
