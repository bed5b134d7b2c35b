//! `sbx agents`: the agent table.

use anyhow::Result;

use crate::agents::AgentTable;
use crate::home::Home;
use crate::output;

pub(crate) fn run(name: Option<&str>, json: bool) -> Result<i32> {
    let home = Home::from_env()?;
    let table = AgentTable::load(&home.config.join("agents.toml"))?;
    let agents = match name {
        Some(name) => std::slice::from_ref(table.get(name)?),
        None => table.all(),
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, agents)?;
        println!();
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.command.join(" "),
                a.yolo.join(" "),
                a.services.join(","),
                a.description.clone(),
            ]
        })
        .collect();
    output::table(
        &mut out,
        &["AGENT", "COMMAND", "YOLO FLAGS", "SECRETS", "DESCRIPTION"],
        &rows,
    )?;
    Ok(0)
}
