//! The reference VMM, `slipway-vmm`, booting the guest image (`cargo xtask
//! guest-image`: a Debian `vmlinux` and a busybox initramfs) on KVM with
//! slipway's virtio-net device on virtio-mmio, declared by ACPI.
//!
//! Two tests:
//! - The boot path, wherever /dev/kvm opens: the kernel starts at the PVH
//!   entry and prints, on the emulated serial console, the command line,
//!   the memory map, and the ACPI tables slipway-vmm wrote (RSDP, XSDT,
//!   FACP, DSDT, APIC) and the IOAPIC the MADT declares. This runs on PVM
//!   too, whose KVM gets a stock kernel this far before an instruction it
//!   cannot emulate stops it.
//! - The whole guest, only where KVM can run Linux (not PVM): DHCP gave the
//!   address, router, DNS server and MTU; ping reaches the gateway; a name
//!   resolves through slipway's DNS address to the test's own responder;
//!   an HTTP download from a server on 127.0.0.1, reached through the
//!   gateway, arrives with the right SHA-256; the guest powers off and the
//!   VMM exits 0. On PVM it says so and skips, and `SLIPWAY_NO_SKIP` does
//!   not make that a failure (see [`common::platform_cannot`]).
//!
//! The test script reaches the guest's `/init` as `/slipway/script` in a
//! second cpio archive after the image's initramfs. Traffic goes only to
//! 127.0.0.1 and to the guest; slipway-vmm runs under a [`Proc`] guard and
//! every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::common;
use test_support::e2e;
use test_support::vm;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use e2e::data::{Sha256, Stream, hex};
use e2e::servers;
use e2e::{Proc, TempDir};
use vm::{Checks, Cpio, Image, Report};

/// The size of the HTTP download.
const BULK_LEN: usize = 64 << 20;
/// The bound on the whole guest's run.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// The bound on the boot-path probe: PVM runs the early kernel slowly.
const PROBE_LIMIT: Duration = Duration::from_secs(120);
/// How long slipway-vmm may take to exit after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// `slipway-vmm ARGS` with the tests' environment.
fn slipway_vmm(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slipway-vmm"));
    command.args(args);
    common::scrub(&mut command);
    command
}

/// Why no KVM guest can run here, if none can: no KVM on this machine
/// (the platform), or /dev/kvm does not open for this user (a privilege
/// CI has).
enum NoKvm {
    Platform(String),
    Privilege(String),
}

fn no_kvm() -> Option<NoKvm> {
    if !Path::new("/dev/kvm").exists() {
        return Some(NoKvm::Platform(
            "no /dev/kvm: no KVM on this machine".to_owned(),
        ));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .err()
        .map(|e| NoKvm::Privilege(format!("/dev/kvm does not open: {e}")))
}

/// Says why no KVM guest can run, the platform's way or the skip's way;
/// returns whether one cannot.
fn report_no_kvm() -> bool {
    match no_kvm() {
        Some(NoKvm::Platform(why)) => common::platform_cannot(&why),
        Some(NoKvm::Privilege(why)) => common::skip(&why),
        None => return false,
    }
    true
}

/// Why this machine's KVM cannot run a stock Linux kernel, if it cannot.
fn kvm_cannot_run_linux() -> Option<String> {
    vm::kvm_is_pvm().then(|| {
        "/dev/kvm is PVM, whose instruction emulator cannot run a stock Linux kernel \
         (it stops at cmpxchg16b, xrstor and the int3 self-test); the boot-path test \
         runs here instead"
            .to_owned()
    })
}

/// The guest image, or `None` after saying why there is none.
fn image() -> Option<&'static Image> {
    match vm::image() {
        Ok(image) => Some(image),
        Err(why) => {
            common::skip(&why);
            None
        }
    }
}

