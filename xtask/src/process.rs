//! Running cargo and other tools from the workspace root.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace root: xtask lives one level below it.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The cargo that started us (cargo sets `CARGO` for `cargo run` and for
/// tests), so nested builds use the same toolchain; plain `cargo` otherwise.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// A `cargo` command with the given arguments, run from the workspace root.
pub fn cargo_command(args: &[&str]) -> Command {
    let mut command = Command::new(cargo());
    command.args(args).current_dir(workspace_root());
    command
}

/// Runs `command` with inherited stdio after echoing it, and fails with a
/// message naming the command and its exit status.
pub fn run_echoed(command: &mut Command) -> Result<(), String> {
    let shown = display(command);
    eprintln!("$ {shown}");
    let status = command
        .status()
        .map_err(|error| format!("could not start `{shown}`: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// Runs `command` silently and returns its stdout, or a message naming the
/// command, its exit status and its stderr.
pub fn capture(command: &mut Command) -> Result<String, String> {
    let shown = display(command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("could not start `{shown}`: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{shown}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ));
    }
    String::from_utf8(output.stdout).map_err(|_| format!("`{shown}` printed invalid UTF-8"))
}

/// Whether `command` can be started and exits successfully; its output is
/// discarded. Used to probe for optional tools.
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The command as a user would type it: `cargo` for the cargo binary, and
/// environment overrides in front.
fn display(command: &Command) -> String {
    let program = command.get_program();
    let program = if program == cargo() {
        "cargo".to_owned()
    } else {
        program.to_string_lossy().into_owned()
    };
    let mut words: Vec<String> = command
        .get_envs()
        .filter_map(|(key, value)| {
            value.map(|value| format!("{}={:?}", key.to_string_lossy(), value.to_string_lossy()))
        })
        .collect();
    words.push(program);
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

/// The target triple the host's rustc builds for by default.
pub fn host_triple() -> Result<String, String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let version = capture(Command::new(rustc).arg("-vV"))?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
        .ok_or_else(|| "`rustc -vV` printed no `host:` line".to_owned())
}
