//! `memmon top`'s full-screen view, on ratatui (crossterm backend): the
//! process table, its keys, and the layout pane Enter opens.

use std::{
    io::IsTerminal as _,
    time::{Duration, Instant},
};

use anyhow::bail;
use ratatui::{
    DefaultTerminal, Frame,
    crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    widgets::{Paragraph, Row as TableRow, Table, TableState},
};

use memmon::{
    escape::escape,
    protocol::{Render, Reply, Request},
};

use crate::{
    render::render_text,
    top::{COLUMNS, DEFAULT_SORT, Feed, Row, arrange},
};

/// What the keys act on.
enum Mode {
    Table,
    /// Typing a filter.
    Filter,
    /// A process's layout, scrolled to a line.
    Layout {
        title: String,
        text: String,
        scroll: u16,
    },
}

struct App {
    /// Every process of the last refresh, unsorted.
    all: Vec<Row>,
    /// `all` filtered and sorted as shown.
    rows: Vec<Row>,
    column: usize,
    reverse: bool,
    filter: String,
    table: TableState,
    mode: Mode,
    /// The last refresh's failure, shown in the status line.
    error: Option<String>,
    /// Rows of the body at the last draw: what PgUp/PgDn move by.
    page: usize,
}

impl App {
    fn arrange(&mut self) {
        self.rows = self.all.clone();
        arrange(&mut self.rows, self.column, self.reverse, &self.filter);
        let last = self.rows.len().saturating_sub(1);
        let selected = self.table.selected().unwrap_or(0).min(last);
        self.table.select(Some(selected));
    }

    fn move_selection(&mut self, by: isize) {
        let at = self.table.selected().unwrap_or(0);
        self.table.select(Some(at.saturating_add_signed(by)));
        self.arrange();
    }
}

pub fn run(mut feed: Feed, interval: Duration) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("stdin is not a terminal: run `memmon top` in one, or redirect stdout for one table");
    }
    let all = feed.refresh()?;
    let mut app = App {
        all,
        rows: Vec::new(),
        column: DEFAULT_SORT,
        reverse: false,
        filter: String::new(),
        table: TableState::default(),
        mode: Mode::Table,
        error: None,
        page: 1,
    };
    app.arrange();
    // Raw mode and the alternate screen until `restore`, also on a panic
    // (ratatui's init installs a hook for that).
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, &mut app, &mut feed, interval);
    ratatui::try_restore()?;
    result
}

fn event_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    feed: &mut Feed,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut next_refresh = Instant::now() + interval;
    loop {
        terminal.draw(|frame| draw(frame, app))?;
        let wait = next_refresh.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            if let Event::Key(key) = event::read()?
                && key.kind == KeyEventKind::Press
                && !handle(app, key, feed)
            {
                return Ok(());
            }
            continue;
        }
        next_refresh = Instant::now() + interval;
        match feed.refresh() {
            Ok(rows) => {
                app.all = rows;
                app.error = None;
                app.arrange();
            }
            Err(err) => app.error = Some(format!("refresh failed: {err}")),
        }
    }
}

