//! The customer statistics read model (`stats`): maintained from the settled event log by
//! the projection runner of `customer-events` (see `startup.rs`), never in the write
//! transaction.
//!
//! Two tables per generation:
//! - `…customers`: one row per customer ever seen — active, deleted, erased, country, day
//!   of sign-up — because a CustomerDeleted carries none of what it must subtract;
//! - `…counts`: `(kind, name, n)` with kind `total` (`active`, `inactive`, `deleted`,
//!   `erased`), `country` (as stored, trimmed; `unknown` without an address) and `day`
//!   (`YYYY-MM-DD` of `createdAt`, UTC). Countries and days count customers that are not
//!   deleted, so every number equals a direct count of the `customers` table.
//!
//! A batch is applied in memory first (its customers' rows read with one query), then
//! written with a handful of statements whatever its size: the rows it changed deleted and
//! inserted again, and the counts it moved read, deleted and inserted again with their new
//! values. Erasure clears the customer's country (its only personal datum here).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use customer_events::projection::{Db, LogEvent, ProjectionError, ReadModel, Tables};
use customer_events::{Address, CustomerEvent};
use sqlx::Row;

/// The model's name: its checkpoint key and table prefix (`rm_stats_g<n>_…`).
pub const STATS: &str = "stats";

/// Rows per multi-row insert: 6 values each stays under every engine's parameter limit.
const INSERT_CHUNK: usize = 500;

#[derive(Debug, Default)]
pub struct CustomerStatsModel;

/// One customer as the model keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Customer {
    active: bool,
    deleted: bool,
    erased: bool,
    country: Option<String>,
    day: String,
}

impl Customer {
    /// The counts this customer is in.
    fn counted(&self) -> Vec<(&'static str, String)> {
        if self.deleted {
            return Vec::new();
        }
        let total = if self.active { "active" } else { "inactive" };
        vec![
            ("total", total.to_owned()),
            (
                "country",
                self.country.clone().unwrap_or_else(|| "unknown".to_owned()),
            ),
            ("day", self.day.clone()),
        ]
    }
}

/// The country as counted: trimmed, `None` without an address.
fn country_of(address: Option<&Address>) -> Option<String> {
    address
        .map(|a| a.country.trim().to_owned())
        .filter(|c| !c.is_empty())
}

/// `YYYY-MM-DD` of a contract timestamp.
fn day_of(timestamp: &str) -> String {
    timestamp.get(..10).unwrap_or(timestamp).to_owned()
}

