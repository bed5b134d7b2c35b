//! The TOML file format: deserialisation with spans, then validation into a [`PolicyLayer`].

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::error::ParseError;
use crate::glob::Wildcard;
use crate::host::HostPattern;
use crate::layer::{
    Action, ModelRule, MountRule, NetworkRule, PolicyLayer, Preset, SETTINGS, SettingRule,
    SettingValue,
};
use crate::mount::MountPattern;
use crate::path::PathPattern;
use crate::target::Target;

/// Longest `name` accepted.
const MAX_NAME_LEN: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    name: Option<Spanned<String>>,
    #[allow(dead_code)]
    description: Option<String>,
    preset: Option<Preset>,
    #[serde(default)]
    enforced: bool,
    #[serde(default)]
    network: Vec<RawNetwork>,
    #[serde(default)]
    model: Vec<RawModel>,
    #[serde(default)]
    mount: Vec<RawMount>,
    #[serde(default)]
    settings: BTreeMap<String, Spanned<toml::Value>>,
}

type SpannedList = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    /// A stable handle for tools that edit the file (`sbx policy rm network --id ID`); not used for matching.
    #[allow(dead_code)]
    id: Option<String>,
    action: Action,
    hosts: SpannedList,
    methods: Option<SpannedList>,
    paths: Option<SpannedList>,
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    action: Spanned<Action>,
    models: SpannedList,
    hosts: Option<SpannedList>,
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    action: Spanned<Action>,
    paths: SpannedList,
    #[allow(dead_code)]
    description: Option<String>,
}

/// Parses and validates one layer file.
pub(crate) fn parse_layer(file: &str, text: &str) -> Result<PolicyLayer, ParseError> {
    let ctx = Ctx { file, text };
    let raw: RawLayer = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        ctx.error(offset..offset, e.message().trim_end().to_owned())
    })?;
    let name = match raw.name {
        Some(name) => ctx.layer_name(&name)?,
        None => file.to_owned(),
    };
    let mut layer = PolicyLayer::empty(name);
    layer.enforced = raw.enforced;
    for rule in raw.network {
        layer.network.push(ctx.network_rule(rule)?);
    }
    for rule in raw.model {
        layer.models.push(ctx.model_rule(rule)?);
    }
    for rule in raw.mount {
        layer.mounts.push(ctx.mount_rule(rule)?);
    }
    if let Some(preset) = raw.preset {
        crate::preset::apply(&mut layer, preset);
    }
    for (key, value) in raw.settings {
        let span = value.span();
        let mut flat = Vec::new();
        flatten_setting(key, value.into_inner(), &mut flat);
        for (key, value) in flat {
            let value = ctx.setting_value(&key, &value, span.clone())?;
            layer.settings.insert(
                key,
                SettingRule {
                    value,
                    origin: ctx.location(span.start),
                },
            );
        }
    }
    Ok(layer)
}

/// `mount.home = "deny"` written without quotes is a nested table in TOML: flatten it back to the
/// dotted name so both spellings work.
fn flatten_setting(key: String, value: toml::Value, out: &mut Vec<(String, toml::Value)>) {
    match value {
        toml::Value::Table(table) => {
            for (inner, value) in table {
                flatten_setting(format!("{key}.{inner}"), value, out);
            }
        }
        other => out.push((key, other)),
    }
}

