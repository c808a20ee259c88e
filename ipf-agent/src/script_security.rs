//! keepalived's `script_user` and `enable_script_security` for check and notify scripts.
//!
//! The agent runs as root. A script it starts as root is as powerful as the agent, so whoever can
//! change the script file, or rename or replace anything in a directory on its path, can run anything
//! as root. keepalived's rule, kept here: a script that runs as root (no `script_user`, or a user or
//! group that is root) or that is set-uid/set-gid root is *unsafe* when its program (the first word of
//! the line, looked up in PATH when it has no '/'; when it does not exist, whoever could create it)
//! or any directory above it is owned by someone
//! other than root, or is writable by a group other than root or by everyone (a directory with the
//! sticky bit, like /tmp, only protects the names in it from others, so its write bits are fine).
//! With `enable_script_security` an unsafe script is a configuration error (where keepalived disables
//! the script and logs it, ipf refuses the configuration, as for any other bad configuration).
//! `script_user USER [GROUP]` makes every script run with that user's uid and gid (and no
//! supplementary groups).

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::RwLock,
};

/// Who scripts run as: a user and group resolved when the configuration is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub group: Option<String>,
    pub uid: u32,
    pub gid: u32,
}

/// The `global_defs` settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScriptSecurity {
    /// `enable_script_security`: unsafe scripts are errors rather than warnings.
    pub enforce: bool,
    /// `script_user`; `None` runs scripts as the agent's own user (root).
    pub run_as: Option<RunAs>,
}

/// Resolves `script_user USER [GROUP]`; without a group, the user's primary group.
pub fn resolve(user: &str, group: Option<&str>) -> Result<RunAs, String> {
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| format!("script_user {user:?}: cannot look the user up: {e}"))?
        .ok_or_else(|| format!("script_user {user:?}: no such user"))?;
    let gid = match group {
        None => u.gid.as_raw(),
        Some(g) => nix::unistd::Group::from_name(g)
            .map_err(|e| format!("script_user {user:?} {g:?}: cannot look the group up: {e}"))?
            .ok_or_else(|| format!("script_user {user:?} {g:?}: no such group"))?
            .gid
            .as_raw(),
    };
    Ok(RunAs {
        user: user.to_owned(),
        group: group.map(str::to_owned),
        uid: u.uid.as_raw(),
        gid,
    })
}

impl ScriptSecurity {
    /// Scripts run with root's powers: as root, or with root's group.
    fn privileged(&self) -> bool {
        self.run_as.as_ref().is_none_or(|r| r.uid == 0 || r.gid == 0)
    }

    /// Checks one script line (`what` names it in messages: `vrrp_script chk`, `notify_master`). With
    /// `enable_script_security`, an unsafe or missing script is an error; without it scripts are not
    /// checked (keepalived only logs then; a warning that depends on the files present would make
    /// `check-config`'s output differ between machines).
    pub fn check(&self, what: &str, line: &str) -> Result<(), String> {
        match self.problem(line) {
            Some(why) if self.enforce => Err(format!(
                "{what}: script {line:?}: {why}; refused because enable_script_security is set"
            )),
            _ => Ok(()),
        }
    }

    fn problem(&self, line: &str) -> Option<String> {
        let word = line.split_whitespace().next()?;
        // A missing program cannot run (the script fails, as before), but whoever can create it could:
        // the directories that exist above it are checked. A bare name found nowhere in PATH is left
        // to fail.
        let program = match locate(word) {
            Some(p) => p,
            None if word.contains('/') => std::path::absolute(word).ok()?,
            None => return None,
        };
        let setid_root = std::fs::metadata(&program).is_ok_and(|meta| {
            let mode = meta.mode();
            (meta.uid() == 0 && mode & 0o4100 == 0o4100) || (meta.gid() == 0 && mode & 0o2010 == 0o2010)
        });
        if !(self.privileged() || setid_root) {
            return None;
        }
        // The path as written and as resolved: a symlink on the way is checked at both ends.
        let mut paths = vec![program.clone()];
        if let Ok(real) = std::fs::canonicalize(&program)
            && real != program
        {
            paths.push(real);
        }
        paths.iter().find_map(|p| unsafe_component(p))
    }
}

/// `word` as a path, or found in PATH as `execvp` would (a file, executable by someone).
fn locate(word: &str) -> Option<PathBuf> {
    if word.contains('/') {
        let p = PathBuf::from(word);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(word))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

/// The first of `/`, each directory down to the file, and the file itself that a non-root user could
/// change, with why. What does not exist is skipped (the nearest existing directory decides who could
/// create it).
pub fn unsafe_component(file: &Path) -> Option<String> {
    let mut prefixes: Vec<&Path> = file.ancestors().collect();
    prefixes.reverse();
    prefixes
        .into_iter()
        .filter(|p| !p.as_os_str().is_empty())
        .find_map(|p| {
            let meta = match std::fs::metadata(p) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(e) => return Some(format!("{} cannot be checked: {e}", p.display())),
            };
            let mode = meta.mode();
            let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
            if meta.uid() != 0 {
                Some(format!("{} is owned by uid {}, not root", p.display(), meta.uid()))
            } else if !sticky_dir && mode & 0o002 != 0 {
                Some(format!(
                    "{} is writable by everyone (mode {:04o})",
                    p.display(),
                    mode & 0o7777
                ))
            } else if !sticky_dir && meta.gid() != 0 && mode & 0o020 != 0 {
                Some(format!(
                    "{} is writable by group {} (mode {:04o})",
                    p.display(),
                    meta.gid(),
                    mode & 0o7777
                ))
            } else {
                None
            }
        })
}

