//! SQL text the query builder cannot produce: identifiers in statements
//! that take no bind parameters (`CREATE DATABASE`, `DROP DATABASE`,
//! `ALTER TABLE … DROP CONSTRAINT`). A leaf: it uses no other module.

/// Quotes an identifier, doubling any `"` in it.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn doubles_quotes() {
        assert_eq!(quote_ident("cruddur"), "\"cruddur\"");
        assert_eq!(
            quote_ident("a\"; DROP DATABASE x; --"),
            "\"a\"\"; DROP DATABASE x; --\""
        );
    }
}
