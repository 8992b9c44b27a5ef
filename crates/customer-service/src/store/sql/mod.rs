//! Every statement the backends run, written once. The three schemas agree on every name
//! and type (see migrations/README.md); PostgreSQL takes the `$n` placeholders as written,
//! and [`query`] rewrites them to `?` for MySQL (its one dialect difference left once each
//! connection is in standard-SQL mode, see `mysql.rs`) and for SQLite (faster binding, see
//! [`for_backend`]). The list statements vary with the
//! request (search, keyset, offset) and are put together by [`list_page`] and its
//! neighbours, still one text per shape for every backend except the SQLite-only FTS5 lookup
//! ([`Filter::Trigram`]).
//!
//! The rule that makes the rewrite a plain substitution: each placeholder appears once, in
//! increasing order (`$1`, `$2`, …). MySQL's `?` binds by position, so a statement that
//! needs a value twice binds it twice under two numbers. [`query`] checks the rule in debug
//! builds and the tests below check every constant.

use std::borrow::Cow;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe};

use super::Backend;

/// The query of `text` for `backend`.
pub(super) fn query(
    backend: Backend,
    text: impl Into<Cow<'static, str>>,
) -> Query<'static, Any, AnyArguments> {
    sqlx::query(AssertSqlSafe(for_backend(backend, text.into())))
}

/// `text` as `backend` takes it: on MySQL and SQLite every `$n` outside string literals
/// becomes `?`. MySQL knows no other placeholder; SQLite binds `?` in constant time, where
/// sqlx looks each numbered one up by name in a linear scan (quadratic in a statement's
/// values: a 1,000-position mark or a 500-row insert).
pub(super) fn for_backend(backend: Backend, text: Cow<'static, str>) -> Cow<'static, str> {
    customer_events::projection::placeholders(backend != Backend::Postgres, text)
}

/// The columns a [`crate::domain::Customer`] is read from, in `read_customer`'s order.
macro_rules! customer_columns {
    () => {
        "id, email, first_name, last_name, phone, is_active, date_of_birth, address, \
         preferences, created_at_ms, updated_at_ms, version"
    };
}

macro_rules! insert_customer {
    () => {
        "insert into customers (email, first_name, last_name, phone, is_active, date_of_birth, \
         address, preferences, search_text, created_at_ms, updated_at_ms, version, email_key) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    };
}

// After the macros above, which it uses.
mod lists;
pub(super) use lists::*;

/// The thirteen written columns are bound as $1..$13 by `Columns::bind`. PostgreSQL and
/// SQLite return the new id from the insert itself.
pub(super) const INSERT_CUSTOMER_RETURNING_ID: &str = concat!(insert_customer!(), " returning id");

/// MySQL 8 has no `INSERT … RETURNING` (MariaDB has, but one statement serves both): the id
/// comes back in the insert's result (`last_insert_id`).
pub(super) const INSERT_CUSTOMER: &str = insert_customer!();

/// MySQL's bulk insert takes the ids the auto-increment assigns (it has no sequence to
/// reserve them from first) and reads them back by e-mail: `$1..$n`, one per customer.
pub(super) const IDS_BY_EMAIL_PREFIX: &str = "select id, email from customers where email in ";

/// `insert_many`'s statements: the customer rows with their ids (fourteen placeholders a
/// row) or, on MySQL, without (thirteen), and the events (six a row). A few thousand rows
/// each, under SQLite's 32,766 and PostgreSQL's and MySQL's 65,535 placeholders per
/// statement.
pub(super) const INSERT_CUSTOMERS_WITH_IDS: &str = "insert into customers (id, email, first_name, \
     last_name, phone, is_active, date_of_birth, address, preferences, search_text, \
     created_at_ms, updated_at_ms, version, email_key) values ";
pub(super) const INSERT_CUSTOMERS: &str = "insert into customers (email, first_name, \
     last_name, phone, is_active, date_of_birth, address, preferences, search_text, \
     created_at_ms, updated_at_ms, version, email_key) values ";
pub(super) const CUSTOMER_ROWS_PER_INSERT: usize = 2_000;
pub(super) const APPEND_EVENTS: &str = "insert into customer_events (event_id, event_type, \
     customer_id, sequence, occurred_at_ms, payload) values ";
pub(super) const EVENT_ROWS_PER_INSERT: usize = 5_000;

/// `prefix` followed by `rows` groups of `columns` placeholders: `($1, $2), ($3, $4)`, or
/// with `anonymous` `(?, ?), (?, ?)`. SQLite needs the anonymous form here: it resolves each
/// numbered or named placeholder by a linear search of those already seen, so one 5,000-row
/// event insert with `$n` took 3.2 s to run in a debug build, while with `?` (simply the next
/// one) the whole 2,500-customer, 7,500-event seed of the CLI test takes under 1.7 s.
pub(super) fn values_sql(prefix: &str, rows: usize, columns: usize, anonymous: bool) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * columns * 7);
    sql.push_str(prefix);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            if anonymous {
                sql.push('?');
            } else {
                sql.push('$');
                sql.push_str(&(row * columns + column + 1).to_string());
            }
        }
        sql.push(')');
    }
    sql
}

