//! Terminal output: colours only on a terminal and without `NO_COLOR`.

use std::io::{IsTerminal, Write};

use crate::env_vars;

/// Whether stderr gets colours.
fn stderr_colours() -> bool {
    std::env::var_os(env_vars::NO_COLOR).is_none() && std::io::stderr().is_terminal()
}

/// Whether stdout gets colours: a terminal, and `NO_COLOR` unset.
pub(crate) fn stdout_colours() -> bool {
    std::env::var_os(env_vars::NO_COLOR).is_none() && std::io::stdout().is_terminal()
}

/// Prints `error: msg` to stderr.
pub(crate) fn error(msg: &str) {
    let (on, off) = if stderr_colours() {
        ("\x1b[1;31m", "\x1b[0m")
    } else {
        ("", "")
    };
    let _ = writeln!(std::io::stderr(), "{on}error{off}: {msg}");
}

/// Prints `warning: msg` to stderr.
pub(crate) fn warning(msg: &str) {
    let (on, off) = if stderr_colours() {
        ("\x1b[1;33m", "\x1b[0m")
    } else {
        ("", "")
    };
    let _ = writeln!(std::io::stderr(), "{on}warning{off}: {msg}");
}

/// Prints rows as left-aligned columns under a header.
pub(crate) fn table(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_aligns_columns() {
        let mut out = Vec::new();
        super::table(
            &mut out,
            &["A", "BB"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A    BB\nxyz  1\nq    22\n"
        );
    }
}
