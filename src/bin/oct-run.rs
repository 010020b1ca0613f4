fn main() -> std::process::ExitCode {
    oct::alias("oct-run", "run")
}
