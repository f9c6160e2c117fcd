fn main() -> std::process::ExitCode {
    jupyter_bootstrap::cli::main()
}