/// Reserves `$1` customer ids on PostgreSQL: the identity's sequence, as single inserts
/// draw from it (so concurrent writers never collide with a bulk load).
pub(super) const RESERVE_IDS_POSTGRES: &str =
    "select nextval(pg_get_serial_sequence('customers', 'id')) from generate_series(1, $1)";

/// The highest id SQLite's AUTOINCREMENT has handed out (the writer connection is the only
/// writer, so the ids above it are free until its transaction commits).
pub(super) const LAST_ID_SQLITE: &str =
    "select coalesce(max(seq), 0) from sqlite_sequence where name = 'customers'";

/// Frees keys whose records expired (`$1`: the cutoff in ms), then claims `$2` with a
/// placeholder answer, filled in once the customer exists (`FILL_IDEMPOTENCY`). Claiming
/// first makes a concurrent request with the same key wait on this row and then fail on
/// the primary key, rather than race to the e-mail's unique index.
pub(super) const EXPIRE_IDEMPOTENCY: &str =
    "delete from idempotency_keys where created_at_ms < $1 and status <> 410";

/// `"key"` is quoted: a reserved word in MySQL (and harmless quoting elsewhere).
pub(super) const CLAIM_IDEMPOTENCY: &str = r#"
insert into idempotency_keys ("key", request, status, body, location, etag, created_at_ms)
values ($1, $2, 0, '', null, null, $3)
"#;

pub(super) const FILL_IDEMPOTENCY: &str = r#"
update idempotency_keys
set status = $1, body = $2, location = $3, etag = $4, customer_id = $5
where "key" = $6
"#;

pub(super) const FIND_IDEMPOTENCY: &str = r#"
select request, status, body, location, etag, created_at_ms from idempotency_keys where "key" = $1
"#;

/// The relay's fence: matches (and locks) the lease row only while epoch `$1` holds it.
pub(super) const FENCE_RELAY_LEASE: &str =
    "update relay_lease set epoch = epoch where name = 'relay' and epoch = $1";

/// Erasure rewrites each of the customer's events with its personal data erased.
pub(super) const REWRITE_PAYLOAD: &str =
    "update customer_events set payload = $1 where position = $2 and customer_id = $3";

/// An erased customer's keys become tombstones (status 410): the key and the customer id
/// stay, the request body and the answer (personal data) go, and expiry passes them over.
pub(super) const TOMBSTONE_IDEMPOTENCY_OF_CUSTOMER: &str = r#"
update idempotency_keys
set request = '', status = 410, body = '', location = null, etag = null
where customer_id = $1
"#;

/// Compare-and-set on `version`: no row updated means a concurrent write won.
pub(super) const UPDATE_CUSTOMER: &str = r#"
update customers
set email = $1, first_name = $2, last_name = $3, phone = $4, is_active = $5,
    date_of_birth = $6, address = $7, preferences = $8, search_text = $9,
    created_at_ms = $10, updated_at_ms = $11, version = $12, email_key = $13
