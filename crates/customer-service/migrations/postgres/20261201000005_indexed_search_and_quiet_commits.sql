-- Indexed search and a commit path without NOTIFY (issue #13).
--
-- Search: `search_text like '%term%'` is served by a trigram index (pg_trgm, a trusted
-- extension since PostgreSQL 13: the database owner may create it). Terms of three or more
-- characters use the index; shorter ones have no trigram to look up and scan (see
-- docs/architecture.md, "Search"). The index is lossy: PostgreSQL rechecks every candidate
-- against the LIKE pattern, so results are exactly the full scan's.
--
-- On an existing large table this migration builds the index while holding writes (2.3 s
-- for 200,000 customers on the 2-core project machine); plan the upgrade accordingly.
create extension if not exists pg_trgm;

create index customers_search_trgm on customers using gin (search_text gin_trgm_ops);

-- The pending row stays; the per-row pg_notify goes. Every transaction that notified took a
-- global lock at commit, serializing all writers (about 40 % of create throughput). Relays of
-- other instances now find new events by polling the pending table while idle (see
-- src/outbox/runner.rs); the relay of the instance that committed is woken in-process.
create or replace function customer_events_mark_pending() returns trigger
language plpgsql as $$
begin
    insert into customer_events_pending (position) values (new.position);
    return new;
end;
$$;
