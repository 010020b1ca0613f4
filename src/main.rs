fn main() -> std::process::ExitCode {
    oct::main()
}
