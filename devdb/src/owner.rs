//! Who made a leftover. A process that is killed (SIGKILL, OOM, a CI runner cancelled) cannot
//! remove its dev container or drop its scratch databases; the next tandem process on the
//! machine does, once it is sure their maker is gone. The maker is named by
//! [`this_process`] (`host:boot:pid:start`), and [`is_gone`] says, from `/proc`, whether that
//! process still runs: the same pid with another start time is another process, a new boot
//! id on the same host means a reboot. Another host's leftovers are never touched (a shared
//! Docker daemon may serve several machines).

use std::sync::OnceLock;

/// `hostname:boot_id:pid:start_time` of this process (start time in clock ticks since boot,
/// `/proc/self/stat` field 22).
pub fn this_process() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| {
        let pid = std::process::id();
        format!(
            "{}:{}:{pid}:{}",
            hostname(),
            boot_id(),
            start_time(pid).unwrap_or(0)
        )
    })
}

/// Whether the process `owner` names (a [`this_process`] string) is certainly gone: made on
/// this host, and either before the last boot, or its pid is free or taken by a process that
/// started at another time. `false` when unsure (another host, an unreadable name).
pub fn is_gone(owner: &str) -> bool {
    let mut parts = owner.rsplitn(4, ':');
    let (Some(start), Some(pid), Some(boot), Some(host)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(start), Ok(pid)) = (start.parse::<u64>(), pid.parse::<u32>()) else {
        return false;
    };
    if host != hostname() {
        return false;
    }
    if boot != boot_id() {
        return true;
    }
    start_time(pid) != Some(start)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
        .replace(':', "_")
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Field 22 of `/proc/PID/stat`, or `None` when there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_finished_one_is_gone() {
        assert!(!is_gone(this_process()));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        let owner = format!(
            "{}:{}:{pid}:{}",
            hostname(),
            boot_id(),
            start_time(pid).unwrap_or(1)
        );
        child.wait().expect("wait");
        assert!(is_gone(&owner), "{owner}");
        // Another boot on this host: gone; another host, or nonsense: not ours to judge.
        let rebooted = this_process().replacen(&boot_id(), "another-boot", 1);
        assert!(is_gone(&rebooted));
        let elsewhere = format!("elsewhere{}", this_process());
        assert!(!is_gone(&elsewhere));
        assert!(!is_gone("not an owner"));
    }
}
