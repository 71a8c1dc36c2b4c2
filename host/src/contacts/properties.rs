//! The free-form properties of contacts and events: what is accepted, and
//! every refusal named by its field.
//!
//! A property is a name (letters, digits, `_`, `-`, `.`; at most
//! [`MAX_NAME_CHARS`]) and a string, number or boolean. A contact or an
//! event holds at most [`MAX_PROPERTIES`] of them, and a string value at
//! most [`MAX_VALUE_CHARS`]: enough for any CRM field, and a bound on what
//! one write can make the store keep. `api/contacts.rs` states the same rule
//! as a JSON Schema, for `/openapi.json`.

use serde_json::{Map, Value};

use crate::runtime::FieldError;

/// The most properties one contact or event holds.
pub const MAX_PROPERTIES: usize = 256;
/// The longest property name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest string value, in characters.
pub const MAX_VALUE_CHARS: usize = 16 * 1024;

/// Whether `name` may name a property.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Checks a `properties` object at `path` (such as `/properties`). With
/// `removals`, a `null` value means "remove this property" and is kept in
/// the result as `null`; otherwise it is refused. Returns the object, or
/// every problem found.
pub fn check(
    value: &Value,
    path: &str,
    removals: bool,
) -> Result<Map<String, Value>, Vec<FieldError>> {
    let Value::Object(map) = value else {
        return Err(vec![FieldError::new(
            path,
            "must be an object of property names to strings, numbers or booleans",
        )]);
    };
    if map.len() > MAX_PROPERTIES {
        return Err(vec![FieldError::new(
            path,
            &format!(
                "has {} properties; at most {MAX_PROPERTIES} are allowed",
                map.len()
            ),
        )]);
    }
    let mut errors = Vec::new();
    for (name, value) in map {
        let at = format!("{path}/{}", escape_pointer(name));
        if !valid_name(name) {
            errors.push(FieldError::new(
                &at,
                &format!(
                    "{:?} is not a property name: use 1 to {MAX_NAME_CHARS} letters, digits, `_`, `-` or `.`",
                    truncated(name)
                ),
            ));
            continue;
        }
        match value {
            Value::String(text) if text.chars().count() > MAX_VALUE_CHARS => {
                errors.push(FieldError::new(
                    &at,
                    &format!(
                        "is {} characters long; a property value holds at most {MAX_VALUE_CHARS}",
                        text.chars().count()
                    ),
                ));
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
            Value::Null if removals => {}
            Value::Null => errors.push(FieldError::new(
                &at,
                "must be a string, a number or a boolean (null only removes a property in an update)",
            )),
            Value::Array(_) | Value::Object(_) => errors.push(FieldError::new(
                &at,
                "must be a string, a number or a boolean, not a list or an object",
            )),
        }
    }
    if errors.is_empty() {
        Ok(map.clone())
    } else {
        Err(errors)
    }
}

/// Applies `changes` to `properties`: a `null` removes, anything else sets.
/// Fails, naming the path, when the result would hold too many.
pub fn merge(
    properties: &mut Map<String, Value>,
    changes: Map<String, Value>,
    path: &str,
) -> Result<(), FieldError> {
    for (name, value) in changes {
        if value.is_null() {
            properties.remove(&name);
        } else {
            properties.insert(name, value);
        }
    }
    if properties.len() > MAX_PROPERTIES {
        return Err(FieldError::new(
            path,
            &format!(
                "the contact would hold {} properties; at most {MAX_PROPERTIES} are allowed",
                properties.len()
            ),
        ));
    }
    Ok(())
}

/// A property's value as text, for filters: strings as they are, numbers
/// and booleans as JSON writes them.
pub fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// `name` as one JSON Pointer segment (RFC 6901).
pub fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// At most 40 characters of `text`, for messages that quote a bad value.
pub fn truncated(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// Checks an email address: `Ok` with it trimmed, or what is wrong with it.
pub fn check_email(email: &str) -> Result<String, String> {
    let trimmed = email.trim();
    if trimmed.len() > 254 {
        return Err(format!(
            "is {} characters long; an email address has at most 254",
            trimmed.len()
        ));
    }
    match trimmed.parse::<lettre::Address>() {
        Ok(_) => Ok(trimmed.to_owned()),
        Err(_) => Err(format!(
            "{:?} is not an email address; write it as ada@example.com",
            truncated(trimmed)
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scalars_are_kept_and_everything_else_is_named() {
        let ok = check(
            &json!({"firstname": "Ada", "age": 36, "vip": true}),
            "/properties",
            false,
        )
        .expect("valid");
        assert_eq!(ok.len(), 3);
        let errors = check(
            &json!({"nested": {"a": 1}, "list": [1], "gone": null, "bad name": "x", "a/b": []}),
            "/properties",
            false,
        )
        .expect_err("invalid");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/properties/a~1b",
                "/properties/bad name",
                "/properties/gone",
                "/properties/list",
                "/properties/nested"
            ]
        );
        assert!(check(&json!({"gone": null}), "/properties", true).is_ok());
        let big = "x".repeat(MAX_VALUE_CHARS + 1);
        let errors = check(&json!({ "bio": big }), "/properties", false).expect_err("too big");
        assert!(errors[0].message.contains("characters long"), "{errors:?}");
        let many: Map<String, Value> = (0..=MAX_PROPERTIES)
            .map(|i| (format!("p{i}"), json!(i)))
            .collect();
        let errors = check(&Value::Object(many), "/properties", false).expect_err("too many");
        assert_eq!(errors[0].path, "/properties");
    }

    #[test]
    fn emails_are_checked_and_trimmed() {
        assert_eq!(
            check_email(" ada@example.com ").as_deref(),
            Ok("ada@example.com")
        );
        for bad in ["ada", "ada@", "@example.com", "ada example@x.com", ""] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_email(&format!("{}@example.com", "a".repeat(260))).is_err());
    }
}
