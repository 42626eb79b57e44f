use std::process::ExitCode;

use clap::Parser;
use opora_web::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    opora_web::telemetry::init();
    match cli::run(Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "opora stopped");
            eprintln!("Ошибка: {error:#}");
            ExitCode::FAILURE
        }
    }
}
