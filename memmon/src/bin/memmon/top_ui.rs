//! `memmon top`'s full-screen view: the process table, its keys, and the
//! layout pane Enter opens. Drawn with plain ANSI sequences on a raw-mode
//! terminal (termios), so it needs no terminal library.

use std::{
    io::{self, Read as _, Write as _},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use comfy_table::{ContentArrangement, Table, presets::NOTHING};

use memmon::{
    escape::escape,
    protocol::{Reply, Request},
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
        scroll: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    Enter,
    Esc,
    Backspace,
    Char(char),
}

struct App {
    rows: Vec<Row>,
    column: usize,
    reverse: bool,
    filter: String,
    selected: usize,
    mode: Mode,
    /// The last refresh's failure, shown in the status line.
    error: Option<String>,
}

/// Raw mode and the alternate screen while alive; restored on drop (also
/// when a refresh fails and the error propagates).
struct Screen {
    saved: libc::termios,
}

impl Screen {
    fn enter() -> io::Result<Self> {
        let fd = io::stdin().as_raw_fd();
        // SAFETY: an all-zero termios is a valid buffer for tcgetattr.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is this process's stdin; saved is a valid termios.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(io::Error::other(
                "stdin is not a terminal: run `memmon top` in one, or redirect stdout for one table",
            ));
        }
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
        raw.c_iflag &= !(libc::IXON | libc::ICRNL);
        raw.c_cc[libc::VMIN] = 0;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: as above; raw is a modified copy of the current settings.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        print!("\x1b[?1049h\x1b[?25l");
        io::stdout().flush()?;
        Ok(Self { saved })
    }

    /// Columns and rows of the terminal (80x24 when it will not say).
    fn size() -> (usize, usize) {
        // SAFETY: an all-zero winsize is a valid buffer for TIOCGWINSZ.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes a winsize into ws.
        let ok = unsafe { libc::ioctl(io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0;
        if ok && ws.ws_col > 0 && ws.ws_row > 0 {
            (ws.ws_col as usize, ws.ws_row as usize)
        } else {
            (80, 24)
        }
    }

    /// The keys typed within `wait` (none when it passed quietly).
    fn keys(wait: Duration) -> io::Result<Vec<Key>> {
        let fd = io::stdin().as_raw_fd();
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: pfd is one valid pollfd.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            n if n < 0 => {
                let err = io::Error::last_os_error();
                return if err.kind() == io::ErrorKind::Interrupted {
                    Ok(Vec::new())
                } else {
                    Err(err)
                };
            }
            0 => return Ok(Vec::new()),
            _ => {}
        }
        let mut buf = [0u8; 256];
        let n = io::stdin().lock().read(&mut buf)?;
        Ok(parse_keys(&buf[..n]))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        print!("\x1b[?25h\x1b[?1049l");
        let _ = io::stdout().flush();
        // SAFETY: restores the settings read in `enter` on the same fd.
        unsafe { libc::tcsetattr(io::stdin().as_raw_fd(), libc::TCSANOW, &self.saved) };
    }
}

/// The keys in what one read returned (a paste or fast typing brings
/// several).
fn parse_keys(mut bytes: &[u8]) -> Vec<Key> {
    let mut keys = Vec::new();
    while !bytes.is_empty() {
        let len = match bytes {
            // CSI / SS3: up to the final byte.
            [0x1b, b'[' | b'O', rest @ ..] => rest
                .iter()
                .position(|b| (0x40..=0x7e).contains(b))
                .map_or(bytes.len(), |i| i + 3),
            [0x1b, ..] => 1,
            [first, ..] => match first.leading_ones() {
                2..=4 => (first.leading_ones() as usize).min(bytes.len()),
                _ => 1,
            },
            [] => break,
        };
        keys.extend(parse_key(&bytes[..len]));
        bytes = &bytes[len..];
    }
    keys
}

