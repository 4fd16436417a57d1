//! The `starpillar` binary: parse the command line and hand over to the library.

fn main() -> std::process::ExitCode {
    match starpillar::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
