//! `customer-service import`: the original service's customers brought over with their ids
//! and times, each with a CustomerImported event. A re-run imports only what is missing,
//! and brings what changed in the source since as CustomerUpdated (and deletions as
//! CustomerDeleted), so the original can keep serving until the switch. Reading the source
//! is the CLI's (`cli/import.rs`); this decides what each row becomes.
//!
//! A row whose id is already here is left alone when it is equal; when it was imported and
//! the source changed it later (a newer `updatedAt`), the change is applied as a PATCH would
//! apply it; when it was imported and changed here since, it is kept as it is here. Anything
//! our rules refuse is a [`Rejected`] row with the reason, never silently dropped.

use std::collections::{HashMap, HashSet};

use customer_events::EventType;
use serde_json::{Map, Value};

use crate::domain::{
    parse_new_customer, Customer, CustomerFields, CustomerId, DomainError, Email, FieldErrors,
    Timestamp,
};

use super::error::ApplicationError;
use super::new_event::WriteContext;
use super::ports::CustomerStore;

/// One row of the original's `customers` table.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceCustomer {
    pub id: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The row as the body of a `POST /customers` (every optional field present, `null`
    /// when the column is NULL), validated by the same rules.
    pub body: Map<String, Value>,
}

/// A source row that is not imported, and why (never its values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub id: i64,
    pub reason: String,
}

/// What an import did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportTally {
    /// New here, with a CustomerImported each.
    pub imported: u64,
    /// Here already, as in the source.
    pub unchanged: u64,
    /// Changed in the source after their import: updated here (CustomerUpdated, …).
    pub updated: u64,
    /// Changed here after their import, and not in the source since: kept as they are.
    pub changed_here: u64,
    /// Deleted here after their import: left deleted.
    pub deleted_here: u64,
    /// Imported earlier and gone from the source since: deleted here (CustomerDeleted).
    pub deleted: u64,
    pub rejected: Vec<Rejected>,
}

impl ImportTally {
    /// Adds `other`'s counts and rejections.
    pub fn add(&mut self, other: ImportTally) {
        self.imported += other.imported;
        self.unchanged += other.unchanged;
        self.updated += other.updated;
        self.changed_here += other.changed_here;
        self.deleted_here += other.deleted_here;
        self.deleted += other.deleted;
        self.rejected.extend(other.rejected);
    }
}

/// A batch that passed [`RowCheck::check`]: valid rows with their ids and fields.
pub struct Checked(Vec<(SourceCustomer, CustomerId, CustomerFields)>);

/// The rules every source row must pass, in id order across the whole run: our rules for a
/// customer, and no e-mail equal ignoring case to an earlier row's (possible under a
/// case-sensitive source collation), nor looking like it (the same [`Email::skeleton`]): the
/// lowest id wins.
pub struct RowCheck {
    today: chrono::NaiveDate,
    /// The lowest source id of every e-mail skeleton seen so far, with its e-mail.
    emails: HashMap<String, (i64, String)>,
}

impl RowCheck {
    /// Dates (of birth) are checked against `today`.
    pub fn new(today: chrono::NaiveDate) -> Self {
        RowCheck {
            today,
            emails: HashMap::new(),
        }
    }

    /// The valid rows of a batch (rows ascending by id, batches in order); rejections go to
    /// `tally`.
    pub fn check(&mut self, rows: Vec<SourceCustomer>, tally: &mut ImportTally) -> Checked {
        let mut valid = Vec::with_capacity(rows.len());
        for row in rows {
            match self.validate(&row) {
                Ok((id, fields)) => valid.push((row, id, fields)),
                Err(reason) => tally.rejected.push(Rejected { id: row.id, reason }),
            }
        }
        Checked(valid)
    }

    /// The row's id and fields by our rules, or why not.
    fn validate(&mut self, row: &SourceCustomer) -> Result<(CustomerId, CustomerFields), String> {
        let id = CustomerId::new(row.id).ok_or("the id is not a positive integer")?;
        let fields = parse_new_customer(&row.body, self.today).map_err(describe)?;
        let skeleton = fields.email.skeleton();
        match self.emails.get(&skeleton) {
            Some((winner, email)) if *winner != row.id => Err(if email == fields.email.as_str() {
                format!("the e-mail equals that of source row {winner} ignoring case")
            } else {
                format!("the e-mail looks like that of source row {winner}")
            }),
            Some(_) => Ok((id, fields)),
            None => {
                let email = fields.email.as_str().to_owned();
                self.emails.insert(skeleton, (row.id, email));
                Ok((id, fields))
            }
        }
    }
}

