//! JSON Schema to GBNF: the grammar of the JSON texts a schema accepts, for
//! [`edgespec::engine::Grammar`] (llama.cpp's `-j/--json-schema`, a subset).
//!
//! Understood: `type` (one or a list: object, array, string, number,
//! integer, boolean, null), `properties` with `required` (properties come in
//! the schema's order, the required ones always, no others), an object
//! without `properties` (any members), `items`, `minItems`, `maxItems`,
//! `enum`, `const`, `anyOf`, `oneOf`, `minLength`, `maxLength`, and the
//! annotations `title`, `description`, `$schema`, `$id`, `default`,
//! `examples`. Anything else (`$ref`, `pattern`, `format`, bounds on
//! numbers, `additionalProperties` other than false …) is refused by
//! name rather than silently ignored.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// A schema this converter cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// Not JSON.
    #[error("the JSON schema is not JSON: {0}")]
    NotJson(String),
    /// A keyword outside the supported subset.
    #[error("JSON schema keyword {keyword:?} at {at} is not supported (docs/commands.md lists the JSON Schema subset)")]
    Unsupported {
        /// The keyword.
        keyword: String,
        /// Where, as a path from the root.
        at: String,
    },
    /// A value of the wrong shape.
    #[error("JSON schema at {at}: {reason}")]
    Invalid {
        /// Where, as a path from the root.
        at: String,
        /// What is wrong.
        reason: String,
    },
}

/// Rules every grammar shares: JSON whitespace (bounded), strings and numbers.
const COMMON: &str = r#"space ::= " "?
char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
string ::= "\"" char* "\"" space
number ::= "-"? ([0-9] | [1-9] [0-9]{0,15}) ("." [0-9]+)? ([eE] [-+]? [0-9]+)? space
integer ::= "-"? ([0-9] | [1-9] [0-9]{0,15}) space
boolean ::= ("true" | "false") space
null ::= "null" space
value ::= object | array | string | number | boolean | null
object ::= "{" space (string ":" space value ("," space string ":" space value)*)? "}" space
array ::= "[" space (value ("," space value)*)? "]" space
"#;

/// Keywords that describe and never constrain.
const ANNOTATIONS: [&str; 6] = [
    "title",
    "description",
    "$schema",
    "$id",
    "default",
    "examples",
];

/// The GBNF grammar (start rule `root`) of the JSON texts `schema` accepts.
pub fn json_schema_to_gbnf(schema: &str) -> Result<String, SchemaError> {
    let schema: Value =
        serde_json::from_str(schema).map_err(|e| SchemaError::NotJson(e.to_string()))?;
    let mut rules = Rules::default();
    let root = rules.value(&schema, "root")?;
    let mut out = format!("root ::= {root}\n");
    for (name, body) in &rules.defined {
        let _ = writeln!(out, "{name} ::= {body}");
    }
    out.push_str(COMMON);
    Ok(out)
}

#[derive(Default)]
struct Rules {
    defined: Vec<(String, String)>,
}

impl Rules {
    /// A rule named after `path` with `body`; returns its name.
    fn define(&mut self, path: &str, body: String) -> String {
        let base: String = path
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let mut name = format!("r-{base}");
        let mut n = 1;
        while self.defined.iter().any(|(d, _)| *d == name) {
            n += 1;
            name = format!("r-{base}-{n}");
        }
        self.defined.push((name.clone(), body));
        name
    }