/// Applies one key; false to quit.
fn handle(app: &mut App, mut key: KeyEvent, feed: &mut Feed) -> bool {
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        match key.code {
            KeyCode::Char('c') => return false,
            // A newline: what Enter typed before raw mode began becomes
            // (the terminal's ICRNL), or a terminal that sends LF.
            KeyCode::Char('j') => key = KeyEvent::from(KeyCode::Enter),
            _ => {}
        }
    }
    let page = app.page.max(1);
    match &mut app.mode {
        Mode::Filter => match key.code {
            KeyCode::Enter => app.mode = Mode::Table,
            KeyCode::Esc => {
                app.filter.clear();
                app.mode = Mode::Table;
            }
            KeyCode::Backspace => {
                app.filter.pop();
            }
            KeyCode::Char(c) if !c.is_control() => app.filter.push(c),
            _ => {}
        },
        Mode::Layout { scroll, .. } => {
            let page = page.min(u16::MAX as usize) as u16;
            match key.code {
                KeyCode::Esc | KeyCode::Char('q') | KeyCode::Left => app.mode = Mode::Table,
                KeyCode::Down | KeyCode::Char('j') => *scroll = scroll.saturating_add(1),
                KeyCode::Up | KeyCode::Char('k') => *scroll = scroll.saturating_sub(1),
                KeyCode::PageDown | KeyCode::Char(' ') => *scroll = scroll.saturating_add(page),
                KeyCode::PageUp => *scroll = scroll.saturating_sub(page),
                KeyCode::Home => *scroll = 0,
                _ => {}
            }
        }
        Mode::Table => match key.code {
            KeyCode::Char('q') => return false,
            KeyCode::Esc => app.filter.clear(),
            KeyCode::Right | KeyCode::Char('>') => app.column = (app.column + 1) % COLUMNS.len(),
            KeyCode::Left | KeyCode::Char('<') => {
                app.column = (app.column + COLUMNS.len() - 1) % COLUMNS.len();
            }
            KeyCode::Char('r') => app.reverse = !app.reverse,
            KeyCode::Char('/') => app.mode = Mode::Filter,
            KeyCode::Down | KeyCode::Char('j') => app.move_selection(1),
            KeyCode::Up | KeyCode::Char('k') => app.move_selection(-1),
            KeyCode::PageDown => app.move_selection(page as isize),
            KeyCode::PageUp => app.move_selection(-(page as isize)),
            KeyCode::Home => app.table.select(Some(0)),
            KeyCode::Enter => {
                let selected = app.table.selected().and_then(|i| app.rows.get(i));
                if let Some(row) = selected {
                    app.mode = layout_pane(feed, row.summary.pid, &row.summary.comm);
                }
            }
            _ => {}
        },
    }
    app.arrange();
    true
}

/// The process's `memmon query` text, or why it could not be had.
fn layout_pane(feed: &mut Feed, pid: u32, comm: &str) -> Mode {
    let request = Request::Query {
        pid,
        events: 0,
        rss: false,
        origins: false,
        render: Some(Render::Text),
    };
    let text = match feed.client().request(request) {
        Ok(Reply::Rendered { bytes, .. }) => String::from_utf8_lossy(&bytes).into_owned(),
        // A daemon that does not render.
        Ok(Reply::Layout(layout)) => render_text(&layout, false),
        Ok(_) => "unexpected reply from the daemon".to_owned(),
        Err(err) => format!("memmon: {err}"),
    };
    Mode::Layout {
        title: format!("pid {pid} ({})", escape(comm)),
        text,
        scroll: 0,
    }
}

fn draw(frame: &mut Frame, app: &mut App) {
    let reversed = Style::default().add_modifier(Modifier::REVERSED);
    let [head, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    app.page = usize::from(body.height.saturating_sub(1));
    if let Mode::Layout {
        title,
        text,
        scroll,
    } = &app.mode
    {
        let title = format!("{title}: Esc to return, ↑/↓ PgUp/PgDn to scroll");
        frame.render_widget(Paragraph::new(title).style(reversed), head);
        frame.render_widget(Paragraph::new(text.as_str()).scroll((*scroll, 0)), body);
        return;
    }
    let title = format!(
        "memmon top: {} processes, refreshed from the daemon",
        app.rows.len()
    );
    frame.render_widget(Paragraph::new(title), head);

    let header: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, name)| match (i == app.column, app.reverse) {
            (true, false) => format!("{name}▼"),
            (true, true) => format!("{name}▲"),
            _ => (*name).to_owned(),
        })
        .collect();
    let cells: Vec<Vec<String>> = app
        .rows
        .iter()
        .map(|row| row.cells().iter().map(|c| escape(c).into_owned()).collect())
        .collect();
    // Each column as wide as its widest cell: the table reads like `ps`.
    let widths: Vec<Constraint> = (0..COLUMNS.len())
        .map(|i| {
            let widest = cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0);
            Constraint::Length(widest as u16)
        })
        .collect();
    let table = Table::new(cells.into_iter().map(TableRow::new), widths)
        .header(TableRow::new(header).style(reversed))
        .row_highlight_style(reversed);
    frame.render_stateful_widget(table, body, &mut app.table);

    let line = match (&app.mode, &app.error) {
        (Mode::Filter, _) => format!(
            "filter (comm or unit): {}_  Enter to apply, Esc to clear",
            app.filter
        ),
        (_, Some(err)) => err.clone(),
        _ => format!(
            "←/→ sort column  r reverse  / filter{}  ↑/↓ select  Enter layout  q quit",
            if app.filter.is_empty() {
                String::new()
            } else {
                format!(" [{}]", app.filter)
            }
        ),
    };
    frame.render_widget(Paragraph::new(line), status);
}
