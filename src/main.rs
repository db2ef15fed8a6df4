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
