fn main() -> std::process::ExitCode {
    oct::alias("oct-pack-turrets", "pack-turrets")
}
