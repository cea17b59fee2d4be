use std::path::PathBuf;
use std::process::ExitCode;

use dispatch_api::configuration::Settings;
use dispatch_api::startup::Application;
use dispatch_api::telemetry;

/// `dispatch-api` serves; `dispatch-api healthcheck` probes a running instance's `/readyz`;
/// `dispatch-api openapi` prints the OpenAPI document.
/// Settings come from `$DISPATCH_CONFIG_DIR` (default `config`), environment `$DISPATCH_ENV`
/// (default `local`), and `DISPATCH_<SECTION>__<KEY>` variables.
#[actix_web::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        print!("{}", dispatch_api::routes::openapi::document());
        return ExitCode::SUCCESS;
    }
    let config_dir = std::env::var_os("DISPATCH_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "config".into());
    let environment = std::env::var("DISPATCH_ENV")
        .unwrap_or_else(|_| dispatch_api::configuration::DEFAULT_ENVIRONMENT.into());
    let settings = match Settings::load(&config_dir, &environment) {
        Ok(settings) => settings,
        Err(error) => return fail(&error),
    };
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return match dispatch_api::routes::ops::probe_readiness(&settings.server) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("dispatch-api: not ready: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let _log_guard = telemetry::init(&settings.telemetry);
    let application = match Application::build(settings).await {
        Ok(application) => application,
        Err(error) => return fail(&error),
    };
    match application.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn fail(error: &dyn std::error::Error) -> ExitCode {
    let message = format!(
        "dispatch-api: cannot start: {}",
        telemetry::error_chain(error)
    );
    eprintln!("{message}");
    tracing::error!("{message}");
    ExitCode::from(2)
}
