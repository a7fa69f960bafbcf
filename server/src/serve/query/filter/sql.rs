//! The AST to SQL with bound parameters: names resolved through the
//! collection's schema ([`Names`]), literals always `?` parameters.

use super::*;
use rusqlite::types::Value as SqlValue;

/// What a name stands for in SQL. The text is made only of quoted schema
/// names, never of user input, and binds no parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// One value per record.
    One(String),
    /// A json field: the `?` operators look inside its array.
    Json(String),
    /// Several values (a multiple select or relation field, or a path
    /// through one): a subquery whose rows have one column, `v`.
    Many(String),
}

/// The schema, as the compiler sees it.
pub trait Names {
    /// A field of the filtered record, or a path through relation fields.
    fn field(&self, path: &str) -> Option<Resolved>;
    /// The quoted table of the collection called `name`, if there is one.
    fn table(&self, name: &str) -> Option<String>;
    /// A field path of collection `name` joined under the SQL alias `alias`.
    fn joined(&self, name: &str, alias: &str, path: &str) -> Option<Resolved>;
}

/// What the compiler needs from the request: the schema, the caller, the clock.
pub struct Ctx<'a> {
    pub names: &'a dyn Names,
    /// `@request.*`: `{auth, body, query, headers, method, context}`, with
    /// `auth` null for a guest.
    pub request: &'a serde_json::Value,
    /// `@now` as PocketBase's date string.
    pub now: String,
    pub today_start: String,
    pub today_end: String,
}

/// SQL text with `?` placeholders, and the values to bind, in order.
#[derive(Debug, Default)]
pub struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
}

impl Sql {
    fn param(v: SqlValue) -> Sql {
        Sql {
            text: "?".into(),
            params: vec![v],
        }
    }
    fn raw(text: impl Into<String>) -> Sql {
        Sql {
            text: text.into(),
            params: vec![],
        }
    }
}

/// The SQL alias an `@collection.<name>[:alias]` join gets. Aliases are
/// case-sensitive in a filter but SQLite's names are not, so the alias is
/// spelled in hex: `u` and `U` stay two joins (a fuzzer found the 500).
pub fn join_alias(alias: &str) -> String {
    let hex: String = alias.bytes().map(|b| format!("{b:02x}")).collect();
    quote_ident(&format!("__col_{hex}"))
}

/// Compile `e` into `out`. `@collection` references become one LEFT JOIN
/// per alias around the whole expression, so every term that names the same
/// alias talks about the same row (PocketBase's semantics).
pub fn compile(e: &Expr, ctx: &Ctx, out: &mut Sql) -> Result<(), FilterError> {
    let mut joins: Vec<(&str, &str)> = Vec::new();
    collect_joins(e, &mut joins)?;
    if joins.is_empty() {
        return expr_sql(e, ctx, out);
    }
    out.text.push_str("EXISTS (SELECT 1 FROM (SELECT 1)");
    for (name, alias) in &joins {
        let table = ctx
            .names
            .table(name)
            .ok_or_else(|| FilterError::UnknownField(format!("@collection.{name}")))?;
        out.text
            .push_str(&format!(" LEFT JOIN {table} AS {} ON 1", join_alias(alias)));
    }
    out.text.push_str(" WHERE ");
    expr_sql(e, ctx, out)?;
    out.text.push(')');
    Ok(())
}

fn collect_joins<'e>(e: &'e Expr, out: &mut Vec<(&'e str, &'e str)>) -> Result<(), FilterError> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            collect_joins(a, out)?;
            collect_joins(b, out)
        }
        Expr::Cmp { left, right, .. } => {
            for o in [left, right] {
                if let Operand::Collection { name, alias, .. } = o {
                    match out.iter().find(|(_, a)| a == alias) {
                        Some((n, _)) if n != name => {
                            return Err(FilterError::Unsupported(format!(
                                "alias `{alias}` used for two collections"
                            )));
                        }
                        Some(_) => {}
                        None => out.push((name, alias)),
                    }
                }
            }
            Ok(())
        }
    }
}

