//! Auth records' own fields as the real PocketBase 0.40 guards them, and
//! `strata serve` next to it: each scenario runs the same requests against
//! a fresh PocketBase (its default `users` collection) and a fresh strata
//! tenant (a `users` collection with the same rules), and the answers must
//! match: status, error message and per-field error codes, and the record
//! fields that matter here. Ids and tokens are left out of the comparison.
//!
//! - nobody but a superuser (or the `manageRule`) sets `verified`;
//! - a user does not change its own `email` directly;
//! - a user's password change needs `passwordConfirm` and the right
//!   `oldPassword`;
//! - a new password or email rotates `tokenKey`: earlier tokens, refreshed
//!   ones included, stop working;
//! - password lengths (bcrypt's 72 bytes) and email syntax;
//! - the password field's own `min`, `max` and `pattern`.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use strata_tests::http::Response;
use strata_tests::side::{Side, on_both, same_steps};

const USERS: &str = "/api/collections/users/records";

/// A strata tenant: it has PocketBase's default `users` collection, as a
/// new PocketBase does.
fn strata() -> Result<Side> {
    let side = Side::strata(&[])?;
    let su = side.superuser()?;
    let r = side.api("GET", "/api/collections/users", Some(&su), None)?;
    ensure!(
        r.status == 200 && r.body["id"] == "_pb_users_auth_",
        "strata: the default users: {r:?}"
    );
    Ok(side)
}

/// What a step answered, without ids, tokens and times: errors whole,
/// records as the fields this file is about.
fn norm(r: &Response) -> Value {
    if r.status >= 400 {
        return json!({"status": r.status, "body": r.body});
    }
    let rec = r.body.get("record").unwrap_or(&r.body);
    json!({
        "status": r.status,
        "verified": rec.get("verified"),
        "email": rec.get("email"),
        "token": r.body.get("token").is_some_and(Value::is_string),
    })
}

/// The steps of one run, labelled.
#[derive(Default)]
struct Log(Vec<(String, Value)>);

impl Log {
    /// Send a request, note its answer, hand it back.
    fn step(
        &mut self,
        side: &Side,
        label: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Response> {
        let r = side.api(method, path, token, body)?;
        self.0.push((label.to_string(), norm(&r)));
        Ok(r)
    }
}

/// Run `scenario` on the real PocketBase and on strata; every step must
/// answer the same. The scenario may also check things on its own.
fn compare(scenario: impl Fn(&Side, &mut Log) -> Result<()>) -> Result<()> {
    let sides = [Side::pocketbase()?, strata()?];
    let mut logs = Vec::new();
    for side in &sides {
        let mut log = Log::default();
        scenario(side, &mut log).with_context(|| format!("on {}", side.name()))?;
        logs.push(log);
    }
    same_steps(&logs[0].0, &logs[1].0)
}

fn signup_body(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password, "passwordConfirm": password})
}

/// A new user, signed up as a guest; its id.
fn signup(side: &Side, log: &mut Log, email: &str, password: &str) -> Result<String> {
    let r = log.step(
        side,
        "sign up",
        "POST",
        USERS,
        None,
        Some(signup_body(email, password)),
    )?;
    ensure!(r.status == 200, "sign up {email}: {r:?}");
    Ok(r.body["id"].as_str().context("id")?.to_string())
}

fn login(side: &Side, log: &mut Log, label: &str, email: &str, password: &str) -> Result<Response> {
    log.step(
        side,
        label,
        "POST",
        "/api/collections/users/auth-with-password",
        None,
        Some(json!({"identity": email, "password": password})),
    )
}

fn token_of(r: &Response) -> Result<String> {
    match r.body["token"].as_str() {
        Some(t) => Ok(t.to_string()),
        None => bail!("no token: {r:?}"),
    }
}

/// The record as a superuser reads it.
fn stored(side: &Side, id: &str) -> Result<Value> {
    let r = side.api(
        "GET",
        &format!("{USERS}/{id}"),
        Some(&side.superuser()?),
        None,
    )?;
    ensure!(r.status == 200, "read {id}: {r:?}");
    Ok(r.body)
}

