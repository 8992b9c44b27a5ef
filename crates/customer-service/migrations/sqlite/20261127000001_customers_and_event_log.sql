-- Customers (current state), the event log (permanent history) and the outbox (events not
-- yet published). Same tables, columns and meanings as migrations/postgres; comments there.

create table customers (
    -- AUTOINCREMENT: ids of deleted customers are never reused, so a customer id names one
    -- history in the event log forever.
    id             integer primary key autoincrement,
    email          text    not null,
    first_name     text    not null,
    last_name      text    not null,
    phone          text,
    -- 0 / 1: sqlx's Any driver cannot read SQLite's BOOLEAN declared type.
    is_active      integer not null,
    date_of_birth  text,
    address        text,
    preferences    text,
    search_text    text    not null,
    created_at_ms  bigint  not null,
    updated_at_ms  bigint  not null,
    version        bigint  not null
);

create unique index customers_email_key on customers (email);
create index customers_created_order on customers (created_at_ms desc, id desc);

create table customer_events (
    position        integer primary key autoincrement,
    event_id        text   not null unique,
    event_type      text   not null,
    customer_id     bigint not null,
    sequence        bigint not null,
    occurred_at_ms  bigint not null,
    payload         text   not null,
    constraint customer_events_sequence_key unique (customer_id, sequence)
);

create table customer_events_pending (
    position integer primary key references customer_events (position)
);

create trigger customer_events_pending_on_insert
    after insert on customer_events
    for each row
begin
    insert into customer_events_pending (position) values (new.position);
end;
