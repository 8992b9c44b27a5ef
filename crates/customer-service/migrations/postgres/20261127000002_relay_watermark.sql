-- The settled prefix of the event log: every position at or below it is published, or will
-- never exist (its transaction rolled back). Readers that page by position (GET
-- /api/v1/events, the SSE stream and its resume) read only up to it, so an event whose
-- transaction commits after a later one's can never slip behind their cursor. One row; the
-- relay leader advances it in the transaction that marks a batch published
-- (src/outbox/watermark.rs).
create table relay_watermark (
    id integer primary key check (id = 1),
    position bigint not null
);

-- Everything below the oldest pending event, or the whole log when nothing is pending.
insert into relay_watermark (id, position)
select 1, coalesce((select min(position) - 1 from customer_events_pending),
                   (select max(position) from customer_events),
                   0);
