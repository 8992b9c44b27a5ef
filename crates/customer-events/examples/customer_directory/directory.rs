//! The read model of the example: a customer directory a support team searches by any part
//! of a name or an e-mail address, optionally by country. One table, `rm_directory_g<n>_people`,
//! in the team's own database; deleted and erased customers leave it (an erasure removes the
//! person's data from this copy too).

use async_trait::async_trait;
use customer_events::projection::{Db, LogEvent, ProjectionError, ReadModel, Tables};
use customer_events::{Address, CustomerEvent};

pub struct Directory;

/// One person as the directory lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub country: Option<String>,
    pub active: bool,
}

impl Person {
    fn new(id: i64, name: &str, email: &str, address: Option<&Address>, active: bool) -> Person {
        Person {
            id,
            name: name.to_owned(),
            email: email.to_owned(),
            country: address.map(|a| a.country.clone()),
            active,
        }
    }
}

#[async_trait]
impl ReadModel for Directory {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["people"]
    }

    async fn create(&self, db: &mut Db<'_>, tables: &Tables) -> Result<(), ProjectionError> {
        let people = tables.name("people");
        for statement in [
            format!(
                "create table if not exists {people} (id bigint not null primary key, \
                 name varchar(201) not null, \
                 email varchar(254) not null, country varchar(200), active bigint not null, \
                 search varchar(460) not null)"
            ),
            // `if not exists` on an index: SQLite, PostgreSQL and MariaDB (not MySQL 8).
            format!("create index if not exists {people}_by_country on {people} (country)"),
        ] {
            db.query(statement).execute(db.conn()).await?;
        }
        Ok(())
    }

    async fn apply(
        &self,
        db: &mut Db<'_>,
        tables: &Tables,
        events: &[LogEvent],
    ) -> Result<(), ProjectionError> {
        let people = tables.name("people");
        for event in events {
            let (id, person) = match &event.envelope.data {
                CustomerEvent::CustomerCreated(c) => {
                    let person = Person::new(
                        c.customer_id,
                        &c.full_name,
                        &c.email,
                        c.address.as_ref(),
                        c.is_active,
                    );
                    (c.customer_id, Some(person))
                }
                CustomerEvent::CustomerImported(c) => {
                    let person = Person::new(
                        c.customer_id,
                        &c.full_name,
                        &c.email,
                        c.address.as_ref(),
                        c.is_active,
                    );
                    (c.customer_id, Some(person))
                }
                CustomerEvent::CustomerUpdated(c) => {
                    let person = Person::new(
                        c.customer_id,
                        &c.full_name,
                        &c.email,
                        c.address.as_ref(),
                        c.is_active,
                    );
                    (c.customer_id, Some(person))
                }
                CustomerEvent::CustomerActivated(c) => {
                    set_active(db, &people, c.customer_id, true).await?;
                    continue;
                }
                CustomerEvent::CustomerDeactivated(c) => {
                    set_active(db, &people, c.customer_id, false).await?;
                    continue;
                }
                CustomerEvent::CustomerDeleted(c) => (c.customer_id, None),
                CustomerEvent::CustomerErased(c) => (c.customer_id, None),
                // Types added to the contract later: nothing this directory shows.
                _ => continue,
            };
            db.query(format!("delete from {people} where id = $1"))
                .bind(id)
                .execute(db.conn())
                .await?;
            if let Some(person) = person {
                let search = format!("{} {}", person.name, person.email).to_lowercase();
                db.query(format!(
                    "insert into {people} (id, name, email, country, active, search) \
                     values ($1, $2, $3, $4, $5, $6)"
                ))
                .bind(person.id)
                .bind(person.name)
                .bind(person.email)
                .bind(person.country)
                .bind(i64::from(person.active))
                .bind(search)
                .execute(db.conn())
                .await?;
            }
        }
        Ok(())
    }
}

async fn set_active(
    db: &mut Db<'_>,
    people: &str,
    id: i64,
    active: bool,
) -> Result<(), ProjectionError> {
    db.query(format!("update {people} set active = $1 where id = $2"))
        .bind(i64::from(active))
        .bind(id)
        .execute(db.conn())
        .await?;
    Ok(())
}

/// Everyone whose name or e-mail contains `term` (ignoring case), in `country` if given,
/// by id; the whole directory for an empty term.
pub async fn search(
    conn: &mut sqlx::AnyConnection,
    term: &str,
    country: Option<&str>,
) -> Result<Vec<Person>, sqlx::Error> {
    use sqlx::Row;
    let Some(tables) = customer_events::projection::serving_tables(conn, "directory").await? else {
        return Ok(Vec::new());
    };
    let people = tables.name("people");
    let pattern = format!(
        "%{}%",
        term.to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let text = customer_events::projection::portable(
        conn,
        format!(
            "select id, name, email, country, active from {people} \
             where search like $1 escape '\\' and ($2 is null or country = $3) order by id"
        ),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(text))
        .bind(pattern)
        .bind(country.map(str::to_owned))
        .bind(country.map(str::to_owned))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Person {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                email: row.try_get(2)?,
                country: row.try_get(3)?,
                active: row.try_get::<i64, _>(4)? != 0,
            })
        })
        .collect()
}
