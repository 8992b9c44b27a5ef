-- One customer per e-mail skeleton (issue #36): `email_key` is the SHA-256 (hex) of the
-- address's confusable skeleton (see src/domain/email.rs), so that `alice@…` and
-- `\u{430}lice@…` (Cyrillic а) cannot both be customers. Fixed-length, so one unique index
-- serves every engine, and no second copy of the address in clear.
--
-- Rows written before this migration get their key from the service (`SqlStore::key_emails`:
-- `serve` in the background, `migrate` and `import` before they go on), in id order. A row whose key an earlier row already holds
-- keeps a NULL key (NULLs do not collide in a unique index): it is reported by id at every
-- start until an operator resolves the pair, and is never changed here.
alter table customers add column email_key varchar(64);
create unique index customers_email_key_key on customers (email_key);
