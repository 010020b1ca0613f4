fn main() -> std::process::ExitCode {
    oct::alias("oct-newproject", "new-project")
}