/// The running configuration's `script_user`, for the places that start scripts (checks and notify
/// run on tasks that do not hold the configuration). Replaced on reload.
static RUN_AS: RwLock<Option<RunAs>> = RwLock::new(None);

/// Makes `run_as` the user later scripts run as.
pub fn set_run_as(run_as: Option<RunAs>) {
    *RUN_AS.write().unwrap_or_else(|p| p.into_inner()) = run_as;
}

/// Sets the configured user and group on a script's command (std drops the supplementary groups
/// when it changes the uid as root).
pub fn apply(cmd: &mut tokio::process::Command) {
    if let Some(r) = RUN_AS.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        cmd.uid(r.uid).gid(r.gid);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A root-owned directory tree under /tmp (sticky, so allowed) with a script in it.
    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("ipf-sec-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            let script = dir.join("bin/check.sh");
            std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write");
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            Tree(dir)
        }

        fn script(&self) -> String {
            format!("{} --quiet", self.0.join("bin/check.sh").display())
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn enforced() -> ScriptSecurity {
        ScriptSecurity {
            enforce: true,
            run_as: None,
        }
    }

    #[test]
    fn root_owned_scripts_pass() {
        if !root() {
            return eprintln!("skipped: the files must be owned by root (run as root)");
        }
        let t = Tree::new("ok");
        assert_eq!(enforced().check("vrrp_script chk", &t.script()), Ok(()));
        // Found in PATH, as keepalived looks bare names up.
        assert_eq!(enforced().check("vrrp_script chk", "true"), Ok(()));
    }

    #[test]
    fn writable_file_or_directory_is_refused_when_enforced() {
        if !root() {
            return eprintln!("skipped: the files must be owned by root (run as root)");
        }
        let t = Tree::new("w");
        let file = t.0.join("bin/check.sh");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o757)).expect("chmod");
        let e = enforced().check("vrrp_script chk", &t.script()).expect_err("refused");
        assert!(e.contains("check.sh is writable by everyone (mode 0757)"), "{e}");
        assert!(e.contains("vrrp_script chk"), "{e}");
        assert!(e.contains("enable_script_security"), "{e}");
        // Without enable_script_security the script stays.
        assert_eq!(ScriptSecurity::default().check("vrrp_script chk", &t.script()), Ok(()));

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let bin = t.0.join("bin");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = enforced()
            .check("notify of vrrp_instance VI_1", &t.script())
            .expect_err("refused");
        assert!(e.contains(&format!("{} is writable by everyone", bin.display())), "{e}");

        // A sticky directory is fine (only the owner of a name may replace it).
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        assert_eq!(enforced().check("x", &t.script()), Ok(()));

        // Group-writable with a non-root group, or a non-root owner.
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o775)).expect("chmod");
        std::os::unix::fs::chown(&bin, None, Some(100)).expect("chown");
        let e = enforced().check("x", &t.script()).expect_err("refused");
        assert!(e.contains("writable by group 100"), "{e}");
        std::os::unix::fs::chown(&bin, Some(65534), Some(0)).expect("chown");
        let e = enforced().check("x", &t.script()).expect_err("refused");
        assert!(e.contains("owned by uid 65534, not root"), "{e}");
    }

    #[test]
    fn unprivileged_script_user_needs_no_protection() {
        if !root() {
            return eprintln!("skipped: the files must be owned by root (run as root)");
        }
        let t = Tree::new("user");
        std::fs::set_permissions(t.0.join("bin"), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let nobody = resolve("nobody", None).expect("nobody exists");
        assert_ne!(nobody.uid, 0);
        let sec = ScriptSecurity {
            enforce: true,
            run_as: Some(nobody.clone()),
        };
        assert_eq!(sec.check("x", &t.script()), Ok(()));
        // Unless the script is set-uid root.
        let file = t.0.join("bin/check.sh");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
        assert!(sec.check("x", &t.script()).is_err());
        // A user whose group is root still runs with root's group.
        let rootgroup = ScriptSecurity {
            enforce: true,
            run_as: Some(RunAs { gid: 0, ..nobody }),
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(rootgroup.check("x", &t.script()).is_err());
    }

    #[test]
    fn a_missing_program_is_judged_by_who_could_create_it() {
        if !root() {
            return eprintln!("skipped: the files must be owned by root (run as root)");
        }
        let t = Tree::new("missing");
        let missing = format!("{}/bin/later.sh --flag", t.0.display());
        assert_eq!(enforced().check("vrrp_script chk", &missing), Ok(()));
        std::fs::set_permissions(t.0.join("bin"), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = enforced().check("vrrp_script chk", &missing).expect_err("refused");
        assert!(e.contains("bin is writable by everyone (mode 0777)"), "{e}");
        // A bare name found nowhere in PATH fails when run, as before.
        assert_eq!(enforced().check("x", "ipf-no-such-program-anywhere"), Ok(()));
    }

    #[test]
    fn unknown_user_or_group_is_an_error() {
        assert_eq!(
            resolve("ipf-no-such-user", None),
            Err("script_user \"ipf-no-such-user\": no such user".into())
        );
        assert_eq!(
            resolve("root", Some("ipf-no-such-group")),
            Err("script_user \"root\" \"ipf-no-such-group\": no such group".into())
        );
        let r = resolve("root", Some("root")).expect("root");
        assert_eq!((r.uid, r.gid), (0, 0));
    }
}
