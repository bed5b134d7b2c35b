//! Model gating for known AI APIs: which requests name a model, where to read it, and filtering model lists.

/// A request that names a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModelSource {
    /// The model is the `model` field of the JSON body (Anthropic `/v1/messages`, OpenAI `/v1/chat/completions`,
    /// `/v1/responses`).
    JsonBody,
    /// The model is in the path (Gemini `/v1beta/models/{model}:generateContent`).
    Path(String),
}

/// Whether `method path` is a model-naming API call.
pub(crate) fn model_source(method: &http::Method, path: &str) -> Option<ModelSource> {
    if method != http::Method::POST {
        return None;
    }
    match path {
        "/v1/messages" | "/v1/chat/completions" | "/v1/responses" | "/v1/completions" => {
            Some(ModelSource::JsonBody)
        }
        _ => gemini_model(path).map(ModelSource::Path),
    }
}

fn gemini_model(path: &str) -> Option<String> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, verb) = rest.split_once(':')?;
    let gated = matches!(
        verb,
        "generateContent" | "streamGenerateContent" | "countTokens"
    );
    (gated && !model.is_empty() && !model.contains('/')).then(|| model.to_owned())
}

/// The `model` of a JSON request body.
pub(crate) fn body_model(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WithModel {
        model: Option<String>,
    }
    serde_json::from_slice::<WithModel>(body)
        .ok()
        .and_then(|b| b.model)
}

/// Whether `method path` lists models (its response gets denied models filtered out).
pub(crate) fn is_model_list(method: &http::Method, path: &str) -> bool {
    method == http::Method::GET && matches!(path, "/v1/models" | "/v1beta/models")
}

/// Remove the models `denied` says no to from a model-list JSON (`data[].id` or `models[].name`). `None` when the
/// body is not such a list (it is then passed on unchanged).
pub(crate) fn filter_model_list(body: &[u8], denied: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    let mut doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    for (field, key) in [("data", "id"), ("models", "name")] {
        if let Some(list) = doc.get_mut(field).and_then(serde_json::Value::as_array_mut) {
            list.retain(|entry| {
                let name = entry
                    .get(key)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default();
                let keep = !denied(name.strip_prefix("models/").unwrap_or(name));
                changed |= !keep;
                keep
            });
        }
    }
    if changed {
        serde_json::to_vec(&doc).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn known_endpoints_are_recognised() {
        assert_eq!(
            model_source(&Method::POST, "/v1/messages"),
            Some(ModelSource::JsonBody)
        );
        assert_eq!(
            model_source(&Method::POST, "/v1/responses"),
            Some(ModelSource::JsonBody)
        );
        assert_eq!(model_source(&Method::GET, "/v1/messages"), None);
        assert_eq!(
            model_source(
                &Method::POST,
                "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
            ),
            Some(ModelSource::Path("gemini-2.5-pro".into()))
        );
        assert_eq!(
            body_model(br#"{"model":"claude-3-opus","max_tokens":1}"#).as_deref(),
            Some("claude-3-opus")
        );
        assert_eq!(body_model(b"not json"), None);
    }

    #[test]
    fn model_lists_are_filtered() {
        let out = filter_model_list(br#"{"data":[{"id":"a-opus-1"},{"id":"b"}]}"#, |m| {
            m.contains("opus")
        })
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"data":[{"id":"b"}]}"#);
        assert!(filter_model_list(br#"{"data":[{"id":"b"}]}"#, |_| false).is_none());
        let g = filter_model_list(br#"{"models":[{"name":"models/gemini-pro"}]}"#, |m| {
            m == "gemini-pro"
        })
        .unwrap();
        assert_eq!(String::from_utf8(g).unwrap(), r#"{"models":[]}"#);
    }
}
