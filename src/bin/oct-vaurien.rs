fn main() -> std::process::ExitCode {
    oct::alias("oct-vaurien", "proxy")
}
