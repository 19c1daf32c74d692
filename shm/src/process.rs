//! Process identity: who owns a region, and whether that process still runs.

/// Start time of process `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22),
/// 0 if unknown (no such process, or `/proc` unreadable).
pub fn process_start_ticks(pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // The command name (field 2) is in parentheses and may contain spaces: split after
    // the last ')'. Field 3 is then the first token, so field 22 is token 19.
    s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(19)?.parse().ok()).unwrap_or(0)
}

/// Whether process `pid` exists, is not a zombie (it exited and only waits for its parent to
/// reap it) and started at `start_ticks`, so it is the same process that wrote them and not
/// a later process that reuses its pid. The one liveness check of every region.
pub fn owner_alive(pid: u32, start_ticks: u64) -> bool {
    if pid == 0 || start_ticks == 0 {
        return false;
    }
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let Some((_, rest)) = s.rsplit_once(')') else { return false };
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("");
    state != "Z" && state != "X" && fields.nth(18).and_then(|t| t.parse().ok()) == Some(start_ticks)
}

/// The process that owns the region file at `path` (pid and start time from its header)
/// and whether it still runs; `None` when there is no complete region file there. Reads the
/// header only: any region kind, any layout version.
pub fn region_owner(path: &std::path::Path) -> Option<(u32, u64, bool)> {
    use std::io::Read;
    let mut buf = [0u8; crate::REGION_HEADER_SIZE];
    std::fs::File::open(path).ok()?.read_exact(&mut buf).ok()?;
    let u64_at = |o: usize| u64::from_ne_bytes(buf[o..o + 8].try_into().expect("8 bytes"));
    let pid = u32::from_ne_bytes(buf[32..36].try_into().expect("4 bytes"));
    let ticks = u64_at(40);
    (u64_at(0) != 0).then(|| (pid, ticks, owner_alive(pid, ticks)))
}

/// Nanoseconds since the unix epoch (0 if the clock is before 1970).
pub fn unix_time_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive() {
        let pid = std::process::id();
        let t = process_start_ticks(pid);
        assert!(t > 0);
        assert!(owner_alive(pid, t));
        assert!(!owner_alive(pid, t + 1), "same pid, other start time: a reused pid");
        assert!(!owner_alive(0, t));
        assert!(!owner_alive(pid, 0));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let t = process_start_ticks(pid);
        // Exited, not reaped yet: /proc still lists it, in state Z.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(process_start_ticks(pid), t);
        assert!(!owner_alive(pid, t));
        child.wait().unwrap();
    }

    #[test]
    fn an_exited_process_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let t = process_start_ticks(pid);
        child.wait().unwrap();
        assert_eq!(process_start_ticks(pid), 0);
        assert!(!owner_alive(pid, t));
    }
}
