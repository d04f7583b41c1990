//! temporary experiment
use slipway::vmm::{self, BootSpec, Hide, MachineConfig};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let hide = if std::env::var("HIDE").is_ok() { Hide::XsaveAvxCx16 } else { Hide::Nothing };
    let config = MachineConfig {
        mem_mib: 512,
        boot: BootSpec { kernel: args[1].clone().into(), initrd: vec![args[2].clone().into()], cmdline: args[3].clone() },
        hide,
    };
    let machine = vmm::Machine::new(&config).unwrap();
    let (bus, end) = vmm::device_channel().unwrap();
    let h = machine.start(std::io::stdout(), bus).unwrap();
    std::thread::spawn(move || { while let Ok(_r) = end.requests.recv() { let _ = end.replies.send([0;8]); } });
    let r = h.join().unwrap();
    eprintln!("END: {r:?}");
}
