//! The list and search statements: how a filter narrows the customers (all, a LIKE, the
//! walk, FTS5, the posting table, the narrow search table), keyset starts, pages and counts.

use std::sync::LazyLock;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

use crate::application::ListPosition;

use crate::store::Backend;

/// How a list narrows the customers table (see [`list_page`]), and where its rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::store) enum Filter {
    /// Every customer.
    All,
    /// `search_text` contains the term: one LIKE pattern, escaped with `\`. A scan of
    /// `customers` (SQLite and MySQL count a term no index serves with it).
    Like { pattern: String },
    /// PostgreSQL: [`Filter::Like`] on the narrow `customers_search (id, created_at_ms,
    /// search_text)`, whose trigram index serves terms of three or more characters (migration
    /// 10). A count or a scan reads ~90 rows a page there against ~20 in `customers`. The
    /// store pages with it only when it chose the index, and [`list_page`] orders such a
    /// page so that it cannot be walked.
    SearchTable { pattern: String },
    /// [`Filter::Like`] hidden from PostgreSQL's trigram index and from its estimates: the
    /// page is found by walking the list order and testing each row, whatever the
    /// statistics say. The store chooses it (see `search.rs`); on the other engines it runs
    /// as `Like` does. The LIKE is wrapped in `case … end > 0`, an expression no index
    /// covers and whose selectivity PostgreSQL takes as a third of the rows, so a page of a
    /// few rows is planned as the walk. (Bare, a long pattern such as `%example.com%` was
    /// estimated at 8 of 100,000 rows, and its page planned as a scan of every row and a
    /// sort: 50 ms against 0.07; `coalesce(search_text, '') like …` is estimated the same.)
    Walk { pattern: String },
    /// SQLite, terms of three or more characters: candidates from the FTS5 trigram index (a
    /// quoted phrase), each rechecked with the LIKE pattern, so the result is exactly
    /// [`Filter::Like`]'s.
    Trigram { phrase: String, pattern: String },
    /// SQLite, a count only: the FTS5 phrase alone, no row read. Its matches are exactly
    /// [`Filter::Like`]'s: the index holds every three-character piece of the text with its
    /// position (`detail=full`), a phrase matches where the term's pieces follow each other,
    /// i.e. where the text contains the term, and both sides are the same lower-cased bytes
    /// (`case_sensitive 1`). A term with the fields' separator never gets here. Counting the
    /// 41,666 of a million customers that `john` matches: 4–7 ms, against 70 ms when each
    /// match's row is read and rechecked.
    Phrase { phrase: String },
    /// MySQL, terms of three or more characters: candidates from the posting list of one or
    /// two of the term's trigrams (`customer_trigrams`, the rarest first), each rechecked
    /// with the LIKE pattern. `straight_join` makes the order the store's: the rarest
    /// posting list drives, the second is probed by its primary key, and only the
    /// survivors' rows are read.
    Postings {
        trigrams: Vec<String>,
        pattern: String,
    },
}

impl Filter {
    /// `<tables> where <condition>`, numbering its placeholders from `$first`; and how many
    /// it used. The columns `id`, `created_at_ms` and `search_text` are the customer's in
    /// every shape (the posting table names its own `trigram` and `customer_id`).
    fn tables_and_condition(&self, first: usize) -> (String, usize) {
        let like = |n: usize| format!(r"search_text like ${n} escape '\'");
        match self {
            Filter::All => ("customers where true".to_owned(), 0),
            Filter::Like { .. } => (format!("customers where {}", like(first)), 1),
            Filter::SearchTable { .. } => (format!("customers_search where {}", like(first)), 1),
            Filter::Phrase { .. } => (
                format!("customers_search where customers_search match ${first}"),
                1,
            ),
            Filter::Walk { .. } => (
                format!(
                    "customers where case when search_text like ${first} escape '\\' \
                     then 1 else 0 end > 0"
                ),
                1,
            ),
            Filter::Trigram { .. } => (
                format!(
                    "customers where id in (select rowid from customers_search \
                     where customers_search match ${first}) and {}",
                    like(first + 1)
                ),
                2,
            ),
            Filter::Postings { trigrams, .. } => {
                let mut tables = "customer_trigrams t0".to_owned();
                let mut condition = String::new();
                for (i, _) in trigrams.iter().enumerate() {
                    if i > 0 {
                        tables.push_str(&format!(
                            " straight_join customer_trigrams t{i} on t{i}.customer_id = t0.customer_id"
                        ));
                        condition.push_str(" and ");
                    }
                    condition.push_str(&format!("t{i}.trigram = ${}", first + i));
                }
                let used = trigrams.len();
                (
                    format!(
                        "{tables} straight_join customers on id = t0.customer_id \
                         where {condition} and {}",
                        like(first + used)
                    ),
                    used + 1,
                )
            }
        }
    }

    /// Whether the rows come through a trigram index rather than a walk of the list order.
    /// `SearchTable` is PostgreSQL's index side: the store only pages with it when it chose
    /// the index (see `search.rs`).
    pub(in crate::store) fn is_index(&self) -> bool {
        matches!(
            self,
            Filter::SearchTable { .. }
                | Filter::Trigram { .. }
                | Filter::Phrase { .. }
                | Filter::Postings { .. }
        )
    }

    /// Binds the condition's values, in placeholder order.
    pub(in crate::store) fn bind<'q>(
        &self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Query<'q, Any, AnyArguments> {
        match self {
            Filter::All => query,
            Filter::Like { pattern }
            | Filter::SearchTable { pattern }
            | Filter::Walk { pattern } => query.bind(pattern.clone()),
            Filter::Phrase { phrase } => query.bind(phrase.clone()),
            Filter::Trigram { phrase, pattern } => query.bind(phrase.clone()).bind(pattern.clone()),
            Filter::Postings { trigrams, pattern } => trigrams
                .iter()
                .fold(query, |query, trigram| query.bind(trigram.clone()))
                .bind(pattern.clone()),
        }
    }
}

