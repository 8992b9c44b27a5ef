-- The limit for POST /customers: one transaction inserting a customer row and its
-- CustomerCreated event, as the service does. Into the service's schema the trigger adds the
-- pending row; into bench/minimal-schema.sql (bench/scale.sh) nothing else happens.
-- The JSON has a space after each colon: pgbench reads a colon followed by a name as one of
-- its variables.
begin;
with c as (
    insert into customers (email, first_name, last_name, phone, is_active, date_of_birth, address,
                           preferences, search_text, created_at_ms, updated_at_ms, version)
    values ('pgb-' || gen_random_uuid() || '@bench.example', 'Bench', 'Mark', '+1-555-010-0100', true,
            '1990-01-15',
            '{"street": "1 Main St", "city": "Springfield", "state": "IL", "zipCode": "62701", "country": "USA"}',
            '{"company": "Acme", "industry": "Retail", "newsletter": true, "preferredContact": "email"}',
            'bench' || chr(31) || 'mark' || chr(31) || 'pgb@bench.example', 1795741307502, 1795741307502, 1)
    returning id
)
insert into customer_events (event_id, event_type, customer_id, sequence, occurred_at_ms, payload)
select 'CustomerCreated_pgb_' || gen_random_uuid(), 'CustomerCreated', id, 1, 1795741307502,
       repeat('x', 900)
from c;
commit;
