//! The `opora` command line.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use opora_projections::{Runner, RunnerConfig};
use opora_store::EventLog;
use tokio::sync::watch;

use crate::app::{self, AppConfig, Application, DEFAULT_MAX_LAG};
use crate::db::{self, Database};
use crate::embedded::{Durability, EmbeddedPostgres};
use crate::seed;

#[derive(Parser, Debug)]
#[command(
    name = "opora",
    version,
    about = "Опора: case management for family support and child safety"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the web server (the default). Uses DATABASE_URL, or starts the embedded
    /// PostgreSQL in OPORA_DATA_DIR (default ./.opora).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "OPORA_BIND", default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
        /// Load the demo data (one user per role, with the public demo password).
        #[arg(long)]
        demo: bool,
        /// The address users reach Opora at; `https://…` turns on Secure cookies and HSTS
        /// (TLS is terminated by a reverse proxy in front of Opora).
        #[arg(long, env = "OPORA_PUBLIC_URL")]
        public_url: Option<String>,
        /// Where reminders go: `log` (logged, not sent), `sendmail[:PATH]` (the machine's
        /// MTA) or `dir:PATH` (one .eml file per letter).
        #[arg(long, env = "OPORA_MAIL", default_value = "log", value_parser = crate::mail::MailTransport::parse)]
        mail: crate::mail::MailTransport,
        /// The sender of reminders.
        #[arg(
            long,
            env = "OPORA_MAIL_FROM",
            default_value = "Опора <opora@localhost>"
        )]
        mail_from: String,
        /// Where trusted adults' notifications go: `log` (logged only) or
        /// `webhook:URL` (the app's notification gateway; signed with --webhook-secret).
        #[arg(long, env = "OPORA_NOTIFY", default_value = "log", value_parser = crate::notify::Transport::parse)]
        notify: crate::notify::Transport,
        /// The shared secret for the webhook's HMAC-SHA256 signature.
        #[arg(
            long,
            env = "OPORA_WEBHOOK_SECRET",
            default_value = "",
            hide_env_values = true
        )]
        webhook_secret: String,
        /// Seconds without an operator's acknowledgement before a signal is escalated.
        #[arg(long, env = "OPORA_ESCALATE_AFTER", default_value_t = crate::app::DEFAULT_ESCALATE_AFTER_SECONDS, value_parser = clap::value_parser!(u32).range(5..=3600))]
        escalate_after: u32,
        /// Seconds any one database statement of the server may run before PostgreSQL
        /// cancels it (its transaction rolls back; the request answers 503).
        #[arg(long, env = "OPORA_STATEMENT_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3600))]
        statement_timeout: u32,
    },
    /// Ingestion clients of «Заступник» (the app's backends) and their keys.
    Integration {
        #[command(subcommand)]
        command: IntegrationCommand,
    },
    /// Simulated load through the public HTTP interfaces.
    Simulate {
        #[command(subcommand)]
        command: SimulateCommand,
    },
    /// Administration from the command line.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Erase personal data for good (crypto-shredding).
    Erase {
        #[command(subcommand)]
        command: EraseCommand,
    },
    /// The master key that wraps the personal-data keys.
    MasterKey {
        #[command(subcommand)]
        command: MasterKeyCommand,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Load the reference data (regions, municipalities); appends nothing if already loaded.
    Seed,
    /// Recompute the hash chain of the whole log; report the first tampered or missing event.
    /// Exit code 0: intact; 1: a problem was found.
    Verify,
    /// Write a deterministic synthetic history (historical recording times) through the
    /// event store: `--scale tiny|pilot|national --seed N [--today YYYY-MM-DD]`. Refuses if
    /// the seed's data is already in the log.
    Generate(crate::generate::GenerateArgs),
    /// Projection checkpoints, lag and rebuilds.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Start a throwaway PostgreSQL cluster, run CMD with DATABASE_URL pointing at it, then
    /// remove the cluster. Used by scripts/test.
    WithTempDb {
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an administrator (the first one, or another). The password is read from the
    /// first line of standard input.
    Create {
        /// Login: 3–64 latin letters, digits, dots, dashes, underscores.
        #[arg(long)]
        login: String,
        /// Name shown in the interface.
        #[arg(long)]
        name: String,
        /// Contact (phone, e-mail).
        #[arg(long)]
        contact: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SimulateCommand {
    /// «Заступник» signals with realistic lifecycles, raised open-loop at --rate per
    /// second for --duration seconds against a running Opora (--url).
    Signals(crate::simulate::SimulateArgs),
}

#[derive(Subcommand, Debug)]
pub enum IntegrationCommand {
    /// Register a client; prints its key once (only its hash is kept).
    Create {
        /// The client's name (e.g. «Заступник, боевой сервер»).
        #[arg(long)]
        name: String,
        /// Calls per second the client may make.
        #[arg(long, default_value_t = opora_domain::signal::DEFAULT_RATE_PER_SECOND)]
        rate: u32,
    },
    /// A new key for a client; the old one keeps working for 24 hours.
    Rotate { id: uuid::Uuid },
    /// The registered clients.
    List,
}

#[derive(Subcommand, Debug)]
pub enum EraseCommand {
    /// Destroy a person's key: their personal data becomes unreadable everywhere.
    Person {
        /// The person's id (shown on their page and in exports).
        id: uuid::Uuid,
        /// The grounds for erasure (recorded in the log; do not write personal data here).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum MasterKeyCommand {
    /// Print a new random master key (base64) for OPORA_MASTER_KEY or a key file.
    Generate,
}

#[derive(Subcommand, Debug)]
pub enum ProjectionsCommand {
    /// Position, events behind and lag in seconds of every projection.
    Status,
    /// Rebuild a projection from the whole log into fresh tables, then swap them in.
    Rebuild { name: String },
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command.unwrap_or(Command::Serve {
        bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
        demo: false,
        public_url: None,
        mail: crate::mail::MailTransport::Log,
        mail_from: crate::mail::Mailer::default().from,
        notify: crate::notify::Transport::Log,
        webhook_secret: String::new(),
        escalate_after: crate::app::DEFAULT_ESCALATE_AFTER_SECONDS,
        statement_timeout: 30,
    }) {
        Command::Serve {
            bind,
            demo,
            public_url,
            mail,
            mail_from,
            notify,
            webhook_secret,
            escalate_after,
            statement_timeout,
        } => {
            let mailer = crate::mail::Mailer {
                transport: mail,
                from: mail_from,
            };
            let notify = match notify {
                crate::notify::Transport::Webhook { url, .. } => {
                    if webhook_secret.len() < 16 {
                        anyhow::bail!(
                            "--notify webhook:…: задайте общий секрет подписи OPORA_WEBHOOK_SECRET (не короче 16 символов)"
                        );
                    }
                    crate::notify::Transport::Webhook {
                        url,
                        secret: webhook_secret,
                    }
                }
                other => other,
            };
            let timeout = Duration::from_secs(statement_timeout.into());
            serve(
                bind,
                demo,
                public_url,
                mailer,
                notify,
                escalate_after,
                timeout,
            )
            .await
        }
        Command::Simulate {
            command: SimulateCommand::Signals(args),
        } => {
            let report = crate::simulate::signals(args).await?;
            println!("{report}");
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Integration { command } => {
            with_log(|log| async move { integration(&log, command).await }).await
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    login,
                    name,
                    contact,
                },
        } => with_log(|log| async move { admin_create(&log, login, name, contact).await }).await,
        Command::Erase {
            command: EraseCommand::Person { id, reason },
        } => with_log(|log| async move { erase_person(&log, id, reason).await }).await,
        Command::MasterKey {
            command: MasterKeyCommand::Generate,
        } => {
            println!("{}", opora_store::MasterKey::generate()?.to_base64());
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => with_log(|_| async { Ok(ExitCode::SUCCESS) }).await,
        Command::Seed => {
            with_log(|log| async move {
                let report = seed::load_reference(&log).await?;
                opora_store::notify(log.pool()).await?;
                println!(
                    "Справочник загружен: новых команд {}, уже выполненных {}.",
                    report.applied, report.already
                );
                Ok(ExitCode::SUCCESS)
            })
            .await
        }
        Command::Verify => with_log(|log| async move { verify(&log).await }).await,
        Command::Generate(args) if args.dry_run => crate::generate::run_cli(None, args).await,
        Command::Generate(args) => {
            with_log(|log| async move { crate::generate::run_cli(Some(&log), args).await }).await
        }
        Command::Projections { command } => {
            with_log(|log| async move { projections(&log, command).await }).await
        }
        Command::WithTempDb { command } => with_temp_db(command).await,
    }
}

/// Opens the database (embedded or DATABASE_URL), migrates, runs `f`, stops what it started.
async fn with_log<F, Fut>(f: F) -> Result<ExitCode>
where
    F: FnOnce(EventLog) -> Fut,
    Fut: std::future::Future<Output = Result<ExitCode>>,
{
    let mut database = Database::open().await?;
    let pool = database.pool(8).await?;
    db::migrate(&pool).await?;
    let result = f(EventLog::new(pool.clone())).await;
    pool.close().await;
    database.stop()?;
    result
}

async fn serve(
    bind: SocketAddr,
    demo: bool,
    public_url: Option<String>,
    mail: crate::mail::Mailer,
    notify: crate::notify::Transport,
    escalate_after: u32,
    statement_timeout: Duration,
) -> Result<ExitCode> {
    if mail.from.parse::<lettre::message::Mailbox>().is_err() {
        anyhow::bail!("--mail-from «{}» is not a mail address", mail.from);
    }
    // The port first: held from the start, so nothing started below (our own connections
    // to the embedded cluster take local ports too) can take it; a busy port fails at once.
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| {
        format!("не удалось занять адрес {bind}: он занят или недоступен; укажите другой, например --bind 127.0.0.1:0 (свободный порт)")
    })?;
    let address = listener.local_addr()?;
    let mut database = Database::open().await?;
    {
        // Migrations may take long over a big log: no statement timeout for them.
        let admin = database.pool(1).await?;
        db::migrate(&admin).await?;
        admin.close().await;
    }
    let pool = database.serving_pool(32, statement_timeout).await?;
    let vault = db::open_vault(&pool).await?;
    let log = EventLog::new(pool.clone());
    let report = seed::load_reference(&log)
        .await
        .context("loading reference data")?;
    tracing::info!(
        applied = report.applied,
        already = report.already,
        "reference data loaded"
    );
    let notifier = log.spawn_notifier(Duration::from_millis(50));
    let runner = Runner::new(log.clone(), RunnerConfig::default());
    for projection in opora_projections::all() {
        runner
            .catch_up(projection.as_ref())
            .await
            .with_context(|| format!("projection {} could not catch up", projection.name()))?;
    }
    if demo {
        crate::demo::load(&log, &vault)
            .await
            .context("loading demo data")?;
        crate::demo::pilot::load(&log, &vault, crate::i18n::today_in("Europe/Moscow"))
            .await
            .context("loading the pilot regions' demo cases")?;
        crate::demo::weekly::load(&log, time::OffsetDateTime::now_utc())
            .await
            .context("loading the weekly reports' demo")?;
        crate::demo::signals::load(&log, time::OffsetDateTime::now_utc())
            .await
            .context("loading the signals' demo")?;
        for projection in opora_projections::all() {
            runner.catch_up(projection.as_ref()).await?;
        }
    }
    let (stop, stopped) = watch::channel(false);
    let mut tasks = runner.spawn(opora_projections::all(), stopped.clone());
    tasks.push(crate::notify::spawn_worker(
        log.clone(),
        crate::notify::WorkerConfig::new(notify),
        stopped.clone(),
    ));
    tasks.push(crate::pages::signals::spawn_escalation(
        log.clone(),
        escalate_after,
        stopped,
    ));
    let cleanup = crate::auth::spawn_session_cleanup(pool.clone());

    let https = public_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"));
    let router = Application::build(
        log.clone(),
        vault,
        AppConfig {
            max_lag_seconds: DEFAULT_MAX_LAG.as_secs_f64(),
            https,
            mail,
            escalate_after_seconds: escalate_after,
            // `serve` runs the projections' runners beside the server.
            settle_writes: Some(crate::app::SETTLE_WRITES),
            ..AppConfig::default()
        },
    );
    println!("Опора работает: http://{address}/");
    if demo {
        println!(
            "Демо-пользователи (пароль у всех: {}): {}",
            crate::demo::DEMO_PASSWORD,
            crate::demo::demo_users()?
                .iter()
                .map(|(login, _, _)| *login)
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("admin, curator16, curator22 и secretary16 при первом входе подключают второй фактор (QR-код).");
        println!(
            "Ключ демо-клиента «Заступника» для API приёма сигналов: {}",
            crate::demo::signals::DEMO_INGEST_KEY
        );
    }
    if let Some(pg) = &database.embedded {
        println!(
            "База данных: встроенный PostgreSQL в {}",
            pg.data_dir().display()
        );
    }
    println!("Остановить: Ctrl+C");
    app::serve(listener, router, shutdown_signal()).await?;

    tracing::info!("shutting down");
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    notifier.abort();
    cleanup.abort();
    pool.close().await;
    database.stop()?;
    Ok(ExitCode::SUCCESS)
}

async fn admin_create(
    log: &EventLog,
    login: String,
    name: String,
    contact: Option<String>,
) -> Result<ExitCode> {
    use opora_domain::access::{Grant, Login, Role, Scope, Text};
    let login = Login::parse(&login).map_err(|e| anyhow::anyhow!("{e}"))?;
    let name = Text::parse(&name).context("--name: укажите имя (до 300 символов)")?;
    let contact = contact.as_deref().and_then(Text::parse);
    eprintln!("Пароль (первая строка стандартного ввода):");
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let users = opora_store::CommandBus::new(log.clone(), ());
    let result = crate::pages::admin::create_user(
        &users,
        log.pool(),
        crate::pages::admin::NewUser {
            login: login.clone(),
            display_name: name,
            contact,
            grants: vec![Grant::new(Role::Administrator, Scope::Federal)?],
            password: &password,
        },
        &opora_store::CommandMeta::new("system:cli"),
    )
    .await;
    let tr = crate::i18n::Tr::default();
    match result {
        Ok(opora_store::Executed::Applied) => {
            opora_store::notify(log.pool()).await?;
            println!(
                "Администратор {} создан. При первом входе он подключит второй фактор (QR-код).",
                login.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => {
            println!(
                "Пользователь {} уже был создан; пароль не изменён.",
                login.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(crate::pages::admin::CreateUserError::Password(key)) => {
            eprintln!("{}", tr.t(key));
            Ok(ExitCode::from(2))
        }
        Err(crate::pages::admin::CreateUserError::Rejected(error)) => {
            eprintln!("{error}");
            Ok(ExitCode::from(2))
        }
        Err(crate::pages::admin::CreateUserError::Unexpected(error)) => Err(error),
    }
}

async fn erase_person(log: &EventLog, id: uuid::Uuid, reason: String) -> Result<ExitCode> {
    let reason = opora_domain::access::Text::parse(&reason)
        .context("--reason: укажите основание удаления (до 300 символов)")?;
    let vault = db::open_vault(log.pool()).await?;
    let exists = log.stream_length("Person", &id.to_string()).await? > 0;
    if !exists {
        eprintln!("Человек {id} не найден в журнале.");
        return Ok(ExitCode::from(2));
    }
    let persons = opora_store::CommandBus::new(log.clone(), ());
    let erased =
        crate::pages::persons::erase_person(&vault, &persons, id, "system:cli", &reason).await?;
    opora_store::notify(log.pool()).await?;
    if erased {
        println!("Личные данные {id} удалены: ключ уничтожен, события и счётчики сохранены.");
    } else {
        println!("Личные данные {id} уже были удалены.");
    }
    Ok(ExitCode::SUCCESS)
}

async fn integration(log: &EventLog, command: IntegrationCommand) -> Result<ExitCode> {
    let runner = Runner::new(log.clone(), RunnerConfig::default());
    let projection = opora_projections::signals::SignalsProjection;
    match command {
        IntegrationCommand::Create { name, rate } => {
            let (id, key) = crate::ingest::register_client(log, &name, rate, "system:cli").await?;
            runner.catch_up(&projection).await?;
            opora_store::notify(log.pool()).await?;
            println!("Клиент {id} зарегистрирован. Ключ (показывается один раз, сохраните его):");
            println!("{key}");
            Ok(ExitCode::SUCCESS)
        }
        IntegrationCommand::Rotate { id } => {
            let key = crate::ingest::rotate_key(log, id, "system:cli").await?;
            runner.catch_up(&projection).await?;
            opora_store::notify(log.pool()).await?;
            println!("Новый ключ клиента {id} (старый действует ещё 24 часа):");
            println!("{key}");
            Ok(ExitCode::SUCCESS)
        }
        IntegrationCommand::List => {
            runner.catch_up(&projection).await?;
            let rows: Vec<(uuid::Uuid, String, i32, bool)> = sqlx::query_as(
                "SELECT id, name, rate_per_second, revoked FROM signals.client ORDER BY registered_at",
            )
            .fetch_all(log.pool())
            .await?;
            for (id, name, rate, revoked) in rows {
                println!(
                    "{id}  {rate:>6}/с  {}{name}",
                    if revoked { "[отключён] " } else { "" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return interrupt.await.unwrap_or(()),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or(());
}

async fn verify(log: &EventLog) -> Result<ExitCode> {
    let report = opora_store::verify::verify(log.pool()).await?;
    match &report.first_problem {
        None => {
            println!(
                "Журнал цел: событий — {}, потоков — {}; все хеш-цепочки совпадают.",
                report.events, report.streams
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(first) => {
            println!(
                "ЖУРНАЛ ПОВРЕЖДЁН: найдено проблем: {}. Первая по порядку журнала:",
                report.problems
            );
            println!("{first}");
            Ok(ExitCode::from(1))
        }
    }
}

async fn projections(log: &EventLog, command: ProjectionsCommand) -> Result<ExitCode> {
    match command {
        ProjectionsCommand::Status => {
            println!(
                "{:<20} {:>22} {:>12} {:>10} {:>10}",
                "projection", "position (tx:pos)", "applied", "behind", "lag, s"
            );
            for s in opora_projections::status(log.pool()).await? {
                println!(
                    "{:<20} {:>22} {:>12} {:>10} {:>10.3}",
                    s.name,
                    s.at.to_string(),
                    s.applied,
                    s.behind,
                    s.lag_seconds
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ProjectionsCommand::Rebuild { name } => {
            let Some(projection) = opora_projections::by_name(&name) else {
                let known: Vec<_> = opora_projections::all().iter().map(|p| p.name()).collect();
                eprintln!("Нет проекции «{name}». Есть: {}.", known.join(", "));
                return Ok(ExitCode::from(2));
            };
            let report = opora_projections::rebuild(
                log.pool(),
                projection.as_ref(),
                RunnerConfig::default().rebuild_batch_size,
            )
            .await?;
            println!(
                "Проекция {name} перестроена: событий — {}, время — {:.2} с ({:.0} соб./с).",
                report.events,
                report.seconds,
                report.events_per_second()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn with_temp_db(command: Vec<String>) -> Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!(
        "opora-test-pg-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    let started_dir = dir.clone();
    let mut pg = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&started_dir, Durability::Throwaway)
    })
    .await??;
    let url = pg.url("postgres");
    eprintln!("Временный PostgreSQL: {url}");
    let (program, args) = command.split_first().context("no command given")?;
    let status = tokio::process::Command::new(program)
        .args(args)
        .env("DATABASE_URL", &url)
        .status()
        .await
        .with_context(|| format!("cannot run {program}"));
    let stopped = pg.stop();
    let _ = std::fs::remove_dir_all(&dir);
    stopped?;
    let status = status?;
    Ok(ExitCode::from(
        status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1)),
    ))
}