fn expr_sql(e: &Expr, ctx: &Ctx, out: &mut Sql) -> Result<(), FilterError> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            out.text.push('(');
            expr_sql(a, ctx, out)?;
            out.text.push_str(if matches!(e, Expr::And(..)) {
                " AND "
            } else {
                " OR "
            });
            expr_sql(b, ctx, out)?;
            out.text.push(')');
        }
        Expr::Cmp {
            left,
            op,
            any,
            right,
        } => {
            let like = matches!(op, Op::Like | Op::NotLike);
            let mut l = side(left, ctx, false)?;
            let mut r = side(right, ctx, like)?;
            let mut op = *op;
            // A multi-valued name on the right: compare from its side.
            if matches!(l, Side::One(_)) && !matches!(r, Side::One(_)) {
                op = op.mirrored().ok_or_else(|| {
                    FilterError::Unsupported("`~` with a multi-valued field on the right".into())
                })?;
                std::mem::swap(&mut l, &mut r);
            }
            let Side::One(r) = r else {
                return Err(FilterError::Unsupported(
                    "a comparison of two multi-valued names".into(),
                ));
            };
            let null = matches!(right, Operand::Null) || matches!(left, Operand::Null);
            match l {
                Side::One(l) => {
                    out.text.push_str(&cmp(&l.text, op, &r.text, null));
                    out.params.extend(l.params);
                    out.params.extend(r.params);
                }
                Side::Json(col) if *any => {
                    // Any element (a scalar counts as a one-element array).
                    out.text.push_str(&format!(
                        "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({col}) AND json_type({col}) = 'array' THEN {col} WHEN json_valid({col}) THEN json_array(json_extract({col}, '$')) ELSE json_array({col}) END) AS __je WHERE {})",
                        cmp("__je.value", op, &r.text, null)
                    ));
                    out.params.extend(r.params);
                }
                Side::Json(col) => {
                    out.text.push_str(&cmp(&col, op, &r.text, null));
                    out.params.extend(r.params);
                }
                Side::Many(sub) => {
                    // No values count as one null, so `tags = null` holds
                    // for a record without tags.
                    let set = format!(
                        "SELECT v FROM ({0}) UNION ALL SELECT NULL WHERE NOT EXISTS ({0})",
                        sub.text
                    );
                    let c = cmp("__m.v", op, &r.text, null);
                    out.text.push_str(&if *any {
                        format!("EXISTS (SELECT 1 FROM ({set}) AS __m WHERE {c})")
                    } else {
                        format!(
                            "NOT EXISTS (SELECT 1 FROM ({set}) AS __m WHERE NOT COALESCE({c}, 0))"
                        )
                    });
                    // The subquery appears twice.
                    out.params.extend(sub.params.iter().cloned());
                    out.params.extend(sub.params);
                    out.params.extend(r.params);
                }
            }
        }
    }
    Ok(())
}

impl Op {
    /// The operator with its sides swapped (`a < b` is `b > a`).
    fn mirrored(self) -> Option<Op> {
        Some(match self {
            Op::Eq | Op::Neq => self,
            Op::Gt => Op::Lt,
            Op::Gte => Op::Lte,
            Op::Lt => Op::Gt,
            Op::Lte => Op::Gte,
            Op::Like | Op::NotLike => return None,
        })
    }
}

/// `left op right` for two single values. `right` appears once, so a
/// parameter in it binds once.
fn cmp(left: &str, op: Op, right: &str, null: bool) -> String {
    // PocketBase treats null and "" alike in comparisons with null.
    if null && matches!(op, Op::Eq | Op::Neq) {
        let (l, r) = if right == "NULL" {
            (left, "''")
        } else {
            (right, "''")
        };
        let sym = if op == Op::Eq { "=" } else { "!=" };
        return format!("(COALESCE({l}, '') {sym} {r})");
    }
    let sym = match op {
        Op::Eq => "IS",
        Op::Neq => "IS NOT",
        Op::Gt => ">",
        Op::Gte => ">=",
        Op::Lt => "<",
        Op::Lte => "<=",
        Op::Like => "LIKE",
        Op::NotLike => "NOT LIKE",
    };
    format!("({left} {sym} {right})")
}

/// One side of a comparison.
enum Side {
    One(Sql),
    Json(String),
    /// A subquery whose rows have one column, `v`.
    Many(Sql),
}