#[test]
fn only_a_superuser_sets_verified_at_sign_up() -> Result<()> {
    compare(|side, log| {
        let su = side.superuser()?;
        let mut body = signup_body("a@x.test", "12345678");
        body["verified"] = json!(true);
        let r = log.step(
            side,
            "guest verified",
            "POST",
            USERS,
            None,
            Some(body.clone()),
        )?;
        ensure!(r.status == 400, "a guest signed up verified: {r:?}");
        body["verified"] = json!("true");
        log.step(
            side,
            "guest verified as text",
            "POST",
            USERS,
            None,
            Some(body.clone()),
        )?;
        body["verified"] = json!(false);
        log.step(
            side,
            "guest not verified",
            "POST",
            USERS,
            None,
            Some(body.clone()),
        )?;
        // Missing password and confirmation are reported with `verified`.
        log.step(
            side,
            "guest verified, no password",
            "POST",
            USERS,
            None,
            Some(json!({"email": "b@x.test", "verified": true})),
        )?;
        body["email"] = json!("c@x.test");
        body["verified"] = json!(true);
        let r = log.step(
            side,
            "superuser verified",
            "POST",
            USERS,
            Some(&su),
            Some(body),
        )?;
        ensure!(r.body["verified"] == true, "superuser create: {r:?}");
        Ok(())
    })
}

#[test]
fn a_user_sets_neither_verified_nor_its_email() -> Result<()> {
    compare(|side, log| {
        let id = signup(side, log, "a@x.test", "12345678")?;
        let r = login(side, log, "login", "a@x.test", "12345678")?;
        let t = token_of(&r)?;
        let me = format!("{USERS}/{id}");
        let patch = |log: &mut Log, label: &str, token: &str, body: Value| {
            log.step(side, label, "PATCH", &me, Some(token), Some(body))
        };
        patch(log, "verified", &t, json!({"verified": true}))?;
        patch(log, "verified unchanged", &t, json!({"verified": false}))?;
        patch(log, "email", &t, json!({"email": "b@x.test"}))?;
        patch(log, "email unchanged", &t, json!({"email": "a@x.test"}))?;
        patch(
            log,
            "all at once",
            &t,
            json!({"password": "abc", "verified": true, "email": "z@x.test"}),
        )?;
        let rec = stored(side, &id)?;
        ensure!(
            rec["verified"] == false && rec["email"] == "a@x.test",
            "the user changed its own record: {rec}"
        );
        let su = side.superuser()?;
        patch(
            log,
            "superuser",
            &su,
            json!({"verified": true, "email": "c@x.test"}),
        )?;
        let rec = stored(side, &id)?;
        ensure!(
            rec["verified"] == true && rec["email"] == "c@x.test",
            "the superuser's change did not stick: {rec}"
        );
        Ok(())
    })
}

#[test]
fn a_password_change_needs_the_old_password() -> Result<()> {
    compare(|side, log| {
        let id = signup(side, log, "a@x.test", "12345678")?;
        let t = token_of(&login(side, log, "login", "a@x.test", "12345678")?)?;
        let me = format!("{USERS}/{id}");
        let patch = |log: &mut Log, label: &str, token: &str, body: Value| {
            log.step(side, label, "PATCH", &me, Some(token), Some(body))
        };
        let new = |old: Option<&str>| {
            let mut b = json!({"password": "abcdefgh", "passwordConfirm": "abcdefgh"});
            if let Some(o) = old {
                b["oldPassword"] = json!(o);
            }
            b
        };
        let r = patch(log, "no old password", &t, new(None))?;
        ensure!(r.status == 400, "changed without the old password: {r:?}");
        let r = patch(log, "wrong old password", &t, new(Some("wrongwrong")))?;
        ensure!(r.status == 400, "changed with a wrong old password: {r:?}");
        patch(
            log,
            "no confirmation",
            &t,
            json!({"password": "abcdefgh", "oldPassword": "12345678"}),
        )?;
        patch(
            log,
            "other confirmation",
            &t,
            json!({"password": "abcdefgh", "passwordConfirm": "abcdefgX", "oldPassword": "12345678"}),
        )?;
        patch(
            log,
            "confirmation and old password only",
            &t,
            json!({"passwordConfirm": "abc", "oldPassword": "x"}),
        )?;
        login(
            side,
            log,
            "old password still works",
            "a@x.test",
            "12345678",
        )?;
        let r = patch(log, "right old password", &t, new(Some("12345678")))?;
        ensure!(r.status == 200, "{r:?}");
        login(side, log, "old password refused", "a@x.test", "12345678")?;
        login(side, log, "new password", "a@x.test", "abcdefgh")?;
        let su = side.superuser()?;
        patch(
            log,
            "superuser, no confirmation",
            &su,
            json!({"password": "12345678"}),
        )?;
        patch(
            log,
            "superuser, no old password",
            &su,
            json!({"password": "12345678", "passwordConfirm": "12345678"}),
        )?;
        login(side, log, "superuser's password", "a@x.test", "12345678")?;
        Ok(())
    })
}

