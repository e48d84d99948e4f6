//! A server behind a network that can be cut: [`NetnsCluster`], a private
//! cluster in a network namespace of its own, reached over a veth pair,
//! whose traffic [`partition`](NetnsCluster::partition) drops silently (no
//! reset, no ICMP: a peer that vanished) until [`heal`](NetnsCluster::heal).
//!
//! Needs root (`ip netns`, `iptables`); see [`Privileged`]. The DROP rules
//! live in the namespace's own tables, so the host's are never touched.

use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use cruddur_db::DatabaseUrl;

use crate::TempCluster;

/// Why a test that needs root did not get what it needs: not root, or
/// root without the capability (a container without `CAP_NET_ADMIN` or
/// `CAP_SYS_ADMIN`), or a missing tool.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a test that needs root does when it cannot have it: with `CI` set
/// (CI runs as root) it fails, saying why; without, it prints one line
/// saying that it did not run and why, and the caller returns.
pub struct Privileged;

impl Privileged {
    /// `Some(value)` when `made` succeeded; `None` (after printing why)
    /// when it could not for lack of root or a capability and `CI` is
    /// unset; a panic with the reason when `CI` is set.
    pub fn or_skip<T>(test: &str, made: Result<T, Unavailable>) -> Option<T> {
        match made {
            Ok(value) => Some(value),
            Err(why) if crate::settings().get(&crate::variables::CI).is_some() => {
                panic!("{test} needs root and could not run: {why} (CI is set, so this fails)")
            }
            Err(why) => {
                eprintln!("{test} did not run: {why} (it needs root; CI runs it)");
                None
            }
        }
    }

    /// `Ok` when this process runs as root.
    pub fn root() -> Result<(), Unavailable> {
        #[expect(unsafe_code, reason = "geteuid(2) through libc")]
        // SAFETY: geteuid takes no argument and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if euid == 0 {
            Ok(())
        } else {
            Err(Unavailable(format!("running as uid {euid}, not root")))
        }
    }
}

/// Names begin with this, then the owning process id: `cdb-PID-N` for a
/// namespace, `cdbPIDhN` for its host-side interface (at most 15 bytes,
/// the kernel's limit).
const PREFIX: &str = "cdb";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace joined to the host by a veth pair on a private
/// /30: the host end has [`host_addr`](Self::host_addr), the namespace end
/// [`addr`](Self::addr). Deleted (with both interfaces) when dropped.
pub struct Netns {
    name: String,
    host_if: String,
    ns_if: String,
    host_addr: Ipv4Addr,
    addr: Ipv4Addr,
}

