//! Reading script replies back into store types. Anything that does not
//! have the expected shape is a [`StoreError::corrupt`], never a panic.

use std::collections::HashMap;

use redis::Value;

use crate::clock::Millis;
use crate::store::{BoundUser, Result, SessionRecord, StoreError};
use crate::token::SessionId;

pub(super) fn items(v: &Value) -> Result<&[Value]> {
    match v {
        Value::Array(items) => Ok(items),
        _ => Err(StoreError::corrupt("expected an array reply")),
    }
}

pub(super) fn text(v: &Value) -> Result<String> {
    match v {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone())
            .map_err(|_| StoreError::corrupt("a reply is not UTF-8")),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        _ => Err(StoreError::corrupt("expected a string reply")),
    }
}

pub(super) fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(n) => Ok(*n),
        other => number(&text(other)?).map(|n| n as i64),
    }
}

pub(super) fn number(s: &str) -> Result<Millis> {
    s.parse()
        .map_err(|_| StoreError::corrupt(format!("expected a number, got {s:?}")))
}

pub(super) fn session_id(v: &Value) -> Result<SessionId> {
    SessionId::parse(&text(v)?).ok_or_else(|| StoreError::corrupt("malformed session id"))
}

/// The element at `i`, or a corrupt-reply error.
pub(super) fn at(items: &[Value], i: usize) -> Result<&Value> {
    items
        .get(i)
        .ok_or_else(|| StoreError::corrupt("a reply is too short"))
}

/// Key/value pairs from a flat array.
pub(super) fn pairs(v: &Value) -> Result<Vec<(String, String)>> {
    items(v)?
        .chunks(2)
        .map(|pair| match pair {
            [k, v] => Ok((text(k)?, text(v)?)),
            _ => Err(StoreError::corrupt("odd number of fields")),
        })
        .collect()
}

/// A session record from its whole hash (as `HGETALL` gives it), with the
/// `seen` time the script settled on.
pub(super) fn record(id: SessionId, seen: &Value, flat: &Value) -> Result<SessionRecord> {
    let mut fields = HashMap::new();
    let mut data = HashMap::new();
    for (field, value) in pairs(flat)? {
        match field.strip_prefix("d:") {
            Some(key) => {
                data.insert(key.to_owned(), value);
            }
            None => {
                fields.insert(field, value);
            }
        }
    }
    let required = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| StoreError::corrupt(format!("session field {name} missing")))
            .and_then(|v| number(v))
    };
    let optional = |name: &str| fields.get(name).map(|v| number(v)).transpose();
    let user = match (fields.get("uid"), fields.get("user")) {
        (Some(id), Some(json)) => Some(BoundUser {
            id: id.clone(),
            json: json.clone(),
        }),
        _ => None,
    };
    Ok(SessionRecord {
        id,
        created_at: required("created")?,
        last_seen: number(&text(seen)?)?,
        idle_timeout: required("idle")?,
        absolute_deadline: optional("abs")?,
        ttg: required("ttg")?,
        rotated_at: optional("rot")?,
        renew_token: fields.get("renew").is_some_and(|v| v == "1"),
        label: fields.get("label").cloned(),
        user,
        data,
    })
}
