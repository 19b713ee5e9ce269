//! The systemd unit in packaging/systemd: systemd itself accepts every line of it, and its
//! example environment file documents exactly the variables ssed reads.

use std::path::{Path, PathBuf};
use std::process::Command;

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/systemd/ssed.service"
);
const ENV_EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/systemd/ssed.env.example"
);

/// A scratch directory of this test's own, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ssed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_without_a_warning() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let exec = "ExecStart=/usr/local/bin/ssed\n";
    assert!(unit.contains(exec), "the unit runs /usr/local/bin/ssed");
    // verify checks that ExecStart's binary exists and is executable; the installed path does
    // not exist here, so a copy of the unit runs the binary this build made. Nothing else
    // changes.
    let scratch = Scratch::new("packaging");
    let copy = scratch.0.join("ssed.service");
    std::fs::write(
        &copy,
        unit.replace(exec, &format!("ExecStart={}\n", env!("CARGO_BIN_EXE_ssed"))),
    )
    .unwrap();

    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze is needed for this test: run ./test.sh, which installs systemd");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "systemd-analyze verify failed:\n{report}"
    );
    // verify exits 0 even for unknown keys or values it cannot parse, which it only reports: so
    // any line about this unit is a failure. (Lines about other units on this machine are not
    // ours to judge.)
    let about_unit: Vec<&str> = report
        .lines()
        .filter(|line| line.contains("ssed.service") || line.contains(copy.to_str().unwrap()))
        .collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify complains about the unit:\n{}",
        about_unit.join("\n")
    );
}

#[test]
fn the_unit_has_the_settings_operations_depends_on() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let settings: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && line.contains('='))
        .collect();
    for expected in [
        "Type=simple",
        "ExecStart=/usr/local/bin/ssed",
        "EnvironmentFile=-/etc/ssed/ssed.env",
        "LimitNOFILE=1048576",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        // certbot's deploy hook reloads the TLS certificate with `systemctl reload ssed`.
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(settings.contains(&expected), "the unit lacks {expected}");
    }
    let stop: u64 = settings
        .iter()
        .find_map(|line| line.strip_prefix("TimeoutStopSec="))
        .expect("a TimeoutStopSec")
        .parse()
        .unwrap();
    // ssed exits within 2 s of SIGTERM; systemd must not SIGKILL it before.
    assert!(stop > 2, "TimeoutStopSec={stop}");
}

#[test]
fn the_example_environment_file_documents_every_variable_and_only_real_ones() {
    let help = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let mut known: Vec<&str> = help
        .split("[env: ")
        .skip(1)
        .map(|rest| rest.split(['=', ']']).next().unwrap())
        .collect();
    known.push("RUST_LOG");
    let example = std::fs::read_to_string(Path::new(ENV_EXAMPLE)).unwrap();
    let documented: Vec<&str> = example
        .lines()
        .map(|line| line.trim_start_matches('#'))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    for name in &known {
        assert!(documented.contains(name), "ssed.env.example lacks {name}");
    }
    for name in &documented {
        assert!(
            known.contains(name),
            "ssed.env.example names {name}, which ssed does not read"
        );
    }
}