#[test]
fn a_new_password_or_email_refuses_earlier_tokens() -> Result<()> {
    compare(|side, log| {
        let id = signup(side, log, "a@x.test", "12345678")?;
        let me = format!("{USERS}/{id}");
        let refresh = "/api/collections/users/auth-refresh";
        let t = token_of(&login(side, log, "login", "a@x.test", "12345678")?)?;
        let r = log.step(side, "refresh", "POST", refresh, Some(&t), None)?;
        let refreshed = token_of(&r)?;
        let r = log.step(
            side,
            "own password change",
            "PATCH",
            &me,
            Some(&t),
            Some(json!({"password": "abcdefgh", "passwordConfirm": "abcdefgh", "oldPassword": "12345678"})),
        )?;
        ensure!(r.status == 200, "{r:?}");
        for (label, tok) in [("login token", &t), ("refreshed token", &refreshed)] {
            let r = log.step(side, &format!("{label}: view"), "GET", &me, Some(tok), None)?;
            ensure!(r.status == 404, "{label} still reads the record: {r:?}");
            let r = log.step(
                side,
                &format!("{label}: refresh"),
                "POST",
                refresh,
                Some(tok),
                None,
            )?;
            ensure!(r.status == 401, "{label} still refreshes: {r:?}");
        }
        let su = side.superuser()?;
        let t = token_of(&login(side, log, "login again", "a@x.test", "abcdefgh")?)?;
        // Neither `verified` nor an unchanged email rotate the key.
        log.step(
            side,
            "superuser: verified",
            "PATCH",
            &me,
            Some(&su),
            Some(json!({"verified": true})),
        )?;
        log.step(
            side,
            "superuser: same email",
            "PATCH",
            &me,
            Some(&su),
            Some(json!({"email": "a@x.test"})),
        )?;
        let r = log.step(side, "token kept", "GET", &me, Some(&t), None)?;
        ensure!(r.status == 200, "{r:?}");
        log.step(
            side,
            "superuser: new email",
            "PATCH",
            &me,
            Some(&su),
            Some(json!({"email": "b@x.test"})),
        )?;
        let r = log.step(side, "token after new email", "GET", &me, Some(&t), None)?;
        ensure!(r.status == 404, "a token outlived an email change: {r:?}");
        log.step(
            side,
            "refresh after new email",
            "POST",
            refresh,
            Some(&t),
            None,
        )?;
        let t = token_of(&login(
            side,
            log,
            "login with new email",
            "b@x.test",
            "abcdefgh",
        )?)?;
        log.step(
            side,
            "superuser: new password",
            "PATCH",
            &me,
            Some(&su),
            Some(json!({"password": "zzzzzzzz", "passwordConfirm": "zzzzzzzz"})),
        )?;
        log.step(
            side,
            "token after superuser's password",
            "GET",
            &me,
            Some(&t),
            None,
        )?;
        Ok(())
    })
}

