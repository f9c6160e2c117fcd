fn main() -> std::process::ExitCode {
    jupyter_room::cli::main()
}
