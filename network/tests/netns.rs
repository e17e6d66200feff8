//! Network namespaces on the real kernel (root).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use common::{NetnsDir, in_netns, mounted};
use crisp_network::netns::{self, NetnsError};

#[test]
fn create_makes_a_namespace_with_lo_up_and_remove_undoes_it() {
    let dir = NetnsDir::new();
    let path = netns::create(dir.path(), "pod-a").unwrap();
    assert_eq!(path, dir.path().join("pod-a"));
    assert!(mounted(&path));
    assert_ne!(inode(&path), inode("/proc/self/ns/net"));

    // lo is up: 127.0.0.1 answers inside, and that is the namespace's own loopback.
    let inside = in_netns(&path, || {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut client = TcpStream::connect(listener.local_addr()?)?;
        listener.accept()?.0.write_all(b"up")?;
        let mut got = String::new();
        client.read_to_string(&mut got)?;
        Ok::<_, std::io::Error>((got, inode("/proc/thread-self/ns/net")))
    });
    let (got, ns) = inside.join().unwrap().unwrap();
    assert_eq!((got.as_str(), ns), ("up", inode(&path)));

    assert!(matches!(netns::create(dir.path(), "pod-a"), Err(NetnsError::Exists(p)) if p == path));
    netns::remove(&path).unwrap();
    assert!(!path.exists());
    assert!(!mounted(&path));
    netns::remove(&path).unwrap();
}

#[test]
fn names_must_name_a_file_in_the_dir() {
    let dir = NetnsDir::new();
    for bad in ["", ".", "..", "a/b", "a\0b"] {
        assert!(matches!(netns::create(dir.path(), bad), Err(NetnsError::InvalidName(_))), "{bad:?}");
    }
}

#[test]
fn remove_takes_a_mount_point_that_was_never_mounted() {
    let dir = NetnsDir::new();
    netns::remove(&netns::create(dir.path(), "first").unwrap()).unwrap();
    let leftover = dir.path().join("leftover");
    fs::write(&leftover, "").unwrap();
    netns::remove(&leftover).unwrap();
    assert!(!leftover.exists());
}

/// The inode of a namespace file, to tell namespaces apart.
fn inode(path: impl AsRef<std::path::Path>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().ino()
}
