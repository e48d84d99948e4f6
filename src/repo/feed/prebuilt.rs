//! The JSON page statements for a connection that builds the text of
//! every statement it runs: diesel-async's does, before it looks the
//! statement up in its cache, where synchronous Diesel looks a statement
//! with a static [`QueryId`] up by its type and builds nothing. Built from
//! the typed page's query, walking its forty-odd nodes and quoting each
//! identifier, that text was a third of a page's CPU in the service.
//!
//! Here Diesel's own query builder builds each statement once, from the
//! very query the synchronous path sends, and the text is kept split at
//! its placeholders; each call pushes the pieces and its values, in the
//! same order and with the same SQL types.

use std::sync::OnceLock;

use chrono::DateTime;
use diesel::pg::{Pg, PgQueryBuilder};
use diesel::query_builder::{AstPass, Query, QueryBuilder, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use uuid::Uuid;

use super::{DEFAULT_PAGE_SIZE, FeedCursor, JsonPage, first_page_query, page_after_query};

/// `query`'s text, split at its placeholders `$1` to `$binds`; `None` when
/// it does not build or lacks one of them.
fn split(query: &impl QueryFragment<Pg>, binds: usize) -> Option<Vec<String>> {
    let mut builder = PgQueryBuilder::default();
    query.to_sql(&mut builder, &Pg).ok()?;
    let sql = builder.finish();
    let mut pieces = Vec::with_capacity(binds + 1);
    let mut rest = sql.as_str();
    for n in 1..=binds {
        let placeholder = format!("${n}");
        let (at, _) = rest.match_indices(&placeholder).find(|(at, _)| {
            !rest[at + placeholder.len()..].starts_with(|c: char| c.is_ascii_digit())
        })?;
        pieces.push(rest[..at].to_owned());
        rest = &rest[at + placeholder.len()..];
    }
    pieces.push(rest.to_owned());
    Some(pieces)
}

/// The pieces `pieces` made once, or the error of a statement that did not
/// split.
fn built(pieces: &'static Option<Vec<String>>) -> QueryResult<&'static [String]> {
    pieces.as_deref().ok_or_else(|| {
        diesel::result::Error::QueryBuilderError(
            "the feed's statement did not split at its placeholders".into(),
        )
    })
}

/// The first page's statement in its two pieces (around the page size).
fn first_pieces() -> QueryResult<&'static [String]> {
    static PIECES: OnceLock<Option<Vec<String>>> = OnceLock::new();
    built(PIECES.get_or_init(|| {
        let page = first_page_query(DEFAULT_PAGE_SIZE);
        split(&JsonPage { page }, 1).filter(|p| p.len() == 2)
    }))
}

/// The statement of a page after a cursor in its five pieces (around the
/// cursor's `created_at` twice, its uuid and the page size).
fn after_pieces() -> QueryResult<&'static [String]> {
    static PIECES: OnceLock<Option<Vec<String>>> = OnceLock::new();
    built(PIECES.get_or_init(|| {
        let cursor = FeedCursor::at(DateTime::UNIX_EPOCH, Uuid::nil());
        let page = page_after_query(DEFAULT_PAGE_SIZE, cursor);
        split(&JsonPage { page }, 4).filter(|p| p.len() == 5)
    }))
}

/// The first page of `limit` items, as one JSON array.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FirstJsonPage {
    pub(crate) limit: i64,
}

impl QueryId for FirstJsonPage {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for FirstJsonPage {
    type SqlType = Text;
}

impl QueryFragment<Pg> for FirstJsonPage {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let pieces = first_pieces()?;
        out.push_sql(&pieces[0]);
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        out.push_sql(&pieces[1]);
        Ok(())
    }
}

/// The page of `limit` items after `cursor`, as one JSON array.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonPageAfter {
    pub(crate) limit: i64,
    pub(crate) cursor: FeedCursor,
}

impl QueryId for JsonPageAfter {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for JsonPageAfter {
    type SqlType = Text;
}

impl QueryFragment<Pg> for JsonPageAfter {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let pieces = after_pieces()?;
        out.push_sql(&pieces[0]);
        out.push_bind_param::<Timestamptz, _>(&self.cursor.created_at)?;
        out.push_sql(&pieces[1]);
        out.push_bind_param::<Timestamptz, _>(&self.cursor.created_at)?;
        out.push_sql(&pieces[2]);
        out.push_bind_param::<diesel::sql_types::Uuid, _>(&self.cursor.uuid)?;
        out.push_sql(&pieces[3]);
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        out.push_sql(&pieces[4]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(query: &impl QueryFragment<Pg>) -> String {
        let mut builder = PgQueryBuilder::default();
        query.to_sql(&mut builder, &Pg).unwrap();
        builder.finish()
    }

    #[test]
    fn the_prebuilt_statements_are_the_typed_ones() {
        let first = JsonPage {
            page: first_page_query(7),
        };
        assert_eq!(sql(&FirstJsonPage { limit: 7 }), sql(&first));
        let cursor = FeedCursor::at(
            DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            Uuid::new_v4(),
        );
        let after = JsonPage {
            page: page_after_query(7, cursor),
        };
        assert_eq!(sql(&JsonPageAfter { limit: 7, cursor }), sql(&after));
        let pieces = after_pieces().unwrap();
        assert_eq!(pieces.len(), 5);
        assert!(pieces.iter().all(|piece| !piece.contains('$')));
    }

    #[test]
    fn the_values_are_bound_as_the_typed_query_binds_them() {
        let at = DateTime::from_timestamp(1_800_000_000, 123_456_000).unwrap();
        let cursor = FeedCursor::at(at, Uuid::new_v4());
        let typed = JsonPage {
            page: page_after_query(9, cursor),
        };
        let prebuilt = JsonPageAfter { limit: 9, cursor };
        assert_eq!(
            diesel::debug_query::<Pg, _>(&prebuilt).to_string(),
            diesel::debug_query::<Pg, _>(&typed).to_string()
        );
        let typed = JsonPage {
            page: first_page_query(3),
        };
        assert_eq!(
            diesel::debug_query::<Pg, _>(&FirstJsonPage { limit: 3 }).to_string(),
            diesel::debug_query::<Pg, _>(&typed).to_string()
        );
    }
}