/// The batch applied to `customers` (the rows it touches, as stored before it): the
/// changed rows and the moves of the counts.
fn fold(
    customers: &mut HashMap<i64, Customer>,
    events: &[LogEvent],
) -> (BTreeSet<i64>, BTreeMap<(&'static str, String), i64>) {
    let mut changed = BTreeSet::new();
    let mut moves: BTreeMap<(&'static str, String), i64> = BTreeMap::new();
    let mut add = |keys: Vec<(&'static str, String)>, by: i64| {
        for key in keys {
            *moves.entry(key).or_default() += by;
        }
    };
    for event in events {
        if event.envelope.metadata.aggregate_type.is_some() {
            // A saga's event: its aggregate is no customer.
            continue;
        }
        let id = event.envelope.metadata.aggregate_id;
        let before = customers.get(&id).cloned();
        let after = match (&event.envelope.data, before.clone()) {
            (CustomerEvent::CustomerCreated(data), _) => Some(Customer {
                active: data.is_active,
                deleted: false,
                erased: false,
                country: country_of(data.address.as_ref()),
                day: day_of(&data.created_at),
            }),
            (CustomerEvent::CustomerImported(data), _) => Some(Customer {
                active: data.is_active,
                deleted: false,
                erased: false,
                country: country_of(data.address.as_ref()),
                day: day_of(&data.created_at),
            }),
            (CustomerEvent::CustomerUpdated(data), Some(mut customer)) if !customer.deleted => {
                customer.active = data.is_active;
                customer.country = country_of(data.address.as_ref());
                Some(customer)
            }
            (CustomerEvent::CustomerActivated(_), Some(mut customer)) if !customer.deleted => {
                customer.active = true;
                Some(customer)
            }
            (CustomerEvent::CustomerDeactivated(_), Some(mut customer)) if !customer.deleted => {
                customer.active = false;
                Some(customer)
            }
            (CustomerEvent::CustomerDeleted(_), Some(mut customer)) => {
                customer.deleted = true;
                Some(customer)
            }
            (CustomerEvent::CustomerErased(_), Some(mut customer)) => {
                customer.deleted = true;
                customer.erased = true;
                customer.country = None;
                Some(customer)
            }
            // A change of a customer this model never saw created (or already deleted):
            // nothing to count.
            _ => before.clone(),
        };
        let Some(after) = after else { continue };
        if before.as_ref() == Some(&after) {
            continue;
        }
        if let Some(before) = &before {
            add(before.counted(), -1);
            if before.deleted != after.deleted {
                add(vec![("total", "deleted".to_owned())], 1);
            }
            if before.erased != after.erased {
                add(vec![("total", "erased".to_owned())], 1);
            }
        }
        add(after.counted(), 1);
        customers.insert(id, after);
        changed.insert(id);
    }
    moves.retain(|_, n| *n != 0);
    (changed, moves)
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl ReadModel for CustomerStatsModel {
    fn name(&self) -> &'static str {
        STATS
    }

    fn tables(&self) -> &'static [&'static str] {
        &["customers", "counts"]
    }

    async fn create(&self, db: &mut Db<'_>, tables: &Tables) -> Result<(), ProjectionError> {
        // Names and countries compare exactly on MySQL too (its default collations would
        // make "UK" and "Uk" one key).
        let options = if db.is_mysql() {
            " character set utf8mb4 collate utf8mb4_bin"
        } else {
            ""
        };
        let statements = [
            format!(
                "create table if not exists {} (id bigint not null primary key, \
                 is_active bigint not null, \
                 deleted bigint not null, erased bigint not null, country varchar(200), \
                 created_day varchar(10) not null){options}",
                tables.name("customers")
            ),
            format!(
                "create table if not exists {} (kind varchar(16) not null, \
                 name varchar(200) not null, \
                 n bigint not null, primary key (kind, name)){options}",
                tables.name("counts")
            ),
        ];
        for statement in statements {
            let query = db.query(statement);
            query.execute(db.conn()).await?;
        }
        Ok(())
    }

    async fn apply(
        &self,
        db: &mut Db<'_>,
        tables: &Tables,
        events: &[LogEvent],
    ) -> Result<(), ProjectionError> {
        let customers_table = tables.name("customers");
        let counts_table = tables.name("counts");
        // The stored rows this batch needs: customers whose first event here is not their
        // creation. (A replay of a log of sign-ups reads nothing back.)
        let mut first_is_creation: HashMap<i64, bool> = HashMap::new();
        for event in events
            .iter()
            .filter(|e| e.envelope.metadata.aggregate_type.is_none())
        {
            first_is_creation
                .entry(event.envelope.metadata.aggregate_id)
                .or_insert(matches!(
                    event.envelope.data,
                    CustomerEvent::CustomerCreated(_) | CustomerEvent::CustomerImported(_)
                ));
        }
        let stored: Vec<i64> = first_is_creation
            .iter()
            .filter(|(_, created)| !**created)
            .map(|(id, _)| *id)
            .collect();
        let mut customers = HashMap::with_capacity(first_is_creation.len());
        for chunk in stored.chunks(INSERT_CHUNK) {
            let mut query = db.query(format!(
                "select id, is_active, deleted, erased, country, created_day from {customers_table} \
                 where id in ({})",
                placeholders(1, chunk.len())
            ));
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(db.conn()).await? {
                let flag = |i: usize| row.try_get::<i64, _>(i).map(|v| v != 0);
                customers.insert(
                    row.try_get::<i64, _>(0)?,
                    Customer {
                        active: flag(1)?,
                        deleted: flag(2)?,
                        erased: flag(3)?,
                        country: row.try_get(4)?,
                        day: row.try_get(5)?,
                    },
                );
            }
        }
        let loaded: BTreeSet<i64> = customers.keys().copied().collect();
        let (changed, moves) = fold(&mut customers, events);

        // Rows that were stored are replaced; new ones only inserted.
        let replaced: Vec<i64> = changed.intersection(&loaded).copied().collect();
        for chunk in replaced.chunks(INSERT_CHUNK) {
            let mut delete = db.query(format!(
                "delete from {customers_table} where id in ({})",
                placeholders(1, chunk.len())
            ));
            for id in chunk {
                delete = delete.bind(*id);
            }
            delete.execute(db.conn()).await?;
        }
        let changed: Vec<i64> = changed.into_iter().collect();
        for chunk in changed.chunks(INSERT_CHUNK) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", placeholders(i * 6 + 1, 6)))
                .collect();
            let mut insert = db.query(format!(
                "insert into {customers_table} \
                 (id, is_active, deleted, erased, country, created_day) values {}",
                values.join(", ")
            ));
            for id in chunk {
                let customer = &customers[id];
                insert = insert
                    .bind(*id)
                    .bind(i64::from(customer.active))
                    .bind(i64::from(customer.deleted))
                    .bind(i64::from(customer.erased))
                    .bind(customer.country.clone())
                    .bind(customer.day.clone());
            }
            insert.execute(db.conn()).await?;
        }

        // The counts moved: their current values, then delete and insert the new ones.
        let mut by_kind: BTreeMap<&'static str, Vec<(&String, i64)>> = BTreeMap::new();
        for ((kind, name), by) in &moves {
            by_kind.entry(kind).or_default().push((name, *by));
        }
        let mut rows: Vec<(&'static str, String, i64)> = Vec::new();
        for (kind, names) in by_kind {
            for chunk in names.chunks(INSERT_CHUNK) {
                let mut select = db.query(format!(
                    "select name, n from {counts_table} where kind = $1 and name in ({})",
                    placeholders(2, chunk.len())
                ));
                select = select.bind(kind);
                for (name, _) in chunk {
                    select = select.bind((*name).clone());
                }
                let mut current: HashMap<String, i64> = HashMap::new();
                for row in select.fetch_all(db.conn()).await? {
                    current.insert(row.try_get(0)?, row.try_get(1)?);
                }
                let mut delete = db.query(format!(
                    "delete from {counts_table} where kind = $1 and name in ({})",
                    placeholders(2, chunk.len())
                ));
                delete = delete.bind(kind);
                for (name, _) in chunk {
                    delete = delete.bind((*name).clone());
                }
                delete.execute(db.conn()).await?;
                for (name, by) in chunk {
                    let n = current.get(*name).copied().unwrap_or(0) + by;
                    if n != 0 {
                        rows.push((kind, (*name).clone(), n));
                    }
                }
            }
        }
        for chunk in rows.chunks(INSERT_CHUNK) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", placeholders(i * 3 + 1, 3)))
                .collect();
            let mut insert = db.query(format!(
                "insert into {counts_table} (kind, name, n) values {}",
                values.join(", ")
            ));
            for (kind, name, n) in chunk {
                insert = insert.bind(*kind).bind(name.clone()).bind(*n);
            }
            insert.execute(db.conn()).await?;
        }
        Ok(())
    }
}

