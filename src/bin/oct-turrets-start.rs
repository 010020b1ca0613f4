fn main() -> std::process::ExitCode {
    oct::alias("oct-turrets-start", "turret")
}
