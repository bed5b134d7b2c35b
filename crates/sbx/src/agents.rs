//! The agent table: how each agent is launched inside a sandbox.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

const BUILT_IN: &str = include_str!("agents.toml");

/// One agent: what to run inside the sandbox and which credentials it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Agent {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
    pub(crate) command: Vec<String>,
    #[serde(default)]
    pub(crate) yolo: Vec<String>,
    #[serde(default)]
    pub(crate) services: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    #[serde(default)]
    agent: Vec<Agent>,
}

/// Built-in agents, extended or overridden by the user's file.
#[derive(Debug, Clone)]
pub(crate) struct AgentTable {
    agents: Vec<Agent>,
}

impl AgentTable {
    /// The built-in table plus `user_file` when it exists.
    pub(crate) fn load(user_file: &Path) -> Result<AgentTable> {
        let mut table = Self::parse("built-in agents.toml", BUILT_IN)?;
        match std::fs::read_to_string(user_file) {
            Ok(text) => table.extend(Self::parse(&user_file.display().to_string(), &text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", user_file.display()));
            }
        }
        Ok(table)
    }

    fn parse(source: &str, text: &str) -> Result<AgentTable> {
        let file: AgentFile =
            toml::from_str(text).with_context(|| format!("{source}: not a valid agent table"))?;
        for agent in &file.agent {
            if agent.command.is_empty() {
                bail!("{source}: agent `{}` has an empty `command`", agent.name);
            }
        }
        Ok(AgentTable { agents: file.agent })
    }

    fn extend(&mut self, other: AgentTable) {
        for agent in other.agents {
            match self.agents.iter_mut().find(|a| a.name == agent.name) {
                Some(slot) => *slot = agent,
                None => self.agents.push(agent),
            }
        }
    }

    /// The agent called `name`, or an error listing the known ones.
    pub(crate) fn get(&self, name: &str) -> Result<&Agent> {
        self.agents
            .iter()
            .find(|a| a.name == name)
            .with_context(|| {
                let known: Vec<&str> = self.agents.iter().map(|a| a.name.as_str()).collect();
                format!("unknown agent `{name}`; known agents: {}", known.join(", "))
            })
    }

    /// All agents, built-in first.
    pub(crate) fn all(&self) -> &[Agent] {
        &self.agents
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_table_has_every_documented_agent() {
        let t = AgentTable::load(Path::new("/nonexistent/agents.toml")).unwrap();
        for name in ["claude", "codex", "gemini", "copilot", "opencode", "shell"] {
            assert!(!t.get(name).unwrap().command.is_empty(), "{name}");
        }
        assert_eq!(
            t.get("claude").unwrap().yolo,
            ["--dangerously-skip-permissions"]
        );
    }

    #[test]
    fn unknown_agent_error_lists_known_agents() {
        let t = AgentTable::load(Path::new("/nonexistent")).unwrap();
        let err = t.get("vim").unwrap_err().to_string();
        assert!(
            err.contains("unknown agent `vim`") && err.contains("claude") && err.contains("shell"),
            "{err}"
        );
    }

    #[test]
    fn user_file_adds_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agents.toml");
        std::fs::write(
            &file,
            "[[agent]]\nname = \"shell\"\ncommand = [\"zsh\"]\n[[agent]]\nname = \"aider\"\ncommand = [\"aider\"]\nyolo = [\"--yes\"]\n",
        )
        .unwrap();
        let t = AgentTable::load(&file).unwrap();
        assert_eq!(t.get("shell").unwrap().command, ["zsh"]);
        assert_eq!(t.get("aider").unwrap().yolo, ["--yes"]);
        assert!(t.get("claude").is_ok());
    }

    #[test]
    fn bad_user_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agents.toml");
        std::fs::write(&file, "[[agent]]\nname = \"x\"\ncommand = []\n").unwrap();
        let err = format!("{:#}", AgentTable::load(&file).unwrap_err());
        assert!(
            err.contains("agents.toml") && err.contains("empty `command`"),
            "{err}"
        );
        std::fs::write(&file, "[[agent]]\nname = \"x\"\ncmd = [\"a\"]\n").unwrap();
        let err = format!("{:#}", AgentTable::load(&file).unwrap_err());
        assert!(err.contains("agents.toml") && err.contains("cmd"), "{err}");
    }
}
