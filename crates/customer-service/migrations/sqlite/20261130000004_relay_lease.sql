-- The relay leader's lease (see src/store/lease.rs and the PostgreSQL migration). SQLite has
-- one process and so one relay, which needs no lease; the table exists so that both schemas
-- stay alike.
create table relay_lease (
    name          text   primary key,
    holder        text   not null,
    holder_pid    integer not null,
    epoch         bigint not null,
    expires_at_ms bigint not null
);
