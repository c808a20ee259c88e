//! Resident memory: what start-up and each metrics scrape leave behind is handed back.
//!
//! Start-up touches far more than the steady state does: parsing the configuration, loading and
//! verifying the eBPF object (aya's parsed copy, the kernel's BTF), clap, the first netlink dumps.
//! A scrape runs the HTTP server and the text encoder and builds every series' families. glibc
//! keeps the freed heap, and the executable's pages stay mapped once run; neither is needed until
//! the next scrape, if ever. Measured with 255 instances: see the README's scale figures.

/// One malloc arena for every thread (glibc gives each thread that allocates its own, each keeping
/// its freed memory): the agent's threads (the run loop, the metrics server) allocate little and
/// rarely at the same time. Call before any thread starts.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: plain libc call, before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns the heap's free pages to the kernel (glibc keeps them otherwise, also in the middle of
/// the heap).
fn release_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: plain libc call; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns freed heap to the kernel and unmaps the pages of the executable and libraries that
/// start-up or a scrape ran: the steady state faults back in (from the page cache, no I/O) only the
/// code it runs. Called once start-up is over and after each scrape.
pub fn release_unused() {
    release_heap();
    match std::fs::read_to_string("/proc/self/smaps") {
        Ok(smaps) => {
            for (start, len) in clean_file_mappings(&smaps) {
                // SAFETY: a private, read-only file mapping without a single anonymous (copied on
                // write) page: every page equals the file's, so dropping them loses nothing, and a
                // later access reads the same bytes back from the page cache.
                unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
            }
        }
        Err(e) => tracing::debug!("/proc/self/smaps: {e}"),
    }
}

/// The private, read-only mappings of files whose pages are all the file's (no anonymous page: the
/// relocated read-only data after RELRO has some and is left alone), as (start, length).
fn clean_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // The mapping being read: its range, and whether it qualifies so far.
    let mut current: Option<(usize, usize, bool)> = None;
    let finish = |c: Option<(usize, usize, bool)>, anonymous_free: bool, out: &mut Vec<(usize, usize)>| {
        if let Some((start, end, ok)) = c
            && ok
            && anonymous_free
            && end > start
        {
            out.push((start, end - start));
        }
    };
    let mut anonymous_free = false;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            finish(current.take(), anonymous_free, &mut out);
            let perms = words.next().unwrap_or("");
            let path = words.nth(3).unwrap_or("");
            let ok =
                perms.len() == 4 && perms.as_bytes()[1] != b'w' && perms.as_bytes()[3] == b'p' && path.starts_with('/');
            current = Some((start, end, ok));
            // Not known until its Anonymous line.
            anonymous_free = false;
        } else if first == "Anonymous:" {
            anonymous_free = words.next() == Some("0");
        }
    }
    finish(current.take(), anonymous_free, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_private_read_only_file_mappings() {
        let smaps = "\
55f0a0000000-55f0a0100000 r--p 00000000 fd:01 123 /usr/bin/ipf-agent
Rss:                 100 kB
Anonymous:             0 kB
55f0a0100000-55f0a0200000 r-xp 00100000 fd:01 123 /usr/bin/ipf-agent
Anonymous:             0 kB
55f0a0200000-55f0a0210000 r--p 00200000 fd:01 123 /usr/bin/ipf-agent
Anonymous:           328 kB
55f0a0210000-55f0a0220000 rw-p 00210000 fd:01 123 /usr/bin/ipf-agent
Anonymous:             4 kB
55f0a1000000-55f0a2000000 rw-p 00000000 00:00 0 [heap]
Anonymous:          4000 kB
7f0000000000-7f0000080000 r--s 00000000 00:0e 99 anon_inode:bpf-map
Anonymous:             0 kB
7f0000100000-7f0000200000 r-xp 00000000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7fff00000000-7fff00002000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";
        assert_eq!(
            clean_file_mappings(smaps),
            vec![
                (0x55f0a0000000, 0x100000),
                (0x55f0a0100000, 0x100000),
                (0x7f0000100000, 0x100000)
            ]
        );
    }
}
