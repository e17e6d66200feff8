//! `Cni` with Debian's real plugins (bridge, host-local, portmap) on the real kernel (root).
//! Each test has its own bridge `crtstn<N>`, subnet 10.247.N.0/24 and IPAM directory.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::{NetnsDir, in_netns, mounted};
use crisp_network::NetworkConfig;
use crisp_network::cni::{Cni, PodNetworkRequest, PortMapping, Protocol};
use crisp_network::netns;

const CONTAINER_PORT: u16 = 8080;

/// A test's network; on drop (also after a failure): DEL of its pod, its namespaces removed,
/// its bridge deleted, its directories unmounted and removed.
struct Lab {
    n: u8,
    dir: tempfile::TempDir,
    netns_dir: NetnsDir,
    id: String,
}

impl Lab {
    /// With `portmap` after bridge in the chain, or bridge alone.
    fn new(n: u8, portmap: bool) -> Lab {
        let lab = Lab {
            n,
            dir: tempfile::tempdir().unwrap(),
            netns_dir: NetnsDir::new(),
            id: format!("{n:02}{}", "ab".repeat(31)),
        };
        fs::create_dir(lab.path("conf")).unwrap();
        let list = format!(
            r#"{{"cniVersion": "1.0.0", "name": "crtstn{n}", "plugins": [
                {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
                  "ipam": {{"type": "host-local", "dataDir": "{ipam}", "ranges": [[{{"subnet": "10.247.{n}.0/24"}}]],
                           "routes": [{{"dst": "10.247.{n}.0/24"}}]}}}}{portmap}
            ]}}"#,
            bridge = lab.bridge(),
            ipam = lab.path("ipam").display(),
            portmap = if portmap { r#", {"type": "portmap", "capabilities": {"portMappings": true}}"# } else { "" },
        );
        fs::write(lab.path("conf/10-test.conflist"), list).unwrap();
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bridge(&self) -> String {
        format!("crtstn{}", self.n)
    }

    fn cni(&self) -> Cni {
        let config = NetworkConfig {
            conf_dir: self.path("conf"),
            plugin_dirs: vec!["/usr/lib/cni".into()],
            default_network: None,
            ..Default::default()
        };
        Cni::new(config, self.path("cache"))
    }

    fn request(&self, netns: &Path, host_port: u16) -> PodNetworkRequest {
        PodNetworkRequest {
            container_id: self.id.clone(),
            netns: netns.to_owned(),
            pod_name: "web".into(),
            pod_namespace: "default".into(),
            pod_uid: "6b0e8b1c-0000-4000-8000-000000000001".into(),
            port_mappings: vec![PortMapping {
                host_port,
                container_port: CONTAINER_PORT,
                protocol: Protocol::Tcp,
                host_ip: None,
            }],
            bandwidth: None,
            dns: None,
        }
    }

    /// The host-side interfaces on the test's bridge.
    fn bridge_ports(&self) -> Vec<String> {
        let dir = format!("/sys/class/net/{}/brif", self.bridge());
        let mut ports: Vec<String> = fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        ports.sort();
        ports
    }

    /// The addresses host-local holds for the network.
    fn reservations(&self) -> Vec<String> {
        let dir = self.path(&format!("ipam/crtstn{}", self.n));
        fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|name| name.parse::<IpAddr>().is_ok())
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let cni = self.cni();
        let id = self.id.clone();
        // DEL is async and a test's runtime may be unwinding: a runtime of its own, on a thread.
        let del = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(cni.del(&id))
        });
        if let Ok(Err(e)) = del.join() {
            eprintln!("clean-up DEL: {e}");
        }
        for entry in fs::read_dir(self.netns_dir.path()).into_iter().flatten().flatten() {
            let _ = netns::remove(&entry.path());
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).output();
    }
}