#[test]
fn password_lengths_and_email_syntax() -> Result<()> {
    compare(|side, log| {
        let su = side.superuser()?;
        let id = signup(side, log, "a@x.test", "12345678")?;
        let me = format!("{USERS}/{id}");
        let passwords = [
            ("7 characters".to_string(), "1234567".to_string()),
            ("7 three-byte characters".into(), "€".repeat(7)),
            ("71 characters".into(), "a".repeat(71)),
            ("72 characters".into(), "a".repeat(72)),
            ("73 bytes".into(), "a".repeat(73)),
            ("25 three-byte characters (75 bytes)".into(), "€".repeat(25)),
            ("24 characters in 60 bytes".into(), "é€".repeat(12)),
            ("empty".into(), String::new()),
        ];
        for (label, p) in &passwords {
            log.step(
                side,
                &format!("password: {label}"),
                "PATCH",
                &me,
                Some(&su),
                Some(json!({"password": p, "passwordConfirm": p})),
            )?;
            log.step(
                side,
                &format!("sign up with {label}"),
                "POST",
                USERS,
                None,
                Some(signup_body(&format!("p{}@x.test", p.len()), p)),
            )?;
        }
        let long_local = format!("{}@b.c", "a".repeat(250));
        let emails = [
            "@",
            "a@",
            "@b",
            "a@b",
            "a b@c.d",
            "a@b.c",
            "A@B.CD",
            "a@@b.c",
            "a.@b.c",
            ".a@b.c",
            "a@b..c",
            "a@-b.c",
            "a@b-.c",
            "a@b.c-",
            "a@b.1c",
            "a@b.-x.c",
            "a@b.c..",
            "a@1.c",
            " a@b.c",
            "a@b.c ",
            "a@localhost",
            "a@b.c.",
            &long_local,
            "ü@b.c",
            "a@ü.c",
            "a+b@b.c",
            "a@[1.2.3.4]",
            "a@b_c.d",
            "a~@b~c.d",
            "",
        ];
        for (i, e) in emails.iter().enumerate() {
            let r = log.step(
                side,
                &format!("email {e:?}"),
                "POST",
                USERS,
                None,
                Some(signup_body(e, "12345678")),
            )?;
            if *e == "@" || *e == "a@" || *e == "@b" {
                ensure!(r.status == 400, "{e:?} taken as an email: {r:?}");
            }
            let _ = i;
        }
        log.step(
            side,
            "email as a number",
            "POST",
            USERS,
            None,
            Some(json!({"email": 5, "password": "12345678", "passwordConfirm": "12345678"})),
        )?;
        log.step(
            side,
            "superuser sets a bad email",
            "PATCH",
            &me,
            Some(&su),
            Some(json!({"email": "a@"})),
        )?;
        Ok(())
    })
}

#[test]
fn the_manage_rule_grants_manage_access() -> Result<()> {
    compare(|side, log| {
        let su = side.superuser()?;
        let id = signup(side, log, "a@x.test", "12345678")?;
        let me = format!("{USERS}/{id}");
        let t = token_of(&login(side, log, "login", "a@x.test", "12345678")?)?;
        let set_rule = |log: &mut Log, rule: Value| -> Result<()> {
            let r = side.api(
                "PATCH",
                "/api/collections/users",
                Some(&su),
                Some(json!({"manageRule": rule})),
            )?;
            ensure!(
                r.status == 200 && r.body["manageRule"] == rule,
                "set manageRule: {r:?}"
            );
            log.0
                .push(("manageRule".into(), r.body["manageRule"].clone()));
            Ok(())
        };
        set_rule(log, json!("@request.auth.id != ''"))?;
        let r = log.step(
            side,
            "manager: verified, email, password without old",
            "PATCH",
            &me,
            Some(&t),
            Some(json!({"verified": true, "email": "b@x.test", "password": "zzzzzzzz", "passwordConfirm": "zzzzzzzz"})),
        )?;
        ensure!(r.status == 200, "{r:?}");
        let mut body = signup_body("g@x.test", "12345678");
        body["verified"] = json!(true);
        log.step(
            side,
            "a guest is no manager",
            "POST",
            USERS,
            None,
            Some(body),
        )?;
        let t = token_of(&login(side, log, "login", "b@x.test", "zzzzzzzz")?)?;
        // The rule is checked against the stored record.
        set_rule(log, json!("verified = true"))?;
        log.step(
            side,
            "verified record: unverify",
            "PATCH",
            &me,
            Some(&t),
            Some(json!({"verified": false})),
        )?;
        log.step(
            side,
            "unverified record: verify",
            "PATCH",
            &me,
            Some(&t),
            Some(json!({"verified": true})),
        )?;
        set_rule(log, Value::Null)?;
        log.step(
            side,
            "no manage rule",
            "PATCH",
            &me,
            Some(&t),
            Some(json!({"email": "c@x.test"})),
        )?;
        Ok(())
    })
}

