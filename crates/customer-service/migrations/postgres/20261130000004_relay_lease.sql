-- The relay leader's lease (see src/store/lease.rs). One row: who leads, until when, and
-- under which epoch. The epoch grows with every new leader and fences the old ones: the
-- mark of published events and the Redis script both refuse a leader whose epoch is past.
create table relay_lease (
    name          text   primary key,
    -- A random id of the leading process.
    holder        text   not null,
    -- The database session that renews the lease: when it is gone (the process died and
    -- its connection closed), the lease is free at once rather than at its expiry.
    holder_pid    integer not null,
    epoch         bigint not null,
    -- Database clock, ms since the epoch; a holder that does not renew by then is replaced.
    expires_at_ms bigint not null
);
