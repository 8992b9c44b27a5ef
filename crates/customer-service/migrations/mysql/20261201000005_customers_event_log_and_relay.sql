-- The whole schema of the other backends' migrations 1 to 5, for MySQL 8 / MariaDB 10.11+
-- (this backend started at version 5; later migrations go into all three folders with the
-- same version number). Names, columns and meanings are those of the PostgreSQL migrations,
-- whose comments explain them; only what MySQL needs differently is noted here.
--
-- Every table is InnoDB in utf8mb4 with the binary collation: the application stores e-mails
-- and search text lower-cased itself, and compares them exactly. MySQL's default collations
-- would also equate accents ('é' = 'e') and ignore trailing spaces, so two different e-mails
-- could collide on the unique index and a search could match what the other engines do not.
--
-- Types: `smallint` for the flag (sqlx's Any driver reads no `tinyint`/`boolean`),
-- `varchar` where an index needs a bounded key, `text`/`mediumtext` for JSON and payloads.

create table customers (
    id             bigint       not null auto_increment primary key,
    email          varchar(512) not null,
    first_name     text         not null,
    last_name      text         not null,
    phone          text,
    is_active      smallint     not null,
    date_of_birth  varchar(10),
    address        text,
    preferences    text,
    -- Not indexed: MySQL has no trigram index, so a search scans (see docs/architecture.md).
    search_text    text         not null,
    created_at_ms  bigint       not null,
    updated_at_ms  bigint       not null,
    version        bigint       not null,
    constraint customers_email_key unique (email),
    -- The list order; InnoDB reads it backwards for "newest first".
    index customers_created_order (created_at_ms, id)
) engine = InnoDB default charset = utf8mb4 collate = utf8mb4_bin;

create table customer_events (
    position        bigint      not null auto_increment primary key,
    event_id        varchar(64) not null,
    event_type      varchar(64) not null,
    customer_id     bigint      not null,
    sequence        bigint      not null,
    occurred_at_ms  bigint      not null,
    payload         mediumtext  not null,
    constraint customer_events_event_id_key unique (event_id),
    constraint customer_events_sequence_key unique (customer_id, sequence)
) engine = InnoDB default charset = utf8mb4 collate = utf8mb4_bin;

create table customer_events_pending (
    position bigint not null primary key,
    constraint customer_events_pending_event foreign key (position)
        references customer_events (position)
) engine = InnoDB;

-- Every appended event is pending, whichever code path appended it.
create trigger customer_events_mark_pending after insert on customer_events
for each row insert into customer_events_pending (position) values (new.position);

create table relay_watermark (
    id       integer not null primary key,
    position bigint  not null,
    constraint relay_watermark_one_row check (id = 1)
) engine = InnoDB;

insert into relay_watermark (id, position) values (1, 0);

-- `key` is a reserved word in MySQL: the statements quote it ("key", see src/store/mysql.rs).
-- The key is the client's (at most 255 characters) scoped by the authenticated subject, or
-- by its SHA-256 when the subject is longer than 256 characters: at most 512 characters.
create table idempotency_keys (
    `key`         varchar(768) not null primary key,
    request       mediumtext   not null,
    status        integer      not null,
    body          mediumtext   not null,
    location      text,
    etag          text,
    customer_id   bigint,
    created_at_ms bigint       not null,
    index idempotency_keys_created (created_at_ms),
    index idempotency_keys_customer (customer_id)
) engine = InnoDB default charset = utf8mb4 collate = utf8mb4_bin;

-- The lease row exists from the start: MySQL takes it with a conditional UPDATE (it has no
-- `INSERT … ON CONFLICT … RETURNING`), see src/store/lease.rs. `holder_pid` is the holder's
-- `connection_id()`; 0 is no session, so the lease is free.
create table relay_lease (
    name          varchar(64) not null primary key,
    holder        varchar(64) not null,
    holder_pid    bigint      not null,
    epoch         bigint      not null,
    expires_at_ms bigint      not null
) engine = InnoDB default charset = utf8mb4 collate = utf8mb4_bin;

insert into relay_lease (name, holder, holder_pid, epoch, expires_at_ms) values ('relay', '', 0, 0, 0);
