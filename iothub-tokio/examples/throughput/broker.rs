//! mosquitto on a free loopback port, plain or TLS, for the bench.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("cert");
        Pki {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

pub(crate) enum Broker {
    External(u16),
    Child {
        child: Child,
        port: u16,
        dir: PathBuf,
    },
}

impl Broker {
    pub(crate) fn start(pki: Option<&Pki>) -> Broker {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!("iothub-bench-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 1000000\n"
        );
        if let Some(pki) = pki {
            for (name, pem) in [
                ("ca.pem", &pki.ca_pem),
                ("cert.pem", &pki.cert_pem),
                ("key.pem", &pki.key_pem),
            ] {
                std::fs::write(dir.join(name), pem).expect("write pem");
            }
            conf.push_str(&format!(
                "cafile {0}/ca.pem\ncertfile {0}/cert.pem\nkeyfile {0}/key.pem\n",
                dir.display()
            ));
        }
        std::fs::write(dir.join("m.conf"), conf).expect("write conf");
        let bin = [
            "/usr/sbin/mosquitto",
            "/usr/local/sbin/mosquitto",
            "/usr/bin/mosquitto",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("mosquitto is not installed: run scripts/install-peers.sh");
        let child = Command::new(bin)
            .arg("-c")
            .arg(dir.join("m.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        for _ in 0..250 {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker::Child { child, port, dir }
    }

    pub(crate) fn port(&self) -> u16 {
        match self {
            Broker::External(p) | Broker::Child { port: p, .. } => *p,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Child { child, dir, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
