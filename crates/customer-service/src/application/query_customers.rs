//! The read side: one customer, pages of customers, active customers, the count.

use crate::domain::{Customer, CustomerId, DomainError, Email, FieldErrors};

use super::error::ApplicationError;
use super::ports::{ActiveQuery, CustomerStore, CustomerStream, ListPosition, ListQuery};

/// The largest `limit` a client may ask for.
pub const MAX_PAGE_SIZE: i64 = 100;
const DEFAULT_PAGE_SIZE: i64 = 10;
/// Search terms longer than any field they could match are rejected rather than scanned.
const MAX_SEARCH_CHARS: usize = 254;

/// `page`, `limit`, `search` and `after` as the client sent them (query strings are untyped).
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub page: Option<String>,
    pub limit: Option<String>,
    pub search: Option<String>,
    /// A `nextCursor` of an earlier page: keyset paging instead of `page`.
    pub after: Option<String>,
}

/// One page of the customer list.
#[derive(Debug, Clone)]
pub struct CustomerPage {
    pub customers: Vec<Customer>,
    pub total: i64,
    /// `None` when the page was asked for by cursor: its number is not known.
    pub page: Option<i64>,
    pub limit: i64,
    pub total_pages: i64,
    /// Where the next page starts (`after=`), `None` on the last page.
    pub next_cursor: Option<String>,
}

/// `limit` and `after` of `GET /customers/active`, as the client sent them.
#[derive(Debug, Clone, Default)]
pub struct ActiveRequest {
    pub limit: Option<String>,
    pub after: Option<String>,
}

/// A keyset cursor: the list position of a page's last customer, as 32 hex digits (opaque to
/// clients; only ever produced by [`encode_cursor`]).
fn encode_cursor(position: ListPosition) -> String {
    // Two's complement keeps a (theoretical) negative time round-tripping.
    format!(
        "{:016x}{:016x}",
        position.created_at_ms as u64, position.id as u64
    )
}

fn decode_cursor(cursor: &str) -> Option<ListPosition> {
    if cursor.len() != 32 || !cursor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let created_at_ms = u64::from_str_radix(&cursor[..16], 16).ok()? as i64;
    let id = u64::from_str_radix(&cursor[16..], 16).ok()? as i64;
    (id > 0).then_some(ListPosition { created_at_ms, id })
}

/// The `after` parameter, checked (a 400 names it when it is not one of our cursors).
fn parse_after(errors: &mut FieldErrors, raw: Option<&str>) -> Option<ListPosition> {
    let raw = raw?;
    let position = decode_cursor(raw.trim());
    if position.is_none() {
        errors.add("after", "after must be a nextCursor returned by this list");
    }
    position
}

fn position_of(customer: &Customer) -> ListPosition {
    ListPosition {
        created_at_ms: customer.created_at.millis(),
        id: customer.id.get(),
    }
}

#[tracing::instrument(name = "get_customer", skip_all, fields(customer.id = %id))]
pub async fn get_customer(
    store: &dyn CustomerStore,
    id: CustomerId,
) -> Result<Customer, ApplicationError> {
    store
        .find_by_id(id)
        .await?
        .ok_or(ApplicationError::NotFound)
}

/// Case-insensitive: the stored e-mail is lower-case, so is the key.
#[tracing::instrument(name = "find_customer_by_email", skip_all)]
pub async fn find_customer_by_email(
    store: &dyn CustomerStore,
    email: &str,
) -> Result<Customer, ApplicationError> {
    let key = Email::normalize_for_lookup(email);
    // No stored address holds a control character (they fail validation); PostgreSQL would
    // reject a NUL in the query instead of simply finding nothing.
    if key.chars().any(char::is_control) {
        return Err(ApplicationError::NotFound);
    }
    store
        .find_by_email(&key)
        .await?
        .ok_or(ApplicationError::NotFound)
}

