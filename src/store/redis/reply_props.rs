//! Properties of the reply decoder: whatever a script or a damaged server
//! answers, decoding a session record never panics, and a well-formed hash
//! decodes to what it holds.

use proptest::prelude::*;
use redis::Value;

use super::reply;
use crate::token::{SessionId, Tag};

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<Vec<u8>>().prop_map(Value::BulkString),
        "(m|d:[a-z]{0,3}|[0-9,]{0,30})".prop_map(|s| Value::BulkString(s.into_bytes())),
        any::<String>().prop_map(Value::SimpleString),
        any::<i64>().prop_map(Value::Int),
        Just(Value::Nil),
    ];
    leaf.prop_recursive(2, 32, 12, |inner| {
        proptest::collection::vec(inner, 0..12).prop_map(Value::Array)
    })
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_reply_decodes_or_is_corrupt(seen in value(), flat in value()) {
        let id = SessionId::generate(&Tag::random());
        let _ = reply::fetched(&id, &flat);
        let _ = reply::record(id, &seen, &flat);
        for v in [&seen, &flat] {
            let _ = reply::lookup(v);
            let _ = reply::rotated(v);
            let _ = reply::flag(v);
            let _ = reply::login(v);
            let _ = reply::revoked(v);
            let _ = reply::count(v);
            let _ = reply::session_infos(v);
            let _ = reply::connections(v);
        }
    }

    #[test]
    fn a_hash_with_arbitrary_metadata_decodes_or_is_corrupt(
        parts in proptest::collection::vec("[0-9]{0,20}|-?[0-9]{1,3}|x", 0..20),
        tail in any::<String>(),
        data in proptest::collection::vec(("[a-z]{1,4}", any::<String>()), 0..4),
    ) {
        let mut flat = vec![bulk("m"), bulk(&format!("{},{tail}", parts.join(",")))];
        for (k, v) in &data {
            flat.push(bulk(&format!("d:{k}")));
            flat.push(bulk(v));
        }
        let id = SessionId::generate(&Tag::random());
        if let Ok(record) = reply::record(id, &bulk("5"), &Value::Array(flat)) {
            prop_assert_eq!(record.last_seen, 5);
            for (k, v) in &data {
                prop_assert!(record.data.contains_key(k.as_str()));
                let _ = v;
            }
        }
    }

    #[test]
    fn texts_of_any_content_come_back_from_packed_metadata(
        user in proptest::option::of((any::<String>(), any::<String>())),
        label in proptest::option::of(any::<String>()),
        device in proptest::option::of(any::<String>()),
    ) {
        let (uid, json) = match &user {
            Some((uid, json)) => (Some(uid.as_str()), Some(json.as_str())),
            None => (None, None),
        };
        let texts = [uid, json, label.as_deref(), device.as_deref()];
        let lengths: Vec<String> = texts
            .iter()
            .map(|t| t.map_or(String::new(), |t| t.len().to_string()))
            .collect();
        let joined: String = texts.iter().flatten().copied().collect();
        let m = format!("1,2,3,,4,,,h,1,,,,{},{joined}", lengths.join(","));
        let flat = Value::Array(vec![bulk("m"), bulk(&m)]);
        let id = SessionId::generate(&Tag::random());
        let record = reply::record(id, &bulk("5"), &flat).expect("well-formed metadata");
        prop_assert_eq!(record.label, label);
        prop_assert_eq!(record.user.map(|u| (u.id, u.json)), user);
    }
}
