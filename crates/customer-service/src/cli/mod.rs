//! The binary's subcommands, one file each with one `run` function.

pub mod dlq;
pub mod events;
pub mod healthcheck;
pub mod import;
pub mod migrate;
pub mod projections;
pub mod sagas;
pub mod seed;
pub mod serve;

/// `n` and the noun in the right number: "1 customer", "2 customers", "0 mismatches".
pub(crate) fn count(n: usize, singular: &str, plural: &str) -> String {
    if n == 1 {
        format!("1 {singular}")
    } else {
        format!("{n} {plural}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_take_the_right_number() {
        assert_eq!(
            super::count(1, "dead letter", "dead letters"),
            "1 dead letter"
        );
        assert_eq!(super::count(0, "event", "events"), "0 events");
        assert_eq!(super::count(2, "row", "rows"), "2 rows");
    }
}
