//! The filter compiler against a reference evaluator (`proptest`): random
//! records, random filters over a text, a number and a bool field; the SQL
//! that `compile` makes must select exactly the records that the reference
//! says pass. The reference is PocketBase's semantics written out plainly:
//! `=`/`!=` exact, `~`/`!~` contains (ASCII case-insensitive, like SQLite's
//! LIKE), `= null` meaning empty (other operators with null: false), `&&`
//! binding tighter than `||`,
//! and the `?` forms equal to the plain ones on single values.

use super::*;
use proptest::prelude::*;
use rusqlite::Connection;

#[derive(Debug, Clone)]
struct Rec {
    name: String,
    n: f64,
    done: bool,
}

#[derive(Debug, Clone)]
enum Lit {
    Text(String),
    Num(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Name,
    N,
    Done,
}

#[derive(Debug, Clone)]
enum F {
    Cmp {
        field: Field,
        op: &'static str,
        any: bool,
        lit: Lit,
        /// Written `lit op field` (the operator mirrored).
        flipped: bool,
    },
    And(Box<F>, Box<F>),
    Or(Box<F>, Box<F>),
}

const WORDS: [&str; 7] = ["", "a", "ab", "B", "ba", "abc", "Zz"];

fn rec() -> impl Strategy<Value = Rec> {
    (prop::sample::select(&WORDS[..]), -6i32..6, any::<bool>()).prop_map(|(w, n, done)| Rec {
        name: w.to_string(),
        n: n as f64 / 2.0,
        done,
    })
}

fn lit_for(field: Field) -> BoxedStrategy<Lit> {
    let null = Just(Lit::Null);
    match field {
        Field::Name => prop_oneof![
            4 => prop::sample::select(&WORDS[..]).prop_map(|w| Lit::Text(w.to_string())),
            1 => null,
        ]
        .boxed(),
        Field::N => prop_oneof![
            4 => (-7i32..7).prop_map(|n| Lit::Num(n as f64 / 2.0)),
            1 => null,
        ]
        .boxed(),
        Field::Done => prop_oneof![any::<bool>().prop_map(Lit::Bool), Just(Lit::Null)].boxed(),
    }
}

fn ops_for(field: Field) -> &'static [&'static str] {
    match field {
        Field::Name => &["=", "!=", "~", "!~", ">", "<"],
        Field::N => &["=", "!=", ">", ">=", "<", "<="],
        Field::Done => &["=", "!="],
    }
}

fn cmp() -> impl Strategy<Value = F> {
    prop::sample::select(vec![Field::Name, Field::N, Field::Done]).prop_flat_map(|field| {
        (
            prop::sample::select(ops_for(field)),
            any::<bool>(),
            lit_for(field),
            any::<bool>(),
        )
            .prop_map(move |(op, any, lit, flipped)| F::Cmp {
                field,
                op,
                any,
                lit,
                // `'x' ~ name` means something else (the field inside the
                // literal): only order comparisons and equality flip.
                flipped: flipped && !op.contains('~'),
            })
    })
}

fn filter() -> impl Strategy<Value = F> {
    cmp().prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| F::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| F::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn field_name(f: Field) -> &'static str {
    match f {
        Field::Name => "name",
        Field::N => "n",
        Field::Done => "done",
    }
}

fn lit_text(l: &Lit) -> String {
    match l {
        Lit::Text(s) => format!("'{s}'"),
        Lit::Num(n) => format!("{n}"),
        Lit::Bool(b) => b.to_string(),
        Lit::Null => "null".into(),
    }
}

