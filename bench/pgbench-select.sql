-- The limit for GET /customers/:id: one primary-key select of a customer row.
\set id random(1, :max_id)
select id, email, first_name, last_name, phone, is_active, date_of_birth, address, preferences,
       created_at_ms, updated_at_ms, version
from customers where id = :id;
