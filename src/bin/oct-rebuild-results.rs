fn main() -> std::process::ExitCode {
    oct::alias("oct-rebuild-results", "rebuild-results")
}
