-- Responses of POST /customers requests made with an Idempotency-Key: written in the same
-- transaction as the customer they created, so a retry gets the same answer and never a
-- second customer. `key` is the client's key scoped by the authenticated subject.
create table idempotency_keys (
    key text primary key,
    -- The request body, canonical JSON: a retry must send the same one.
    request text not null,
    status integer not null,
    body text not null,
    location text,
    etag text,
    -- The customer the request created: its erasure removes the stored answer too.
    customer_id bigint,
    created_at_ms bigint not null
);

create index idempotency_keys_created on idempotency_keys (created_at_ms);
create index idempotency_keys_customer on idempotency_keys (customer_id);