fn side(o: &Operand, ctx: &Ctx, like: bool) -> Result<Side, FilterError> {
    let text = |s: &str| {
        // `~ 'abc'` means "contains": wrap in % unless the user placed one.
        if like && !s.contains('%') {
            SqlValue::Text(format!("%{s}%"))
        } else {
            SqlValue::Text(s.to_string())
        }
    };
    let v = match o {
        Operand::Field(path, m) => {
            let r = ctx
                .names
                .field(path)
                .ok_or_else(|| FilterError::UnknownField(path.clone()))?;
            return modify(r, *m, path);
        }
        Operand::Collection {
            name,
            alias,
            path,
            modifier,
        } => {
            let r = ctx
                .names
                .joined(name, &join_alias(alias), path)
                .ok_or_else(|| FilterError::UnknownField(format!("@collection.{name}.{path}")))?;
            return modify(r, *modifier, path);
        }
        Operand::Null => return Ok(Side::One(Sql::raw("NULL"))),
        Operand::Str(s) => text(s),
        Operand::Num(n) => num_value(*n),
        Operand::Bool(b) => SqlValue::Integer(*b as i64),
        Operand::Request(path, Some(Modifier::Changed)) => return changed(path, ctx),
        Operand::Request(path, Some(Modifier::Each)) => {
            // Every submitted item (a single value counts as one; none as
            // one null, as for a field).
            let found = path.split('.').try_fold(ctx.request, |v, key| v.get(key));
            let items = match found {
                Some(serde_json::Value::Array(a)) => serde_json::Value::Array(a.clone()),
                None | Some(serde_json::Value::Null) => serde_json::json!([]),
                Some(v) => serde_json::json!([v]),
            };
            return Ok(Side::Many(Sql {
                text: "SELECT value AS v FROM json_each(?)".into(),
                params: vec![SqlValue::Text(items.to_string())],
            }));
        }
        Operand::Request(path, m) => {
            let found = path.split('.').try_fold(ctx.request, |v, key| v.get(key));
            match (m, found) {
                (Some(Modifier::IsSet), f) => SqlValue::Integer(f.is_some() as i64),
                (Some(Modifier::Length), f) => {
                    SqlValue::Integer(f.and_then(|v| v.as_array()).map_or(0, Vec::len) as i64)
                }
                (Some(Modifier::Lower), Some(serde_json::Value::String(s))) => {
                    text(&s.to_lowercase())
                }
                (_, Some(serde_json::Value::String(s))) => text(s),
                (_, Some(v)) if !v.is_null() => json_to_sql(v),
                // A guest's, or a missing, value is "", as in PocketBase.
                (_, _) => SqlValue::Text(String::new()),
            }
        }
        Operand::Macro(m) => match m.as_str() {
            "@now" => SqlValue::Text(ctx.now.clone()),
            "@todayStart" => SqlValue::Text(ctx.today_start.clone()),
            "@todayEnd" => SqlValue::Text(ctx.today_end.clone()),
            other => crate::serve::query::macros::value(other, &ctx.now)
                .ok_or_else(|| FilterError::Unsupported(other.to_string()))?,
        },
    };
    Ok(Side::One(Sql::param(v)))
}

/// `@request.body.x:changed`, as PocketBase rewrites it:
/// `@request.body.x:isset = true && @request.body.x != x`. 1 or 0.
fn changed(path: &str, ctx: &Ctx) -> Result<Side, FilterError> {
    let field = path.strip_prefix("body.").unwrap_or(path);
    let Some(sent) = path.split('.').try_fold(ctx.request, |v, key| v.get(key)) else {
        return Ok(Side::One(Sql::param(SqlValue::Integer(0))));
    };
    let column = match ctx.names.field(field) {
        Some(Resolved::One(c)) => c,
        Some(_) => {
            return Err(FilterError::Unsupported(format!(
                "@request.{path}:changed on a multi-valued or JSON field"
            )));
        }
        None => return Err(FilterError::UnknownField(field.to_string())),
    };
    let value = match sent {
        serde_json::Value::Null => SqlValue::Text(String::new()),
        v => json_to_sql(v),
    };
    let differs = cmp("?", Op::Neq, &column, false);
    Ok(Side::One(Sql {
        text: format!("(CASE WHEN {differs} THEN 1 ELSE 0 END)"),
        params: vec![value],
    }))
}

/// Apply a `:modifier` to a resolved name.
fn modify(r: Resolved, m: Option<Modifier>, path: &str) -> Result<Side, FilterError> {
    let bad = || FilterError::Unsupported(format!("modifier on `{path}`"));
    Ok(match (r, m) {
        (Resolved::One(s), None | Some(Modifier::Each)) => Side::One(Sql::raw(s)),
        (Resolved::Json(s), None) => Side::Json(s),
        (Resolved::Many(s), None | Some(Modifier::Each)) => Side::Many(Sql::raw(s)),
        (Resolved::One(s), Some(Modifier::Lower)) => Side::One(Sql::raw(format!("LOWER({s})"))),
        (Resolved::Many(s), Some(Modifier::Lower)) => {
            Side::Many(Sql::raw(format!("SELECT LOWER(v) AS v FROM ({s})")))
        }
        (Resolved::Many(s), Some(Modifier::Length)) => {
            Side::One(Sql::raw(format!("(SELECT COUNT(*) FROM ({s}))")))
        }
        (Resolved::Json(s), Some(Modifier::Length)) => Side::One(Sql::raw(format!(
            "(CASE WHEN json_valid({s}) AND json_type({s}) = 'array' THEN json_array_length({s}) ELSE 0 END)"
        ))),
        _ => return Err(bad()),
    })
}

fn num_value(n: f64) -> SqlValue {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        SqlValue::Integer(n as i64)
    } else {
        SqlValue::Real(n)
    }
}

pub fn json_to_sql(v: &serde_json::Value) -> SqlValue {
    match v {
        serde_json::Value::Null => SqlValue::Null,
        serde_json::Value::Bool(b) => SqlValue::Integer(*b as i64),
        serde_json::Value::Number(n) => n.as_f64().map_or(SqlValue::Null, num_value),
        serde_json::Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

/// A schema-checked name as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
