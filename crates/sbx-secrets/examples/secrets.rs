//! A small CLI over the secret store, like `sbx secrets` will be.
//!
//! ```text
//! cargo run -p sbx-secrets --example secrets -- --dir /tmp/sbx-secrets backend
//! echo -n sk-ant-... | cargo run -p sbx-secrets --example secrets -- --dir /tmp/sbx-secrets set anthropic
//! echo -n ghp_... | cargo run -p sbx-secrets --example secrets -- --dir /tmp/sbx-secrets set github --sandbox dev
//! cargo run -p sbx-secrets --example secrets -- --dir /tmp/sbx-secrets list
//! cargo run -p sbx-secrets --example secrets -- --dir /tmp/sbx-secrets env dev
//! cargo run -p sbx-secrets --example secrets -- --dir /tmp/sbx-secrets import
//! ```
//!
//! `--file` forces the encrypted file backend; `SBX_SECRETS_PASSPHRASE` selects passphrase mode.
//! Values are read from stdin so they never appear in `ps` output or shell history.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use sbx_secrets::{
    Catalog, OpenOptions, Preference, SandboxCredentials, Scope, SecretKey, SecretValue,
};
use secrecy::SecretString;

const USAGE: &str = "usage: secrets [--dir DIR] [--file] COMMAND
commands:
  backend                         which store is used and why
  set SERVICE [--sandbox NAME]    store the value read from stdin
  get SERVICE [--sandbox NAME]    print a value (to stdout only)
  delete SERVICE [--sandbox NAME]
  list                            scope/service of every stored secret (no values)
  import                          store every recognised variable of this environment
  env SANDBOX                     the placeholder environment a sandbox would get
  providers                       the provider catalog";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secrets: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut args: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let dir = take_value(&mut args, "--dir")?
        .map(PathBuf::from)
        .or_else(sbx_secrets::store::default_dir)
        .ok_or("no --dir and no HOME")?;
    let sandbox = take_value(&mut args, "--sandbox")?;
    let preference = if take_flag(&mut args, "--file") {
        Preference::File
    } else {
        Preference::Auto
    };
    let passphrase = std::env::var("SBX_SECRETS_PASSPHRASE")
        .ok()
        .map(SecretString::from);
    let options = OpenOptions {
        preference,
        passphrase,
        ..Default::default()
    };
    let (store, report) = sbx_secrets::open(&dir, &options)?;
    let key = |service: &str| match &sandbox {
        Some(name) => SecretKey::sandbox(name, service),
        None => SecretKey::global(service),
    };
    let catalog = Catalog::builtin();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["backend"] => println!("{report}"),
        ["set", service] => {
            let mut value = String::new();
            std::io::stdin().read_to_string(&mut value)?;
            let value = SecretValue::new(value.trim_end_matches(['\n', '\r']).to_owned());
            store.set(&key(service)?, &value)?;
        }
        ["get", service] => match store.get(&key(service)?)? {
            Some(v) => println!("{}", v.expose()),
            None => return Err(format!("no secret {}", key(service)?).into()),
        },
        ["delete", service] => {
            if !store.delete(&key(service)?)? {
                return Err(format!("no secret {}", key(service)?).into());
            }
        }
        ["list"] => {
            for k in store.list()? {
                let kind = if k.scope == Scope::Global {
                    "global"
                } else {
                    "sandbox"
                };
                println!("{k}\t{kind}");
            }
        }
        ["import"] => {
            for found in sbx_secrets::import::from_env(&catalog, std::env::vars()) {
                store.set(&SecretKey::global(&found.service)?, &found.value)?;
                println!("imported {} from {}", found.service, found.from.join(", "));
            }
        }
        ["env", name] => {
            let creds = SandboxCredentials::new(name, &catalog, store.effective_for(name)?)?;
            for (var, placeholder) in creds.placeholders_env() {
                println!("{var}={placeholder}");
            }
        }
        ["providers"] => {
            for p in catalog.providers() {
                let hosts: Vec<String> = p.hosts.iter().map(ToString::to_string).collect();
                println!("{}\t{}\t{}", p.name, p.env.join(","), hosts.join(","));
            }
        }
        _ => return Err(USAGE.into()),
    }
    Ok(())
}

fn take_flag(args: &mut Vec<String>, flag: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != flag);
    args.len() != before
}

fn take_value(args: &mut Vec<String>, flag: &str) -> Result<Option<String>, String> {
    let Some(i) = args.iter().position(|a| a == flag) else {
        return Ok(None);
    };
    if i + 1 >= args.len() {
        return Err(format!("{flag} needs a value"));
    }
    let value = args.remove(i + 1);
    args.remove(i);
    Ok(Some(value))
}