/// One key from the bytes a terminal sends for it.
fn parse_key(bytes: &[u8]) -> Option<Key> {
    Some(match bytes {
        [] => return None,
        b"\x1b[A" | b"\x1bOA" => Key::Up,
        b"\x1b[B" | b"\x1bOB" => Key::Down,
        b"\x1b[C" | b"\x1bOC" => Key::Right,
        b"\x1b[D" | b"\x1bOD" => Key::Left,
        b"\x1b[5~" => Key::PageUp,
        b"\x1b[6~" => Key::PageDown,
        b"\x1b[H" | b"\x1b[1~" | b"\x1bOH" => Key::Home,
        [0x1b] => Key::Esc,
        [b'\r'] | [b'\n'] => Key::Enter,
        [0x7f] | [0x08] => Key::Backspace,
        // Ctrl-C: raw mode turned off its signal.
        [0x03] => Key::Char('q'),
        [0x1b, ..] => return None,
        _ => Key::Char(std::str::from_utf8(bytes).ok()?.chars().next()?),
    })
}

pub fn run(mut feed: Feed, interval: Duration) -> anyhow::Result<()> {
    let mut all = feed.refresh()?;
    let _screen = Screen::enter()?;
    let mut app = App {
        rows: Vec::new(),
        column: DEFAULT_SORT,
        reverse: false,
        filter: String::new(),
        selected: 0,
        mode: Mode::Table,
        error: None,
    };
    let mut next_refresh = Instant::now() + interval;
    loop {
        app.rows = all.clone();
        arrange(&mut app.rows, app.column, app.reverse, &app.filter);
        app.selected = app.selected.min(app.rows.len().saturating_sub(1));
        draw(&app)?;
        let wait = next_refresh.saturating_duration_since(Instant::now());
        let keys = Screen::keys(wait)?;
        for key in &keys {
            if !handle(&mut app, *key, &mut feed) {
                return Ok(());
            }
            app.rows = all.clone();
            arrange(&mut app.rows, app.column, app.reverse, &app.filter);
        }
        if keys.is_empty() && Instant::now() >= next_refresh {
            next_refresh = Instant::now() + interval;
            match feed.refresh() {
                Ok(rows) => {
                    all = rows;
                    app.error = None;
                }
                Err(err) => app.error = Some(format!("refresh failed: {err}")),
            }
        }
    }
}

/// Applies one key; false to quit.
fn handle(app: &mut App, key: Key, feed: &mut Feed) -> bool {
    let page = Screen::size().1.saturating_sub(4).max(1);
    match &mut app.mode {
        Mode::Filter => match key {
            Key::Enter => app.mode = Mode::Table,
            Key::Esc => {
                app.filter.clear();
                app.mode = Mode::Table;
            }
            Key::Backspace => {
                app.filter.pop();
            }
            Key::Char(c) if !c.is_control() => app.filter.push(c),
            _ => {}
        },
        Mode::Layout { scroll, .. } => match key {
            Key::Esc | Key::Char('q') | Key::Left => app.mode = Mode::Table,
            Key::Down | Key::Char('j') => *scroll = scroll.saturating_add(1),
            Key::Up | Key::Char('k') => *scroll = scroll.saturating_sub(1),
            Key::PageDown | Key::Char(' ') => *scroll = scroll.saturating_add(page),
            Key::PageUp => *scroll = scroll.saturating_sub(page),
            Key::Home => *scroll = 0,
            _ => {}
        },
        Mode::Table => match key {
            Key::Char('q') => return false,
            Key::Esc => app.filter.clear(),
            Key::Right | Key::Char('>') => app.column = (app.column + 1) % COLUMNS.len(),
            Key::Left | Key::Char('<') => {
                app.column = (app.column + COLUMNS.len() - 1) % COLUMNS.len();
            }
            Key::Char('r') => app.reverse = !app.reverse,
            Key::Char('/') => app.mode = Mode::Filter,
            Key::Down | Key::Char('j') => app.selected = app.selected.saturating_add(1),
            Key::Up | Key::Char('k') => app.selected = app.selected.saturating_sub(1),
            Key::PageDown => app.selected = app.selected.saturating_add(page),
            Key::PageUp => app.selected = app.selected.saturating_sub(page),
            Key::Home => app.selected = 0,
            Key::Enter => {
                if let Some(row) = app.rows.get(app.selected) {
                    app.mode = layout_pane(feed, row.summary.pid, &row.summary.comm);
                }
            }
            _ => {}
        },
    }
    true
}