fn mirrored(op: &'static str) -> &'static str {
    match op {
        ">" => "<",
        ">=" => "<=",
        "<" => ">",
        "<=" => ">=",
        same => same,
    }
}

/// The filter's text: `&&` binds tighter, so an `||` under an `&&` needs
/// parentheses and nothing else does.
fn render(f: &F) -> String {
    match f {
        F::Cmp {
            field,
            op,
            any,
            lit,
            flipped,
        } => {
            let q = if *any { "?" } else { "" };
            if *flipped {
                format!(
                    "{} {q}{} {}",
                    lit_text(lit),
                    mirrored(op),
                    field_name(*field)
                )
            } else {
                format!("{} {q}{op} {}", field_name(*field), lit_text(lit))
            }
        }
        F::And(a, b) => {
            let side = |x: &F| match x {
                F::Or(..) => format!("({})", render(x)),
                _ => render(x),
            };
            format!("{} && {}", side(a), side(b))
        }
        F::Or(a, b) => format!("{} || {}", render(a), render(b)),
    }
}

/// The reference: does `r` pass `f`?
fn eval(f: &F, r: &Rec) -> bool {
    match f {
        F::And(a, b) => eval(a, r) && eval(b, r),
        F::Or(a, b) => eval(a, r) || eval(b, r),
        F::Cmp { field, op, lit, .. } => match (field, lit) {
            // `= null` / `!= null` test for the empty value: "" for text;
            // a number or a bool is never empty (PocketBase stores 0 and
            // false). Any other operator with null is SQL's NULL: false
            // (checked against PocketBase 0.40.6).
            (_, Lit::Null) => {
                let empty = *field == Field::Name && r.name.is_empty();
                match *op {
                    "=" => empty,
                    "!=" => !empty,
                    _ => false,
                }
            }
            (Field::Name, Lit::Text(s)) => text_cmp(&r.name, op, s),
            (Field::N, Lit::Num(x)) => num_cmp(r.n, op, *x),
            (Field::Done, Lit::Bool(b)) => match *op {
                "=" => r.done == *b,
                _ => r.done != *b,
            },
            _ => unreachable!("literals are generated per field"),
        },
    }
}

fn text_cmp(v: &str, op: &str, s: &str) -> bool {
    let contains = || v.to_ascii_lowercase().contains(&s.to_ascii_lowercase());
    match op {
        "=" => v == s,
        "!=" => v != s,
        "~" => contains(),
        "!~" => !contains(),
        ">" => v > s,
        "<" => v < s,
        _ => unreachable!(),
    }
}

fn num_cmp(v: f64, op: &str, x: f64) -> bool {
    match op {
        "=" => v == x,
        "!=" => v != x,
        ">" => v > x,
        ">=" => v >= x,
        "<" => v < x,
        "<=" => v <= x,
        _ => unreachable!(),
    }
}

struct Table;
impl Names for Table {
    fn field(&self, path: &str) -> Option<Resolved> {
        matches!(path, "id" | "name" | "n" | "done")
            .then(|| Resolved::One(format!("\"r\".\"{path}\"")))
    }
    fn table(&self, _: &str) -> Option<String> {
        None
    }
    fn joined(&self, _: &str, _: &str, _: &str) -> Option<Resolved> {
        None
    }
}

/// The ids that the compiled filter selects.
fn selected(db: &Connection, text: &str) -> Vec<i64> {
    let request = serde_json::json!({});
    let ctx = Ctx {
        names: &Table,
        request: &request,
        now: String::new(),
        today_start: String::new(),
        today_end: String::new(),
    };
    let e = parse(text)
        .expect("a generated filter parses")
        .expect("non-empty");
    let mut sql = Sql::default();
    compile(&e, &ctx, &mut sql).expect("a generated filter compiles");
    let q = format!("SELECT id FROM r WHERE {} ORDER BY id", sql.text);
    let mut st = db.prepare(&q).expect("the compiled SQL prepares");
    st.query_map(rusqlite::params_from_iter(sql.params.iter()), |row| {
        row.get(0)
    })
    .expect("runs")
    .collect::<Result<_, _>>()
    .expect("rows")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_filters_select_what_the_reference_selects(
        recs in prop::collection::vec(rec(), 0..24),
        f in filter(),
    ) {
        let db = Connection::open_in_memory().unwrap();
        // The columns as strata's records have them: text, number, bool.
        db.execute_batch(
            "CREATE TABLE r(id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '', \
             n NUMERIC NOT NULL DEFAULT 0, done BOOLEAN NOT NULL DEFAULT FALSE)",
        ).unwrap();
        for (i, r) in recs.iter().enumerate() {
            db.execute(
                "INSERT INTO r(id, name, n, done) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![i as i64, r.name, r.n, r.done],
            ).unwrap();
        }
        let text = render(&f);
        let want: Vec<i64> = recs
            .iter()
            .enumerate()
            .filter(|(_, r)| eval(&f, r))
            .map(|(i, _)| i as i64)
            .collect();
        prop_assert_eq!(selected(&db, &text), want, "filter: {}", text);
    }
}