#[tracing::instrument(name = "list_customers", skip_all)]
pub async fn list_customers(
    store: &dyn CustomerStore,
    request: &PageRequest,
) -> Result<CustomerPage, ApplicationError> {
    let mut errors = FieldErrors::new();
    let page = parse_bound(&mut errors, "page", request.page.as_deref(), 1, 1, None);
    let limit = parse_bound(
        &mut errors,
        "limit",
        request.limit.as_deref(),
        DEFAULT_PAGE_SIZE,
        1,
        Some(MAX_PAGE_SIZE),
    );
    let search = request
        .search
        .as_deref()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty());
    if search
        .as_ref()
        .is_some_and(|s| s.chars().any(char::is_control))
    {
        errors.add("search", "search must not contain control characters");
    }
    if search
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_SEARCH_CHARS)
    {
        errors.add(
            "search",
            format!("search must be shorter than or equal to {MAX_SEARCH_CHARS} characters"),
        );
    }
    let after = parse_after(&mut errors, request.after.as_deref());
    if request.after.is_some() && request.page.is_some() {
        errors.add(
            "after",
            "after and page cannot be combined: a cursor already says where the page starts",
        );
    }
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    let query = ListQuery {
        // A page far past the end is simply empty; saturate rather than overflow.
        offset: if after.is_some() {
            0
        } else {
            (page - 1).saturating_mul(limit)
        },
        // One more than asked: whether a next page exists.
        limit: limit + 1,
        search,
        after,
    };
    let (mut customers, total) = store.list(&query).await?;
    let next_cursor = if customers.len() as i64 > limit {
        customers.truncate(limit as usize);
        customers
            .last()
            .map(|last| encode_cursor(position_of(last)))
    } else {
        None
    };
    Ok(CustomerPage {
        customers,
        total,
        page: after.is_none().then_some(page),
        limit,
        total_pages: (total + limit - 1) / limit,
        next_cursor,
    })
}

/// The active customers, newest first, as a stream: the whole list by default (the
/// contract's unpaged route), or from a cursor and at most `limit`.
#[tracing::instrument(name = "list_active_customers", skip_all)]
pub fn list_active_customers(
    store: &dyn CustomerStore,
    request: &ActiveRequest,
) -> Result<CustomerStream, ApplicationError> {
    let mut errors = FieldErrors::new();
    let limit = request
        .limit
        .as_deref()
        .map(|raw| parse_bound(&mut errors, "limit", Some(raw), 1, 1, None));
    let after = parse_after(&mut errors, request.after.as_deref());
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    Ok(store.stream_active(ActiveQuery { after, limit }))
}

#[tracing::instrument(name = "count_customers", skip_all)]
pub async fn count_customers(store: &dyn CustomerStore) -> Result<i64, ApplicationError> {
    Ok(store.count().await?)
}

/// An integer query parameter with bounds, class-validator's messages on failure.
pub(super) fn parse_bound(
    errors: &mut FieldErrors,
    field: &str,
    raw: Option<&str>,
    default: i64,
    min: i64,
    max: Option<i64>,
) -> i64 {
    let Some(raw) = raw else { return default };
    let Ok(value) = raw.trim().parse::<i64>() else {
        errors.add(field, format!("{field} must be an integer number"));
        return default;
    };
    if value < min {
        errors.add(field, format!("{field} must not be less than {min}"));
    } else if let Some(max) = max.filter(|max| value > *max) {
        errors.add(field, format!("{field} must not be greater than {max}"));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_anything_else_is_refused() {
        let position = ListPosition {
            created_at_ms: 1_764_000_000_123,
            id: 42,
        };
        let cursor = encode_cursor(position);
        assert_eq!(cursor, "0000019ab697e87b000000000000002a");
        assert_eq!(decode_cursor(&cursor), Some(position));
        for bad in [
            "",
            "abc",
            "0000019ab3f0e07b0000000000000000",
            "0000019ab3f0e07b000000000000002a0",
            "0000019ab3f0e07b00000000000000zz",
            "-000019ab3f0e07b000000000000002a",
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn bounds_are_checked_with_class_validator_messages() {
        let mut errors = FieldErrors::new();
        parse_bound(&mut errors, "page", Some("0"), 1, 1, None);
        parse_bound(&mut errors, "limit", Some("101"), 10, 1, Some(100));
        assert_eq!(errors.of("page"), ["page must not be less than 1"]);
        assert_eq!(errors.of("limit"), ["limit must not be greater than 100"]);
        let mut errors = FieldErrors::new();
        assert_eq!(
            parse_bound(&mut errors, "limit", Some("100"), 10, 1, Some(100)),
            100
        );
        assert_eq!(parse_bound(&mut errors, "page", None, 1, 1, None), 1);
        parse_bound(&mut errors, "page", Some("1.5"), 1, 1, None);
        assert_eq!(errors.of("page"), ["page must be an integer number"]);
    }
}
