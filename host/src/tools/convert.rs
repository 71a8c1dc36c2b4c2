//! An action type's params schema in the shape each tool API accepts.
//!
//! - [`openai_strict`]: OpenAI's function calling in strict mode (Structured
//!   Outputs). Every object gets `additionalProperties: false`, nested ones
//!   included; every property goes into `required`, and an optional one
//!   becomes nullable (the model sends `null` for "absent", which
//!   [`drop_optional_nulls`] turns back into absent before the call is
//!   checked); `oneOf` becomes `anyOf`; `allOf`, `not`, `if`/`then`/`else`,
//!   `dependent*` and `default` are dropped. What strict mode cannot say (a
//!   map whose keys are free, a value of any shape) is an error naming the
//!   path: the type is left out of the list with that reason, never sent
//!   broken.
//! - [`anthropic`]: Anthropic's `input_schema`: an object, with no
//!   top-level `anyOf`, `oneOf` or `allOf`.
//! - [`mcp`]: MCP's `inputSchema`: an object whose property schemas are
//!   objects (a boolean schema becomes its object form), as the TypeScript
//!   SDK insists.
//!
//! All three drop `$schema` and the `x-…` extension keywords.

use serde_json::{Map, Value, json};

/// The deepest nesting of objects strict mode takes.
pub const OPENAI_MAX_DEPTH: usize = 10;

/// The most properties strict mode takes, all objects together.
pub const OPENAI_MAX_PROPERTIES: usize = 5000;

/// Keywords strict mode does not take, dropped (the call is still checked
/// against the type's own schema when it arrives).
const OPENAI_DROPPED: [&str; 11] = [
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "default",
    "$comment",
    "examples",
];

/// The string formats strict mode takes; others are dropped.
const OPENAI_FORMATS: [&str; 9] = [
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
];

/// Keywords strict mode cannot express: a schema that needs one is refused.
const OPENAI_REFUSED: [&str; 7] = [
    "patternProperties",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "prefixItems",
    "contains",
    "$dynamicRef",
];

/// A copy of `schema` without `$schema` and `x-*` keys, if its root is
/// `type: object`, as every format (`format` names it in the refusal) needs.
fn object_root(schema: &Value, format: &str) -> Result<Value, String> {
    let mut schema = schema.clone();
    strip_meta(&mut schema);
    let Some(root) = schema.as_object() else {
        return Err("the params schema is not an object schema".into());
    };
    if root.get("type").and_then(Value::as_str) != Some("object") {
        return Err(format!(
            "the params schema's root is not `type: object`, which {format} needs"
        ));
    }
    Ok(schema)
}

/// The schema for OpenAI's strict mode, or why it cannot be expressed.
pub fn openai_strict(schema: &Value) -> Result<Value, String> {
    let mut schema = object_root(schema, "strict mode")?;
    if schema.get("anyOf").is_some() || schema.get("oneOf").is_some() {
        return Err(
            "the params schema's root is a union (anyOf/oneOf), which strict mode does not take"
                .into(),
        );
    }
    let mut count = 0;
    strictify(&mut schema, "", 0, &mut count)?;
    if count > OPENAI_MAX_PROPERTIES {
        return Err(format!(
            "the schema has {count} properties; strict mode takes at most {OPENAI_MAX_PROPERTIES}"
        ));
    }
    Ok(schema)
}