    /// The expression for a value matching `schema`, at `path`.
    fn value(&mut self, schema: &Value, path: &str) -> Result<String, SchemaError> {
        let invalid = |reason: &str| SchemaError::Invalid {
            at: path.to_owned(),
            reason: reason.to_owned(),
        };
        let map = match schema {
            Value::Bool(true) => return Ok("value".into()),
            Value::Object(map) => map,
            _ => return Err(invalid("a schema is an object (or true)")),
        };
        for key in map.keys() {
            let known = ANNOTATIONS.contains(&key.as_str())
                || [
                    "type",
                    "properties",
                    "required",
                    "items",
                    "minItems",
                    "maxItems",
                    "enum",
                    "const",
                    "anyOf",
                    "oneOf",
                    "minLength",
                    "maxLength",
                ]
                .contains(&key.as_str())
                || (key == "additionalProperties" && map[key] == Value::Bool(false));
            if !known {
                return Err(SchemaError::Unsupported {
                    keyword: key.clone(),
                    at: path.to_owned(),
                });
            }
        }
        if let Some(c) = map.get("const") {
            return Ok(format!("{} space", literal(c)));
        }
        if let Some(values) = map.get("enum") {
            let values = values.as_array().filter(|v| !v.is_empty());
            let values = values.ok_or_else(|| invalid("enum is a non-empty array"))?;
            let alternatives: Vec<String> = values.iter().map(literal).collect();
            return Ok(format!("({}) space", alternatives.join(" | ")));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(options) = map.get(key) {
                let options = options.as_array().filter(|v| !v.is_empty());
                let options = options.ok_or_else(|| invalid("anyOf/oneOf is a non-empty array"))?;
                let mut alternatives = Vec::new();
                for (i, option) in options.iter().enumerate() {
                    alternatives.push(self.value(option, &format!("{path}-{key}-{i}"))?);
                }
                return Ok(format!("({})", alternatives.join(" | ")));
            }
        }
        let types: Vec<&str> = match map.get("type") {
            None => {
                return Ok(if map.contains_key("properties") {
                    self.object(map, path)?
                } else {
                    "value".into()
                })
            }
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts
                .iter()
                .map(|t| t.as_str().ok_or_else(|| invalid("type lists names")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid("type is a name or a list of names")),
        };
        let mut alternatives = Vec::new();
        for t in types {
            alternatives.push(match t {
                "object" => self.object(map, path)?,
                "array" => self.array(map, path)?,
                "string" => string(map, path)?,
                "number" | "integer" | "boolean" | "null" => t.to_owned(),
                other => return Err(invalid(&format!("unknown type {other:?}"))),
            });
        }
        Ok(if alternatives.len() == 1 {
            alternatives.remove(0)
        } else {
            format!("({})", alternatives.join(" | "))
        })
    }

    /// An object: its properties in order (required ones always), or any
    /// members when it lists none.
    fn object(&mut self, map: &Map<String, Value>, path: &str) -> Result<String, SchemaError> {
        let Some(properties) = map.get("properties") else {
            return Ok("object".into());
        };
        let properties = properties.as_object().ok_or_else(|| SchemaError::Invalid {
            at: path.to_owned(),
            reason: "properties is an object".into(),
        })?;
        let required: Vec<&str> = match map.get("required") {
            None => Vec::new(),
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                return Err(SchemaError::Invalid {
                    at: path.to_owned(),
                    reason: "required is a list of names".into(),
                })
            }
        };
        let mut members = Vec::new();
        for (name, schema) in properties {
            let value = self.value(schema, &format!("{path}-{name}"))?;
            let member = format!(
                "{} space \":\" space {value}",
                literal(&Value::String(name.clone()))
            );
            members.push((required.contains(&name.as_str()), member));
        }
        // Required members in order; each optional one may follow with a
        // comma (the first member present takes none).
        let mandatory: Vec<&str> = members
            .iter()
            .filter(|m| m.0)
            .map(|m| m.1.as_str())
            .collect();
        let optional: Vec<&str> = members
            .iter()
            .filter(|m| !m.0)
            .map(|m| m.1.as_str())
            .collect();
        let rest = |from: usize| -> String {
            optional[from..]
                .iter()
                .map(|m| format!("(\",\" space {m})?"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let body = if !mandatory.is_empty() {
            format!("{} {}", mandatory.join(" \",\" space "), rest(0))
        } else if optional.is_empty() {
            String::new()
        } else {
            let starts: Vec<String> = (0..optional.len())
                .map(|i| format!("{} {}", optional[i], rest(i + 1)))
                .collect();
            format!("({})?", starts.join(" | "))
        };
        Ok(self.define(path, format!("\"{{\" space {body} \"}}\" space")))
    }

    /// An array of `items` (any value without), `minItems` to `maxItems` long.
    fn array(&mut self, map: &Map<String, Value>, path: &str) -> Result<String, SchemaError> {
        let item = match map.get("items") {
            None => "value".to_owned(),
            Some(schema) => self.value(schema, &format!("{path}-item"))?,
        };
        let min = count(map, "minItems", path)?.unwrap_or(0);
        let max = count(map, "maxItems", path)?;
        if max.is_some_and(|m| m < min) {
            return Err(SchemaError::Invalid {
                at: path.to_owned(),
                reason: "maxItems is below minItems".into(),
            });
        }
        let more = |n: u64| match max {
            Some(m) => format!("{{{},{}}}", n, m.saturating_sub(1)),
            None => format!("{{{n},}}"),
        };
        let body = match (min, max) {
            (_, Some(0)) => String::new(),
            (0, _) => format!("({item} (\",\" space {item}){})?", more(0)),
            (n, _) => format!("{item} (\",\" space {item}){}", more(n - 1)),
        };
        Ok(self.define(path, format!("\"[\" space {body} \"]\" space")))
    }
}

/// A string, `minLength` to `maxLength` characters.
fn string(map: &Map<String, Value>, path: &str) -> Result<String, SchemaError> {
    let min = count(map, "minLength", path)?;
    let max = count(map, "maxLength", path)?;
    Ok(match (min, max) {
        (None, None) => "string".into(),
        (min, max) => format!(
            "\"\\\"\" char{{{},{}}} \"\\\"\" space",
            min.unwrap_or(0),
            max.map_or(String::new(), |m| m.to_string())
        ),
    })
}

/// A non-negative integer keyword.
fn count(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u64>, SchemaError> {
    map.get(key)
        .map(|v| {
            v.as_u64()
                .filter(|&n| n <= 10_000)
                .ok_or_else(|| SchemaError::Invalid {
                    at: path.to_owned(),
                    reason: format!("{key} is a count up to 10000"),
                })
        })
        .transpose()
}

/// A GBNF string literal matching exactly the JSON text of `value`.
fn literal(value: &Value) -> String {
    let json = value.to_string();
    let mut out = String::with_capacity(json.len() + 2);
    out.push('"');
    for c in json.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_keeps_its_property_order_and_required_members() {
        let g = json_schema_to_gbnf(
            r#"{"type": "object", "properties": {"z": {"type": "integer"}, "b": {"enum": ["x", 1]}},
                "required": ["z"], "title": "t"}"#,
        )
        .unwrap();
        assert!(g.starts_with("root ::= r-root\n"), "{g}");
        assert!(
            g.contains(r#"r-root ::= "{" space "\"z\"" space ":" space integer ("," space "\"b\"" space ":" space ("\"x\"" | "1") space)? "}" space"#),
            "{g}"
        );
    }

    #[test]
    fn arrays_strings_and_alternatives() {
        let g = json_schema_to_gbnf(
            r#"{"type": "array", "items": {"type": ["string", "null"], "maxLength": 3}, "minItems": 1, "maxItems": 2}"#,
        )
        .unwrap();
        assert!(g.contains(r#"r-root ::= "[" space ("\"" char{0,3} "\"" space | null) ("," space ("\"" char{0,3} "\"" space | null)){0,1} "]" space"#), "{g}");
        let g =
            json_schema_to_gbnf(r#"{"anyOf": [{"const": "a\"b"}, {"type": "boolean"}]}"#).unwrap();
        assert!(
            g.starts_with(r#"root ::= ("\"a\\\"b\"" space | boolean)"#),
            "{g}"
        );
        // Optional members only: the first present takes no comma.
        let g = json_schema_to_gbnf(r#"{"properties": {"p": {}, "q": {}}}"#).unwrap();
        assert!(g.contains(r#"("\"p\"" space ":" space value ("," space "\"q\"" space ":" space value)? | "\"q\"" space ":" space value )?"#), "{g}");
    }

    #[test]
    fn what_it_cannot_express_is_refused_by_name() {
        for (schema, keyword) in [
            (r#"{"type": "string", "pattern": "^a"}"#, "pattern"),
            (r##"{"$ref": "#/defs/a"}"##, "$ref"),
            (
                r#"{"properties": {"n": {"type": "number", "minimum": 0}}}"#,
                "minimum",
            ),
            (
                r#"{"type": "object", "additionalProperties": true}"#,
                "additionalProperties",
            ),
        ] {
            match json_schema_to_gbnf(schema) {
                Err(SchemaError::Unsupported { keyword: k, .. }) => assert_eq!(k, keyword),
                other => panic!("{schema}: {other:?}"),
            }
        }
        assert!(matches!(
            json_schema_to_gbnf("{"),
            Err(SchemaError::NotJson(_))
        ));
        assert!(matches!(
            json_schema_to_gbnf(r#"{"type": 3}"#),
            Err(SchemaError::Invalid { .. })
        ));
        assert!(matches!(
            json_schema_to_gbnf(r#"{"enum": []}"#),
            Err(SchemaError::Invalid { .. })
        ));
        assert!(matches!(
            json_schema_to_gbnf(r#"{"type": "array", "minItems": 3, "maxItems": 2}"#),
            Err(SchemaError::Invalid { .. })
        ));
        assert!(matches!(
            json_schema_to_gbnf(r#"{"type": "string", "maxLength": 1e300}"#),
            Err(SchemaError::Invalid { .. })
        ));
    }
}
