//! The `slipway-vmm` command line: the machine's options (`--kernel`,
//! `--initrd`, `--cmdline`, `--mem`, `--console`, `--device-on-cmdline`)
//! and the network options `slipway`'s guest-facing commands take, parsed
//! by the same option table.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{Opt, Options, UsageError, apply, split_option};

/// Guest memory when `--mem` is not given, in MiB.
pub const DEFAULT_MEM_MIB: u64 = 512;
/// The least guest memory `--mem` takes, in MiB.
pub const MIN_MEM_MIB: u64 = 64;
/// The most guest memory `--mem` takes, in MiB: what fits below the
/// reference VMM's 32-bit MMIO hole (`slipway-vmm` checks at build time
/// that its memory layout agrees).
pub const MAX_MEM_MIB: u64 = 3072;

/// The help text of `slipway-vmm --help`.
pub const VMM_USAGE: &str = "\
slipway-vmm: a small KVM VMM that boots a Linux guest whose network is
slipway's virtio-net device (virtio-mmio, declared to the guest by ACPI)

Usage:
  slipway-vmm [OPTIONS] --kernel VMLINUX [--initrd FILE]...

Machine:
      --kernel FILE       an uncompressed vmlinux with a PVH entry (CONFIG_PVH)
      --initrd FILE       an initrd; repeated, the files are concatenated
                          (cpio archives may be: the kernel unpacks each)
      --cmdline TEXT      kernel parameters, after the defaults
                          \"console=ttyS0 reboot=k panic=-1 pci=off\" (repeatable)
      --mem SIZE          guest RAM: MiB, or with a suffix M or G (default 512,
                          64M to 3G)
      --console FILE      the serial console (COM1) to FILE instead of stdout
      --device-on-cmdline declare the net device on the kernel command line
                          (virtio_mmio.device=512@0xd0000000:5) instead of in
                          the ACPI DSDT; for kernels with
                          CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES and without ACPI

Network (as for slipway):
  -t, --tcp-ports SPEC    forward inbound TCP ports to the guest (repeatable)
  -u, --udp-ports SPEC    forward inbound UDP ports to the guest (repeatable)
      --mtu N             guest MTU, 68 to 65520 (default 65520)
      --map-host-loopback ADDR|none
      --deny CIDR[,CIDR]  never connect to these destinations (repeatable)
      --dns-upstream ADDR[:PORT]
      --pcap FILE         capture the guest-side frames to FILE (pcap)
      --stats             print counters to stderr at exit
  -d, --debug | --trace | -q, --quiet
  -h, --help | -V, --version

The guest gets 10.0.2.15/24 with gateway 10.0.2.2 and DNS 10.0.2.3 by DHCP.
The VMM exits when the guest powers off (ACPI S5) or resets (reboot=k).
Exit status: 0 when the guest powered off or reset; 1 when slipway-vmm
fails to set up; 2 on a usage error; 3 when KVM cannot run the guest (the
reason, such as an instruction KVM cannot emulate, is printed).
";

/// The form `--mem` takes, for messages.
pub(super) const MEM_FORM: &str = "MiB from 64 to 3072, or a size with M or G such as 1G";

/// What the `slipway-vmm` command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmmCommand {
    /// Print [`VMM_USAGE`] and exit.
    Help,
    /// Print the version and exit.
    Version,
    /// Boot a guest.
    Boot(Box<VmmOptions>),
}

/// The machine and the network of a `slipway-vmm` guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmmOptions {
    /// The network options.
    pub network: Options,
    /// The kernel.
    pub kernel: PathBuf,
    /// The initrd files, in order.
    pub initrd: Vec<PathBuf>,
    /// Kernel parameters after the defaults, in order.
    pub cmdline: Vec<String>,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// Where the console goes; `None`: stdout.
    pub console: Option<PathBuf>,
    /// Declare the device on the command line rather than by ACPI.
    pub device_on_cmdline: bool,
}

/// The machine options as they accumulate.
#[derive(Clone, Debug, Default)]
pub(super) struct Collected {
    kernel: Option<PathBuf>,
    initrd: Vec<PathBuf>,
    cmdline: Vec<String>,
    mem_mib: Option<u64>,
    console: Option<PathBuf>,
    device_on_cmdline: bool,
}

impl Collected {
    /// Takes a machine option's `value` (empty for a flag).
    pub(super) fn apply(&mut self, opt: Opt, name: &str, value: &str) -> Result<(), UsageError> {
        let path = || {
            if value.is_empty() {
                Err(UsageError::invalid_form(name, value, opt))
            } else {
                Ok(PathBuf::from(value))
            }
        };
        match opt {
            Opt::Kernel => self.kernel = Some(path()?),
            Opt::Initrd => self.initrd.push(path()?),
            Opt::Cmdline => self.cmdline.push(value.to_owned()),
            Opt::Mem => self.mem_mib = Some(mem(name, value)?),
            Opt::Console => self.console = Some(path()?),
            Opt::DeviceOnCmdline => self.device_on_cmdline = true,
            _ => {}
        }
        Ok(())
    }

