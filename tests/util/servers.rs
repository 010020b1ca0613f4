//! Real servers for the tests (Debian's packages), on free ports of 127.0.0.1, killed when
//! dropped: redis-server, memcached and MariaDB.

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

/// A real MariaDB server (Debian's `mariadb-server`) on 127.0.0.1, with a fresh data directory
/// and no grant tables (any user, no password), killed when dropped.
pub struct MariaDb {
    pub port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        for tool in ["mariadbd", "mariadb-install-db", "mariadb"] {
            let found = std::process::Command::new("sh")
                .args([
                    "-c",
                    &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
                ])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "{tool} is needed (apt-get install mariadb-server; .ci/run installs it)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let install = std::process::Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .unwrap();
        assert!(
            install.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&install.stderr)
        );
        let [port] = free_ports::<1>();
        let mariadbd = if std::path::Path::new("/usr/sbin/mariadbd").exists() {
            "/usr/sbin/mariadbd"
        } else {
            "mariadbd"
        };
        let mut cmd = std::process::Command::new(mariadbd);
        cmd.args(["--no-defaults", "--user=root", "--skip-grant-tables"])
            .args(["--bind-address=127.0.0.1", "--innodb-buffer-pool-size=16M"])
            .arg(format!("--port={port}"))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()));
        let db = MariaDb {
            port,
            _proc: Proc::spawn(cmd),
            _dir: dir,
        };
        wait_until(Duration::from_secs(30), "mariadbd to answer", || {
            db.query(port, "SELECT 1").ok().filter(|r| r == "1")
        });
        db
    }

    /// `sql` run by the real `mariadb` client over TCP on `port` (the server's, or a proxy's):
    /// its output (one value a line), or its error.
    pub fn query(&self, port: u16, sql: &str) -> Result<String, String> {
        let out = std::process::Command::new("mariadb")
            .args([
                "--protocol=TCP",
                "-h",
                "127.0.0.1",
                "-u",
                "root",
                "-N",
                "-B",
            ])
            .args(["--connect-timeout=10", "-P", &port.to_string(), "-e", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}