/// The counts of the serving generation: `(kind, name, n)`, days from `since_day` on.
pub(super) fn counts_query(tables: &Tables) -> String {
    format!(
        "select kind, name, n from {} where kind <> 'day' or name >= $1",
        tables.name("counts")
    )
}

#[cfg(test)]
mod tests {
    use customer_events::{
        CustomerCreated, CustomerDeleted, CustomerErased, CustomerEvent, Envelope,
    };

    use super::*;

    fn event(position: i64, id: i64, data: CustomerEvent) -> LogEvent {
        LogEvent {
            position,
            envelope: Envelope::new(
                data,
                format!("e{position}"),
                "2026-01-01T10:00:00.000Z".to_owned(),
                id,
                position,
                "c".to_owned(),
            ),
        }
    }

    fn created(id: i64, country: Option<&str>, day: &str) -> CustomerEvent {
        CustomerEvent::CustomerCreated(CustomerCreated {
            customer_id: id,
            email: format!("c{id}@example.com"),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            full_name: "Ann Lee".into(),
            phone: None,
            is_active: true,
            date_of_birth: None,
            address: country.map(|c| Address {
                street: "1 Road".into(),
                city: "Town".into(),
                state: None,
                zip_code: None,
                country: c.into(),
            }),
            preferences: None,
            created_at: format!("{day}T10:00:00.000Z"),
        })
    }

    #[test]
    fn a_deletion_and_an_erasure_move_every_count_once() {
        let mut customers = HashMap::new();
        let events = [
            event(1, 1, created(1, Some("UK"), "2026-01-01")),
            event(2, 2, created(2, None, "2026-01-02")),
            event(
                3,
                1,
                CustomerEvent::CustomerDeleted(CustomerDeleted {
                    customer_id: 1,
                    email: "x".into(),
                    full_name: "x".into(),
                    deleted_at: "2026-01-03T10:00:00.000Z".into(),
                }),
            ),
            event(
                4,
                1,
                CustomerEvent::CustomerErased(CustomerErased {
                    customer_id: 1,
                    erased_at: "2026-01-03T10:00:00.000Z".into(),
                }),
            ),
        ];
        let (changed, moves) = fold(&mut customers, &events);
        assert_eq!(changed, BTreeSet::from([1, 2]));
        let expected: BTreeMap<(&str, String), i64> = [
            (("country", "unknown".to_owned()), 1),
            (("day", "2026-01-02".to_owned()), 1),
            (("total", "active".to_owned()), 1),
            (("total", "deleted".to_owned()), 1),
            (("total", "erased".to_owned()), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(moves, expected);
        assert_eq!(customers[&1].country, None, "erased");
        assert!(customers[&1].deleted && customers[&1].erased);
    }
}
