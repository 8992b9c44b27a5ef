-- Sagas (issue #17): a change other services must make too, tracked until each confirmed
-- it (see docs/architecture.md, "Sagas"). One row per saga, one per participant step.
-- Nothing here is personal: the subject is a customer id, participants are configured
-- names, tokens are random, reasons are the participants' own words or ours.
--
-- A saga's events go into customer_events like every event (they are published by the same
-- relay, in the same order), under the log key -<saga id> in `customer_id`: a customer's
-- ids are positive, so no customer's sequence, history or erasure ever sees them, and the
-- unique (customer_id, sequence) key numbers each saga's events on their own.

create table sagas (
    id              bigint not null auto_increment primary key,
    -- Which definition ('erasure').
    kind            varchar(32) not null,
    -- The customer it is about.
    subject_id      bigint      not null,
    -- open | completed | failed | cancelled
    state           varchar(16) not null,
    reason          text,
    -- Events of the saga so far: its own numbering (metadata.sequence).
    sequence        bigint      not null,
    started_at_ms   bigint      not null,
    deadline_at_ms  bigint      not null,
    updated_at_ms   bigint      not null,
    ended_at_ms     bigint,
    -- The next reminder or the deadline while open; null once ended.
    next_due_at_ms  bigint,
    -- Compare-and-set counter: every change is `update … where version = $n`.
    version         bigint      not null
) engine = InnoDB default charset = utf8mb4 collate = utf8mb4_bin;

create index sagas_by_state on sagas (state, id);
create index sagas_by_subject on sagas (kind, subject_id);
create index sagas_by_due on sagas (next_due_at_ms);

create table saga_steps (
    saga_id            bigint      not null,
    -- The configured order.
    ordinal            integer     not null,
    name               varchar(64) not null,
    -- requested | confirmed | failed
    state              varchar(16) not null,
    token              varchar(64) not null,
    attempts           bigint      not null,
    first_asked_at_ms  bigint      not null,
    last_asked_at_ms   bigint      not null,
    next_ask_at_ms     bigint      not null,
    answered_at_ms     bigint,
    reason             text,
    primary key (saga_id, name),
    constraint saga_steps_saga foreign key (saga_id) references sagas (id)
) engine = InnoDB default charset = utf8mb4 collate = utf8mb4_bin;
