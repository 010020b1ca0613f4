//! Real servers for the tests (Debian's packages), on free ports of 127.0.0.1, killed when
//! dropped: redis-server and memcached.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use super::{free_ports, wait_until, Proc};

/// A real redis-server on 127.0.0.1, killed when dropped.
pub struct Redis {
    pub port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let [port] = free_ports::<1>();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path());
        assert!(
            std::process::Command::new("redis-server")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "redis-server is needed (apt-get install redis-server; .ci/run installs it)"
        );
        let proc = Proc::spawn(cmd);
        let redis = Redis {
            port,
            _proc: proc,
            _dir: dir,
        };
        wait_until(
            Duration::from_secs(20),
            "redis-server to answer PING",
            || redis.ask("PING").ok().filter(|r| r == "+PONG"),
        );
        redis
    }

    /// One inline command; the first line of its reply.
    pub fn ask(&self, command: &str) -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("{command}\r\n").as_bytes())?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line)?;
        if line.starts_with('$') {
            line.clear();
            r.read_line(&mut line)?;
        }
        Ok(line.trim_end().to_owned())
    }
}

/// A real memcached on 127.0.0.1, killed when dropped.
pub struct Memcached {
    pub port: u16,
    _proc: Proc,
}

impl Memcached {
    pub fn start() -> Memcached {
        assert!(
            std::process::Command::new("memcached")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "memcached is needed (apt-get install memcached; .ci/run installs it)"
        );
        let [port] = free_ports::<1>();
        let mut cmd = std::process::Command::new("memcached");
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "16",
        ]);
        // memcached refuses to run as root without a user to switch to.
        cmd.args(["-u", "root"]);
        let m = Memcached {
            port,
            _proc: Proc::spawn(cmd),
        };
        wait_until(
            Duration::from_secs(20),
            "memcached to answer version",
            || {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
                s.write_all(b"version\r\n").ok()?;
                let mut line = String::new();
                BufReader::new(s).read_line(&mut line).ok()?;
                line.starts_with("VERSION").then_some(())
            },
        );
        m
    }
}
