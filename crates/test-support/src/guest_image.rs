//! `cargo xtask guest-image`: the Linux guest the VM end-to-end tests boot.
//!
//! The image is the host's own Debian kernel (`linux-image-amd64`) and an
//! initramfs holding busybox, iperf3, curl and dhcpcd with their shared
//! libraries, the virtio and fw_cfg modules, and `/init` (see
//! `crates/test-support/guest/init`): it brings up eth0 by DHCP, runs the
//! test script QEMU passes as the fw_cfg file `opt/slipway/script`, reports
//! on the serial console and powers off.
//!
//! The kernel is the uncompressed `vmlinux` taken out of the bzImage, which
//! QEMU boots through its PVH entry without the seconds of decompression a
//! guest under TCG would spend. Everything lands in `TARGET/guest-image/`
//! and is rebuilt only when a stamp of its inputs (kernel version, the
//! guest files, the sizes and times of the host files copied) changes:
//! each set of inputs has its own directory, written to a scratch
//! directory and renamed into place, so concurrent builders (test
//! processes starting together) never see half an image.
//!
//! The VM tests build the image themselves when it is missing, and `cargo
//! xtask guest-image` builds it ahead of them.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `/init` of the guest.
const INIT: &str = include_str!("../guest/init");
/// udhcpc's event script, `/etc/udhcpc.script` in the guest.
const UDHCPC_SCRIPT: &str = include_str!("../guest/udhcpc.script");

/// Kernel modules `/init` loads, in dependency order, by file stem.
const MODULES: [&str; 10] = [
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "qemu_fw_cfg",
];

/// Host programs copied into the guest, with the shared libraries they
/// load. curl is there for uploads: busybox wget posts a file only up to
/// its first NUL byte. dhcpcd is the DHCPv6 client: busybox-static has no
/// udhcpc6.
const PROGRAMS: [(&str, &str); 4] = [
    ("/bin/busybox", "/bin/busybox"),
    ("/usr/bin/iperf3", "/usr/bin/iperf3"),
    ("/usr/bin/curl", "/usr/bin/curl"),
    ("/sbin/dhcpcd", "/usr/sbin/dhcpcd"),
];

/// Debian packages the image is made from, and the host file each provides.
pub const PACKAGES: [(&str, &str); 6] = [
    ("linux-image-amd64", "/boot"),
    ("busybox-static", "/bin/busybox"),
    ("iperf3", "/usr/bin/iperf3"),
    ("curl", "/usr/bin/curl"),
    ("dhcpcd-base", "/usr/sbin/dhcpcd"),
    ("xz-utils", "/usr/bin/xz"),
];

/// The ELF magic that starts a `vmlinux`.
const ELF_MAGIC: &[u8] = b"\x7fELF";
/// The xz stream magic; a Debian bzImage carries the kernel as one.
const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";

/// A built image.
#[derive(Debug, Clone)]
pub struct Image {
    /// The kernel QEMU boots with `-kernel`.
    pub kernel: PathBuf,
    /// The initramfs (cpio newc, uncompressed) for `-initrd`.
    pub initramfs: PathBuf,
    /// The guest kernel's version (a directory name under /lib/modules).
    pub kernel_version: String,
}

/// Where images live under a cargo target directory: one subdirectory per
/// set of inputs, named by the hash of their stamp.
pub fn images_dir(target_dir: &Path) -> PathBuf {
    target_dir.join("guest-image")
}

