//! `sbx secret ...`: a thin layer over the sbx-secrets store and catalog.

use anyhow::{Context, Result, bail};
use sbx_secrets::{BackendReport, OpenOptions, Provider, Scope, SecretKey, SecretStore};
use secrecy::SecretString;
use serde::Serialize;

use crate::cli::{SecretCommand, SecretScope};
use crate::custom_secrets;
use crate::env_vars;
use crate::home::Home;
use crate::names;
use crate::output;
use crate::secret_input::read_value;

pub(crate) fn run(cmd: SecretCommand) -> Result<i32> {
    let home = Home::from_env()?;
    match cmd {
        SecretCommand::Set {
            scope,
            service,
            token,
        } => set(&home, &scope, &service, token),
        SecretCommand::SetCustom {
            hosts,
            env,
            name,
            body,
            scope,
            token,
        } => set_custom(&home, &hosts, &env, name, body, &scope, token),
        SecretCommand::Ls { json } => ls(&home, json),
        SecretCommand::Rm { scope, service } => rm(&home, &scope, &service),
        SecretCommand::Import => import(&home),
    }
}

/// Opens the store under `$SBX_HOME/state/secrets` (a passphrase from the environment selects passphrase mode).
pub(crate) fn open_store(home: &Home) -> Result<(Box<dyn SecretStore>, BackendReport)> {
    let dir = home.secrets_dir();
    let options = OpenOptions {
        passphrase: std::env::var(env_vars::SBX_SECRETS_PASSPHRASE)
            .ok()
            .filter(|p| !p.is_empty())
            .map(SecretString::from),
        ..Default::default()
    };
    sbx_secrets::open(&dir, &options)
        .with_context(|| format!("cannot open the secret store in {}", dir.display()))
}

fn key(scope: &SecretScope, service: &str) -> Result<SecretKey> {
    let key = match &scope.sandbox {
        Some(name) => {
            names::validate_sandbox(name)?;
            SecretKey::sandbox(name, service)
        }
        None => SecretKey::global(service),
    };
    Ok(key?)
}

fn describe(scope: &Scope) -> String {
    match scope {
        Scope::Global => "all sandboxes".into(),
        Scope::Sandbox(name) => format!("sandbox {name}"),
    }
}

fn set(home: &Home, scope: &SecretScope, service: &str, token: Option<String>) -> Result<i32> {
    let catalog = custom_secrets::load_catalog(&home.providers_file())?;
    if catalog.get(service).is_none() {
        let known: Vec<&str> = catalog.providers().map(|p| p.name.as_str()).collect();
        bail!(
            "unknown service `{}`; known services: {}. For any other API use `sbx secret set-custom --host HOST --env VAR`",
            service.escape_debug(),
            known.join(", ")
        );
    }
    let key = key(scope, service)?;
    let value = read_value(service, token)?;
    let (store, _) = open_store(home)?;
    store.set(&key, &value)?;
    println!("stored {service} for {}", describe(&key.scope));
    reload_running(home);
    Ok(0)
}

fn set_custom(
    home: &Home,
    hosts: &[String],
    env: &str,
    name: Option<String>,
    body: bool,
    scope: &SecretScope,
    token: Option<String>,
) -> Result<i32> {
    let name = name.unwrap_or_else(|| custom_secrets::default_name(env));
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let provider = Provider::custom(&name, env, &host_refs, body)?;
    let key = key(scope, &name)?;
    let value = read_value(&name, token)?;
    custom_secrets::save(&home.providers_file(), &provider, body)?;
    let (store, _) = open_store(home)?;
    store.set(&key, &value)?;
    println!(
        "stored custom secret {name} ({env}, bound to {}) for {}",
        hosts.join(", "),
        describe(&key.scope)
    );
    reload_running(home);
    Ok(0)
}

/// Tells every running sandbox's supervisor to re-read the store, so a change applies without a restart: the proxy
/// injects a new secret from the next request on, and commands started inside from now on get its placeholder.
fn reload_running(home: &Home) {
    let Ok(names) = crate::sandboxes::list_names(home) else {
        return;
    };
    for name in names {
        let Ok(dir) = crate::sandboxes::SandboxDir::new(home, &name) else {
            continue;
        };
        if !dir.control_socket().exists() {
            continue;
        }
        if let Err(e) = crate::supervisor::reload_secrets(&dir) {
            output::warning(&format!(
                "sandbox {name} did not take the change; it applies after `sbx stop {name} && sbx start {name}`: {e:#}"
            ));
        }
    }
}

#[derive(Debug, Serialize)]
struct Listed {
    service: String,
    scope: &'static str,
    sandbox: Option<String>,
    backend: String,
}

fn ls(home: &Home, json: bool) -> Result<i32> {
    let (store, report) = open_store(home)?;
    let rows: Vec<Listed> = store
        .list()?
        .into_iter()
        .map(|k| {
            let (scope, sandbox) = match k.scope {
                Scope::Global => ("global", None),
                Scope::Sandbox(name) => ("sandbox", Some(name)),
            };
            Listed {
                service: k.service,
                scope,
                sandbox,
                backend: report.kind.to_string(),
            }
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no secrets stored; add one with `sbx secret set SERVICE` or `sbx secret import`");
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let scope = r
                .sandbox
                .as_ref()
                .map_or_else(|| "global".into(), |s| format!("sandbox:{s}"));
            vec![r.service.clone(), scope, r.backend.clone()]
        })
        .collect();
    output::table(
        &mut std::io::stdout().lock(),
        &["SERVICE", "SCOPE", "BACKEND"],
        &table,
    )?;
    Ok(0)
}

fn rm(home: &Home, scope: &SecretScope, service: &str) -> Result<i32> {
    let key = key(scope, service)?;
    let (store, _) = open_store(home)?;
    if !store.delete(&key)? {
        bail!(
            "no secret {service} for {}; see `sbx secret ls`",
            describe(&key.scope)
        );
    }
    println!("removed {service} for {}", describe(&key.scope));
    reload_running(home);
    Ok(0)
}

fn import(home: &Home) -> Result<i32> {
    let catalog = custom_secrets::load_catalog(&home.providers_file())?;
    let found = sbx_secrets::import::from_env(&catalog, std::env::vars());
    if found.is_empty() {
        let vars: Vec<&str> = catalog
            .providers()
            .flat_map(|p| p.env.iter().map(String::as_str))
            .collect();
        println!("nothing to import: none of {} is set", vars.join(", "));
        return Ok(0);
    }
    let (store, _) = open_store(home)?;
    for item in found {
        store.set(&SecretKey::global(&item.service)?, &item.value)?;
        println!("imported {} from {}", item.service, item.from.join(", "));
    }
    reload_running(home);
    Ok(0)
}