/// The process's `memmon query` text, or why it could not be had.
fn layout_pane(feed: &mut Feed, pid: u32, comm: &str) -> Mode {
    let request = Request::Query {
        pid,
        events: 0,
        rss: false,
    };
    let text = match feed.client().request(request) {
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

/// `line` cut to `width` characters.
fn fit(line: &str, width: usize) -> String {
    line.chars().take(width).collect()
}

fn draw(app: &App) -> io::Result<()> {
    let (width, height) = Screen::size();
    let body = height.saturating_sub(2).max(1);
    let mut out = String::from("\x1b[H\x1b[2J");
    let mut line = |text: &str, reverse: bool| {
        if reverse {
            out.push_str("\x1b[7m");
        }
        out.push_str(&fit(text, width));
        if reverse {
            out.push_str("\x1b[0m");
        }
        out.push_str("\r\n");
    };
    if let Mode::Layout {
        title,
        text,
        scroll,
    } = &app.mode
    {
        line(
            &format!("{title}: Esc to return, ↑/↓ PgUp/PgDn to scroll"),
            true,
        );
        for l in text.lines().skip(*scroll).take(body) {
            line(l, false);
        }
        print!("{out}");
        return io::stdout().flush();
    }
    line(
        &format!(
            "memmon top: {} processes, refreshed from the daemon",
            app.rows.len()
        ),
        false,
    );
    // The rows that fit, keeping the selected one in view.
    let visible = body.saturating_sub(1).max(1);
    let first = app.selected.saturating_sub(visible - 1);
    let mut table = Table::new();
    table
        .load_preset(NOTHING)
        .force_no_tty()
        .set_content_arrangement(ContentArrangement::Disabled);
    let header: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, name)| match (i == app.column, app.reverse) {
            (true, false) => format!("{name}▼"),
            (true, true) => format!("{name}▲"),
            _ => (*name).to_owned(),
        })
        .collect();
    table.set_header(header);
    for row in app.rows.iter().skip(first).take(visible) {
        let cells: Vec<String> = row.cells().iter().map(|c| escape(c).into_owned()).collect();
        table.add_row(cells);
    }
    for (i, text) in table.to_string().lines().enumerate() {
        let selected = i > 0 && first + i - 1 == app.selected;
        line(text, i == 0 || selected);
    }
    let status = match (&app.mode, &app.error) {
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
    print!("{out}\x1b[{height};1H{}", fit(&status, width));
    io::stdout().flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_key_sequences() {
        assert_eq!(parse_key(b"\x1b[A"), Some(Key::Up));
        assert_eq!(parse_key(b"\x1b[D"), Some(Key::Left));
        assert_eq!(parse_key(b"\x1b[6~"), Some(Key::PageDown));
        assert_eq!(parse_key(b"\x1b"), Some(Key::Esc));
        assert_eq!(parse_key(b"\r"), Some(Key::Enter));
        assert_eq!(parse_key(b"q"), Some(Key::Char('q')));
        assert_eq!(parse_key(b"\x03"), Some(Key::Char('q')), "Ctrl-C quits");
        assert_eq!(parse_key(b"\x1b[99;5u"), None);
        assert_eq!(parse_key(b""), None);
        assert_eq!(
            parse_keys("\x1b[D\x1b[D/é\r\x1b".as_bytes()),
            [
                Key::Left,
                Key::Left,
                Key::Char('/'),
                Key::Char('é'),
                Key::Enter,
                Key::Esc
            ]
        );
    }
}
