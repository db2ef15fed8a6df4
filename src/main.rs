use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(proctor::redact::log_filter(
            EnvFilter::try_from_env("PROCTOR_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        ))
        .with_writer(std::io::stderr)
        .init();
    // One crypto provider for every TLS config in the process (rustls panics when it must guess).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = proctor::cli::Cli::parse();
    // A printing command ends quietly when its reader goes away (`proctor sessions list |
    // head`), as coreutils do, instead of panicking in `println!`. The long-running server
    // keeps Rust's default (SIGPIPE ignored, EPIPE returned) so a closed pipe or socket of
    // one peer never ends the process; so does `verify`, which exits 1 then (FORMAT.md: the
    // full result was not delivered).
    if !matches!(
        cli.command,
        proctor::cli::Command::Serve { .. }
            | proctor::cli::Command::Dev(_)
            | proctor::cli::Command::Verify { .. }
    ) {
        // SAFETY: called before any thread is spawned; restores the default disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proctor: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = match runtime.block_on(proctor::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // Errors can quote agent text (a session id, a name): shown inert.
            eprintln!("proctor: {}", proctor_gate::inert::text(&format!("{e:#}")));
            2
        }
    };
    std::process::exit(code);
}
