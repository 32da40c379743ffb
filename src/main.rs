//! The `slipway` binary; everything is in the library.

fn main() -> std::process::ExitCode {
    slipway::cli::main()
}