/// Rewrites `node` (at `path`) for strict mode, counting properties.
fn strictify(node: &mut Value, path: &str, depth: usize, count: &mut usize) -> Result<(), String> {
    let shown = if path.is_empty() { "/" } else { path };
    let object = match node {
        Value::Object(object) => object,
        Value::Bool(_) => {
            return Err(format!(
                "{shown} takes a value of any shape (a boolean schema), which strict mode cannot express"
            ));
        }
        _ => return Err(format!("{shown} is not a schema")),
    };
    if depth > OPENAI_MAX_DEPTH {
        return Err(format!(
            "{shown} is nested deeper than the {OPENAI_MAX_DEPTH} levels strict mode takes"
        ));
    }
    if let Some(keyword) = OPENAI_REFUSED.iter().find(|k| object.contains_key(**k)) {
        return Err(format!(
            "{shown} uses `{keyword}`, which strict mode cannot express"
        ));
    }
    for keyword in OPENAI_DROPPED {
        object.remove(keyword);
    }
    if object
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|format| !OPENAI_FORMATS.contains(&format))
    {
        object.remove("format");
    }
    if let Some(one_of) = object.remove("oneOf") {
        if object.contains_key("anyOf") {
            return Err(format!("{shown} has both anyOf and oneOf"));
        }
        object.insert("anyOf".into(), one_of);
    }
    for defs in ["$defs", "definitions"] {
        if let Some(Value::Object(definitions)) = object.get_mut(defs) {
            for (name, definition) in definitions.iter_mut() {
                strictify(definition, &format!("#/{defs}/{name}"), 0, count)?;
            }
        }
    }
    if let Some(Value::Array(branches)) = object.get_mut("anyOf") {
        for (i, branch) in branches.iter_mut().enumerate() {
            strictify(branch, &format!("{path}/anyOf/{i}"), depth, count)?;
        }
    }
    if let Some(items) = object.get_mut("items") {
        strictify(items, &format!("{path}/items"), depth, count)?;
    }
    let is_object = object.get("type").is_some_and(|t| names_type(t, "object"))
        || object.contains_key("properties");
    if !is_object {
        return Ok(());
    }
    match object.get("additionalProperties") {
        None | Some(Value::Bool(false)) => {}
        Some(_) => {
            return Err(format!(
                "{shown} is a map whose keys are free (additionalProperties), which strict mode cannot express"
            ));
        }
    }
    let Some(Value::Object(properties)) = object.get_mut("properties") else {
        return Err(format!(
            "{shown} is an object of any shape (no properties listed), which strict mode cannot express"
        ));
    };
    *count += properties.len();
    let required: Vec<String> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let Some(Value::Object(properties)) = object.get_mut("properties") else {
        unreachable!("checked above");
    };
    let mut all = Vec::with_capacity(properties.len());
    for (name, property) in properties.iter_mut() {
        let at = format!("{path}/properties/{}", escape_pointer(name));
        strictify(property, &at, depth + 1, count)?;
        if !required.contains(name) {
            make_nullable(property);
        }
        all.push(Value::String(name.clone()));
    }
    object.insert("required".into(), Value::Array(all));
    object.insert("additionalProperties".into(), Value::Bool(false));
    Ok(())
}

/// Whether the `type` keyword `value` names `wanted`.
fn names_type(value: &Value, wanted: &str) -> bool {
    match value {
        Value::String(name) => name == wanted,
        Value::Array(names) => names.iter().any(|n| n.as_str() == Some(wanted)),
        _ => false,
    }
}

/// Whether `schema` takes `null`.
fn accepts_null(schema: &Value) -> bool {
    let Some(object) = schema.as_object() else {
        return schema.as_bool().unwrap_or(false);
    };
    if object.get("type").is_some_and(|t| names_type(t, "null")) {
        return true;
    }
    if let Some(Value::Array(values)) = object.get("enum") {
        return values.contains(&Value::Null);
    }
    if object.get("const") == Some(&Value::Null) {
        return true;
    }
    ["anyOf", "oneOf"].iter().any(|k| {
        object
            .get(*k)
            .and_then(Value::as_array)
            .is_some_and(|branches| branches.iter().any(accepts_null))
    })
}