/// What a run does with checked batches, against this database.
pub struct Import<'a> {
    store: &'a dyn CustomerStore,
    ctx: WriteContext,
    /// False: a dry run, which decides everything and writes nothing.
    write: bool,
}

impl<'a> Import<'a> {
    pub fn new(store: &'a dyn CustomerStore, ctx: WriteContext, write: bool) -> Self {
        Import { store, ctx, write }
    }

    /// A checked batch against this database, and its writes. The checked batches of one
    /// run hold distinct ids and e-mails, so several may be applied at once.
    pub async fn apply(&self, checked: Checked) -> Result<ImportTally, ApplicationError> {
        let Checked(valid) = checked;
        let mut tally = ImportTally::default();
        let ids: Vec<CustomerId> = valid.iter().map(|(_, id, _)| *id).collect();
        let existing: HashMap<CustomerId, Customer> = self
            .store
            .find_many(&ids)
            .await?
            .into_iter()
            .map(|customer| (customer.id, customer))
            .collect();
        let first_events: HashMap<CustomerId, EventType> = self
            .store
            .first_event_types(&ids)
            .await?
            .into_iter()
            .collect();
        let new_emails: Vec<Email> = valid
            .iter()
            .filter(|(_, id, _)| !first_events.contains_key(id))
            .map(|(_, _, fields)| fields.email.clone())
            .collect();
        // By skeleton: a look-alike of a customer's e-mail is taken as well.
        let taken: HashMap<String, (CustomerId, Email)> = self
            .store
            .find_by_emails(&new_emails)
            .await?
            .into_iter()
            .map(|customer| {
                let email = customer.fields.email;
                (email.skeleton(), (customer.id, email))
            })
            .collect();

        let mut inserts = Vec::new();
        for (row, id, fields) in valid {
            let reject = |reason: &str| Rejected {
                id: row.id,
                reason: reason.to_owned(),
            };
            let imported_here = first_events.get(&id) == Some(&EventType::CustomerImported);
            match (existing.get(&id), first_events.get(&id)) {
                (Some(current), _) if !imported_here => {
                    if current.fields == fields && current.created_at == row.created_at {
                        tally.unchanged += 1;
                    } else {
                        tally
                            .rejected
                            .push(reject("the id belongs to another customer here"));
                    }
                }
                (Some(current), _) if current.fields == fields => tally.unchanged += 1,
                (Some(current), _) if row.updated_at > current.updated_at => {
                    match self.catch_up(id, &row).await {
                        Ok(()) => tally.updated += 1,
                        Err(reason) => tally.rejected.push(reject(&reason)),
                    }
                }
                (Some(_), _) => tally.changed_here += 1,
                (None, Some(EventType::CustomerImported)) => tally.deleted_here += 1,
                (None, Some(_)) => tally
                    .rejected
                    .push(reject("the id belongs to a customer deleted here")),
                (None, None) => match taken.get(&fields.email.skeleton()) {
                    Some((other, email)) => tally.rejected.push(Rejected {
                        id: row.id,
                        reason: if *email == fields.email {
                            format!("the e-mail belongs to customer {other} here")
                        } else {
                            format!("the e-mail looks like that of customer {other} here")
                        },
                    }),
                    None => {
                        let change = Customer::imported(id, fields, row.created_at, row.updated_at);
                        let events = self.ctx.seal(id, 1, &change.events);
                        inserts.push((change.customer, events));
                    }
                },
            }
        }
        if self.write && !inserts.is_empty() {
            self.store.insert_existing(&inserts).await?;
        }
        tally.imported += inserts.len() as u64;
        Ok(tally)
    }