impl Netns {
    /// Creates one with a name no other test uses (this process's id and
    /// a counter) on a random /30 in 10.200.0.0–10.249.255.255 that no
    /// interface of the host uses. Namespaces left by processes that are
    /// gone are deleted first. `Err` only when namespaces cannot be made
    /// here at all; any later failure panics.
    pub fn create() -> Result<Self, Unavailable> {
        Privileged::root()?;
        remove_abandoned();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 10_000;
        let name = format!("{PREFIX}-{pid}-{n}");
        let host_if = format!("{PREFIX}{pid}h{n}");
        let ns_if = format!("{PREFIX}{pid}n{n}");
        let added = Command::new("ip").args(["netns", "add", &name]).output();
        match added {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(Unavailable(format!(
                    "`ip netns add` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Err(e) => return Err(Unavailable(format!("cannot run `ip`: {e}"))),
        }
        let (host_addr, addr) = free_subnet();
        // From here on `Drop` cleans up whatever was made.
        let net = Self {
            name,
            host_if,
            ns_if,
            host_addr,
            addr,
        };
        ip(&[
            "link",
            "add",
            &net.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &net.ns_if,
        ]);
        ip(&["link", "set", &net.ns_if, "netns", &net.name]);
        ip(&[
            "addr",
            "add",
            &format!("{host_addr}/30"),
            "dev",
            &net.host_if,
        ]);
        ip(&["link", "set", &net.host_if, "up"]);
        net.ip_inside(&["addr", "add", &format!("{addr}/30"), "dev", &net.ns_if]);
        net.ip_inside(&["link", "set", &net.ns_if, "up"]);
        net.ip_inside(&["link", "set", "lo", "up"]);
        net.iptables_inside(&["--version"]).map_err(Unavailable)?;
        Ok(net)
    }

    /// The namespace's address, where its server listens.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The host's address on the pair, from which clients connect.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops every packet in and out of the namespace's interface, without
    /// a reset or an ICMP error: established connections go silent and new
    /// ones get no answer. Idempotent.
    pub fn partition(&self) {
        for rule in self.rules() {
            let mut check = vec!["-C"];
            check.extend_from_slice(&rule);
            if self.iptables_inside(&check).is_err() {
                let mut add = vec!["-A"];
                add.extend_from_slice(&rule);
                self.iptables_inside(&add)
                    .unwrap_or_else(|e| panic!("partitioning {}: {e}", self.name));
            }
        }
    }

    /// Removes the rules [`partition`](Self::partition) added. Idempotent.
    pub fn heal(&self) {
        for rule in self.rules() {
            let mut delete = vec!["-D"];
            delete.extend_from_slice(&rule);
            while self.iptables_inside(&delete).is_ok() {}
        }
    }

    fn rules(&self) -> [[&str; 6]; 2] {
        [
            ["INPUT", "-i", &self.ns_if, "-j", "DROP", "-w"],
            ["OUTPUT", "-o", &self.ns_if, "-j", "DROP", "-w"],
        ]
    }

    /// Runs `f` on a thread that has joined the namespace, so that every
    /// process it starts (a server) lives in there; the caller's thread
    /// stays where it is.
    pub fn run_inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file =
                    std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
                #[expect(unsafe_code, reason = "setns(2) through libc")]
                // SAFETY: setns on a file descriptor we own, for this
                // thread only; it touches no memory of ours.
                let joined = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(
                    joined,
                    0,
                    "joining {path}: {}",
                    std::io::Error::last_os_error()
                );
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn ip_inside(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    fn iptables_inside(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "iptables"])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run iptables: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "iptables {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The namespace goes away asynchronously once deleted; deleting the
        // host end first removes the pair at once.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        if let Ok(out) = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
            && !out.status.success()
        {
            eprintln!(
                "could not delete the network namespace {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
}

/// Runs `ip ARGS`, panicking with its error output when it fails.
fn ip(args: &[&str]) {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    crate::run(cmd, &format!("ip {}", args.join(" ")));
}

/// A random /30 in 10.200.0.0/13-ish space that no host interface has an
/// address in: (host end, namespace end).
fn free_subnet() -> (Ipv4Addr, Ipv4Addr) {
    let taken = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for _ in 0..64 {
        let bytes = *uuid::Uuid::new_v4().as_bytes();
        let (a, b, c) = (200 + bytes[0] % 50, bytes[1], bytes[2] & 0xfc);
        let prefix = format!(" 10.{a}.{b}.{}/", c + 1);
        let peer = format!(" 10.{a}.{b}.{}/", c + 2);
        if !taken.contains(&prefix) && !taken.contains(&peer) {
            return (
                Ipv4Addr::new(10, a, b, c + 1),
                Ipv4Addr::new(10, a, b, c + 2),
            );
        }
    }
    panic!("no free /30 found in 10.200.0.0-10.249.255.255");
}

/// Deletes the namespaces (and their host interfaces) of processes that
/// are gone: a test killed before its `Drop` ran. Best effort.
fn remove_abandoned() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let mut parts = name.split('-');
        let (Some(PREFIX), Some(pid), Some(n), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if cruddur_db_local::process_alive(pid) {
            continue;
        }
        eprintln!("removing the abandoned network namespace {name}");
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{PREFIX}{pid}h{n}")])
            .output();
        let _ = Command::new("ip").args(["netns", "del", name]).output();
    }
}

/// A private cluster ([`TempCluster`]) whose server runs in a [`Netns`]
/// and listens there on [`Netns::addr`] only: clients on the host reach
/// it over the veth pair, so [`partition`](Self::partition) cuts them off.
/// Its unix socket is a file, which works across namespaces: the
/// [`socket_url_for`](Self::socket_url_for) connection the test keeps for
/// checking and setting up is never partitioned.
///
/// Dropping it stops the server and deletes the cluster, then the
/// namespace.
pub struct NetnsCluster {
    // Declared first: the server stops before its network goes.
    cluster: TempCluster,
    net: Netns,
}

impl NetnsCluster {
    /// Creates the namespace and starts the cluster in it. `Err` when
    /// namespaces cannot be made here ([`Privileged::or_skip`] decides);
    /// any later failure panics.
    pub fn start() -> Result<Self, Unavailable> {
        let net = Netns::create()?;
        let addr = net.addr();
        let host = net.host_addr();
        // `postgresql.auto.conf` is read after `postgresql.conf` and the
        // port file it includes, so its address wins over 127.0.0.1.
        let auto_conf = format!("listen_addresses = '{addr}'\n");
        let hba = format!(
            "local all all trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n\
             host all all {host}/32 scram-sha-256\n"
        );
        let cluster = net.run_inside(|| {
            TempCluster::builder()
                .file("postgresql.auto.conf", auto_conf)
                .file("pg_hba.conf", hba)
                .start()
                .expect("start a private cluster in the network namespace")
        });
        Ok(Self { cluster, net })
    }

    /// The cluster.
    pub fn cluster(&self) -> &TempCluster {
        &self.cluster
    }

    /// The namespace.
    pub fn net(&self) -> &Netns {
        &self.net
    }

    /// `database` over TCP through the veth pair (with the password): what
    /// a partition cuts.
    pub fn url_for(&self, database: &str) -> DatabaseUrl {
        self.cluster
            .tcp_url_for(database)
            .expect("the cluster's TCP URL")
            .with_param("host", &self.net.addr().to_string())
    }

    /// `database` over the unix socket: never partitioned.
    pub fn socket_url_for(&self, database: &str) -> DatabaseUrl {
        self.cluster
            .socket_url_for(database)
            .expect("the cluster's socket URL")
    }

    /// Whether every established connection from the host to the server
    /// has had all it sent acknowledged (`ss`: a Send-Q of 0). A test of a
    /// statement in flight waits for it before [`partition`](Self::partition):
    /// a query sent a moment before may still wait for the server's
    /// delayed ACK, and `tcp_user_timeout` would end that connection,
    /// hiding what a connection that waits in `recv` does.
    pub fn all_sent_acknowledged(&self) -> bool {
        let out = Command::new("ss")
            .args(["-H", "-t", "-n", "dst"])
            .arg(self.net.addr().to_string())
            .output()
            .expect("run ss");
        String::from_utf8_lossy(&out.stdout).lines().all(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.first() != Some(&"ESTAB") || fields.get(2) == Some(&"0")
        })
    }

    /// See [`Netns::partition`].
    pub fn partition(&self) {
        self.net.partition();
    }

    /// See [`Netns::heal`].
    pub fn heal(&self) {
        self.net.heal();
    }
}
