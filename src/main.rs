//! The `ssed` binary: parse flags, start the server, print where it listens, wait for a signal.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use ssed::config::Config;
use ssed::server::{Notice, Server};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "token") {
        return ssed::auth::run_token_command(std::env::args_os().skip(1));
    }
    let config = Config::from_args();
    ssed::logging::init(config.log_format);
    let fatal = |message: String| ssed::logging::fatal(config.log_format, &message);

    let server = match Server::start(&config) {
        Ok(server) => server,
        Err(e) => {
            fatal(e.to_string());
            return ExitCode::FAILURE;
        }
    };
    let stopper = server.stopper();
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            fatal(format!("cannot install signal handlers: {e}"));
            return ExitCode::FAILURE;
        }
    };
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal == SIGHUP {
                log::info!("received SIGHUP; reloading key and certificate files");
                let _ = stopper.send(Notice::Reload);
            } else {
                // A second one cuts --shutdown-delay short.
                log::info!("received signal {signal}; shutting down");
                let _ = stopper.send(Notice::Stop);
            }
        }
    });

    // Scripts and tests read the real port from this line.
    println!("listening on {}", server.local_addr);
    let _ = std::io::stdout().flush();
    log::info!("listening on {}", server.local_addr);

    match server.wait() {
        Ok(()) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
