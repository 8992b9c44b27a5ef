//! The read model's side of the database: one connection inside the runner's transaction,
//! and one query text for every engine.

use std::borrow::Cow;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe};

/// The runner's transaction, as a read model sees it.
pub struct Db<'c> {
    conn: &'c mut AnyConnection,
    mysql: bool,
    positional: bool,
}

impl<'c> Db<'c> {
    pub(crate) fn new(conn: &'c mut AnyConnection) -> Db<'c> {
        let (mysql, positional) = (is_mysql(conn), positional(conn));
        Db {
            conn,
            mysql,
            positional,
        }
    }

    /// The query of `text` for this database. Write `$1`, `$2`, … each once and in order:
    /// PostgreSQL takes them as written, SQLite and MySQL get `?` (see [`placeholders`]).
    ///
    /// Not kept prepared on the connection (`persistent(false)`): a model's statements name
    /// its generation's tables, so every generation's are new texts, and a runner's batches
    /// go to whichever connection of the pool is free: cached, each connection of the pool
    /// kept every statement's metadata (1.4 MB of a 3.6 MB heap under the benchmark's create
    /// load, 16 connections). One parse per statement per batch costs nothing beside it.
    pub fn query(&self, text: impl Into<Cow<'static, str>>) -> Query<'static, Any, AnyArguments> {
        sqlx::query(AssertSqlSafe(
            placeholders(self.positional, text.into()).into_owned(),
        ))
        .persistent(false)
    }

    /// The connection, to run [`Db::query`]'s queries on.
    pub fn conn(&mut self) -> &mut AnyConnection {
        self.conn
    }

    /// Whether this is MySQL / MariaDB (for the few statements that must differ).
    pub fn is_mysql(&self) -> bool {
        self.mysql
    }
}

/// `text` as `conn`'s engine takes it (see [`Db::query`]), for queries outside a runner's
/// transaction (a reader of the model's tables).
pub fn portable(conn: &AnyConnection, text: impl Into<Cow<'static, str>>) -> String {
    placeholders(positional(conn), text.into()).into_owned()
}

pub(crate) fn is_mysql(conn: &AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("mysql")
}

/// Whether `conn` gets `?` placeholders: MySQL knows no others, and SQLite binds `?` in
/// constant time where each numbered one costs a scan of the statement's parameter names
/// (sqlx looks every name up: a 3,000-value insert spent 60 % of a rebuild there).
pub(crate) fn positional(conn: &AnyConnection) -> bool {
    !conn.backend_name().eq_ignore_ascii_case("postgresql")
}

/// `text` with every `$n` outside string literals turned into `?` when `positional`. The
/// rule that makes this a plain substitution: each placeholder appears once, in increasing
/// order (`$1`, `$2`, …), since `?` binds by position (checked in debug builds).
pub fn placeholders(positional: bool, text: Cow<'static, str>) -> Cow<'static, str> {
    if !positional || !text.contains('$') {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    let mut expected = 1;
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_string = !in_string;
        }
        if c != '$' || in_string || !chars.peek().is_some_and(char::is_ascii_digit) {
            out.push(c);
            continue;
        }
        let mut number = 0_usize;
        while let Some(digit) = chars.peek().and_then(|d| d.to_digit(10)) {
            number = number * 10 + digit as usize;
            chars.next();
        }
        debug_assert_eq!(
            number, expected,
            "placeholders must appear once each, in order: {text}"
        );
        expected += 1;
        out.push('?');
    }
    Cow::Owned(out)
}

/// The table names of one generation of one model: `rm_<model>_g<generation>_<table>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    prefix: String,
    generation: i64,
}

impl Tables {
    pub(crate) fn new(model: &str, generation: i64) -> Tables {
        Tables {
            prefix: format!("rm_{model}_g{generation}_"),
            generation,
        }
    }

    /// The full name of `table` in this generation.
    pub fn name(&self, table: &str) -> String {
        format!("{}{table}", self.prefix)
    }

    pub fn generation(&self) -> i64 {
        self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_gets_question_marks_outside_literals() {
        let text = "select '$1', a from t where b = $1 and c = $2";
        assert_eq!(placeholders(false, text.into()), text);
        assert_eq!(
            placeholders(true, text.into()),
            "select '$1', a from t where b = ? and c = ?"
        );
        assert_eq!(Tables::new("stats", 3).name("totals"), "rm_stats_g3_totals");
    }
}
