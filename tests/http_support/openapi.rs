//! Checks replies against an OpenAPI 3.1 document: the status must be documented for the
//! operation, and the body must be valid against the response's JSON Schema (with the
//! document's components, formats asserted), or empty where the response has no content.

use serde_json::{Value, json};

/// An OpenAPI document to check replies against.
pub struct Contract {
    doc: Value,
}

impl Contract {
    pub fn new(doc: Value) -> Contract {
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "not an OpenAPI 3.1 document"
        );
        Contract { doc }
    }

    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// The documented path template `path` (without query) is routed to: literal segments
    /// win over parameters, as in the router; a trailing `/` is the same path.
    pub fn template(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let trimmed = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        let segments: Vec<&str> = trimmed.split('/').collect();
        let mut best: Option<(usize, String)> = None;
        for template in self.doc["paths"].as_object()?.keys() {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let mut literal = 0;
            let fits = parts.iter().zip(&segments).all(|(p, s)| {
                if p.starts_with('{') && p.ends_with('}') {
                    !s.is_empty()
                } else if p == s {
                    literal += 1;
                    true
                } else {
                    false
                }
            });
            if fits && best.as_ref().is_none_or(|(n, _)| literal > *n) {
                best = Some((literal, template.clone()));
            }
        }
        best.map(|(_, t)| t)
    }

    /// `Err` with what is wrong if the reply to `method path` (a concrete path, with or
    /// without query) contradicts the document.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &str,
    ) -> Result<(), String> {
        let method = method.to_ascii_lowercase();
        let template = self
            .template(path)
            .ok_or_else(|| format!("{method} {path}: no documented path"))?;
        let operation = &self.doc["paths"][&template][&method];
        if !operation.is_object() {
            return Err(format!("{method} {template}: no documented operation"));
        }
        let response = &operation["responses"][status.to_string()];
        if !response.is_object() {
            return Err(format!(
                "{method} {template}: status {status} is not documented"
            ));
        }
        let Some(content) = response["content"].as_object() else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{method} {template} {status}: a body where none is documented: {body}"
                ))
            };
        };
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        let schema = &content.get(media).ok_or_else(|| {
            format!("{method} {template} {status}: content type {media:?} not documented")
        })?["schema"];
        let instance: Value = serde_json::from_str(body)
            .map_err(|e| format!("{method} {template} {status}: not JSON ({e}): {body}"))?;
        self.validate(schema, &instance)
            .map_err(|e| format!("{method} {template} {status}: {e}\nbody: {body}"))
    }

    /// Validates `instance` against `schema`, a schema of this document (its `$ref`s point
    /// into the document's components).
    pub fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("the document's schema does not compile: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