/// Returns the image for the host's current inputs under
/// `target_dir/guest-image/`, building it first if there is none. Fails
/// with a message naming what is missing on the host.
///
/// Each image directory is written once, complete, by a rename, and never
/// changed or removed while its inputs are current: builders racing on the
/// same inputs keep whichever lands first, and a QEMU booting from it
/// never sees its files move.
pub fn ensure(target_dir: &Path) -> Result<Image, String> {
    let inputs = Inputs::find()?;
    let stamp = inputs.stamp()?;
    let mut hash = Fnv1a::default();
    hash.update(stamp.as_bytes());
    let name = format!("{:016x}", hash.0);
    let images = images_dir(target_dir);
    let dir = images.join(&name);
    let image = Image {
        kernel: dir.join("vmlinux"),
        initramfs: dir.join("initramfs.cpio"),
        kernel_version: inputs.kernel_version.clone(),
    };
    if fs::read_to_string(dir.join("stamp")).is_ok_and(|old| old == stamp) {
        return Ok(image);
    }
    fs::create_dir_all(&images).map_err(|e| format!("create {}: {e}", images.display()))?;
    let fresh = images.join(format!(".build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&fresh);
    fs::create_dir_all(&fresh).map_err(|e| format!("create {}: {e}", fresh.display()))?;
    let built = build_into(&inputs, &fresh).and_then(|()| {
        fs::write(fresh.join("stamp"), &stamp).map_err(|e| format!("write stamp: {e}"))
    });
    if let Err(message) = built {
        let _ = fs::remove_dir_all(&fresh);
        return Err(message);
    }
    if fs::rename(&fresh, &dir).is_err() {
        // Another builder's identical image is already in place.
        let _ = fs::remove_dir_all(&fresh);
    }
    if !fs::read_to_string(dir.join("stamp")).is_ok_and(|old| old == stamp) {
        return Err(format!(
            "could not put the image in place at {}",
            dir.display()
        ));
    }
    remove_stale(&images, &name);
    Ok(image)
}

/// Removes the images of inputs that are no longer current.
fn remove_stale(images: &Path, current: &str) {
    let Ok(entries) = fs::read_dir(images) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() == 16 && name != current && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// What the image is made from.
struct Inputs {
    kernel_version: String,
    bzimage: PathBuf,
    modules: Vec<PathBuf>,
    /// Guest path and host path of every program and library.
    files: Vec<(String, PathBuf)>,
}

impl Inputs {
    fn find() -> Result<Self, String> {
        let missing = missing_packages();
        if !missing.is_empty() {
            return Err(format!(
                "the guest image needs Debian packages not installed here: {} \
                 (run `cargo xtask guest-image` as root to install them)",
                missing.join(" ")
            ));
        }
        let (kernel_version, bzimage) = newest_kernel()?;
        let tree = Path::new("/lib/modules")
            .join(&kernel_version)
            .join("kernel");
        let mut found = Vec::new();
        collect_files(&tree, &mut found).map_err(|e| format!("read {}: {e}", tree.display()))?;
        let modules = MODULES
            .iter()
            .map(|name| {
                found
                    .iter()
                    .find(|path| module_stem(path) == Some(name))
                    .cloned()
                    .ok_or_else(|| format!("no module {name} under {}", tree.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut files = Vec::new();
        let mut libraries = BTreeSet::new();
        for (guest, host) in PROGRAMS {
            files.push((guest.to_owned(), PathBuf::from(host)));
            libraries.extend(shared_libraries(Path::new(host))?);
        }
        files.extend(
            libraries
                .into_iter()
                .map(|library| (library.clone(), PathBuf::from(library))),
        );
        Ok(Self {
            kernel_version,
            bzimage,
            modules,
            files,
        })
    }

    /// Everything that decides the image's bytes, as text.
    fn stamp(&self) -> Result<String, String> {
        let mut hash = Fnv1a::default();
        hash.update(INIT.as_bytes());
        hash.update(UDHCPC_SCRIPT.as_bytes());
        let mut stamp = format!(
            "kernel {}\nguest files fnv1a64 {:016x}\n",
            self.kernel_version, hash.0
        );
        // Each host file with where it goes, so that moving a file in the
        // guest makes a new image too.
        let hosts = std::iter::once(("", &self.bzimage))
            .chain(self.modules.iter().map(|module| ("", module)))
            .chain(
                self.files
                    .iter()
                    .map(|(guest, host)| (guest.as_str(), host)),
            );
        for (guest, host) in hosts {
            let meta = fs::metadata(host).map_err(|e| format!("{}: {e}", host.display()))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_secs());
            let _ = writeln!(
                stamp,
                "{} {} {modified} {guest}",
                host.display(),
                meta.len()
            );
        }
        Ok(stamp)
    }
}

/// The packages of [`PACKAGES`] whose file is absent.
pub fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .filter(|(package, file)| {
            if *package == "linux-image-amd64" {
                newest_kernel().is_err()
            } else {
                !Path::new(file).exists()
            }
        })
        .map(|(package, _)| *package)
        .collect()
}

/// The newest `/boot/vmlinuz-VERSION` whose modules are installed.
fn newest_kernel() -> Result<(String, PathBuf), String> {
    let entries = fs::read_dir("/boot").map_err(|e| format!("read /boot: {e}"))?;
    let mut versions: Vec<String> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_prefix("vmlinuz-").map(str::to_owned)
        })
        .filter(|version| {
            Path::new("/lib/modules")
                .join(version)
                .join("kernel")
                .is_dir()
        })
        .collect();
    versions.sort_by_key(|version| version_key(version));
    let version = versions
        .pop()
        .ok_or("no /boot/vmlinuz-VERSION with modules in /lib/modules/VERSION")?;
    let path = Path::new("/boot").join(format!("vmlinuz-{version}"));
    Ok((version, path))
}

/// The numbers in a kernel version, so that `6.1.0-10-amd64` sorts after
/// `6.1.0-9-amd64`.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse().ok())
        .collect()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(&entry.path(), out)?;
        } else {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// `virtio_net` for `virtio_net.ko`, `virtio_net.ko.xz` and `.ko.zst`.
fn module_stem(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    ["ko", "ko.xz", "ko.zst"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext)?.strip_suffix('.'))
}

/// The absolute paths `ldd` resolves for `program` (none for a static one).
pub fn shared_libraries(program: &Path) -> Result<Vec<String>, String> {
    let output = Command::new("ldd")
        .arg(program)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run ldd: {e}"))?;
    // A static program makes ldd fail with "not a dynamic executable".
    let text = String::from_utf8_lossy(&output.stdout);
    let mut libraries = Vec::new();
    for line in text.lines() {
        if line.contains("not found") {
            return Err(format!("{}: {}", program.display(), line.trim()));
        }
        let path = line
            .split_whitespace()
            .find(|word| word.starts_with('/'))
            .map(str::to_owned);
        libraries.extend(path);
    }
    Ok(libraries)
}

/// Writes `vmlinux` and `initramfs.cpio` into `dir`.
fn build_into(inputs: &Inputs, dir: &Path) -> Result<(), String> {
    let kernel = extract_vmlinux(&inputs.bzimage)?;
    fs::write(dir.join("vmlinux"), kernel).map_err(|e| format!("write vmlinux: {e}"))?;
    let mut cpio = Cpio::default();
    for dir in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "lib",
        "lib/modules",
        "root",
        // dhcpcd keeps its DUID and leases here, its pid file under /run.
        "var",
        "var/lib",
        "var/lib/dhcpcd",
        "run",
    ] {
        cpio.directory(dir);
    }
    cpio.character_device("dev/console", 5, 1);
    cpio.file("init", 0o755, INIT.as_bytes());
    cpio.file("etc/udhcpc.script", 0o755, UDHCPC_SCRIPT.as_bytes());
    let mut made = BTreeSet::new();
    for (guest, host) in &inputs.files {
        let bytes = fs::read(host).map_err(|e| format!("read {}: {e}", host.display()))?;
        let guest = guest.trim_start_matches('/');
        for parent in Path::new(guest).ancestors().skip(1) {
            let parent = parent.to_string_lossy().into_owned();
            if !parent.is_empty() && made.insert(parent.clone()) {
                cpio.directory(&parent);
            }
        }
        cpio.file(guest, 0o755, &bytes);
    }
    for module in &inputs.modules {
        let name = module_stem(module).unwrap_or_default();
        let bytes = read_module(module)?;
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, &bytes);
    }
    fs::write(dir.join("initramfs.cpio"), cpio.finish())
        .map_err(|e| format!("write initramfs.cpio: {e}"))
}