/// The file being parsed, for error positions.
struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ParseError {
        ParseError::at(self.file, self.text, span.start, message)
    }

    /// `file:line:column` of a byte offset, for explanations.
    fn location(&self, offset: usize) -> String {
        let e = ParseError::at(self.file, self.text, offset, "");
        format!("{}:{}:{}", e.file, e.line, e.column)
    }

    fn setting_value(
        &self,
        key: &str,
        value: &toml::Value,
        span: Range<usize>,
    ) -> Result<SettingValue, ParseError> {
        if !SETTINGS.iter().any(|(known, _)| *known == key) {
            let known: Vec<&str> = SETTINGS.iter().map(|(k, _)| *k).collect();
            return Err(self.error(
                span,
                format!(
                    "unknown setting `{key}`: expected one of {}",
                    known.join(", ")
                ),
            ));
        }
        match value.as_str() {
            Some("allow") => Ok(SettingValue::Allow),
            Some("deny") => Ok(SettingValue::Deny),
            _ => Err(self.error(
                span,
                format!("setting `{key}` is `{value}`: expected \"allow\" or \"deny\""),
            )),
        }
    }

    fn layer_name(&self, name: &Spanned<String>) -> Result<String, ParseError> {
        let value = name.get_ref().trim();
        if value.is_empty() || value.len() > MAX_NAME_LEN || value.chars().any(char::is_control) {
            return Err(self.error(
                name.span(),
                format!("`name` must be 1 to {MAX_NAME_LEN} printable characters"),
            ));
        }
        Ok(value.to_owned())
    }

    /// Rejects an empty list, pointing at it.
    fn non_empty<'l>(
        &self,
        list: &'l SpannedList,
        key: &str,
    ) -> Result<&'l [Spanned<String>], ParseError> {
        if list.get_ref().is_empty() {
            return Err(self.error(list.span(), format!("`{key}` must list at least one entry")));
        }
        Ok(list.get_ref())
    }

    fn network_rule(&self, raw: RawNetwork) -> Result<NetworkRule, ParseError> {
        let mut targets = Vec::new();
        for entry in self.non_empty(&raw.hosts, "hosts")? {
            let target = Target::parse(entry.get_ref()).map_err(|m| self.error(entry.span(), m))?;
            targets.push((target, self.location(entry.span().start)));
        }
        let methods = match &raw.methods {
            Some(list) => Some(self.methods(list)?),
            None => None,
        };
        let paths = match &raw.paths {
            Some(list) => {
                let mut out = Vec::new();
                for entry in self.non_empty(list, "paths")? {
                    let pattern = PathPattern::parse(entry.get_ref())
                        .map_err(|m| self.error(entry.span(), m))?;
                    out.push((pattern, entry.get_ref().clone()));
                }
                Some(out)
            }
            None => None,
        };
        Ok(NetworkRule {
            action: raw.action,
            targets,
            methods,
            paths,
        })
    }

    fn methods(&self, list: &SpannedList) -> Result<Vec<String>, ParseError> {
        let mut out = Vec::new();
        for entry in self.non_empty(list, "methods")? {
            let method = entry.get_ref();
            let is_token = !method.is_empty()
                && method.len() <= 32
                && method
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !is_token {
                return Err(self.error(
                    entry.span(),
                    format!("`{method}` is not an HTTP method (such as GET, HEAD, POST)"),
                ));
            }
            out.push(method.to_ascii_uppercase());
        }
        Ok(out)
    }

    fn model_rule(&self, raw: RawModel) -> Result<ModelRule, ParseError> {
        let mut models = Vec::new();
        for entry in self.non_empty(&raw.models, "models")? {
            let text = entry.get_ref();
            if text.is_empty()
                || text.len() > 256
                || text.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(self.error(
                    entry.span(),
                    format!("`{text}` is not a model name pattern"),
                ));
            }
            models.push((Wildcard::new(&text.to_lowercase()), text.clone()));
        }
        let hosts = match &raw.hosts {
            Some(list) => {
                let mut out = Vec::new();
                for entry in self.non_empty(list, "hosts")? {
                    let pattern = HostPattern::parse(entry.get_ref())
                        .map_err(|m| self.error(entry.span(), m))?;
                    out.push(pattern);
                }
                Some(out)
            }
            None => None,
        };
        Ok(ModelRule {
            action: *raw.action.get_ref(),
            models,
            hosts,
            origin: self.location(raw.action.span().start),
        })
    }

    fn mount_rule(&self, raw: RawMount) -> Result<MountRule, ParseError> {
        let mut paths = Vec::new();
        for entry in self.non_empty(&raw.paths, "paths")? {
            let pattern =
                MountPattern::parse(entry.get_ref()).map_err(|m| self.error(entry.span(), m))?;
            paths.push((pattern, entry.get_ref().clone()));
        }
        Ok(MountRule {
            action: *raw.action.get_ref(),
            paths,
            origin: self.location(raw.action.span().start),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ParseError {
        parse_layer("t.toml", text).unwrap_err()
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
name = "team-payments"
description = "payments team"
preset = "balanced"
enforced = true

[[network]]
action = "allow"
hosts = ["api.example.com", "*.npmjs.org", "10.0.0.0/8:5432"]
methods = ["get", "HEAD"]
paths = ["/repos/acme/**"]

[[model]]
action = "deny"
models = ["claude-*-opus-*"]
hosts = ["api.anthropic.com"]

[[mount]]
action = "deny"
paths = ["~/secrets/**"]

[settings]
"mount.home" = "deny"
docker = "allow"
"#;
        let layer = parse_layer("t.toml", text).unwrap();
        assert_eq!(layer.name(), "team-payments");
        assert!(layer.is_enforced());
        assert_eq!(layer.preset_kind(), Some(Preset::Balanced));
        assert_eq!(
            layer.network.len(),
            7,
            "own rule plus the six balanced groups"
        );
        let own = &layer.network[0];
        assert_eq!(own.targets.len(), 3);
        assert_eq!(own.targets[1].1, "t.toml:9:29");
        assert_eq!(
            own.methods.as_deref(),
            Some(&["GET".to_owned(), "HEAD".to_owned()][..])
        );
        assert_eq!(layer.models.len(), 1);
        assert_eq!(layer.mounts.len(), 1);
        assert_eq!(layer.settings["mount.home"].value, SettingValue::Deny);
        assert_eq!(layer.settings["docker"].origin, "t.toml:24:10");
        let dotted = parse_layer(
            "d.toml",
            "[settings]\nmount.home = \"deny\"\nmount.paths = \"allow\"\n",
        )
        .unwrap();
        assert_eq!(dotted.settings["mount.home"].value, SettingValue::Deny);
        assert_eq!(dotted.settings["mount.paths"].value, SettingValue::Allow);
    }

    #[test]
    fn name_defaults_to_source() {
        assert_eq!(parse_layer("user.toml", "").unwrap().name(), "user.toml");
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases: &[(&str, (usize, usize), &str)] = &[
            ("nmae = \"x\"\n", (1, 1), "unknown field `nmae`"),
            (
                "[[network]]\naction = \"allow\"\nhosts = [\"a.com\"]\nport = 3\n",
                (4, 1),
                "unknown field `port`",
            ),
            (
                "[[network]]\naction = \"alow\"\nhosts = [\"a.com\"]\n",
                (2, 10),
                "unknown variant `alow`",
            ),
            (
                "[[network]]\naction = \"allow\"\nhosts = [\"a.com\", \"10.0.0.0/33\"]\n",
                (3, 19),
                "prefix length",
            ),
            (
                "[[network]]\naction = \"allow\"\nhosts = [\"a.com\"]\npaths = [\"/a/../b\"]\n",
                (4, 10),
                "`..`",
            ),
            (
                "[[network]]\naction = \"allow\"\nhosts = [\"a.com\"]\npaths = [\"/a?x=1\"]\n",
                (4, 10),
                "query",
            ),
            (
                "[[network]]\naction = \"allow\"\nhosts = []\n",
                (3, 9),
                "at least one",
            ),
            (
                "[[network]]\naction = \"allow\"\nhosts = [\"a.com\"]\nmethods = [\"GET POST\"]\n",
                (4, 12),
                "HTTP method",
            ),
            (
                "[[network]]\naction = \"allow\"\n",
                (1, 1),
                "missing field `hosts`",
            ),
            ("preset = \"strict\"\n", (1, 10), "unknown variant `strict`"),
            (
                "[settings]\n\"mount.hme\" = \"deny\"\n",
                (2, 15),
                "unknown setting `mount.hme`",
            ),
            (
                "[settings]\ndocker = \"maybe\"\n",
                (2, 10),
                "expected \"allow\" or \"deny\"",
            ),
            (
                "[settings]\nmount.hme = \"deny\"\n",
                (2, 1),
                "unknown setting `mount.hme`",
            ),
            ("[settings]\ndocker = 1\n", (2, 10), "expected \"allow\""),
            ("enforced = \"yes\"\n", (1, 12), "invalid type"),
            ("name = \"\"\n", (1, 8), "`name`"),
            (
                "[[mount]]\naction = \"deny\"\npaths = [\"relative/x\"]\n",
                (3, 10),
                "absolute",
            ),
            ("x = [\n", (1, 6), "unclosed array"),
        ];
        for (text, (line, column), want) in cases {
            let e = err(text);
            assert_eq!((e.line, e.column), (*line, *column), "{text:?}: {e}");
            assert!(e.message.contains(want), "{text:?}: {e}");
            assert_eq!(e.file, "t.toml");
        }
    }
}
