//! The `email_key` backfill: rows written before the column existed get the key of their
//! e-mail's skeleton, in id order. A row whose key an earlier row already holds (two
//! look-alike customers from before) keeps no key and is reported — by id, never by address
//! — every time the backfill runs, until an operator resolves the pair; the backfill changes
//! nothing else. Only rows without a key are read, so once done a run reads just those pairs.
//!
//! It runs page by page on the writer, releasing it between pages, so writes go on beside
//! it: `serve` runs it in the background after start (keying 200,000 customers took 23 s on
//! PostgreSQL, 7 s on MariaDB and SQLite, too long to hold start-up), `migrate` and `import`
//! before they go on. A write that meanwhile sets a row's key (an update) wins: the backfill
//! only sets keys that are still NULL.

use std::collections::HashMap;

use sqlx::{AnyConnection, Connection, Row};

use crate::application::StoreError;
use crate::domain::email_skeleton;

use super::error::{classify, classify_customer_write};
use super::sql;
use super::sql_store::SqlStore;
use super::Backend;

/// Rows read, and keyed in one statement, per round trip.
const PAGE: usize = 500;

/// Tries of a page whose update met a key taken meanwhile (a concurrent write).
const TRIES: u32 = 3;

/// Two customers whose e-mails look alike: `kept` holds the key, `unkeyed` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookAlike {
    pub kept: i64,
    pub unkeyed: i64,
}

/// What [`SqlStore::key_emails`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyedEmails {
    /// Customers whose key it wrote.
    pub keyed: u64,
    /// The pairs of customers whose e-mails look alike; the later keeps no key.
    pub look_alikes: Vec<LookAlike>,
}

/// One page's outcome.
struct Page {
    read: usize,
    last: i64,
    keyed: u64,
    look_alikes: Vec<LookAlike>,
}

impl SqlStore {
    /// Keys every customer row that has no `email_key`, page by page (see the module docs);
    /// logs the look-alike pairs and refreshes the planner's statistics if it keyed any.
    pub async fn key_emails(&self) -> Result<KeyedEmails, StoreError> {
        let mut done = KeyedEmails::default();
        let mut after = 0i64;
        let mut tries = 0;
        loop {
            let page = match self
                .on_writer(async |lease| self.key_page(lease, after).await)
                .await
            {
                Ok(page) => page,
                // A key taken between the page's look-up and its update: read it again.
                Err(StoreError::EmailTaken) if tries + 1 < TRIES => {
                    tries += 1;
                    continue;
                }
                Err(error) => return Err(error),
            };
            tries = 0;
            done.keyed += page.keyed;
            done.look_alikes.extend(page.look_alikes);
            after = page.last;
            if page.read < PAGE {
                break;
            }
        }
        if done.keyed > 0 {
            tracing::info!(customers = done.keyed, "e-mail skeleton keys written");
            // The planner last saw every key NULL (the column is new): it would walk the
            // table for the next run's "rows without a key" instead of the key's index.
            if let Err(error) = self.analyze().await {
                tracing::warn!(%error, "refreshing the statistics after the key backfill failed");
            }
        }
        for pair in &done.look_alikes {
            tracing::warn!(
                customer = pair.unkeyed,
                looks_like = pair.kept,
                "two customers' e-mails look alike (one skeleton): the second keeps no key, \
                 and a lookup by e-mail finds it only by its exact address, until one of the \
                 two is changed or deleted"
            );
        }
        Ok(done)
    }

    /// Keys the rows without a key after `after` (a page of them).
    async fn key_page(
        &self,
        connection: &mut AnyConnection,
        after: i64,
    ) -> Result<Page, StoreError> {
        let anonymous = self.backend != Backend::Postgres;
        let rows = self
            .query(sql::CUSTOMERS_WITHOUT_EMAIL_KEY)
            .bind(after)
            .bind(PAGE as i64)
            .fetch_all(&mut *connection)
            .await
            .map_err(classify)?;
        let mut page = Page {
            read: rows.len(),
            last: after,
            keyed: 0,
            look_alikes: Vec::new(),
        };
        let mut keys: Vec<(i64, String)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get(0).map_err(classify)?;
            let email: String = row.try_get(1).map_err(classify)?;
            // The address as stored, NFC or not: the skeleton is of its decomposition.
            keys.push((id, super::row::key_of_skeleton(&email_skeleton(&email))));
            page.last = id;
        }
        if keys.is_empty() {
            return Ok(page);
        }
        // Keys other rows hold already, and the page's own repeats: the lower id keeps.
        let statement = sql::values_sql(sql::EMAIL_KEYS_TAKEN_PREFIX, 1, keys.len(), anonymous);
        let mut taken = self.query(statement);
        for (_, key) in &keys {
            taken = taken.bind(key.clone());
        }
        let mut holders: HashMap<String, i64> = HashMap::new();
        for row in taken.fetch_all(&mut *connection).await.map_err(classify)? {
            holders.insert(
                row.try_get(1).map_err(classify)?,
                row.try_get(0).map_err(classify)?,
            );
        }
        keys.retain(|(id, key)| match holders.get(key) {
            Some(&kept) => {
                page.look_alikes.push(LookAlike { kept, unkeyed: *id });
                false
            }
            None => {
                holders.insert(key.clone(), *id);
                true
            }
        });
        if keys.is_empty() {
            return Ok(page);
        }
        let mut tx = connection.begin().await.map_err(classify)?;
        let mut update = self.query(sql::set_email_keys_sql(keys.len(), anonymous));
        for (id, key) in &keys {
            update = update.bind(*id).bind(key.clone());
        }
        for (id, _) in &keys {
            update = update.bind(*id);
        }
        let updated = update
            .execute(&mut *tx)
            .await
            .map_err(classify_customer_write)?;
        tx.commit().await.map_err(classify)?;
        page.keyed = updated.rows_affected();
        Ok(page)
    }
}
