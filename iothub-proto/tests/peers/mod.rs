//! Starts a real mosquitto broker on a free loopback port for one test.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A mosquitto process bound to 127.0.0.1 on a free port; killed on drop.
pub(crate) struct Mosquitto {
    child: Child,
    pub(crate) addr: SocketAddr,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mosquitto_binary() -> Option<PathBuf> {
    let candidates = [
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/usr/bin/mosquitto",
    ];
    if let Some(p) = candidates.iter().map(PathBuf::from).find(|p| p.exists()) {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("mosquitto"))
            .find(|p| p.exists())
    })
}

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral loopback port");
    l.local_addr().expect("local addr").port()
}

impl Mosquitto {
    /// Starts mosquitto, or returns `None` (after saying why) when it is not
    /// installed and `IOTHUB_REQUIRE_PEERS` is not set.
    pub(crate) fn start() -> Option<Mosquitto> {
        let Some(bin) = mosquitto_binary() else {
            if std::env::var_os("IOTHUB_REQUIRE_PEERS").is_some() {
                panic!(
                    "mosquitto is required (IOTHUB_REQUIRE_PEERS is set) but not installed: run scripts/install-peers.sh"
                );
            }
            eprintln!("SKIPPED: mosquitto is not installed (scripts/install-peers.sh installs it)");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "iothub-mosquitto-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let dir = TempDir(dir);
        // The port can be taken between `free_port` and mosquitto's bind: retry.
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.0.join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
                ),
            )
            .expect("write mosquitto.conf");
            let mut child = Command::new(&bin)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn mosquitto");
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Some(Mosquitto {
                        child,
                        addr,
                        _dir: dir,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            let mut log = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut log);
            }
            eprintln!("mosquitto did not come up on port {port}; its log:\n{log}");
        }
        panic!("could not start mosquitto on a free loopback port");
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
