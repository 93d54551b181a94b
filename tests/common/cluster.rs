//! The `Cluster` type: initdb, configuration, start and stop through
//! `pg_ctl`, connections, and the clean-up when it is dropped.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{as_postgres, bindir, eventually, running_as_root, text, Client, NoTls};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// How `pg_ctl stop` shuts the server down.
#[derive(Debug, Clone, Copy)]
pub enum StopMode {
    Smart,
    Fast,
    Immediate,
}

impl StopMode {
    fn arg(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub struct Cluster {
    pub name: String,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    bin: PathBuf,
    running: bool,
}

impl Cluster {
    /// Creates (initdb) a cluster with `settings` appended to its
    /// postgresql.conf. Nothing is started yet.
    pub fn new(name: &str, settings: &[(&str, &str)]) -> Cluster {
        let mut cluster = Cluster::empty(name);
        let out = as_postgres(&cluster.bin.join("initdb"))
            .arg("-D")
            .arg(&cluster.data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        cluster.configure(settings);
        cluster
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`), with its own
    /// port and socket and `settings` on top of the primary's.
    pub fn standby_of(primary: &Cluster, name: &str, settings: &[(&str, &str)]) -> Cluster {
        let mut cluster = Cluster::empty(name);
        let out = as_postgres(&cluster.bin.join("pg_basebackup"))
            .arg("-D")
            .arg(&cluster.data)
            .args([
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .arg(format!("--port={}", primary.port))
            .output()
            .expect("pg_basebackup runs");
        assert!(out.status.success(), "pg_basebackup failed: {}", text(&out));
        cluster.configure(settings);
        cluster
    }

    /// A handle on a cluster another `Cluster` owns, for connecting from
    /// other threads; dropping it leaves the server alone.
    pub fn detached(port: u16) -> Cluster {
        Cluster {
            name: format!("detached:{port}"),
            dir: PathBuf::new(),
            data: PathBuf::new(),
            port,
            bin: PathBuf::new(),
            running: false,
        }
    }

    /// A fresh directory and port, owned by postgres; nothing in it yet.
    fn empty(name: &str) -> Cluster {
        let base = PathBuf::from(
            std::env::var("LIGHTDB_BGW_CLUSTER_BASE")
                .unwrap_or_else(|_| "/tmp/ldbgw-clusters".into()),
        );
        fs::create_dir_all(&base).expect("cluster base directory");
        chown_postgres(&base);
        let dir = base.join(format!(
            "{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("cluster directory");
        chown_postgres(&dir);
        let data = dir.join("data");
        Cluster {
            name: name.to_string(),
            dir,
            data,
            port: free_port(),
            bin: bindir(),
            running: false,
        }
    }

    /// Appends this cluster's port, socket and `settings` to postgresql.conf.
    fn configure(&mut self, settings: &[(&str, &str)]) {
        let mut conf = format!(
            "\n# lightdb_bgw cluster test\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nlog_line_prefix = '%m [%p] %b '\n\
             max_connections = 40\nshared_buffers = '16MB'\n",
            self.port,
            self.dir.display()
        );
        for (key, value) in settings {
            conf.push_str(&format!("{key} = '{}'\n", value.replace('\'', "''")));
        }
        self.append_conf(&conf);
    }

    /// Promotes a standby and waits until it runs as a primary.
    pub fn promote(&self) {
        let out = self.pg_ctl(&["-w", "-t", "60", "promote"]);
        assert!(out.status.success(), "pg_ctl promote: {}", text(&out));
    }

    /// Appends lines to postgresql.conf.
    pub fn append_conf(&mut self, lines: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .expect("postgresql.conf");
        f.write_all(lines.as_bytes())
            .expect("write postgresql.conf");
    }

    /// Like `new` with `shared_preload_libraries = 'lightdb_bgw'`.
    pub fn preloaded(name: &str, settings: &[(&str, &str)]) -> Cluster {
        let mut all = vec![("shared_preload_libraries", "lightdb_bgw")];
        all.extend_from_slice(settings);
        Cluster::new(name, &all)
    }

    /// A preloaded cluster, started, with the extension created in
    /// `postgres`, and a client connected there.
    pub fn with_extension(name: &str, settings: &[(&str, &str)]) -> (Cluster, Client) {
        let mut cluster = Cluster::preloaded(name, settings);
        cluster.start();
        let mut client = cluster.connect("postgres");
        client
            .batch_execute("CREATE EXTENSION lightdb_bgw")
            .expect("CREATE EXTENSION lightdb_bgw");
        (cluster, client)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .output()
            .expect("pg_ctl runs")
    }

    /// Starts the server and waits until it accepts connections. A
    /// restart whose port a client connection happens to hold for the
    /// moment (as its own, ephemeral, port) tries again a few times.
    pub fn try_start(&mut self) -> Result<(), String> {
        let log = self.log_path();
        for attempt in 1.. {
            let before = self.log().len();
            let out = self.pg_ctl(&["-l", log.to_str().unwrap(), "-w", "-t", "60", "start"]);
            if out.status.success() {
                self.running = true;
                return Ok(());
            }
            let port_taken = self
                .log()
                .get(before..)
                .is_some_and(|new| new.contains("Address already in use"));
            if !port_taken || attempt == 10 {
                return Err(format!(
                    "{}\n--- server log ---\n{}",
                    text(&out),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        unreachable!("the loop returns")
    }

    pub fn start(&mut self) {
        if let Err(e) = self.try_start() {
            panic!("cluster {} did not start: {e}", self.name);
        }
    }

    /// Stops the server with `mode` and waits; returns how long it took.
    pub fn stop(&mut self, mode: StopMode) -> Duration {
        let began = Instant::now();
        let out = self.pg_ctl(&["-m", mode.arg(), "-w", "-t", "60", "stop"]);
        let took = began.elapsed();
        assert!(
            out.status.success(),
            "pg_ctl stop -m {}: {}",
            mode.arg(),
            text(&out)
        );
        self.running = false;
        took
    }

    pub fn restart(&mut self) {
        self.stop(StopMode::Fast);
        self.start();
    }

    /// `pg_ctl reload`: SIGHUP to the postmaster, which passes it on.
    pub fn reload(&self) {
        let out = self.pg_ctl(&["reload"]);
        assert!(out.status.success(), "pg_ctl reload: {}", text(&out));
    }

    pub fn is_running(&self) -> bool {
        self.pg_ctl(&["status"]).status.success()
    }

    /// The postmaster's pid, from postmaster.pid.
    pub fn postmaster_pid(&self) -> i32 {
        let pidfile = fs::read_to_string(self.data.join("postmaster.pid")).expect("postmaster.pid");
        pidfile
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("pid line")
    }

    /// A client connection to `dbname` as `postgres`.
    pub fn connect(&self, dbname: &str) -> Client {
        self.connect_as(dbname, "postgres")
    }

    pub fn connect_as(&self, dbname: &str, user: &str) -> Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .dbname(dbname)
            .application_name("lightdb_bgw cluster test")
            .connect_timeout(Duration::from_secs(10))
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("connect to {} as {user}: {e}", self.name))
    }

    /// After a crash: waits until the server has gone through its
    /// reinitialisation (a connection made before the postmaster notices
    /// the crash still sees the old shared memory, and is then cut), then
    /// connects to `postgres` as soon as connections are accepted again.
    pub fn reconnect_after_crash(&self, deadline: Duration) -> Client {
        eventually("server reinitialised", deadline, || {
            self.log()
                .contains("all server processes terminated; reinitializing")
                .then_some(())
        });
        eventually("server accepts connections again", deadline, || {
            postgres::Config::new()
                .host("127.0.0.1")
                .port(self.port)
                .user("postgres")
                .dbname("postgres")
                .connect_timeout(Duration::from_secs(2))
                .connect(NoTls)
                .ok()
        })
    }

    /// A client connection to `dbname` as `postgres` that keeps the
    /// messages of the NOTICEs the server sends it.
    pub fn connect_with_notices(&self, dbname: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
        self.connect_as_with_notices(dbname, "postgres")
    }

    /// [`Cluster::connect_with_notices`] as `user`.
    pub fn connect_as_with_notices(
        &self,
        dbname: &str,
        user: &str,
    ) -> (Client, Arc<Mutex<Vec<String>>>) {
        let notices = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&notices);
        let client = postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .dbname(dbname)
            .connect_timeout(Duration::from_secs(10))
            .notice_callback(move |notice| {
                sink.lock().unwrap().push(notice.message().to_string());
            })
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.name));
        (client, notices)
    }

    /// Sends `signal` to process `pid`.
    pub fn kill(pid: i32, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.data.as_os_str().is_empty() {
            return; // detached
        }
        if self.running || self.data.join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["-m", "immediate", "-w", "-t", "30", "stop"]);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- server log of cluster {} ({}) ---\n{}",
                self.name,
                self.dir.display(),
                tail(&self.log(), 80)
            );
        }
        if std::env::var_os("LIGHTDB_BGW_KEEP_CLUSTERS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn chown_postgres(path: &Path) {
    if running_as_root() {
        let out = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .output()
            .expect("chown runs");
        assert!(
            out.status.success(),
            "chown {}: {}",
            path.display(),
            text(&out)
        );
    }
}
