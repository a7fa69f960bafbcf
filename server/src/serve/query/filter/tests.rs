use super::*;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::json;

/// A `posts` table with a json field, a multiple field and a relation
/// to `users`, and a `members` table for `@collection`.
struct Schema;
impl Names for Schema {
    fn field(&self, path: &str) -> Option<Resolved> {
        let col = |c: &str| format!("\"posts\".\"{c}\"");
        Some(match path {
            "id" | "title" | "n" | "done" | "created" | "team" | "author" => {
                Resolved::One(col(path))
            }
            "tags" => Resolved::Json(col(path)),
            "cats" => Resolved::Many(format!("SELECT value AS v FROM json_each({})", col("cats"))),
            "author.name" => Resolved::One(format!(
                "(SELECT a1.\"name\" FROM \"users\" AS a1 WHERE a1.id = {})",
                col("author")
            )),
            _ => return None,
        })
    }
    fn table(&self, name: &str) -> Option<String> {
        (name == "members").then(|| "\"members\"".into())
    }
    fn joined(&self, name: &str, alias: &str, path: &str) -> Option<Resolved> {
        (name == "members" && matches!(path, "user" | "team"))
            .then(|| Resolved::One(format!("{alias}.\"{path}\"")))
    }
}

fn request(auth: serde_json::Value) -> serde_json::Value {
    json!({"auth": auth, "body": {"title": "T", "tags": ["a", "b"]},
           "query": {"q": "x"}, "headers": {}, "method": "GET", "context": "default"})
}

fn sql_with(s: &str, req: &serde_json::Value) -> Result<Sql, FilterError> {
    let ctx = Ctx {
        names: &Schema,
        request: req,
        now: "NOW".into(),
        today_start: "TS".into(),
        today_end: "TE".into(),
    };
    let mut out = Sql::default();
    compile(&parse(s)?.expect("non-empty"), &ctx, &mut out)?;
    Ok(out)
}

fn sql(s: &str) -> Result<Sql, FilterError> {
    sql_with(s, &request(json!({"id": "u1"})))
}

