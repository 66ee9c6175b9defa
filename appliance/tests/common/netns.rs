//! Network namespaces for the end-to-end tests: created with `ip netns add`, deleted (with every
//! interface inside) when dropped, entered per thread with `setns` like aya's `NetNsGuard`.
//!
//! Everything a test builds lives inside namespaces it created; nothing here touches the root
//! namespace's interfaces, addresses or routes.

use std::{
    fs::File,
    path::Path,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use nix::sched::{CloneFlags, setns};

/// Prefix of every namespace the tests create: `<prefix>-<pid>-<n>-<role>`. Namespaces left by a
/// test process that no longer exists (killed before its guards ran) are removed on the next run.
const PREFIX: &str = "mzt";

/// Fails with a message naming the Debian package when a command the tests need is missing.
pub fn require_tools(tools: &[(&str, &str)]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<_> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(Into::into))
        .collect();
    for (tool, package) in tools {
        assert!(
            dirs.iter().any(|dir| dir.join(tool).is_file()),
            "`{tool}` is not installed: install the Debian package {package} \
             (scripts/setup-debian.sh does)"
        );
    }
}

/// Runs a command, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = try_run(program, args);
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn try_run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run `{program}`: {err}"))
}

/// A network namespace owned by the test: deleted, with its interfaces, when dropped.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `<prefix>-<pid>-<n>-<role>`.
    pub fn new(role: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        static CLEANED: std::sync::Once = std::sync::Once::new();
        CLEANED.call_once(remove_stale_namespaces);
        let name = format!(
            "{PREFIX}-{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        {
            // The first `ip netns add` on a machine sets up /run/netns as a shared mount: keep
            // parallel tests from racing on it.
            static CREATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _one_at_a_time = CREATE.lock().unwrap_or_else(|e| e.into_inner());
            run("ip", &["netns", "add", &name]);
        }
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        // IPv4 only: no IPv6 chatter (router solicitations, DAD) in the counters. /proc/sys/net
        // belongs to the calling thread's namespace; a kernel without IPv6 has nothing to turn off.
        {
            let _guard = ns.enter();
            for scope in ["all", "default"] {
                let path = format!("/proc/sys/net/ipv6/conf/{scope}/disable_ipv6");
                if Path::new(&path).exists() {
                    std::fs::write(&path, "1").unwrap_or_else(|err| panic!("write {path}: {err}"));
                }
            }
        }
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip netns exec <ns> <program> <args>`, panicking on failure.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip netns exec <ns> <program> <args>`, whatever its exit status.
    pub fn try_exec(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        try_run("ip", &all)
    }

    /// Moves the calling thread into this namespace until the guard drops.
    pub fn enter(&self) -> NetNsGuard {
        NetNsGuard::new(&self.name)
    }

    /// Runs `f` on a new thread inside this namespace (sockets it opens live there).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let name = self.name.clone();
        std::thread::spawn(move || {
            let _guard = NetNsGuard::new(&name);
            f()
        })
    }

    pub fn ifindex(&self, ifname: &str) -> u32 {
        let _guard = self.enter();
        nix::net::if_::if_nametoindex(ifname)
            .unwrap_or_else(|err| panic!("no interface {ifname} in namespace {}: {err}", self.name))
    }

    /// Lets XDP redirect into the veth whose peer is `ifname`: a veth drops frames redirected to
    /// it unless its receiving end runs XDP or GRO (DESIGN.md, pitfalls). Not enough for XDP_TX:
    /// see [`NetNs::attach_xdp_pass`].
    pub fn enable_gro(&self, ifname: &str) {
        self.exec("ethtool", &["-K", ifname, "gro", "on"]);
        self.expect_feature(ifname, "generic-receive-offload", "on");
    }

    /// Attaches (native) an XDP program that passes everything to `ifname`. A veth whose peer
    /// XDP_TXes must have one: veth flushes XDP_TX frames to the peer's queue but wakes the peer's
    /// NAPI only when the peer has an XDP program (drivers/net/veth.c, veth_xdp_flush), so with
    /// GRO alone they sit in the queue (checked on 6.18). Redirected frames are flushed either way.
    pub fn attach_xdp_pass(&self, ifname: &str) {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pin = Path::new(super::TEST_BPFFS).join(format!(
            "xdp-pass-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        super::ensure_test_bpffs();
        let prog = xdp_pass::load();
        xdp_pass::pin(&prog, &pin);
        let pin_str = pin.to_str().expect("UTF-8 pin path");
        let output = {
            let mut args = vec!["-n", &self.name, "link", "set", "dev", ifname];
            args.extend(["xdpdrv", "pinned", pin_str]);
            try_run("ip", &args)
        };
        // The interface holds the program now; the pin is not needed either way.
        let _ = std::fs::remove_file(&pin);
        assert!(
            output.status.success(),
            "attach an XDP_PASS program to {ifname} in {}: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Makes the stack finish L4 checksums before a frame leaves `ifname`: the egress XDP program
    /// on the peer forwards frames as they are (DESIGN.md, checksum offload).
    pub fn disable_tx_checksum(&self, ifname: &str) {
        self.exec("ethtool", &["-K", ifname, "tx", "off"]);
        self.expect_feature(ifname, "tx-checksumming", "off");
    }

    fn expect_feature(&self, ifname: &str, feature: &str, value: &str) {
        let features = self.exec("ethtool", &["-k", ifname]);
        let line = features
            .lines()
            .find(|l| l.starts_with(&format!("{feature}:")))
            .unwrap_or_else(|| panic!("ethtool -k {ifname} shows no {feature}:\n{features}"));
        assert!(
            line.split_whitespace().nth(1) == Some(value),
            "{feature} of {ifname} in {} should be {value}: {line}",
            self.name
        );
    }

    /// The namespace's UDP InCsumErrors: datagrams its stack dropped for a bad checksum.
    pub fn udp_checksum_errors(&self) -> u64 {
        let snmp = self.exec("cat", &["/proc/net/snmp"]);
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
            panic!("no Udp lines in /proc/net/snmp of {}", self.name);
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == "InCsumErrors")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or_else(|| panic!("no Udp InCsumErrors in /proc/net/snmp of {}", self.name))
    }

    /// An interface statistic from /sys/class/net (as seen inside the namespace).
    pub fn link_stat(&self, ifname: &str, stat: &str) -> u64 {
        let path = format!("/sys/class/net/{ifname}/statistics/{stat}");
        let text = self.exec("cat", &[&path]);
        text.trim()
            .parse()
            .unwrap_or_else(|err| panic!("{path} in {}: {text:?}: {err}", self.name))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys its interfaces, and with them both ends of every veth
        // with one end here (and the XDP programs attached to them).
        let output = try_run("ip", &["netns", "del", &self.name]);
        if !output.status.success() {
            eprintln!(
                "cannot delete namespace {}: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// Creates a veth pair, `a_name` in `a` and `b_name` in `b`, both up; a MAC given is set.
pub fn veth_pair(
    a: &NetNs,
    a_name: &str,
    a_mac: Option<&str>,
    b: &NetNs,
    b_name: &str,
    b_mac: Option<&str>,
) {
    let mut args = vec!["link", "add", a_name];
    if let Some(mac) = a_mac {
        args.extend(["address", mac]);
    }
    args.extend(["type", "veth", "peer", "name", b_name]);
    if let Some(mac) = b_mac {
        args.extend(["address", mac]);
    }
    args.extend(["netns", &b.name]);
    a.ip(&args);
    a.ip(&["link", "set", a_name, "up"]);
    b.ip(&["link", "set", b_name, "up"]);
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// The calling thread's network namespace is `name`'s until this drops.
pub struct NetNsGuard {
    previous: File,
}

impl NetNsGuard {
    pub fn new(name: &str) -> Self {
        let previous = File::open("/proc/thread-self/ns/net")
            .unwrap_or_else(|err| panic!("open this thread's network namespace: {err}"));
        let path = Path::new("/run/netns").join(name);
        let target =
            File::open(&path).unwrap_or_else(|err| panic!("open {}: {err}", path.display()));
        setns(&target, CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|err| panic!("enter network namespace {name}: {err}"));
        Self { previous }
    }
}

impl Drop for NetNsGuard {
    fn drop(&mut self) {
        if let Err(err) = setns(&self.previous, CloneFlags::CLONE_NEWNET) {
            // Going on in the wrong namespace could touch the root namespace's interfaces.
            eprintln!("cannot return to the previous network namespace: {err}; aborting");
            std::process::abort();
        }
    }
}

/// Deletes namespaces left behind by test processes that were killed before cleaning up.
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&format!("{PREFIX}-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = try_run("ip", &["netns", "del", &name]);
        }
    }
}

/// A two-instruction XDP program (`r0 = XDP_PASS; exit`) loaded with the bpf syscall, so the
/// tests need no object file for it.
mod xdp_pass {
    use std::{
        ffi::CString,
        os::fd::{AsRawFd, FromRawFd, OwnedFd},
        path::Path,
    };

    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_OBJ_PIN: libc::c_long = 6;
    const BPF_PROG_TYPE_XDP: u32 = 6;
    const BPF_XDP: u32 = 37;

    /// The leading fields of `union bpf_attr` for BPF_PROG_LOAD (linux/bpf.h).
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }

    /// `union bpf_attr` for BPF_OBJ_PIN.
    #[repr(C)]
    #[derive(Default)]
    struct ObjPinAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }

    fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
        // SAFETY: `attr` is a live, fully initialised attribute struct of the size passed, laid
        // out as the kernel's union bpf_attr prefix for `cmd`; pointers in it outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                std::ptr::from_mut(attr),
                std::mem::size_of::<T>(),
            )
        };
        if ret < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    pub fn load() -> OwnedFd {
        // mov64 r0, 2 (XDP_PASS); exit
        let insns: [u64; 2] = [0x0000_0002_0000_00b7, 0x0000_0000_0000_0095];
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..12].copy_from_slice(b"mz_test_pass");
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            expected_attach_type: BPF_XDP,
            ..Default::default()
        };
        let fd = bpf(BPF_PROG_LOAD, &mut attr)
            .unwrap_or_else(|err| panic!("load the XDP_PASS test program: {err}"));
        // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing else owns.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    }

    pub fn pin(prog: &OwnedFd, path: &Path) {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).expect("pin path");
        let mut attr = ObjPinAttr {
            pathname: c_path.as_ptr() as u64,
            bpf_fd: prog.as_raw_fd() as u32,
            ..Default::default()
        };
        bpf(BPF_OBJ_PIN, &mut attr).unwrap_or_else(|err| {
            panic!("pin the XDP_PASS test program at {}: {err}", path.display())
        });
    }
}
