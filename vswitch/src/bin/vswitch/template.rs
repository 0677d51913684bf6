//! Go templates for `--format`, as Docker and Podman take them (`--format '{{.Name}}'`): an
//! item is its JSON, each key also under Docker's CamelCase spelling (`rx_packets` is
//! `.RxPackets` too, `id` is `.ID`), rendered with gtmpl; `{{json .X}}` prints a value as JSON.
//! A literal `\t` or `\n` in the template is a tab or a newline, as in Docker's CLI.

use std::collections::HashMap;

use gtmpl::{Context, FuncError, Template, Value};

/// A parsed `--format` template, compiled once for every item it renders.
#[derive(Clone)]
pub struct GoTemplate {
    text: String,
    compiled: std::sync::Arc<Template>,
}

impl std::fmt::Debug for GoTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("GoTemplate").field(&self.text).finish()
    }
}

impl PartialEq for GoTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for GoTemplate {}

impl GoTemplate {
    /// Parses `text`, so a malformed template is refused before anything is asked.
    pub fn parse(text: &str) -> Result<GoTemplate, String> {
        let text = text.replace("\\t", "\t").replace("\\n", "\n");
        let compiled = compile(&text).map_err(|e| format!("invalid template {text:?}: {e}"))?;
        Ok(GoTemplate {
            text,
            compiled: std::sync::Arc::new(compiled),
        })
    }

    /// The template rendered for `item` (any serializable value, through its JSON).
    pub fn render(&self, item: &impl serde::Serialize) -> Result<String, String> {
        let json = serde_json::to_value(item).expect("serializable");
        self.compiled
            .render(&Context::from(from_json(&json)))
            .map_err(|e| format!("template {:?}: {e}", self.text))
    }
}

fn compile(text: &str) -> Result<Template, String> {
    let mut template = Template::default();
    template.add_func("json", json);
    template.parse(text).map_err(|e| e.to_string())?;
    Ok(template)
}

/// `{{json .}}`: the value as compact JSON.
fn json(args: &[Value]) -> Result<Value, FuncError> {
    let [value] = args else {
        return Err(FuncError::ExactlyXArgs("json".into(), 1));
    };
    Ok(Value::String(to_json(value).to_string()))
}

/// Docker's spelling of a JSON key: `rx_packets` → `RxPackets`, `id` → `ID`, `ip` → `IP`.
fn camel(key: &str) -> String {
    key.split('_')
        .map(|word| match word {
            "id" | "ip" | "mac" | "mtu" | "dns" | "vni" => word.to_uppercase(),
            _ => {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default()
            }
        })
        .collect()
}

fn from_json(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            _ => Value::from(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => {
            let mut fields = HashMap::new();
            for (key, value) in map {
                let value = from_json(value);
                let alias = camel(key);
                // An alias never hides a key of the item's own.
                if !map.contains_key(&alias) {
                    fields.insert(alias, value.clone());
                }
                fields.insert(key.clone(), value);
            }
            Value::Map(fields)
        }
    }
}

/// The JSON of a template value: a map without the CamelCase aliases `from_json` added (a key
/// is taken for an alias when another key of the map spells it so: of a map holding both `x`
/// and `X`, only `x` shows).
fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::String(s) => s.clone().into(),
        Value::Number(n) => n
            .as_u64()
            .map(Into::into)
            .or_else(|| n.as_i64().map(Into::into))
            .unwrap_or_else(|| n.as_f64().unwrap_or_default().into()),
        Value::Array(items) => items.iter().map(to_json).collect(),
        Value::Object(map) | Value::Map(map) => {
            let mut keys: Vec<&String> = map
                .keys()
                .filter(|k| !map.keys().any(|other| other != *k && camel(other) == **k))
                .collect();
            keys.sort();
            keys.into_iter()
                .map(|k| (k.clone(), to_json(&map[k])))
                .collect::<serde_json::Map<_, _>>()
                .into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_by_their_json_and_their_docker_names() {
        let item = json!({"name": "app", "id": "4f2a", "rx_packets": 5, "subnets": [{"subnet": "10.0.0.0/24"}]});
        let t = GoTemplate::parse("{{.Name}}\\t{{.name}} {{.ID}} {{.RxPackets}}").unwrap();
        assert_eq!(t.render(&item).unwrap(), "app\tapp 4f2a 5");
        let t = GoTemplate::parse("{{range .Subnets}}{{.Subnet}}{{end}}").unwrap();
        assert_eq!(t.render(&item).unwrap(), "10.0.0.0/24");
        let t = GoTemplate::parse("{{json .subnets}}").unwrap();
        assert_eq!(t.render(&item).unwrap(), r#"[{"subnet":"10.0.0.0/24"}]"#);
        // Labels of any case survive {{json}}, and an alias never hides a key.
        let labelled = json!({"labels": {"Env": "prod", "tier": "web"}});
        let t = GoTemplate::parse("{{json .Labels}}").unwrap();
        assert_eq!(
            t.render(&labelled).unwrap(),
            r#"{"Env":"prod","tier":"web"}"#
        );
        let both = json!({"tier": "web", "Tier": "own"});
        let t = GoTemplate::parse("{{.Tier}} {{.tier}}").unwrap();
        assert_eq!(t.render(&both).unwrap(), "own web");
    }

    #[test]
    fn a_malformed_template_is_refused_up_front() {
        let error = GoTemplate::parse("{{.Name").unwrap_err();
        assert!(error.contains("invalid template"), "{error}");
    }
}
