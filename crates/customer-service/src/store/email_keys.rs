//! The `email_key` backfill: rows written before the column existed get the key of their
//! e-mail's skeleton, in id order, right after the migrations. A row whose key an earlier
//! row already holds (two look-alike customers from before) keeps no key and is reported —
//! by id, never by address — at every start until an operator resolves the pair; the
//! backfill changes nothing else. Only rows without a key are read, so a start after the
//! first one reads just those pairs.

use std::collections::HashMap;

use sqlx::{AnyConnection, Connection, Row};

use crate::domain::email_skeleton;

use super::sql;
use super::sql_store::SqlStore;
use super::Backend;

/// Rows read, and keyed in one statement, per round trip.
const PAGE: usize = 500;

/// Two customers whose e-mails look alike: `kept` holds the key, `unkeyed` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookAlike {
    pub kept: i64,
    pub unkeyed: i64,
}

impl SqlStore {
    /// Keys every row that has none; how many it keyed, and the look-alike pairs left
    /// without one.
    pub(super) async fn backfill_email_keys(
        &self,
        connection: &mut AnyConnection,
    ) -> Result<(u64, Vec<LookAlike>), sqlx::Error> {
        let anonymous = self.backend != Backend::Postgres;
        let mut pairs = Vec::new();
        let mut keyed = 0u64;
        let mut after = 0i64;
        loop {
            let rows = self
                .query(sql::CUSTOMERS_WITHOUT_EMAIL_KEY)
                .bind(after)
                .bind(PAGE as i64)
                .fetch_all(&mut *connection)
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get(0)?;
            let mut page: Vec<(i64, String)> = Vec::with_capacity(rows.len());
            for row in &rows {
                let email: String = row.try_get(1)?;
                // The address as stored, NFC or not: the skeleton is of its decomposition.
                page.push((
                    row.try_get(0)?,
                    super::row::key_of_skeleton(&email_skeleton(&email)),
                ));
            }
            // Keys another row holds already, and the page's own repeats: the lower id keeps.
            let statement = sql::values_sql(sql::EMAIL_KEYS_TAKEN_PREFIX, 1, page.len(), anonymous);
            let mut taken_query = self.query(statement);
            for (_, key) in &page {
                taken_query = taken_query.bind(key.clone());
            }
            let mut holders: HashMap<String, i64> = HashMap::new();
            for row in taken_query.fetch_all(&mut *connection).await? {
                holders.insert(row.try_get(1)?, row.try_get(0)?);
            }
            let mut keys = Vec::with_capacity(page.len());
            for (id, key) in page {
                match holders.get(&key) {
                    Some(&kept) => pairs.push(LookAlike { kept, unkeyed: id }),
                    None => {
                        holders.insert(key.clone(), id);
                        keys.push((id, key));
                    }
                }
            }
            if !keys.is_empty() {
                let mut tx = connection.begin().await?;
                let mut update = self.query(sql::set_email_keys_sql(keys.len(), anonymous));
                for (id, key) in &keys {
                    update = update.bind(*id).bind(key.clone());
                }
                for (id, _) in &keys {
                    update = update.bind(*id);
                }
                update.execute(&mut *tx).await?;
                tx.commit().await?;
                keyed += keys.len() as u64;
            }
            if rows.len() < PAGE {
                break;
            }
        }
        if keyed > 0 {
            tracing::info!(customers = keyed, "e-mail skeleton keys written");
        }
        for pair in &pairs {
            tracing::warn!(
                customer = pair.unkeyed,
                looks_like = pair.kept,
                "two customers' e-mails look alike (one skeleton): the second keeps no key, \
                 and a lookup by e-mail finds it only by its exact address, until one of the \
                 two is changed or deleted"
            );
        }
        Ok((keyed, pairs))
    }
}
