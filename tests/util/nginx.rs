//! A real nginx (Debian's package) for the tests: started on a free port of 127.0.0.1 with a
//! config of the test's own, in a temp prefix, stopped when dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{free_ports, wait_until, Proc};

pub struct Nginx {
    pub port: u16,
    /// What `root` in the config serves: the test puts its pages here.
    pub root: PathBuf,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx with `locations` (nginx config text) in its one server; `root` is the prefix's
    /// `html/` folder, filled by `pages` (relative path, content) before it starts.
    pub fn start(locations: &str, pages: &[(&str, &str)]) -> Nginx {
        assert!(
            std::process::Command::new("nginx")
                .arg("-v")
                .output()
                .is_ok_and(|o| o.status.success()),
            "nginx is needed (apt-get install nginx; .ci/run installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("html");
        for (rel, text) in pages {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let [port] = free_ports::<1>();
        let d = dir.path().display();
        let conf = format!(
            "master_process off;\ndaemon off;\nerror_log {d}/logs/error.log warn;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             default_type text/html;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {root};\n{locations}\n  }}\n}}\n",
            root = root.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = std::process::Command::new("nginx");
        cmd.arg("-p").arg(dir.path()).arg("-c").arg(&conf_path);
        let proc = Proc::spawn(cmd);
        wait_until(
            Duration::from_secs(20),
            "nginx to accept connections",
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
        Nginx {
            port,
            root,
            _proc: proc,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}
