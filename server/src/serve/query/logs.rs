//! What the names in a `/api/logs` filter or sort stand for: the columns of
//! `_logs`, and `data.<key>[.<key>...]` inside its JSON, as PocketBase
//! allows. Nothing else resolves (no `@collection`, no relations).

use super::filter::{Names, Resolved, quote_ident};

const COLUMNS: &[&str] = &["id", "created", "updated", "level", "message", "data"];

pub struct LogNames;

fn key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Names for LogNames {
    fn field(&self, path: &str) -> Option<Resolved> {
        match path.split_once('.') {
            None => COLUMNS
                .contains(&path)
                .then(|| Resolved::One(format!("_logs.{}", quote_ident(path)))),
            Some(("data", rest)) if rest.split('.').all(key) => Some(Resolved::One(format!(
                "json_extract(_logs.data, '$.{rest}')"
            ))),
            Some(_) => None,
        }
    }
    fn table(&self, _name: &str) -> Option<String> {
        None
    }
    fn joined(&self, _name: &str, _alias: &str, _path: &str) -> Option<Resolved> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_json_keys_only() {
        assert_eq!(
            LogNames.field("level"),
            Some(Resolved::One("_logs.\"level\"".into()))
        );
        assert_eq!(
            LogNames.field("data.status"),
            Some(Resolved::One("json_extract(_logs.data, '$.status')".into()))
        );
        assert!(LogNames.field("data.a.b_2").is_some());
        for bad in [
            "nosuch",
            "data.",
            "data.a'b",
            "data.a..b",
            "message.x",
            "data.$",
        ] {
            assert_eq!(LogNames.field(bad), None, "{bad}");
        }
    }
}