/// Makes a (strict) property schema also take `null`.
fn make_nullable(property: &mut Value) {
    if accepts_null(property) {
        return;
    }
    let Value::Object(object) = property else {
        return;
    };
    let plain = !object.contains_key("$ref")
        && !object.contains_key("anyOf")
        && !object.contains_key("const");
    match object.get_mut("type") {
        Some(Value::String(name)) if plain => {
            let name = std::mem::take(name);
            object.insert("type".into(), json!([name, "null"]));
            if let Some(Value::Array(values)) = object.get_mut("enum") {
                values.push(Value::Null);
            }
        }
        Some(Value::Array(names)) if plain => {
            names.push(Value::String("null".into()));
            if let Some(Value::Array(values)) = object.get_mut("enum") {
                values.push(Value::Null);
            }
        }
        _ => {
            // Wrap it, keeping its description where a model reads it.
            let description = object.remove("description");
            let inner = Value::Object(std::mem::take(object));
            object.insert("anyOf".into(), json!([inner, {"type": "null"}]));
            if let Some(description) = description {
                object.insert("description".into(), description);
            }
        }
    }
}

/// The schema for Anthropic's `input_schema`, or why it cannot be expressed.
pub fn anthropic(schema: &Value) -> Result<Value, String> {
    let schema = object_root(schema, "input_schema")?;
    if let Some(keyword) = ["anyOf", "oneOf", "allOf"]
        .iter()
        .find(|k| schema.get(**k).is_some())
    {
        return Err(format!(
            "the params schema's root uses `{keyword}`, which Anthropic's input_schema does not take at the top level"
        ));
    }
    Ok(schema)
}

/// The schema for MCP's `inputSchema`, or why it cannot be expressed.
pub fn mcp(schema: &Value) -> Result<Value, String> {
    let mut schema = object_root(schema, "MCP's inputSchema")?;
    objects_for_booleans(&mut schema);
    Ok(schema)
}

/// Replaces boolean property schemas by their object forms (`{}` takes
/// anything, `{"not": {}}` nothing).
fn objects_for_booleans(node: &mut Value) {
    let Value::Object(object) = node else {
        return;
    };
    for (key, value) in object.iter_mut() {
        match key.as_str() {
            "properties" | "$defs" | "definitions" | "patternProperties" => {
                if let Value::Object(children) = value {
                    for child in children.values_mut() {
                        if let Value::Bool(accepts) = child {
                            *child = if *accepts {
                                json!({})
                            } else {
                                json!({"not": {}})
                            };
                        }
                        objects_for_booleans(child);
                    }
                }
            }
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                if let Value::Array(children) = value {
                    children.iter_mut().for_each(objects_for_booleans);
                }
            }
            "items" | "additionalProperties" | "not" | "if" | "then" | "else" => {
                objects_for_booleans(value);
            }
            _ => {}
        }
    }
}

