//! The read side: one customer, pages of customers, active customers, the count.

use crate::domain::{Customer, CustomerId, DomainError, Email, FieldErrors};

use super::error::ApplicationError;
use super::ports::{CustomerStore, ListQuery};

/// The largest `limit` a client may ask for.
pub const MAX_PAGE_SIZE: i64 = 100;
const DEFAULT_PAGE_SIZE: i64 = 10;
/// Search terms longer than any field they could match are rejected rather than scanned.
const MAX_SEARCH_CHARS: usize = 254;

/// `page`, `limit` and `search` as the client sent them (query strings are untyped).
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub page: Option<String>,
    pub limit: Option<String>,
    pub search: Option<String>,
}

/// One page of the customer list.
#[derive(Debug, Clone)]
pub struct CustomerPage {
    pub customers: Vec<Customer>,
    pub total: i64,
    pub page: i64,
    pub limit: i64,
    pub total_pages: i64,
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
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    let query = ListQuery {
        // A page far past the end is simply empty; saturate rather than overflow.
        offset: (page - 1).saturating_mul(limit),
        limit,
        search,
    };
    let (customers, total) = store.list(&query).await?;
    Ok(CustomerPage {
        customers,
        total,
        page,
        limit,
        total_pages: (total + limit - 1) / limit,
    })
}

#[tracing::instrument(name = "list_active_customers", skip_all)]
pub async fn list_active_customers(
    store: &dyn CustomerStore,
) -> Result<Vec<Customer>, ApplicationError> {
    Ok(store.list_active().await?)
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