/// A TCP server inside a namespace that greets whoever connects; stopped and joined on drop.
struct Greeter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Greeter {
    fn start(netns: &Path) -> Greeter {
        let stop = Arc::new(AtomicBool::new(false));
        let (bound, ready) = mpsc::channel();
        let stopped = stop.clone();
        let thread = in_netns(netns, move || {
            let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, CONTAINER_PORT)).unwrap();
            listener.set_nonblocking(true).unwrap();
            bound.send(()).unwrap();
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        let _ = stream.write_all(format!("hello {}", peer.ip()).as_bytes());
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        ready.recv_timeout(Duration::from_secs(5)).unwrap();
        Greeter { stop, thread: Some(thread) }
    }
}

impl Drop for Greeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the greeter says to a connection to `addr`.
fn greeting(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn a_pod_is_reachable_on_its_ip_and_host_port_until_del() {
    let lab = Lab::new(1, true);
    let cni = lab.cni();
    let netns = netns::create(lab.netns_dir.path(), "pod").unwrap();
    let greeter = Greeter::start(&netns);
    let host_port = free_port();

    let attachment = cni.add(&lab.request(&netns, host_port)).await.unwrap();
    assert_eq!((attachment.network.as_str(), attachment.interface.as_str()), ("crtstn1", "eth0"));
    let [IpAddr::V4(ip)] = attachment.ips[..] else { panic!("{:?}", attachment.ips) };
    assert_eq!(ip.octets()[..3], [10, 247, 1]);
    assert_eq!(lab.reservations(), [ip.to_string()]);
    assert_eq!(lab.bridge_ports().len(), 1);
    assert_eq!(cni.cached().unwrap(), [lab.id.as_str()]);

    // From the host to the pod's IP, over the bridge: the host's address on it is the gateway.
    assert_eq!(greeting((ip, CONTAINER_PORT).into()).unwrap(), "hello 10.247.1.1");
    // To the host port on 127.0.0.1, forwarded by portmap.
    let forwarded = greeting((Ipv4Addr::LOCALHOST, host_port).into());
    assert!(forwarded.as_deref().is_ok_and(|g| g.starts_with("hello ")), "{forwarded:?}");

    // DEL from a new instance: it has only the cache to go by.
    lab.cni().del(&lab.id).await.unwrap();
    assert!(greeting((Ipv4Addr::LOCALHOST, host_port).into()).is_err());
    assert_eq!(lab.bridge_ports(), Vec::<String>::new());
    assert_eq!(lab.reservations(), Vec::<String>::new());
    assert_eq!(cni.cached().unwrap(), Vec::<String>::new());
    drop(greeter);
    netns::remove(&netns).unwrap();
    assert!(!mounted(&netns) && !netns.exists());
}

#[tokio::test]
async fn check_passes_until_the_namespace_is_gone_and_del_still_releases_the_address() {
    let lab = Lab::new(2, false);
    let cni = lab.cni();
    let netns = netns::create(lab.netns_dir.path(), "pod").unwrap();
    let attachment = cni.add(&lab.request(&netns, free_port())).await.unwrap();
    assert_eq!(lab.reservations(), [attachment.ips[0].to_string()]);
    // Debian's portmap (1.1.1) fails CHECK for IPv4-only pods (containernetworking/plugins#819):
    // this network has none.
    cni.check(&lab.id).await.unwrap();
    netns::remove(&netns).unwrap();
    let err = cni.check(&lab.id).await.unwrap_err();
    assert!(err.to_string().contains("bridge CHECK failed"), "{err}");
    cni.del(&lab.id).await.unwrap();
    assert_eq!(lab.reservations(), Vec::<String>::new());
    assert_eq!(cni.cached().unwrap(), Vec::<String>::new());
    // The kernel tears a namespace (and the veth peer in it) down after its last user is gone.
    for _ in 0..200 {
        if lab.bridge_ports().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("veths left on {}: {:?}", lab.bridge(), lab.bridge_ports());
}