/// A module's bytes, decompressed (busybox `insmod` takes plain `.ko`).
fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else {
        return fs::read(path).map_err(|e| format!("read {name}: {e}"));
    };
    let output = Command::new(tool)
        .args(["-dc", "--"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {tool}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{tool} -dc {name} failed ({})", output.status));
    }
    Ok(output.stdout)
}

/// The `vmlinux` ELF inside a bzImage: the xz stream after the setup code,
/// decompressed. xz complains about the bytes after the stream (the
/// kernel's size trailer), so its status is ignored and the result checked
/// for an ELF header instead. Kernels compressed otherwise are booted as
/// they are (QEMU decompresses them, slower).
fn extract_vmlinux(bzimage: &Path) -> Result<Vec<u8>, String> {
    let image = fs::read(bzimage).map_err(|e| format!("read {}: {e}", bzimage.display()))?;
    let Some(start) = image
        .windows(XZ_MAGIC.len())
        .position(|window| window == XZ_MAGIC)
    else {
        return Ok(image);
    };
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("run xz: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("xz: no stdin")?;
    let payload = image[start..].to_vec();
    let writer = std::thread::spawn(move || {
        // xz stops reading at the end of the stream; the rest is the trailer.
        let _ = stdin.write_all(&payload);
    });
    let mut kernel = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_end(&mut kernel)
            .map_err(|e| format!("read xz output: {e}"))?;
    }
    let _ = child.wait();
    let _ = writer.join();
    if kernel.starts_with(ELF_MAGIC) {
        Ok(kernel)
    } else {
        Ok(image)
    }
}