where id = $14 and version = $15
"#;

pub(super) const DELETE_CUSTOMER: &str = r#"
delete from customers where id = $1 and version = $2
"#;

/// A trigger adds the matching customer_events_pending row (see the migrations).
pub(super) const APPEND_EVENT: &str = r#"
insert into customer_events (event_id, event_type, customer_id, sequence, occurred_at_ms, payload)
values ($1, $2, $3, $4, $5, $6)
"#;

pub(super) const CUSTOMER_BY_ID: &str = concat!(
    "select ",
    customer_columns!(),
    " from customers where id = $1"
);

/// The customer of an e-mail: the one with the address's skeleton key, or (a look-alike
/// left without a key, see the email_key migration) the address itself; the address itself
/// first. `$2` and `$3` are the address, `$1` its key.
pub(super) const CUSTOMER_BY_EMAIL: &str = concat!(
    "select ",
    customer_columns!(),
    " from customers where email_key = $1 or email = $2 \
     order by case when email = $3 then 0 else 1 end limit 1"
);

/// `import`'s look-ups, each followed by `values_sql(…, 1, n, …)`'s `($1, …, $n)`.
pub(super) const CUSTOMERS_BY_IDS_PREFIX: &str = concat!(
    "select ",
    customer_columns!(),
    " from customers where id in "
);
pub(super) const CUSTOMERS_BY_EMAIL_KEYS_PREFIX: &str = concat!(
    "select ",
    customer_columns!(),
    " from customers where email_key in "
);

/// The email_key backfill (see the migration): rows without a key after `$1`, by id.
pub(super) const CUSTOMERS_WITHOUT_EMAIL_KEY: &str =
    "select id, email from customers where email_key is null and id > $1 order by id limit $2";
/// Which of a list of keys rows hold already: `($1, …, $n)` follows.
pub(super) const EMAIL_KEYS_TAKEN_PREFIX: &str =
    "select id, email_key from customers where email_key in ";

/// Sets the keys of `rows` rows: `(id, key)` pairs bound in order, then the ids again.
pub(super) fn set_email_keys_sql(rows: usize, anonymous: bool) -> String {
    let mut n = 0;
    let mut next = || {
        n += 1;
        if anonymous {
            "?".to_owned()
        } else {
            format!("${n}")
        }
    };
    let mut sql = String::from("update customers set email_key = case id");
    for _ in 0..rows {
        let (id, key) = (next(), next());
        sql.push_str(&format!(" when {id} then {key}"));
    }
    // Only keys still unset: an update that set one meanwhile knows the current address.
    sql.push_str(" end where email_key is null and id in (");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&next());
    }
    sql.push(')');
    sql
}
/// The first event's type of each customer of the list (the `(customer_id, sequence)`
/// index serves it).
pub(super) const FIRST_EVENT_TYPES_PREFIX: &str =
    "select customer_id, event_type from customer_events where sequence = 1 and customer_id in ";

/// Customer ids after `$1`, ascending, at most `$2` (the primary key alone).
pub(super) const CUSTOMER_IDS: &str = "select id from customers where id > $1 order by id limit $2";

/// After customers were inserted with their own ids: the identity's sequence moves past the
/// highest, so the next insert gets an id above every one of them (never backwards).
pub(super) const ALIGN_ID_SEQUENCE_POSTGRES: &str = "select setval(\
     pg_get_serial_sequence('customers', 'id'), \
     greatest(nextval(pg_get_serial_sequence('customers', 'id')) - 1, \
              (select max(id) from customers)))";

pub(super) const COUNT_CUSTOMERS: &str = "select count(*) from customers";

/// PostgreSQL: the same count from the narrow search table, which its triggers keep one row
/// per customer in the same transaction (migration 10). A quarter of the pages of
/// `customers` (right after a bulk load there is no visibility map for an index-only
/// count, and the count reads the heap); and the count taken at start leaves that table's
/// pages cached, with their hint bits set, for the first searches, which read it.
pub(super) const COUNT_CUSTOMERS_POSTGRES: &str = "select count(*) from customers_search";