/// Ids of the posts `filter` selects, run for real in SQLite.
fn run(filter: &str, auth: serde_json::Value) -> Vec<String> {
    let db = Connection::open_in_memory().unwrap();
    db.execute_batch(
        r#"CREATE TABLE posts (id, title, n, done, created, team, tags, cats, author);
           CREATE TABLE users (id, name);
           CREATE TABLE members (user, team);
           INSERT INTO users VALUES ('u1', 'Ann'), ('u2', 'Bob');
           INSERT INTO members VALUES ('u1', 't1'), ('u2', 't2');
           INSERT INTO posts VALUES
             ('p1', 'alpha', 1, 1, '2024', 't1', '["x","y"]', '["a","b"]', 'u1'),
             ('p2', 'beta',  2, 0, '2025', 't2', '"x"',       '["a"]',     'u2'),
             ('p3', '',      3, 0, '2026', 't1', NULL,        '[]',        '');"#,
    )
    .unwrap();
    let w = sql_with(filter, &request(auth)).unwrap();
    let mut stmt = db
        .prepare(&format!(
            "SELECT id FROM posts WHERE {} ORDER BY id",
            w.text
        ))
        .unwrap();
    stmt.query_map(rusqlite::params_from_iter(w.params.iter()), |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn operators_and_precedence() {
    let s = sql("title = 'a' || n > 2 && (done = true || n <= -1.5)").unwrap();
    assert_eq!(
        s.text,
        r#"(("posts"."title" IS ?) OR (("posts"."n" > ?) AND (("posts"."done" IS ?) OR ("posts"."n" <= ?))))"#
    );
    assert_eq!(
        s.params,
        vec![
            SqlValue::Text("a".into()),
            SqlValue::Integer(2),
            SqlValue::Integer(1),
            SqlValue::Real(-1.5)
        ]
    );
    assert_eq!(run("title = 'alpha' || n > 2", json!(null)), ["p1", "p3"]);
}

#[test]
fn like_wraps_and_values_are_parameters() {
    let s = sql(r#"title ~ "x\" OR 1=1 --" && title !~ 'a%'"#).unwrap();
    assert_eq!(
        s.text,
        r#"(("posts"."title" LIKE ?) AND ("posts"."title" NOT LIKE ?))"#
    );
    assert_eq!(s.params[0], SqlValue::Text("%x\" OR 1=1 --%".into()));
    assert_eq!(s.params[1], SqlValue::Text("a%".into()));
    assert_eq!(run("title ~ 'et'", json!(null)), ["p2"]);
}

#[test]
fn null_compares_like_empty_and_binds_once() {
    assert_eq!(run("title = null", json!(null)), ["p3"]);
    assert_eq!(run("title != null", json!(null)), ["p1", "p2"]);
    // A parameter on the left of a null comparison binds exactly once.
    assert_eq!(run("@request.auth.id = null", json!(null)).len(), 3);
    assert!(run("@request.auth.id = null", json!({"id": "u1"})).is_empty());
}

#[test]
fn request_body_query_and_modifiers() {
    let req = request(json!({"id": "u1"}));
    let s = sql_with(
        "@request.body.title = 'T' && @request.body.tags:length = 2 && @request.body.nope:isset = false && @request.query.q = 'x' && @request.method = 'GET'",
        &req,
    )
    .unwrap();
    assert!(!s.text.contains("body"), "{}", s.text);
    assert_eq!(
        run("@request.data.title:isset = true && n = 1", json!(null)),
        ["p1"]
    );
    assert_eq!(
        run("@request.body.title:lower = 't' && n = 2", json!(null)),
        ["p2"]
    );
    assert_eq!(
        run("@request.body.nope:isset = true", json!(null)),
        Vec::<String>::new()
    );
    assert!(matches!(
        sql("@request.query.q:isset = true"),
        Err(FilterError::Unsupported(_))
    ));
    assert!(matches!(
        sql("title:nope = 1"),
        Err(FilterError::Unsupported(_))
    ));
    // `:each` on one value is that value, as in PocketBase.
    assert!(sql("title:each = 1").is_ok());
}

#[test]
fn auth_and_relation_paths() {
    assert_eq!(
        run("author = @request.auth.id", json!({"id": "u2"})),
        ["p2"]
    );
    assert_eq!(run("author.name = 'Ann'", json!(null)), ["p1"]);
    // Guests have an empty auth id.
    assert_eq!(
        run("@request.auth.id != ''", json!(null)),
        Vec::<String>::new()
    );
}

#[test]
fn any_of_and_all_of() {
    // A json field: `?=` looks inside arrays; a scalar is a one-element array.
    assert_eq!(run("tags ?= 'x'", json!(null)), ["p1", "p2"]);
    // A multiple field: `?=` is any, `=` is every; no values act as null.
    assert_eq!(run("cats ?= 'b'", json!(null)), ["p1"]);
    assert_eq!(run("cats = 'a'", json!(null)), ["p2"]);
    assert_eq!(run("cats = null", json!(null)), ["p3"]);
    assert_eq!(run("cats:length >= 1", json!(null)), ["p1", "p2"]);
    // The multi-valued name may stand on the right.
    assert_eq!(run("'b' ?= cats", json!(null)), ["p1"]);
    assert!(matches!(
        sql("'b' ~ cats"),
        Err(FilterError::Unsupported(_))
    ));
}

#[test]
fn collection_joins_share_one_row_per_alias() {
    // u1 is a member of t1 only: same row for both terms.
    let rule = "@collection.members.user = @request.auth.id && @collection.members.team = team";
    assert_eq!(run(rule, json!({"id": "u1"})), ["p1", "p3"]);
    assert_eq!(run(rule, json!({"id": "u2"})), ["p2"]);
    assert!(run(rule, json!(null)).is_empty());
    // Two aliases are two independent rows.
    let two = "@collection.members:a.user = 'u1' && @collection.members:b.team = team";
    assert_eq!(run(two, json!(null)), ["p1", "p2", "p3"]);
    assert!(matches!(
        sql("@collection.nope.user = 1"),
        Err(FilterError::UnknownField(_))
    ));
}

#[test]
fn bad_input_is_an_error() {
    assert_eq!(
        sql("nope = 1").unwrap_err(),
        FilterError::UnknownField("nope".into())
    );
    assert!(matches!(
        sql("title = 'a"),
        Err(FilterError::Unterminated(8))
    ));
    assert!(matches!(sql("title 'a'"), Err(FilterError::Unexpected(..))));
    assert!(matches!(
        sql("(title = 'a'"),
        Err(FilterError::Unexpected(..))
    ));
    assert!(matches!(
        sql("title = 'a')"),
        Err(FilterError::Unexpected(..))
    ));
    assert!(matches!(
        sql("title = 'a'; DROP TABLE x"),
        Err(FilterError::Unexpected(..))
    ));
    assert!(matches!(
        sql("\"x\" = title.name"),
        Err(FilterError::UnknownField(_))
    ));
    assert!(matches!(
        sql("@request.secret = 1"),
        Err(FilterError::Unsupported(_))
    ));
    assert!(matches!(
        sql("title.. = 1"),
        Err(FilterError::UnknownField(_))
    ));
    assert_eq!(parse("  ").unwrap(), None);
}

#[test]
fn limits() {
    let deep = format!("{}n = 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(sql(&deep).is_ok());
    let deeper = format!(
        "{}n = 1{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(sql(&deeper).unwrap_err(), FilterError::TooDeep);
    let long = format!("title = '{}'", "a".repeat(MAX_LEN));
    assert_eq!(parse(&long).unwrap_err(), FilterError::TooLong);
    let many = vec!["n = 1"; MAX_TERMS + 1].join(" || ");
    assert_eq!(parse(&many).unwrap_err(), FilterError::TooManyTerms);
}