    /// The name of the first machine option given, if any.
    pub(super) fn first_given(&self) -> Option<&'static str> {
        [
            (self.kernel.is_some(), "--kernel"),
            (!self.initrd.is_empty(), "--initrd"),
            (!self.cmdline.is_empty(), "--cmdline"),
            (self.mem_mib.is_some(), "--mem"),
            (self.console.is_some(), "--console"),
            (self.device_on_cmdline, "--device-on-cmdline"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }
}

/// Parses `slipway-vmm`'s arguments after the program name.
///
/// # Errors
/// A [`UsageError`] naming the first bad argument.
pub fn parse_vmm(args: &[OsString]) -> Result<VmmCommand, UsageError> {
    let mut collected = super::Collected::default();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        let Some(text) = arg.to_str().filter(|t| t.len() > 1 && t.starts_with('-')) else {
            return Err(UsageError::new(format!(
                "unexpected argument {:?}: slipway-vmm takes options only \
                 (usage: slipway-vmm [OPTIONS] --kernel VMLINUX)",
                arg.to_string_lossy()
            )));
        };
        let (opt, name, value) = split_option(text, args.get(i))?;
        if value.consumed_next {
            i += 1;
        }
        match opt {
            Opt::Help => return Ok(VmmCommand::Help),
            Opt::Version => return Ok(VmmCommand::Version),
            Opt::Netns | Opt::Socket | Opt::Fd | Opt::KeepListening | Opt::Ifname => {
                return Err(UsageError::new(format!(
                    "{name}: not for slipway-vmm: the VMM is the guest's only peer"
                )));
            }
            _ => apply(&mut collected, opt, &name, value.text.as_deref())?,
        }
    }
    let network = super::parse::finish_options(&mut collected)?;
    let c = collected.vmm;
    let Some(kernel) = c.kernel else {
        return Err(UsageError::new(
            "missing --kernel: expected \"slipway-vmm [OPTIONS] --kernel VMLINUX\"",
        ));
    };
    Ok(VmmCommand::Boot(Box::new(VmmOptions {
        network,
        kernel,
        initrd: c.initrd,
        cmdline: c.cmdline,
        mem_mib: c.mem_mib.unwrap_or(DEFAULT_MEM_MIB),
        console: c.console,
        device_on_cmdline: c.device_on_cmdline,
    })))
}

/// `--mem`: MiB, or a number with `M` or `G`, within the machine's range.
fn mem(name: &str, value: &str) -> Result<u64, UsageError> {
    let bad = || UsageError::invalid(name, value, format!("expected {MEM_FORM}"));
    let (digits, scale) = match value.as_bytes().last() {
        Some(b'M' | b'm') => (&value[..value.len() - 1], 1),
        Some(b'G' | b'g') => (&value[..value.len() - 1], 1024),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mib = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(bad)?;
    if (MIN_MEM_MIB..=MAX_MEM_MIB).contains(&mib) {
        Ok(mib)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn boot(list: &[&str]) -> VmmOptions {
        match parse_vmm(&args(list)) {
            Ok(VmmCommand::Boot(options)) => *options,
            other => panic!("{list:?}: expected a boot, got {other:?}"),
        }
    }

    fn error(list: &[&str]) -> String {
        match parse_vmm(&args(list)) {
            Err(e) => e.message().to_owned(),
            other => panic!("{list:?}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn machine_and_network_options_parse_together() {
        let options = boot(&[
            "--kernel",
            "vmlinux",
            "--initrd",
            "a.cpio",
            "--initrd=b.cpio",
            "--cmdline",
            "quiet",
            "--cmdline",
            "x=1",
            "--mem",
            "1G",
            "-t",
            "8080",
            "--mtu",
            "1500",
            "--pcap",
            "f.pcap",
            "--console",
            "serial.log",
        ]);
        assert_eq!(options.kernel, PathBuf::from("vmlinux"));
        assert_eq!(
            options.initrd,
            [PathBuf::from("a.cpio"), PathBuf::from("b.cpio")]
        );
        assert_eq!(options.cmdline, ["quiet", "x=1"]);
        assert_eq!(options.mem_mib, 1024);
        assert_eq!(options.network.mtu, 1500);
        assert_eq!(options.network.pcap, Some(PathBuf::from("f.pcap")));
        assert_ne!(options.network.tcp_forwards, nat_core::PortForwards::none());
        assert_eq!(options.console, Some(PathBuf::from("serial.log")));
        assert!(!options.device_on_cmdline);
    }

    #[test]
    fn defaults_are_512_mib_stdout_and_acpi() {
        let options = boot(&["--kernel", "k"]);
        assert_eq!(options.mem_mib, 512);
        assert!(options.initrd.is_empty() && options.cmdline.is_empty());
        assert_eq!(options.console, None);
        assert_eq!(options.network, Options::default());
    }

    #[test]
    fn mem_takes_mib_or_a_suffix_within_the_range() {
        assert_eq!(boot(&["--kernel", "k", "--mem", "256"]).mem_mib, 256);
        assert_eq!(boot(&["--kernel", "k", "--mem", "3g"]).mem_mib, 3072);
        for bad in ["0", "63", "4G", "x", "", "1T", "99999999999999999999"] {
            let message = error(&["--kernel", "k", "--mem", bad]);
            assert!(
                message.starts_with("--mem: invalid value"),
                "{bad}: {message}"
            );
            assert!(message.contains("3072"), "{message}");
        }
    }

    #[test]
    fn kernel_is_required_and_positional_arguments_are_refused() {
        assert!(error(&["--mem", "512"]).contains("missing --kernel"));
        assert!(error(&["--kernel", "k", "extra"]).contains("takes options only"));
        assert!(error(&["--kernel", "k", "--socket", "s"]).starts_with("--socket: not for"));
        assert!(error(&["--kernel", "k", "--bogus"]).contains("unknown option"));
    }

    #[test]
    fn slipway_itself_refuses_the_machine_options() {
        let message = match super::super::parse(&args(&["stream", "--socket", "s", "--mem", "1G"]))
        {
            Err(e) => e.message().to_owned(),
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(message, "--mem: only for slipway-vmm");
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_vmm(&args(&["-h"])), Ok(VmmCommand::Help));
        assert_eq!(
            parse_vmm(&args(&["--kernel", "k", "-V"])),
            Ok(VmmCommand::Version)
        );
    }
}