pub(super) const EVENTS_OF_CUSTOMER: &str = r#"
select position, event_id, event_type, customer_id, sequence, occurred_at_ms, payload
from customer_events
where customer_id = $1
order by sequence
"#;

pub(super) const LOGGED_CUSTOMER_IDS: &str = r#"
select distinct customer_id from customer_events
where customer_id > $1
order by customer_id
limit $2
"#;

pub(super) const CUSTOMERS_WITHOUT_EVENTS: &str = r#"
select c.id from customers c
where not exists (select 1 from customer_events e where e.customer_id = c.id)
order by c.id
limit $1
"#;

/// The backlog size, and when its oldest event occurred: one primary-key lookup rather than
/// a join over the whole backlog (health is polled while large backlogs drain).
pub(super) const OUTBOX_STATUS: &str = r#"
select
    (select count(*) from customer_events_pending),
    (select e.occurred_at_ms from customer_events e
     where e.position = (select min(p.position) from customer_events_pending p))
"#;

pub(super) const PING: &str = "select 1";

/// The oldest pending events; a single leader reads them, so no row locks are needed. The
/// positions are chosen first and the events looked up by them: as a join, PostgreSQL
/// merged the two tables from the first position of the log, so each batch read every
/// event published before it (275 ms a batch half-way through a 1M-event backlog, against
/// 4 ms this way; the drain fell from 20,000 to 6,000 events/s as it went). The batch is a
/// derived table because MySQL refuses `LIMIT` in an `IN` subquery.
pub(super) const PENDING_EVENTS: &str = r#"
select e.position, e.event_id, e.event_type, e.customer_id, e.sequence, e.occurred_at_ms, e.payload
from customer_events e
where e.position in (select position from
    (select p.position from customer_events_pending p order by p.position limit $1) batch)
order by e.position
"#;

/// Prefix of the statement that marks a batch published; `mark_published_sql` appends one
/// placeholder per position. Exactly the published positions: a range would also delete a
/// pending row that committed late inside it, and that event would never be published.
pub(super) const MARK_PUBLISHED_PREFIX: &str =
    "delete from customer_events_pending where position in (";

pub(super) const WATERMARK: &str = "select position from relay_watermark where id = 1";

/// Only ever forward: a relay that lost its lease unnoticed must not move it back. The new
/// position is bound twice (`$1`, `$2`).
pub(super) const SAVE_WATERMARK: &str =
    "update relay_watermark set position = $1 where id = 1 and position < $2";

/// Published positions above the watermark `$1` (a new leader's starting state; a few
/// batches at most, the limit only guards against the unexpected).
pub(super) const PUBLISHED_ABOVE: &str = r#"
select e.position from customer_events e
where e.position > $1
  and not exists (select 1 from customer_events_pending p where p.position = e.position)
order by e.position
limit 100000
"#;

/// The event type (`$2`, `$3`) and the customer id (`$4`, `$5`) are optional (null: any),
/// each bound twice.
pub(super) const SETTLED_EVENTS: &str = r#"
select position, event_id, event_type, customer_id, sequence, occurred_at_ms, payload
from customer_events
where position > $1
  and position <= (select w.position from relay_watermark w where w.id = 1)
  and ($2 is null or event_type = $3)
  and ($4 is null or customer_id = $5)
order by position
limit $6
"#;

pub(super) const FIRST_POSITION_AT: &str =
    "select min(position) from customer_events where occurred_at_ms >= $1";

pub(super) const LAST_POSITION_AT: &str =
    "select max(position) from customer_events where occurred_at_ms <= $1";

pub(super) const COUNT_EVENTS: &str = "select count(*) from customer_events";

pub(super) const EVENT_AT_OR_AFTER: &str = r#"
select position, occurred_at_ms from customer_events
where position >= $1
order by position
limit 1
"#;

