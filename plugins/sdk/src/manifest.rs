//! Reading a rule's manifest (`rule.toml`) natively, the way the host does: the `[params]`
//! table becomes the JSON object text handed to the rule.

/// The `[params]` table of a manifest as JSON object text (`{}` when it has none).
pub fn params_json(manifest_toml: &str) -> Result<String, String> {
    let manifest: toml::Table =
        toml::from_str(manifest_toml).map_err(|e| format!("rule.toml: {e}"))?;
    let params = match manifest.get("params") {
        None => toml::Value::Table(toml::Table::new()),
        Some(p @ toml::Value::Table(_)) => p.clone(),
        Some(_) => return Err("rule.toml: `params` must be a table".into()),
    };
    serde_json::to_string(&params).map_err(|e| format!("rule.toml: params: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_table_becomes_a_json_object() {
        let json =
            params_json("[rule]\nname = \"x\"\n[params]\nwarning = 0.5\nservices = [\"a\"]\n")
                .expect("valid manifest");
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v, serde_json::json!({"warning": 0.5, "services": ["a"]}));
    }

    #[test]
    fn a_manifest_without_params_gives_an_empty_object() {
        assert_eq!(params_json("[rule]\nname = \"x\"\n").expect("valid"), "{}");
    }

    #[test]
    fn params_that_are_not_a_table_are_refused() {
        assert!(params_json("params = 3\n").is_err());
    }
}
