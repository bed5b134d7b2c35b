//! Drawing the dashboard: the sandboxes table on top, the network panel below, a status line at the bottom.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};

use super::state::{App, Focus, HELP, Mode};

/// Draws one frame. `colour`: false when `NO_COLOR` is set.
pub(crate) fn render(frame: &mut Frame<'_>, app: &App, colour: bool) {
    let [top, bottom, status] = Layout::vertical([
        Constraint::Percentage(50),
        Constraint::Min(4),
        Constraint::Length(2),
    ])
    .areas(frame.area());
    let paint = |style: Style| if colour { style } else { Style::default() };
    let highlight = Style::default().add_modifier(Modifier::REVERSED);

    let rows = app.sandboxes.iter().map(|s| {
        let status_style = match s.status.as_str() {
            "running" => paint(Style::default().fg(Color::Green)),
            "crashed" => paint(Style::default().fg(Color::Red)),
            _ => paint(Style::default().fg(Color::DarkGray)),
        };
        Row::new(vec![
            Cell::from(s.name.clone()),
            Cell::from(s.agent.clone()),
            Cell::from(s.status.clone()).style(status_style),
            Cell::from(s.isolation.clone()),
            Cell::from(s.workspace.clone()),
            Cell::from(s.branch.clone()),
            Cell::from(s.uptime.clone()),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(20),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(11),
            Constraint::Fill(2),
            Constraint::Fill(1),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new([
            "NAME",
            "AGENT",
            "STATUS",
            "ISOLATION",
            "WORKSPACE",
            "BRANCH",
            "UPTIME",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(panel(" Sandboxes ", app.focus == Focus::Sandboxes))
    .row_highlight_style(highlight);
    let mut state = TableState::default().with_selected(
        (app.focus == Focus::Sandboxes && !app.sandboxes.is_empty()).then_some(app.selected),
    );
    frame.render_stateful_widget(table, top, &mut state);

    let net_rows = app.network.iter().map(|n| {
        let (text, style) = if n.allowed {
            ("allowed", paint(Style::default().fg(Color::Green)))
        } else {
            ("blocked", paint(Style::default().fg(Color::Red)))
        };
        Row::new(vec![
            Cell::from(text).style(style),
            Cell::from(n.host.clone()),
            Cell::from(n.sandbox.clone()),
            Cell::from(n.count.to_string()),
            Cell::from(n.why.clone()),
        ])
    });
    let net = Table::new(
        net_rows,
        [
            Constraint::Length(8),
            Constraint::Fill(2),
            Constraint::Length(20),
            Constraint::Length(6),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new(["", "HOST", "SANDBOX", "COUNT", "WHY"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(panel(" Network (audit log) ", app.focus == Focus::Network))
    .row_highlight_style(highlight);
    let mut net_state = TableState::default().with_selected(
        (app.focus == Focus::Network && !app.network.is_empty()).then_some(app.net_selected),
    );
    frame.render_stateful_widget(net, bottom, &mut net_state);

    let prompt = match &app.mode {
        Mode::Create(input) => {
            format!("new sandbox — AGENT PATH...: {input}▏ (enter to create, esc to cancel)")
        }
        Mode::ConfirmRemove(_) | Mode::Normal => app.message.clone(),
    };
    frame.render_widget(
        Paragraph::new(vec![Line::from(prompt), Line::from(HELP)]),
        status,
    );
}

fn panel(title: &str, focused: bool) -> Block<'_> {
    let block = Block::default().borders(Borders::ALL).title(title);
    if focused {
        block.border_style(Style::default().add_modifier(Modifier::BOLD))
    } else {
        block
    }
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::super::state::tests::{key, sample};
    use super::*;

    fn draw(app: &App, colour: bool) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(120, 24)).unwrap();
        terminal.draw(|f| render(f, app, colour)).unwrap();
        terminal.backend().buffer().clone()
    }

    fn line(buffer: &Buffer, y: u16) -> String {
        (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect()
    }

    fn find(buffer: &Buffer, text: &str) -> (u16, u16) {
        for y in 0..buffer.area.height {
            if let Some(x) = line(buffer, y).find(text) {
                return (line(buffer, y)[..x].chars().count() as u16, y);
            }
        }
        panic!(
            "{text:?} not on screen:\n{}",
            (0..buffer.area.height)
                .map(|y| line(buffer, y))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn sandboxes_and_network_are_drawn_with_status_colours() {
        let app = sample();
        let buffer = draw(&app, true);
        let (x, y) = find(&buffer, "running");
        assert_eq!(buffer[(x, y)].fg, Color::Green);
        let (_, beta) = find(&buffer, "beta");
        assert!(
            line(&buffer, beta).contains("stopped") && line(&buffer, beta).contains("sbx/beta")
        );
        let (x, y) = find(&buffer, "blocked");
        assert_eq!(buffer[(x, y)].fg, Color::Red);
        assert!(
            line(&buffer, y).contains("evil.example") && line(&buffer, y).contains("default-deny")
        );
        // The selected sandbox row is highlighted.
        let (x, y) = find(&buffer, "alpha");
        assert!(buffer[(x, y)].modifier.contains(Modifier::REVERSED));
        find(&buffer, "A allow host");
    }

    #[test]
    fn no_colour_means_no_colour() {
        let buffer = draw(&sample(), false);
        let (x, y) = find(&buffer, "running");
        assert_eq!(buffer[(x, y)].fg, Color::Reset);
    }

    #[test]
    fn the_cursor_and_prompt_follow_the_keys() {
        let mut app = sample();
        app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
        app.on_key(key('j'));
        let buffer = draw(&app, true);
        let (x, y) = find(&buffer, "api.anthropic.com");
        assert!(buffer[(x, y)].modifier.contains(Modifier::REVERSED));
        let (x, y) = find(&buffer, "alpha");
        assert!(
            !buffer[(x, y)].modifier.contains(Modifier::REVERSED),
            "only the focused panel shows a cursor"
        );
        app.on_key(key('n'));
        app.on_key(key('s'));
        let buffer = draw(&app, true);
        find(&buffer, "AGENT PATH...: s");
    }
}
