fn main() -> std::process::ExitCode {
    jupyter_agent::cli::main()
}