/// `%` is the one remainder operator PostgreSQL, SQLite and MySQL share (`/` of integers
/// is a decimal on MySQL).
pub(super) const EVENTS_PER_SECOND: &str = r#"
select event_type, occurred_at_ms - occurred_at_ms % 1000 as second_ms, count(*) as n
from customer_events
where position >= $1 and position <= $2 and occurred_at_ms >= $3
group by event_type, occurred_at_ms - occurred_at_ms % 1000
"#;

/// `MARK_PUBLISHED_PREFIX` with `$1, …, $n)`.
pub(super) fn mark_published_sql(n: usize) -> String {
    let mut sql = String::from(MARK_PUBLISHED_PREFIX);
    for i in 1..=n {
        if i > 1 {
            sql.push_str(", ");
        }
        sql.push('$');
        sql.push_str(&i.to_string());
    }
    sql.push(')');
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every constant statement, for the placeholder rule (see the module docs).
    const STATEMENTS: &[&str] = &[
        INSERT_CUSTOMER_RETURNING_ID,
        INSERT_CUSTOMER,
        RESERVE_IDS_POSTGRES,
        LAST_ID_SQLITE,
        EXPIRE_IDEMPOTENCY,
        CLAIM_IDEMPOTENCY,
        FILL_IDEMPOTENCY,
        FIND_IDEMPOTENCY,
        FENCE_RELAY_LEASE,
        REWRITE_PAYLOAD,
        TOMBSTONE_IDEMPOTENCY_OF_CUSTOMER,
        UPDATE_CUSTOMER,
        DELETE_CUSTOMER,
        APPEND_EVENT,
        CUSTOMER_BY_ID,
        CUSTOMER_BY_EMAIL,
        COUNT_CUSTOMERS,
        COUNT_CUSTOMERS_POSTGRES,
        EVENTS_OF_CUSTOMER,
        LOGGED_CUSTOMER_IDS,
        CUSTOMERS_WITHOUT_EVENTS,
        OUTBOX_STATUS,
        PING,
        PENDING_EVENTS,
        WATERMARK,
        SAVE_WATERMARK,
        PUBLISHED_ABOVE,
        SETTLED_EVENTS,
        FIRST_POSITION_AT,
        EVENT_AT_OR_AFTER,
        EVENTS_PER_SECOND,
        LAST_POSITION_AT,
        COUNT_EVENTS,
        CUSTOMER_IDS,
        ALIGN_ID_SEQUENCE_POSTGRES,
    ];

    /// The `$n` numbers of `text` in order of appearance, outside string literals.
    fn numbers(text: &str) -> Vec<usize> {
        let mut numbers = Vec::new();
        let mut in_string = false;
        let bytes = text.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            match b {
                b'\'' => in_string = !in_string,
                b'$' if !in_string => {
                    let digits: String = text[i + 1..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    if let Ok(n) = digits.parse() {
                        numbers.push(n);
                    }
                }
                _ => {}
            }
        }
        numbers
    }

    #[test]
    fn every_statement_numbers_its_placeholders_once_each_in_order() {
        let like = Filter::Like {
            pattern: "%a%".into(),
        };
        let postings = Filter::Postings {
            trigrams: vec!["abc".into(), "bcd".into()],
            pattern: "%abcd%".into(),
        };
        let narrow = Filter::SearchTable {
            pattern: "%a%".into(),
        };
        let built = [
            list_page(Backend::MySql, &postings, true, true),
            list_page(Backend::Postgres, &narrow, true, true),
            count(&narrow),
            count(&Filter::Phrase {
                phrase: "\"abc\"".into(),
            }),
            count(&postings),
            trigram_frequencies(3, 50_000),
            list_page(Backend::Postgres, &like, true, true),
            list_page(Backend::MySql, &like, true, true),
            list_page(Backend::Sqlite, &Filter::All, false, false),
            count(&like),
            active_customers(Backend::Postgres, true, true),
            active_customers(Backend::MySql, true, true),
            mark_published_sql(3),
            values_sql(APPEND_EVENTS, 2, 6, false),
        ];
        for text in STATEMENTS
            .iter()
            .copied()
            .chain(built.iter().map(String::as_str))
        {
            let numbers = numbers(text);
            assert_eq!(
                numbers,
                (1..=numbers.len()).collect::<Vec<_>>(),
                "placeholders out of order in: {text}"
            );
            let mysql = for_backend(Backend::MySql, Cow::Owned(text.to_owned()));
            assert!(!mysql.contains('$'), "{mysql}");
            assert_eq!(mysql.matches('?').count(), numbers.len(), "{mysql}");
        }
    }

    #[test]
    fn mysql_and_sqlite_get_anonymous_placeholders_and_string_literals_stay() {
        for backend in [Backend::MySql, Backend::Sqlite] {
            assert_eq!(
                for_backend(
                    backend,
                    Cow::Borrowed(r"select '$1', x from t where a like $1 escape '\' and b = $2")
                ),
                r"select '$1', x from t where a like ? escape '\' and b = ?"
            );
        }
        assert!(matches!(
            for_backend(Backend::Postgres, Cow::Borrowed("select $1")),
            Cow::Borrowed("select $1")
        ));
    }

    #[test]
    fn values_are_numbered_or_anonymous() {
        assert_eq!(
            values_sql("insert into t (a, b) values ", 2, 2, false),
            "insert into t (a, b) values ($1, $2), ($3, $4)"
        );
        assert_eq!(values_sql("v ", 2, 1, true), "v (?), (?)");
    }

    #[test]
    fn list_statements_number_their_placeholders_in_bind_order() {
        let narrow = Filter::SearchTable {
            pattern: "%a%".into(),
        };
        assert_eq!(
            list_page(Backend::Postgres, &narrow, true, false),
            "select c.id, c.email, c.first_name, c.last_name, c.phone, c.is_active, \
             c.date_of_birth, c.address, c.preferences, c.created_at_ms, c.updated_at_ms, \
             c.version from (select id, created_at_ms from customers_search \
             where search_text like $1 escape '\\' and (created_at_ms, id) < ($2, $3) \
             order by created_at_ms + 0 desc, id desc limit $4) page \
             join customers c on c.id = page.id \
             order by page.created_at_ms desc, page.id desc"
        );
        let trigram = Filter::Trigram {
            phrase: "\"abc\"".into(),
            pattern: "%abc%".into(),
        };
        assert_eq!(
            count(&trigram),
            "select count(*) from customers where id in (select rowid from customers_search \
             where customers_search match $1) and search_text like $2 escape '\\'"
        );
        assert_eq!(
            count(&narrow),
            "select count(*) from customers_search where search_text like $1 escape '\\'"
        );
        assert_eq!(
            count(&Filter::Phrase {
                phrase: "\"abc\"".into()
            }),
            "select count(*) from customers_search where customers_search match $1"
        );
        let postings = Filter::Postings {
            trigrams: vec!["abc".into(), "bcd".into()],
            pattern: "%abcd%".into(),
        };
        assert_eq!(
            count(&postings),
            "select count(*) from customer_trigrams t0 straight_join customer_trigrams t1 \
             on t1.customer_id = t0.customer_id straight_join customers on id = t0.customer_id \
             where t0.trigram = $1 and t1.trigram = $2 and search_text like $3 escape '\\'"
        );
        assert_eq!(
            count(&Filter::Walk {
                pattern: "%a%".into()
            }),
            "select count(*) from customers where case when search_text like $1 escape '\\' \
             then 1 else 0 end > 0"
        );
        assert!(
            list_page(Backend::Sqlite, &Filter::All, false, true).ends_with(
                "limit $1 offset $2) page join customers c on c.id = page.id \
             order by page.created_at_ms desc, page.id desc"
            )
        );
        assert_eq!(
            active_customers(Backend::Postgres, true, true),
            format!(
                "select {} from customers where is_active = true and (created_at_ms, id) < ($1, $2) \
                 order by created_at_ms desc, id desc limit $3",
                customer_columns!()
            )
        );
    }
}