/// MySQL: how many customers' texts hold each of `n` trigrams (`$1..$n`), each counted up to
/// `cap` (the posting list's primary-key range, read no further than that).
pub(in crate::store) fn trigram_frequencies(n: usize, cap: i64) -> String {
    let mut sql = String::from("select ");
    for i in 1..=n {
        if i > 1 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(select count(*) from (select 1 from customer_trigrams where trigram = ${i} \
             limit {cap}) f{i})"
        ));
    }
    sql
}

/// "Before `after` in list order" (`after` = the last row of the previous page), numbering
/// its placeholders from `$first`; and how many it used. Bound by [`bind_keyset`].
///
/// PostgreSQL and SQLite get the row-value form: PostgreSQL seeks the list-order index to
/// exactly this row (`created_at_ms <= t and (created_at_ms < t or id < i)` seeks to `t` and
/// then filters every row with that same time: 23 ms past 100,000 ties, against 0.06).
/// MariaDB does not seek a row value: it walks the index from the newest row and filters
/// (14.6 ms 90,000 rows deep, growing with the depth), while it seeks
/// `created_at_ms < t or (created_at_ms = t and id < i)` (0.19 ms), which binds `t` twice.
fn keyset(backend: Backend, first: usize) -> (String, usize) {
    let (a, b, c) = (first, first + 1, first + 2);
    if backend == Backend::MySql {
        (
            format!("(created_at_ms < ${a} or (created_at_ms = ${b} and id < ${c}))"),
            3,
        )
    } else {
        (format!("(created_at_ms, id) < (${a}, ${b})"), 2)
    }
}

/// Binds [`keyset`]'s values.
pub(in crate::store) fn bind_keyset(
    backend: Backend,
    query: Query<'static, Any, AnyArguments>,
    after: ListPosition,
) -> Query<'static, Any, AnyArguments> {
    let query = query.bind(after.created_at_ms);
    let query = if backend == Backend::MySql {
        query.bind(after.created_at_ms)
    } else {
        query
    };
    query.bind(after.id)
}

/// A page of customers in list order (newest first, id breaking ties) narrowed by `filter`,
/// then bound as: the filter's values, with `after` the keyset start ([`bind_keyset`]), the
/// limit, and with `offset` the offset.
///
/// Ids are chosen first and the rows fetched by id (a "deferred join"): skipping `offset`
/// rows then walks the list-order index alone (index-only on every engine) instead of
/// fetching every skipped row.
pub(in crate::store) fn list_page(
    backend: Backend,
    filter: &Filter,
    after: bool,
    offset: bool,
) -> String {
    let (tables_and_condition, mut used) = filter.tables_and_condition(1);
    let mut inner = format!("select id, created_at_ms from {tables_and_condition}");
    if after {
        let (keyset, placeholders) = keyset(backend, used + 1);
        used += placeholders;
        inner.push_str(" and ");
        inner.push_str(&keyset);
    }
    used += 1;
    // Through an index, the page is the matches sorted; the order is written on an
    // expression so that no engine can serve it by walking the list-order index instead
    // (the store chose the index: the walk would read far more rows). Right after a bulk
    // load PostgreSQL walked 1M rows that way for `.99999@` (10 matches): 1.5–2.8 s a page.
    let order = if filter.is_index() {
        "created_at_ms + 0 desc, id desc"
    } else {
        "created_at_ms desc, id desc"
    };
    inner.push_str(&format!(" order by {order} limit ${used}"));
    if offset {
        used += 1;
        inner.push_str(&format!(" offset ${used}"));
    }
    // The page's ids as a derived table joined to their rows, ordered by the page's own
    // columns. Not `where id in (select id from (…) page)`: MariaDB runs that as a
    // semi-join materialised into a temporary table and then sorts the rows, text columns
    // and all, through an on-disk (Aria) temporary table — a file created and unlinked per
    // page, 0.66 ms of the server's CPU for a page of ten at 10,000 customers; joined,
    // the same page runs 2.5 × as many per second (mysqlslap, 16 clients). (MySQL also
    // refuses `LIMIT` in an `IN` subquery itself.)
    format!(
        "select {} from ({inner}) page join customers c on c.id = page.id \
         order by page.created_at_ms desc, page.id desc",
        *PAGE_COLUMNS
    )
}

/// [`customer_columns!`] of the table `c` (`c.id, c.email, …`), written once.
static PAGE_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    customer_columns!()
        .split(',')
        .map(|column| format!("c.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
});

/// How many customers `filter` selects; bound by [`Filter::bind`].
pub(in crate::store) fn count(filter: &Filter) -> String {
    format!("select count(*) from {}", filter.tables_and_condition(1).0)
}

/// Active customers in list order, optionally from a keyset start ([`bind_keyset`]) and with
/// a limit (the next placeholder).
pub(in crate::store) fn active_customers(backend: Backend, after: bool, limit: bool) -> String {
    let mut sql = format!(
        "select {} from customers where is_active = true",
        customer_columns!()
    );
    let mut used = 0;
    if after {
        let (keyset, placeholders) = keyset(backend, 1);
        used = placeholders;
        sql.push_str(" and ");
        sql.push_str(&keyset);
    }
    sql.push_str(" order by created_at_ms desc, id desc");
    if limit {
        sql.push_str(&format!(" limit ${}", used + 1));
    }
    sql
}
