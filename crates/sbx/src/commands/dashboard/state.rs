//! The dashboard's state and key handling, free of any terminal: keys turn into [`Action`]s, which the event loop
//! carries out by running the same `sbx` commands a user would type.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// One sandbox as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SandboxRow {
    pub(crate) name: String,
    pub(crate) agent: String,
    pub(crate) status: String,
    pub(crate) isolation: String,
    pub(crate) workspace: String,
    pub(crate) branch: String,
    pub(crate) uptime: String,
}

/// One host in the network panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetRow {
    pub(crate) allowed: bool,
    pub(crate) sandbox: String,
    pub(crate) host: String,
    pub(crate) count: u64,
    /// The rule or reason that decided.
    pub(crate) why: String,
}

/// Which panel has the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Focus {
    Sandboxes,
    Network,
}

/// What the keyboard is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    Normal,
    /// Typing `AGENT PATH...` for a new sandbox.
    Create(String),
    /// Waiting for `y` to remove this sandbox.
    ConfirmRemove(String),
}

/// Something the event loop should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Quit,
    /// `sbx create ARGS...`.
    Create(Vec<String>),
    Start(String),
    Stop(String),
    Attach(String),
    Remove(String),
    /// `sbx policy allow|deny network HOST`.
    Policy {
        allow: bool,
        host: String,
    },
}

/// The whole dashboard state.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub(crate) sandboxes: Vec<SandboxRow>,
    pub(crate) network: Vec<NetRow>,
    pub(crate) selected: usize,
    pub(crate) net_selected: usize,
    pub(crate) focus: Focus,
    pub(crate) mode: Mode,
    /// The last outcome or hint, shown in the status line.
    pub(crate) message: String,
}

/// The key help shown at the bottom.
pub(crate) const HELP: &str = "↑↓ move  tab panel  n new  s start  x stop  enter/a attach  d remove  A allow host  B block host  q quit";

impl App {
    pub(crate) fn new() -> App {
        App {
            sandboxes: Vec::new(),
            network: Vec::new(),
            selected: 0,
            net_selected: 0,
            focus: Focus::Sandboxes,
            mode: Mode::Normal,
            message: String::new(),
        }
    }

    /// Replaces the data, keeping the cursor on the same sandbox (by name) when it is still there.
    pub(crate) fn refresh(&mut self, sandboxes: Vec<SandboxRow>, network: Vec<NetRow>) {
        let current = self.selected_sandbox().map(|s| s.name.clone());
        self.sandboxes = sandboxes;
        self.network = network;
        self.selected = current
            .and_then(|name| self.sandboxes.iter().position(|s| s.name == name))
            .unwrap_or(self.selected)
            .min(self.sandboxes.len().saturating_sub(1));
        self.net_selected = self.net_selected.min(self.network.len().saturating_sub(1));
    }

    pub(crate) fn selected_sandbox(&self) -> Option<&SandboxRow> {
        self.sandboxes.get(self.selected)
    }

    pub(crate) fn selected_host(&self) -> Option<&NetRow> {
        self.network.get(self.net_selected)
    }

    /// Handles one key; returns what the loop should do, if anything.
    pub(crate) fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Action::Quit);
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Create(input) => self.on_create_key(input, key),
            Mode::ConfirmRemove(name) => {
                if key.code == KeyCode::Char('y') {
                    Some(Action::Remove(name))
                } else {
                    self.message = format!("kept {name}");
                    None
                }
            }
            Mode::Normal => self.on_normal_key(key),
        }
    }

    fn on_create_key(&mut self, mut input: String, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Esc => {
                self.message = "cancelled".into();
                None
            }
            KeyCode::Enter => {
                let args: Vec<String> = input.split_whitespace().map(str::to_owned).collect();
                if args.is_empty() {
                    self.message =
                        "type the agent and the workspace, e.g. `shell /path/to/project`".into();
                    return None;
                }
                Some(Action::Create(args))
            }
            KeyCode::Backspace => {
                input.pop();
                self.mode = Mode::Create(input);
                None
            }
            KeyCode::Char(c) => {
                input.push(c);
                self.mode = Mode::Create(input);
                None
            }
            _ => {
                self.mode = Mode::Create(input);
                None
            }
        }
    }

    fn on_normal_key(&mut self, key: KeyEvent) -> Option<Action> {
        let sandbox = self.selected_sandbox().map(|s| s.name.clone());
        let need_sandbox = |app: &mut App| {
            app.message = "no sandbox selected; press n to create one".into();
            None
        };
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Some(Action::Quit),
            KeyCode::Tab | KeyCode::BackTab => {
                self.focus = match self.focus {
                    Focus::Sandboxes => Focus::Network,
                    Focus::Network => Focus::Sandboxes,
                };
                None
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.move_cursor(-1);
                None
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.move_cursor(1);
                None
            }
            KeyCode::Char('n') => {
                self.mode = Mode::Create(String::new());
                None
            }
            KeyCode::Char('s') => sandbox.map(Action::Start).or_else(|| need_sandbox(self)),
            KeyCode::Char('x') => sandbox.map(Action::Stop).or_else(|| need_sandbox(self)),
            KeyCode::Enter | KeyCode::Char('a') if self.focus == Focus::Sandboxes => {
                sandbox.map(Action::Attach).or_else(|| need_sandbox(self))
            }
            KeyCode::Char('d') => match sandbox {
                Some(name) => {
                    self.message = format!("remove {name} and everything it wrote? y to confirm");
                    self.mode = Mode::ConfirmRemove(name);
                    None
                }
                None => need_sandbox(self),
            },
            KeyCode::Char(c @ ('A' | 'B')) => match self.selected_host() {
                Some(row) => Some(Action::Policy {
                    allow: c == 'A',
                    host: rule_host(&row.host).to_owned(),
                }),
                None => {
                    self.message = "no network requests yet".into();
                    None
                }
            },
            _ => None,
        }
    }

    fn move_cursor(&mut self, delta: isize) {
        let (cursor, len) = match self.focus {
            Focus::Sandboxes => (&mut self.selected, self.sandboxes.len()),
            Focus::Network => (&mut self.net_selected, self.network.len()),
        };
        if len == 0 {
            return;
        }
        *cursor = cursor.saturating_add_signed(delta).min(len - 1);
    }
}