#[test]
fn kernel_boots_at_the_pvh_entry_and_finds_the_acpi_tables() {
    if report_no_kvm() {
        return;
    }
    let Some(image) = image() else { return };
    let kernel = image.kernel.to_string_lossy();
    let initramfs = image.initramfs.to_string_lossy();
    // earlyprintk: the console from the first line, before any failure.
    let mut vmm = Proc::spawn(&mut slipway_vmm(&[
        "--kernel",
        &kernel,
        "--initrd",
        &initramfs,
        "--mem",
        "512",
        "--cmdline",
        "earlyprintk=ttyS0",
        "-q",
    ]));
    let ioapic = vmm.wait_for_line("IOAPIC[0]", PROBE_LIMIT);
    // Far enough: a signal stops the VMM, as it would a user's.
    let pid = rustix::process::Pid::from_raw(i32::try_from(vmm.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = vmm.finish(STOP_LIMIT);
    assert!(
        out.status.success(),
        "slipway-vmm after SIGTERM: {:?}\n{}",
        out.status,
        out.stderr
    );
    let serial = out.stdout;
    let mut checks = Checks::default();
    let expect = [
        "Linux version",
        "Command line: console=ttyS0 reboot=k panic=-1 pci=off earlyprintk=ttyS0",
        // The PVH memory map: low RAM, the ACPI area, 512 MiB in all.
        "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
        "BIOS-e820: [mem 0x0000000000100000-0x000000001fffffff] usable",
        "ACPI: RSDP 0x00000000000E0000 000024 (v02 SLPWAY)",
        "ACPI: XSDT 0x",
        "ACPI: FACP 0x",
        "ACPI: DSDT 0x",
        "ACPI: APIC 0x",
        "RAMDISK: [mem 0x",
    ];
    for line in expect {
        checks.check(serial.contains(line), || {
            format!("no {line:?} on the console")
        });
    }
    checks.check(ioapic.contains("address 0xfec00000, GSI 0-23"), || {
        format!("the MADT's IOAPIC: {ioapic:?}")
    });
    checks.assert_all(&format!("serial console:\n{serial}"));
}

#[test]
fn usage_errors_exit_2_and_a_kernel_that_cannot_load_exits_1() {
    let out = e2e::run(
        &mut slipway_vmm(&["--kernel", "k", "--mem", "4G"]),
        STOP_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("--mem: invalid value \"4G\""),
        "{}",
        out.stderr
    );
    let out = e2e::run(&mut slipway_vmm(&["--mem", "256"]), STOP_LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("missing --kernel"), "{}", out.stderr);

    let dir = TempDir::new("reference-vmm-bad-kernel");
    let kernel = dir.file("bzImage");
    std::fs::write(&kernel, b"MZ: not an ELF").unwrap();
    let out = e2e::run(&mut slipway_vmm(&["--kernel", &kernel, "-q"]), STOP_LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    // Without KVM the VM cannot even be made; with it, the kernel is named.
    let named = out.stderr.contains(&format!("--kernel {kernel}"));
    assert!(named || out.stderr.contains("/dev/kvm"), "{}", out.stderr);
}

/// The guest's checks: the lease, ping, a DNS name, the download's hash.
fn script(download_port: u16) -> String {
    format!(
        "DOWNLOAD_PORT={download_port}\n{}\
         ping -c 3 -W 5 \"$GATEWAY\" > /tmp/ping 2>&1\n\
         result ping_received \"$(sed -n 's/.*, \\([0-9]*\\) packets received.*/\\1/p' /tmp/ping)\"\n\
         nslookup {} > /tmp/dns 2>&1\n\
         result dns_answer \"$(awk '/^Name:/ {{ named = 1 }} named && /^Address/ {{ print $NF; exit }}' /tmp/dns)\"\n\
         start=$(now)\n\
         curl -sS --max-time 60 -o /tmp/bulk \"http://$GATEWAY:$DOWNLOAD_PORT/bulk\" 2> /tmp/curl\n\
         status=$?\n\
         result download_seconds \"$(since \"$start\")\"\n\
         show_on_failure $status /tmp/curl\n\
         result download_sha256 \"$(sha256sum /tmp/bulk | cut -d' ' -f1)\"\n\
         exit 0\n",
        vm::LEASE_SH,
        servers::DNS_NAME,
    )
}

/// The script as `/slipway/script` in a cpio archive for a second initrd.
fn script_archive(script: &str, dir: &TempDir) -> String {
    let mut cpio = Cpio::default();
    cpio.directory("slipway");
    cpio.file("slipway/script", 0o755, script.as_bytes());
    let path = dir.file("script.cpio");
    std::fs::write(&path, cpio.finish()).expect("write the script archive");
    path
}

#[test]
fn guest_on_kvm_gets_a_lease_pings_resolves_and_downloads_through_slipway_vmm() {
    if report_no_kvm() {
        return;
    }
    if let Some(why) = kvm_cannot_run_linux() {
        common::platform_cannot(&why);
        return;
    }
    let Some(image) = image() else { return };
    let mut data = vec![0; BULK_LEN];
    Stream::new(7).fill(&mut data);
    let sha256 = hex(&Sha256::digest(&data));
    let download = servers::http_body(Vec::leak(data));
    let (dns_port, dns_queries) = servers::dns_responder();
    let dir = TempDir::new("reference-vmm");
    let archive = script_archive(&script(download), &dir);
    let kernel = image.kernel.to_string_lossy();
    let initramfs = image.initramfs.to_string_lossy();
    let upstream = format!("127.0.0.1:{dns_port}");
    let vmm = Proc::spawn(&mut slipway_vmm(&[
        "--kernel",
        &kernel,
        "--initrd",
        &initramfs,
        "--initrd",
        &archive,
        "--cmdline",
        "quiet",
        "--dns-upstream",
        &upstream,
        "--stats",
    ]));
    let started = std::time::Instant::now();
    let out = vmm.finish(RUN_LIMIT);
    let report = Report::parse(&out.stdout, out.stderr, started.elapsed());

    let mut checks = Checks::default();
    checks.check(out.status.success(), || {
        format!("slipway-vmm exited with {:?}", out.status)
    });
    checks.exit_and_lease(&report, "65520");
    checks.equal(
        "ping replies from the gateway",
        report.get("ping_received"),
        "3",
    );
    checks.dns_answer(&report, dns_queries.load(Ordering::Relaxed));
    checks.equal("download SHA-256", report.get("download_sha256"), &sha256);
    report.print_download("reference-vmm", BULK_LEN);
    report.print_boot("reference-vmm");
    checks.assert_all(&report.log());
}
