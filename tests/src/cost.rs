//! What the cost benchmarks read from /proc: CPU time and resident memory of a process tree (an agent,
//! or keepalived's parent with its VRRP child and any check scripts), the machine's softirq time and
//! load, and samples from a Prometheus text page.

use std::collections::HashMap;

/// Clock ticks per second for /proc times.
fn ticks_per_sec() -> f64 {
    // SAFETY: plain libc query.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The fields after `comm` of /proc/PID/stat (the command may contain spaces and parentheses, so
/// split after the last ')'); index 0 is the state.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// `pid` and every live descendant.
pub fn tree(pid: i32) -> Vec<i32> {
    let mut parent_of: HashMap<i32, i32> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Some(p) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok())
                && let Some(f) = stat_fields(p)
                && let Some(ppid) = f.get(1).and_then(|v| v.parse().ok())
            {
                parent_of.insert(p, ppid);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(parent_of.iter().filter(|&(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// CPU seconds used so far by `pid`'s tree: every live thread's time on a CPU to the nanosecond
/// (`/proc/PID/task/TID/schedstat`), plus the children it has reaped (check and notify scripts), in
/// clock ticks. The utime + stime of `/proc/PID/stat` come in ticks of 10 ms: an agent using 0.1 s a
/// minute gets five of them in a 30 s window, so one tick more or less moved its figure by a fifth.
/// (Nor is their split between user and system worth printing: it is sampled per tick, and a process
/// that runs in short bursts after timer interrupts is sampled in the kernel far more often than it
/// is there; perf's breakdown disagreed with it by a factor of two.) The time includes the softirq
/// work the kernel runs in the process's context (on a veth: the switch and the receivers' input
/// path) unless the kernel accounts IRQ time apart (`CONFIG_IRQ_TIME_ACCOUNTING`).
pub fn tree_cpu_secs(pid: i32) -> f64 {
    tree(pid)
        .into_iter()
        .map(|p| {
            let threads: u64 = task_files(p, "schedstat")
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum();
            // cutime, cstime: fields 16 and 17 of stat, 13 and 14 after the comm.
            let reaped = stat_fields(p).map_or(0, |f| {
                let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                n(13) + n(14)
            });
            threads as f64 / 1e9 + reaped as f64 / ticks_per_sec()
        })
        .sum()
}

/// The file `name` of each live thread of process `pid` (`/proc/PID/task/TID/name`), read.
fn task_files(pid: i32, name: &'static str) -> impl Iterator<Item = String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(move |t| std::fs::read_to_string(t.path().join(name)).ok())
}

/// Context switches so far of every thread of `pid`'s tree: how often it went to sleep and was woken
/// (or preempted). Unlike CPU time, this hardly depends on what else loads the machine.
pub fn tree_switches(pid: i32) -> u64 {
    tree(pid)
        .into_iter()
        .flat_map(|p| task_files(p, "status"))
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Resident memory (VmRSS) of `pid`'s tree in KiB.
pub fn tree_rss_kib(pid: i32) -> u64 {
    tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// CPU seconds spent in softirq by the whole machine so far (network receive and transmit included).
pub fn softirq_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        // cpu user nice system idle iowait irq softirq ...
        .and_then(|l| l.split_whitespace().nth(7))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    ticks as f64 / ticks_per_sec()
}

/// The 1, 5 and 15 minute load averages, as `uptime` prints them.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Samples of metric `name` in a Prometheus text page: (label text between the braces, value).
pub fn samples(page: &str, name: &str) -> Vec<(String, f64)> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let (labels, v) = r.split_once('}')?;
                    (labels.to_owned(), v)
                }
                None if rest.starts_with(' ') => (String::new(), rest),
                None => return None,
            };
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// The value of label `key` in a label text (`a="x",b="y"`).
pub fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples_and_labels() {
        let page = "# HELP x y\nipf_datapath_invalid_packets_total{interface=\"eth0\",reason=\"checksum_err\"} 42\nipf_datapath_invalid_packets_total_other 1\nipf_build_info 1\n";
        let s = samples(page, "ipf_datapath_invalid_packets_total");
        assert_eq!(s.len(), 1);
        assert_eq!(label(&s[0].0, "reason"), Some("checksum_err"));
        assert_eq!(s[0].1, 42.0);
        assert_eq!(samples(page, "ipf_build_info"), vec![(String::new(), 1.0)]);
    }

    #[test]
    fn own_tree_uses_cpu_and_memory() {
        let me = std::process::id() as i32;
        assert!(tree(me).contains(&me));
        assert!(tree_rss_kib(me) > 0);
        assert!(tree_cpu_secs(me) >= 0.0);
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert!(tree_switches(me) > 0);
    }
}
