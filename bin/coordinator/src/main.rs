//! `custody-coordinator`: parses the command line and calls the library.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use custody_coordinator::cli::{
    AdminCommand, AuditCommand, Cli, Command, PolicyCommand, VaultCommand, VelocityCommand,
};
use custody_coordinator::{accounts, audit, build_app, config, SystemClock, Transport};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {e:#}");
    ExitCode::from(2)
}

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
}

fn init_logs(format: config::LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}

fn read_secret_line(
    path: Option<&std::path::Path>,
    prompt: &str,
) -> Result<zeroize::Zeroizing<String>> {
    let text = match path {
        Some(p) => zeroize::Zeroizing::new(
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => zeroize::Zeroizing::new(
            rpassword::prompt_password(prompt).context("reading the password from the terminal")?,
        ),
    };
    Ok(zeroize::Zeroizing::new(
        text.lines().next().unwrap_or_default().to_owned(),
    ))
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let mut config = config::Config::load(cli.config.as_deref())?;
    let transport = match &cli.command {
        Command::Serve(a) if a.insecure_plain_http => {
            custody_coordinator::check_plain_http(config.bind)?;
            if config.public_url.is_none() {
                config.public_url = Some(format!("http://{}", config.bind));
            }
            Transport::InsecurePlainHttp
        }
        _ => Transport::Tls,
    };
    init_logs(config.log_format);
    if let Command::Dev(cmd) = cli.command {
        return match custody_coordinator::dev::run(config, cmd).await {
            Ok(lines) => {
                for l in &lines {
                    out(l);
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e)
                if e.downcast_ref::<custody_coordinator::dev::DevError>()
                    .is_some() =>
            {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{e:#}");
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(e),
        };
    }
    let clock = Arc::new(match &cli.command {
        Command::Serve(a) => match a.dev_clock_offset_secs {
            Some(_) if config.network == config::NetworkName::Bitcoin => {
                anyhow::bail!("--dev-clock-offset-secs is refused on mainnet")
            }
            Some(off) => {
                tracing::warn!(offset_secs = off, "DEVELOPMENT clock offset in use");
                SystemClock::with_offset(off)
            }
            None => SystemClock::new(),
        },
        _ => SystemClock::new(),
    });
    let app = build_app(config, clock).await?;
    match cli.command {
        Command::Serve(_) => {
            custody_coordinator::run(app.clone(), transport).await?;
        }
        Command::Migrate => out("database is up to date"),
        Command::Init => {
            let card = app.identity.card();
            out(&format!("coordinator identity: {}", card.fingerprint()));
            out(&format!(
                "identity card: {}",
                app.config
                    .data_dir
                    .join(custody_coordinator::CARD_FILE)
                    .display()
            ));
        }
        Command::Admin(AdminCommand::Create {
            email,
            role,
            password_file,
            approver_card,
        }) => {
            let role = accounts::Role::parse(&role).with_context(|| {
                format!("unknown role {role}; use admin, approver, operator, service or user")
            })?;
            let password = read_secret_line(password_file.as_deref(), "password: ")?;
            let card = match approver_card {
                Some(p) => Some(hex::encode(
                    std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
                )),
                None => None,
            };
            let id = accounts::create(&app, &email, &password, role, card.as_deref(), "cli")
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            out(&format!("created {} account {id}", role.as_str()));
        }
        Command::Freeze(a) => {
            custody_coordinator::risk::set_freeze(
                &app,
                "cli",
                a.account.as_deref(),
                true,
                &a.reason,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            out("frozen");
        }
        Command::Unfreeze(a) => {
            custody_coordinator::risk::set_freeze(
                &app,
                "cli",
                a.account.as_deref(),
                false,
                &a.reason,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            out("unfrozen");
        }
        Command::Audit(AuditCommand::Verify { checkpoint }) => {
            let result = match checkpoint {
                Some(p) => {
                    let cp: audit::Checkpoint = serde_json::from_slice(&std::fs::read(&p)?)
                        .with_context(|| format!("{} is not a checkpoint", p.display()))?;
                    let card = custody_threshold::IdentityCard::decode(&hex::decode(
                        &cp.coordinator_card,
                    )?)?;
                    if card.signing_key() != app.identity.card().signing_key() {
                        anyhow::bail!(
                            "the checkpoint was signed by another coordinator ({})",
                            card.fingerprint()
                        );
                    }
                    audit::verify_checkpoint(&app.db, &cp, &card)
                        .await
                        .and(audit::verify(&app.db).await)
                }
                None => audit::verify(&app.db).await,
            };
            match result {
                Ok(v) => out(&format!(
                    "audit log intact: {} entries, head {}",
                    v.entries, v.head_hash
                )),
                Err(audit::VerifyError::Break(b)) => {
                    out(&format!("audit log BROKEN: {b}"));
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Audit(AuditCommand::Export { out: path }) => {
            let n = match path {
                Some(p) => {
                    let mut f = std::io::BufWriter::new(std::fs::File::create(&p)?);
                    let n = audit::export(&app.db, &mut f).await?;
                    f.flush()?;
                    n
                }
                None => {
                    let mut o = std::io::stdout().lock();
                    audit::export(&app.db, &mut o).await?
                }
            };
            tracing::info!(entries = n, "audit log exported");
        }
        Command::Audit(AuditCommand::Checkpoint { out: path }) => {
            let cp = audit::checkpoint(&app.db, &app.identity, app.now()).await?;
            std::fs::write(&path, serde_json::to_vec_pretty(&cp)?)?;
            out(&format!(
                "checkpoint at entry {} written to {}",
                cp.seq,
                path.display()
            ));
        }
        Command::Velocity(VelocityCommand::Check) => {
            let mut tx = app.db.begin().await?;
            let drift = custody_coordinator::velocity::check(&mut tx).await?;
            tx.rollback().await?;
            if drift.is_empty() {
                out("velocity totals match the withdrawals");
            } else {
                for m in &drift {
                    out(&format!(
                        "velocity totals DIFFER for {} in the hour from {}: kept {} withdrawals totalling {}, the withdrawals are {} totalling {}",
                        m.asset,
                        custody_coordinator::clock::rfc3339(m.bucket),
                        m.kept.0,
                        m.kept.1,
                        m.actual.0,
                        m.actual.1
                    ));
                }
                return Ok(ExitCode::from(1));
            }
        }
        Command::Velocity(VelocityCommand::Rebuild) => {
            let drift =
                custody_coordinator::velocity::rebuild_audited(&app.db, "cli", app.now()).await?;
            out(&format!(
                "velocity totals recomputed from the withdrawals; {} hours had differed",
                drift.len()
            ));
        }
        Command::Policy(PolicyCommand::Install { file, trust_first }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            match custody_coordinator::policy::install(&app, "cli", &bytes, trust_first).await {
                Ok(i) => out(&format!(
                    "installed policy version {} ({}), effective from {}",
                    i.version, i.hash, i.effective_from
                )),
                Err(e) if e.status.is_client_error() => {
                    out(&format!("refused: {}", e.message));
                    return Ok(ExitCode::from(1));
                }
                Err(e) => anyhow::bail!("{}", e.message),
            }
        }
        Command::Dev(_) => anyhow::bail!("dev commands run before the application is built"),
        Command::Vault(cmd) => {
            let code = vault_command(&app, cmd).await?;
            app.db.close().await;
            return Ok(code);
        }
        Command::Policy(PolicyCommand::List) => {
            for p in custody_coordinator::policy::list(&app)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?
            {
                out(&format!(
                    "version {} {} effective from {}",
                    p.version, p.hash, p.effective_from
                ));
            }
        }
    }
    app.db.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn vault_command(app: &custody_coordinator::App, cmd: VaultCommand) -> Result<ExitCode> {
    use custody_coordinator::vault;
    match cmd {
        VaultCommand::Status => {
            let keys = app.vault.keys();
            out(&format!(
                "key file {}: key set {}, keks {} (current {})",
                app.vault.path().display(),
                keys.key_set_id(),
                keys.kek_ids()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                keys.current_kek_id()
            ));
            let counts = vault::status(&app.db).await?;
            for column in vault::SEALED_COLUMNS {
                let name = format!("{}.{}", column.table, column.blob_column);
                let mine: Vec<_> = counts.iter().filter(|c| c.column == name).collect();
                if mine.is_empty() {
                    out(&format!("{name}: no rows"));
                }
                for c in mine {
                    out(&format!("{}: kek {}: {} rows", c.column, c.kek_id, c.rows));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        VaultCommand::Rotate { batch } => {
            let r = vault::rotate(&app.db, &app.vault, batch).await?;
            let current = r.current.map_or_else(|| "?".to_owned(), |k| k.to_string());
            match r.added {
                Some(k) => out(&format!("added kek {k}; it is current")),
                None => out(&format!(
                    "resumed: rows were still under older keks; kek {current} stays current"
                )),
            }
            out(&format!(
                "re-wrapped {} rows under kek {current} ({} changed meanwhile and were re-read)",
                r.rewrapped, r.reread
            ));
            for f in &r.failed {
                out(&format!(
                    "NOT re-wrapped: {} {}: {}",
                    f.table, f.id, f.reason
                ));
            }
            for c in &r.remaining {
                out(&format!(
                    "still under kek {}: {} rows of {}",
                    c.kek_id, c.rows, c.column
                ));
            }
            if r.failed.is_empty() && r.remaining.is_empty() {
                out(&format!(
                    "every sealed row is under kek {current}; once every coordinator process runs with the new key file, retire the old keks with `vault retire --kek N`"
                ));
                Ok(ExitCode::SUCCESS)
            } else {
                out("some rows are not under the current kek; fix the rows listed above (restore from backup) or run `vault rotate` again");
                Ok(ExitCode::from(1))
            }
        }
        VaultCommand::Retire { kek } => {
            match vault::retire(&app.db, &app.vault, custody_vault::KekId(kek)).await? {
                vault::RetireOutcome::Retired => {
                    out(&format!("kek {kek} removed from the key file"));
                    Ok(ExitCode::SUCCESS)
                }
                vault::RetireOutcome::Refused(why) => {
                    out(&format!("refused: {why}"));
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
