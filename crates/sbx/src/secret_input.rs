//! Reading a secret value: from stdin, never echoed in a terminal.

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::{Context, Result, bail};
use sbx_secrets::SecretValue;
// Buffers holding the value are cleared on drop.
use secrecy::zeroize::Zeroizing;

/// The value for `service`: `given` if the user passed one, else stdin (a hidden prompt in a terminal, the
/// whole input minus one trailing newline from a pipe).
pub(crate) fn read_value(service: &str, given: Option<String>) -> Result<SecretValue> {
    let value = match given {
        Some(v) => Zeroizing::new(v),
        None if std::io::stdin().is_terminal() => prompt_hidden(service)?,
        None => read_piped()?,
    };
    if value.is_empty() {
        bail!(
            "the value for `{service}` is empty: pipe it in (`... | sbx secret set {service}`) or type it at the prompt"
        );
    }
    Ok(SecretValue::new(String::clone(&value)))
}

fn read_piped() -> Result<Zeroizing<String>> {
    let mut value = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut value)
        .context("cannot read the secret value from stdin (it must be UTF-8 text)")?;
    let text: &str = &value;
    let trimmed = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// Prompts on stderr and reads one line from the terminal with echo turned off, restoring the terminal mode
/// afterwards even when reading fails.
fn prompt_hidden(service: &str) -> Result<Zeroizing<String>> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal mode of stdin")?;
    let mut hidden = saved.clone();
    hidden.local_modes -= LocalModes::ECHO;
    hidden.local_modes |= LocalModes::ECHONL;
    eprint!("Value for {service} (input hidden): ");
    std::io::stderr().flush().ok();
    tcsetattr(&stdin, OptionalActions::Flush, &hidden).context("cannot turn off terminal echo")?;
    let mut line = Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    let restored = tcsetattr(&stdin, OptionalActions::Flush, &saved);
    read.context("cannot read the secret value from the terminal")?;
    restored.context("cannot restore terminal echo")?;
    let trimmed = line.trim_end_matches(['\n', '\r']);
    Ok(Zeroizing::new(trimmed.to_owned()))
}