/// Drops `$schema` and the `x-…` keywords, at every level.
fn strip_meta(node: &mut Value) {
    match node {
        Value::Object(object) => {
            object.remove("$schema");
            object.retain(|key, _| !key.starts_with("x-"));
            for (key, value) in object.iter_mut() {
                // Under `properties` the keys are names, not keywords.
                if key == "properties" || key == "$defs" || key == "definitions" {
                    if let Value::Object(children) = value {
                        children.values_mut().for_each(strip_meta);
                    }
                } else if key != "enum" && key != "const" && key != "examples" && key != "default" {
                    strip_meta(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_meta),
        _ => {}
    }
}

/// `name` escaped for a JSON Pointer.
fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// The arguments without the `null`s a strict-mode model sends for
/// optional properties whose schema does not take `null`: for the type's
/// own schema, such a property is absent.
pub fn drop_optional_nulls(schema: &Value, arguments: Value) -> Value {
    let definitions = |name: &str| -> Option<&Value> {
        let path = name.strip_prefix("#/")?;
        let (section, entry) = path.split_once('/')?;
        schema.get(section)?.get(entry)
    };
    fn walk<'a>(
        schema: &'a Value,
        value: &mut Value,
        lookup: &dyn Fn(&str) -> Option<&'a Value>,
        depth: usize,
    ) {
        if depth > 64 {
            return;
        }
        let schema = match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => match lookup(reference) {
                Some(target) => target,
                None => return,
            },
            None => schema,
        };
        match value {
            Value::Object(map) => {
                let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                    return;
                };
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|list| list.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                map.retain(|key, value| {
                    !(value.is_null()
                        && !required.contains(&key.as_str())
                        && properties.get(key).is_some_and(|p| !accepts_null(p)))
                });
                for (key, value) in map.iter_mut() {
                    if let Some(property) = properties.get(key) {
                        walk(property, value, lookup, depth + 1);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for item in items {
                        walk(item_schema, item, lookup, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
    let mut arguments = arguments;
    walk(schema, &mut arguments, &definitions, 0);
    arguments
}

/// The description of a tool: the type's, with its title when it adds to
/// it, cut to what the APIs take (OpenAI: 1,024 characters).
pub fn description(title: &str, description: &str) -> String {
    let text = if description.is_empty() {
        title.to_owned()
    } else {
        description.to_owned()
    };
    text.chars().take(1024).collect()
}

/// An object of `Map` from a `Value` known to be one.
pub fn into_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(object) => object,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crm_like() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "to": {"$ref": "#/$defs/Recipients", "description": "who"},
                "subject": {"type": "string", "default": "hi"},
                "cc": {"type": "array", "items": {"type": "string"}, "default": []},
                "kind": {"oneOf": [{"const": "a"}, {"const": "b"}]},
                "reply_to": {"type": ["string", "null"]},
            },
            "required": ["to"],
            "$defs": {"Recipients": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}},
        })
    }

    #[test]
    fn strict_mode_requires_every_property_and_makes_optional_ones_nullable() {
        let strict = openai_strict(&crm_like()).expect("expressible");
        assert_eq!(strict["additionalProperties"], false);
        let required: Vec<&str> = strict["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required.len(), 5, "{strict}");
        assert_eq!(
            strict["properties"]["subject"]["type"],
            json!(["string", "null"])
        );
        assert!(strict["properties"]["subject"].get("default").is_none());
        assert_eq!(strict["properties"]["cc"]["type"], json!(["array", "null"]));
        // A union: wrapped with null, no oneOf left.
        assert!(
            strict["properties"]["kind"]["anyOf"][0]["anyOf"].is_array(),
            "{strict}"
        );
        // Already nullable: unchanged.
        assert_eq!(
            strict["properties"]["reply_to"]["type"],
            json!(["string", "null"])
        );
        // A required $ref stays as it is.
        assert_eq!(strict["properties"]["to"]["$ref"], "#/$defs/Recipients");
        assert!(strict.get("$schema").is_none());
    }

    #[test]
    fn maps_and_free_objects_cannot_be_strict() {
        let map = json!({"type": "object", "properties": {"p": {"type": "object", "additionalProperties": {"type": "string"}}}});
        let err = openai_strict(&map).expect_err("a map");
        assert!(err.contains("/properties/p"), "{err}");
        let free = json!({"type": "object", "properties": {"payload": {"type": "object"}}});
        let err = openai_strict(&free).expect_err("free object");
        assert!(err.contains("/properties/payload"), "{err}");
        let not_object = json!({"anyOf": [{"type": "object"}]});
        assert!(openai_strict(&not_object).is_err());
        assert!(anthropic(&not_object).is_err());
    }

    #[test]
    fn nulls_of_optional_properties_are_dropped_and_others_kept() {
        let args = json!({"to": "a@example.com", "subject": null, "reply_to": null, "cc": null});
        let cleaned = drop_optional_nulls(&crm_like(), args);
        assert_eq!(cleaned, json!({"to": "a@example.com", "reply_to": null}));
        // A required property's null is the caller's mistake, reported by the check.
        let cleaned = drop_optional_nulls(&crm_like(), json!({"to": null}));
        assert_eq!(cleaned, json!({"to": null}));
    }

    #[test]
    fn mcp_turns_boolean_property_schemas_into_objects() {
        let schema =
            json!({"type": "object", "properties": {"any": true, "none": false}, "x-note": 1});
        let converted = mcp(&schema).expect("object");
        assert_eq!(converted["properties"]["any"], json!({}));
        assert_eq!(converted["properties"]["none"], json!({"not": {}}));
        assert!(converted.get("x-note").is_none());
    }
}