/// The password field's options, set by a PATCH of the collection's fields
/// (the password is a system field, but its options may change) and at the
/// creation of an auth collection: sign-ups within and outside them.
fn password_options(side: &Side) -> Result<Vec<(String, Value)>> {
    let su = side.superuser()?;
    let mut steps = Vec::new();
    let users = side.api("GET", "/api/collections/users", Some(&su), None)?;
    let with = |min: u64, max: u64, pattern: &str| -> Value {
        let fields: Vec<Value> = users.body["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                let mut f = f.clone();
                if f["type"] == "password" {
                    f["min"] = json!(min);
                    f["max"] = json!(max);
                    f["pattern"] = json!(pattern);
                }
                f
            })
            .collect();
        json!({"fields": fields})
    };
    let mut n = 0;
    let mut signup = |coll: &str, p: &str| -> Result<Value> {
        n += 1;
        let r = side.api(
            "POST",
            &format!("/api/collections/{coll}/records"),
            None,
            Some(
                json!({"email": format!("p{n}@example.com"), "password": p, "passwordConfirm": p}),
            ),
        )?;
        Ok(json!([r.status, error_codes(&r)]))
    };
    let r = side.api(
        "PATCH",
        "/api/collections/users",
        Some(&su),
        Some(with(12, 20, "^[a-z0-9]+$")),
    )?;
    steps.push(("PATCH min 12, max 20, pattern".into(), json!(r.status)));
    for p in [
        "short12",
        "aaaaaaaaaaaa",
        "aaaaaaaaaaaaaaaaaaaaaaaaa",
        "AAAAAAAAAAAAAA",
        "abc123abc123abc1",
    ] {
        steps.push((format!("users: {p}"), signup("users", p)?));
    }
    let r = side.api(
        "PATCH",
        "/api/collections/users",
        Some(&su),
        Some(with(5, 0, "")),
    )?;
    steps.push(("PATCH min 5".into(), json!(r.status)));
    for p in ["abcd", "abcdef", &"x".repeat(71), &"x".repeat(72)] {
        steps.push((format!("users: {} chars", p.len()), signup("users", p)?));
    }
    let r = side.api(
        "PATCH",
        "/api/collections/users",
        Some(&su),
        Some(with(8, 0, "[a")),
    )?;
    steps.push((
        "PATCH a broken pattern".into(),
        json!([r.status, error_codes(&r)]),
    ));
    // At creation, on a new auth collection.
    let r = side.api(
        "POST",
        "/api/collections",
        Some(&su),
        Some(json!({"name": "members", "type": "auth",
        "createRule": "", "fields": [{"name": "password", "type": "password", "min": 10}]})),
    )?;
    steps.push(("create members, min 10".into(), json!(r.status)));
    for p in ["123456789", "1234567890"] {
        steps.push((format!("members: {p}"), signup("members", p)?));
    }
    Ok(steps)
}

/// The per-field error codes of an answer.
fn error_codes(r: &Response) -> Value {
    json!(strata_tests::http::error_codes(&r.body))
}

#[test]
fn password_field_options_as_in_pocketbase() -> Result<()> {
    on_both(password_options)
}