    /// Deletes here the imported customers whose ids are not in `source_ids` (all of the
    /// source's ids, ascending): rows deleted in the source since their import. Walks the
    /// ids here by primary key; only those missing from the source are looked up further.
    pub async fn delete_missing(
        &self,
        source_ids: &[i64],
        tally: &mut ImportTally,
    ) -> Result<(), ApplicationError> {
        const PAGE: i64 = 10_000;
        let mut after = 0;
        loop {
            let ids = self.store.customer_ids(after, PAGE).await?;
            let missing: Vec<CustomerId> = ids
                .iter()
                .filter(|id| source_ids.binary_search(id).is_err())
                .filter_map(|&id| CustomerId::new(id))
                .collect();
            for (id, first) in self.store.first_event_types(&missing).await? {
                if first != EventType::CustomerImported {
                    continue;
                }
                if self.write {
                    match super::delete_customer(self.store, &self.ctx, id, None).await {
                        Ok(()) | Err(ApplicationError::NotFound) => {}
                        Err(error) => return Err(error),
                    }
                }
                tally.deleted += 1;
            }
            match ids.last() {
                Some(&last) if ids.len() as i64 == PAGE => after = last,
                _ => return Ok(()),
            }
        }
    }

    /// Applies the source's later state to an imported customer, as a PATCH of every field
    /// at the source's `updatedAt`; or why it cannot be.
    async fn catch_up(&self, id: CustomerId, row: &SourceCustomer) -> Result<(), String> {
        if !self.write {
            return Ok(());
        }
        let ctx = WriteContext {
            now: row.updated_at,
            ..self.ctx.clone()
        };
        match super::update_customer(self.store, &ctx, id, &row.body, None).await {
            Ok(_) => Ok(()),
            Err(ApplicationError::EmailTaken) => {
                Err("the e-mail belongs to another customer here".to_owned())
            }
            Err(ApplicationError::Domain(error)) => Err(describe(error)),
            Err(error) => Err(format!("the update failed: {error}")),
        }
    }
}

/// `field: message` pairs of a validation failure (the messages name rules, not values).
fn describe(error: DomainError) -> String {
    let DomainError::Validation(errors) = error;
    describe_fields(&errors)
}

fn describe_fields(errors: &FieldErrors) -> String {
    errors
        .iter()
        .map(|(field, messages)| format!("{field}: {}", messages.join("; ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How an imported customer differs from its source row, by field name (never values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Not here at all (neither imported nor rejected as invalid).
    Missing,
    Fields(Vec<&'static str>),
}

/// `import --verify`: every valid row of `rows` compared with the customer of its id here,
/// after the documented normalisation. Rows our rules reject are skipped (they are listed by
/// the import itself); so is the second of two e-mails equal ignoring case or looking alike,
/// by `seen_emails`, which carries the e-mail skeletons of earlier batches of the same run.
pub async fn verify_import(
    store: &dyn CustomerStore,
    today: chrono::NaiveDate,
    rows: &[SourceCustomer],
    seen_emails: &mut HashSet<String>,
) -> Result<Vec<(i64, Difference)>, ApplicationError> {
    let mut parsed = Vec::with_capacity(rows.len());
    for row in rows {
        if let (Some(id), Ok(fields)) = (
            CustomerId::new(row.id),
            parse_new_customer(&row.body, today),
        ) {
            parsed.push((row, id, fields));
        }
    }
    let ids: Vec<CustomerId> = parsed.iter().map(|(_, id, _)| *id).collect();
    let here: HashMap<CustomerId, Customer> = store
        .find_many(&ids)
        .await?
        .into_iter()
        .map(|customer| (customer.id, customer))
        .collect();
    let mut differences = Vec::new();
    for (row, id, fields) in parsed {
        let Some(customer) = here.get(&id) else {
            if seen_emails.insert(fields.email.skeleton()) {
                differences.push((row.id, Difference::Missing));
            }
            continue;
        };
        seen_emails.insert(fields.email.skeleton());
        let ours = &customer.fields;
        let mut names = Vec::new();
        let mut differs = |name: &'static str, differ: bool| {
            if differ {
                names.push(name);
            }
        };
        differs("email", ours.email != fields.email);
        differs("firstName", ours.first_name != fields.first_name);
        differs("lastName", ours.last_name != fields.last_name);
        differs("phone", ours.phone != fields.phone);
        differs("isActive", ours.is_active != fields.is_active);
        differs("dateOfBirth", ours.date_of_birth != fields.date_of_birth);
        differs("address", ours.address != fields.address);
        differs("preferences", ours.preferences != fields.preferences);
        differs("createdAt", customer.created_at != row.created_at);
        differs("updatedAt", customer.updated_at != row.updated_at);
        if !names.is_empty() {
            differences.push((row.id, Difference::Fields(names)));
        }
    }
    Ok(differences)
}