/// An uncompressed cpio archive in the `newc` format the kernel unpacks.
#[derive(Default)]
pub struct Cpio {
    bytes: Vec<u8>,
    inode: u32,
}

impl Cpio {
    /// Adds a directory (mode 755).
    pub fn directory(&mut self, path: &str) {
        self.entry(path, 0o040_755, (0, 0), &[]);
    }

    /// Adds a regular file with `permissions` and contents `data`.
    pub fn file(&mut self, path: &str, permissions: u32, data: &[u8]) {
        self.entry(path, 0o100_000 | permissions, (0, 0), data);
    }

    fn character_device(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, 0o020_600, (major, minor), &[]);
    }

    fn entry(&mut self, path: &str, mode: u32, (major, minor): (u32, u32), data: &[u8]) {
        self.inode += 1;
        let name_len = u32::try_from(path.len() + 1).unwrap_or(u32::MAX);
        let data_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let nlink = if mode & 0o040_000 != 0 { 2 } else { 1 };
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
        // devminor, rdevmajor, rdevminor, namesize, check.
        let fields = [
            self.inode, mode, 0, 0, nlink, 0, data_len, 0, 0, major, minor, name_len, 0,
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(path.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.bytes
    }
}

/// FNV-1a, 64 bits: a stable hash for the stamp.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn update(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Cpio, module_stem, version_key};

    /// Reads a newc archive back: (name, mode, rdev major, data) per entry,
    /// checking the magic and the 4-byte alignment the kernel relies on.
    fn entries(archive: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let field = |at: usize, index: usize| {
            let start = at + 6 + index * 8;
            let text = std::str::from_utf8(&archive[start..start + 8]).unwrap_or("");
            u32::from_str_radix(text, 16).unwrap_or(u32::MAX)
        };
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(at % 4, 0, "entry at an unaligned offset");
            assert_eq!(&archive[at..at + 6], b"070701");
            let (mode, size, major, name_len) =
                (field(at, 1), field(at, 6), field(at, 9), field(at, 11));
            let name_at = at + 110;
            let name_end = name_at + name_len as usize;
            assert_eq!(archive[name_end - 1], 0, "name without its NUL");
            let name = String::from_utf8_lossy(&archive[name_at..name_end - 1]).into_owned();
            let data_at = name_end.next_multiple_of(4);
            let data = archive[data_at..data_at + size as usize].to_vec();
            at = (data_at + size as usize).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(at, archive.len(), "bytes after the trailer");
                return out;
            }
            out.push((name, mode, major, data));
        }
    }

    #[test]
    fn cpio_newc_round_trips_directories_files_and_devices() {
        let mut cpio = Cpio::default();
        cpio.directory("bin");
        cpio.file("bin/x", 0o755, b"12345");
        cpio.file("init", 0o755, b"#!/bin/sh\n");
        cpio.character_device("dev/console", 5, 1);
        let read = entries(&cpio.finish());
        let summary: Vec<(&str, u32, u32, &[u8])> = read
            .iter()
            .map(|(name, mode, major, data)| (name.as_str(), *mode, *major, data.as_slice()))
            .collect();
        assert_eq!(
            summary,
            [
                ("bin", 0o040_755, 0, &b""[..]),
                ("bin/x", 0o100_755, 0, b"12345"),
                ("init", 0o100_755, 0, b"#!/bin/sh\n"),
                ("dev/console", 0o020_600, 5, b""),
            ]
        );
    }

    #[test]
    fn module_stems_cover_plain_and_compressed_modules() {
        assert_eq!(
            module_stem(Path::new("/x/virtio_net.ko")),
            Some("virtio_net")
        );
        assert_eq!(module_stem(Path::new("/x/virtio.ko.xz")), Some("virtio"));
        assert_eq!(
            module_stem(Path::new("/x/failover.ko.zst")),
            Some("failover")
        );
        assert_eq!(module_stem(Path::new("/x/modules.dep")), None);
    }

    #[test]
    fn kernel_versions_compare_numerically() {
        assert!(version_key("6.1.0-10-amd64") > version_key("6.1.0-9-amd64"));
        assert!(version_key("6.10.0-1-amd64") > version_key("6.9.0-3-amd64"));
    }
}
