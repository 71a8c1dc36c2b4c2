//! Listings from the tables PostgreSQL keeps beside the records (`actions`
//! and those of [`super::schema::RECORD_TABLES`]): the filters, the sort
//! and the count run in the database, on its indexes, instead of over every
//! record of an index entry.

use tokio_postgres::types::ToSql;

use super::schema::{ACTION_COLUMNS, record_table};
use super::{PgStore, Result, clamp};
use crate::store::PageQuery;

/// The SQL of a [`PageQuery`]: the page's ids and the count, with `$1` the
/// tenant, `$2…` the filters' values in order, then the bounds of
/// `between` (both, when it is set), then the limit and offset (the page
/// only). `None` for a collection without a table or a column
/// the table does not have. Public so that a test can `EXPLAIN` exactly
/// what the server runs.
pub fn page_sql(query: &PageQuery<'_>) -> Option<(String, String)> {
    let table = match query.collection {
        "actions" => None,
        other => Some(record_table(other).filter(|table| table.tenant.is_some())?),
    };
    let known = |column: &str| match table {
        None => ACTION_COLUMNS.contains(&column),
        Some(table) => table.has(column),
    };
    if !query.filters.iter().all(|(column, _)| known(column))
        || !query.sort.is_none_or(known)
        || !query.between.is_none_or(|(column, ..)| known(column))
    {
        return None;
    }
    let mut condition = String::from("tenant_id = $1");
    for (n, (column, _)) in query.filters.iter().enumerate() {
        condition.push_str(&format!(" AND {column} = ${}", n + 2));
    }
    let mut next = query.filters.len() + 2;
    if let Some((column, ..)) = query.between {
        condition.push_str(&format!(" AND {column} BETWEEN ${next} AND ${}", next + 1));
        next += 2;
    }
    let (direction, absent) = if query.descending {
        ("DESC", "LAST")
    } else {
        ("ASC", "FIRST")
    };
    let order = match query.sort {
        Some(column) => format!("{column} {direction} NULLS {absent}, id {direction}"),
        None => format!("id {direction}"),
    };
    let page = format!(
        "SELECT id FROM {} WHERE {condition} ORDER BY {order} LIMIT ${next} OFFSET ${}",
        query.collection,
        next + 1
    );
    let count = format!(
        "SELECT count(*) FROM {} WHERE {condition}",
        query.collection
    );
    Some((page, count))
}

impl PgStore {
    pub(super) fn select(&self, query: &PageQuery<'_>) -> Option<Result<(Vec<String>, usize)>> {
        let (page, count) = page_sql(query)?;
        let (limit, skip) = (clamp(query.limit), clamp(query.skip));
        Some(self.read(|conn| {
            let bounds: (i64, i64);
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&query.tenant];
            for (_, value) in &query.filters {
                params.push(value);
            }
            if let Some((_, low, high)) = &query.between {
                bounds = (low.unwrap_or(i64::MIN), high.unwrap_or(i64::MAX));
                params.push(&bounds.0);
                params.push(&bounds.1);
            }
            let counted: i64 = if query.count {
                conn.wait(conn.client.query_one(&conn.statement(&count)?, &params))?
                    .get(0)
            } else {
                0
            };
            params.push(&limit);
            params.push(&skip);
            let ids = conn
                .wait(conn.client.query(&conn.statement(&page)?, &params))?
                .into_iter()
                .map(|row| row.get(0))
                .collect();
            Ok((ids, usize::try_from(counted).unwrap_or(0)))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_parameters_and_unknown_columns_no_sql() {
        let query = PageQuery {
            collection: "actions",
            tenant: "t",
            filters: vec![("status", "scheduled"), ("action_type", "send_email")],
            between: None,
            sort: Some("updated_at"),
            descending: true,
            skip: 0,
            limit: 20,
            count: true,
        };
        let (page, count) = page_sql(&query).expect("actions have a table");
        assert_eq!(
            page,
            "SELECT id FROM actions WHERE tenant_id = $1 AND status = $2 AND action_type = $3 \
             ORDER BY updated_at DESC NULLS LAST, id DESC LIMIT $4 OFFSET $5"
        );
        assert_eq!(
            count,
            "SELECT count(*) FROM actions WHERE tenant_id = $1 AND status = $2 AND action_type = $3"
        );
        let unknown = PageQuery {
            filters: vec![("colour; DROP TABLE actions", "x")],
            ..query.clone()
        };
        assert!(page_sql(&unknown).is_none());
        let contacts = PageQuery {
            collection: "contacts",
            filters: vec![("lifecycle_stage", "lead")],
            sort: Some("email"),
            ..query.clone()
        };
        let (page, _) = page_sql(&contacts).expect("contacts have a table");
        assert!(page.starts_with("SELECT id FROM contacts WHERE tenant_id = $1 AND lifecycle_stage = $2 ORDER BY email DESC"), "{page}");
        let internal = PageQuery {
            collection: "locks",
            ..query
        };
        assert!(page_sql(&internal).is_none());
    }
}