/// The host a rule names for a `host:port` row: the whole host, any port (`[v6]:port` keeps its brackets off).
pub(crate) fn rule_host(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => host_port,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    pub(crate) fn sample() -> App {
        let mut app = App::new();
        let row = |name: &str, status: &str| SandboxRow {
            name: name.into(),
            agent: "claude".into(),
            status: status.into(),
            isolation: "namespaces".into(),
            workspace: "/src/app".into(),
            branch: "sbx/".to_owned() + name,
            uptime: "5m".into(),
        };
        let net = |allowed: bool, host: &str| NetRow {
            allowed,
            sandbox: "alpha".into(),
            host: format!("{host}:443"),
            count: 3,
            why: if allowed {
                "matched-allow"
            } else {
                "default-deny"
            }
            .into(),
        };
        app.refresh(
            vec![row("alpha", "running"), row("beta", "stopped")],
            vec![net(false, "evil.example"), net(true, "api.anthropic.com")],
        );
        app
    }

    #[test]
    fn keys_act_on_the_selected_sandbox() {
        let mut app = sample();
        assert_eq!(app.on_key(key('s')), Some(Action::Start("alpha".into())));
        app.on_key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
        assert_eq!(app.on_key(key('x')), Some(Action::Stop("beta".into())));
        assert_eq!(app.on_key(key('a')), Some(Action::Attach("beta".into())));
        // Removing asks first; anything but `y` keeps the sandbox.
        assert_eq!(app.on_key(key('d')), None);
        assert_eq!(app.mode, Mode::ConfirmRemove("beta".into()));
        assert_eq!(app.on_key(key('n')), None);
        assert_eq!(app.mode, Mode::Normal);
        app.on_key(key('d'));
        assert_eq!(app.on_key(key('y')), Some(Action::Remove("beta".into())));
        assert_eq!(app.on_key(key('q')), Some(Action::Quit));
    }

    #[test]
    fn create_prompt_collects_the_arguments() {
        let mut app = sample();
        app.on_key(key('n'));
        for c in "shell /tmpx".chars() {
            app.on_key(key(c));
        }
        app.on_key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
        assert_eq!(
            app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
            Some(Action::Create(vec!["shell".into(), "/tmp".into()]))
        );
    }

    #[test]
    fn network_keys_allow_or_block_the_selected_host() {
        let mut app = sample();
        app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!(app.focus, Focus::Network);
        assert_eq!(
            app.on_key(key('A')),
            Some(Action::Policy {
                allow: true,
                host: "evil.example".into()
            })
        );
        app.on_key(key('j'));
        app.on_key(key('j'));
        assert_eq!(app.net_selected, 1, "the cursor stops at the last row");
        assert_eq!(
            app.on_key(key('B')),
            Some(Action::Policy {
                allow: false,
                host: "api.anthropic.com".into()
            })
        );
    }

    #[test]
    fn rules_name_the_host_without_its_port() {
        assert_eq!(rule_host("evil.example:443"), "evil.example");
        assert_eq!(rule_host("evil.example"), "evil.example");
        assert_eq!(rule_host("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(rule_host("2001:db8::1"), "2001:db8::1");
    }

    #[test]
    fn refresh_keeps_the_cursor_on_the_same_sandbox() {
        let mut app = sample();
        app.on_key(key('j'));
        let mut rows = app.sandboxes.clone();
        rows.reverse();
        app.refresh(rows, Vec::new());
        assert_eq!(app.selected_sandbox().unwrap().name, "beta");
        assert_eq!(app.selected, 0);
        app.refresh(Vec::new(), Vec::new());
        assert!(app.selected_sandbox().is_none());
        assert_eq!(app.on_key(key('s')), None);
        assert!(app.message.contains("press n"), "{}", app.message);
    }
}
