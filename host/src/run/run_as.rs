//! The numeric identity a skill's processes run as, resolved from the manifest's
//! `run.user` against the image's own `/etc/passwd` and `/etc/group`.
//!
//! The engine would resolve a name itself, from files the skill's author wrote: an image
//! whose passwd says `evil:x:0:0` makes `user: evil` root, and a bare uid takes its
//! primary group (0, say) and every supplementary group that lists its name from those
//! files. So the host resolves, refuses uid 0 and gid 0 whatever the files say, and hands
//! the engine `uid:gid` in numbers: with an explicit group the engine adds no
//! supplementary group, and skillhost's init checks once more that none is 0.

use std::fmt;

/// A resolved identity: never 0 in either part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// The user id.
    pub uid: u32,
    /// The primary group id; there are no supplementary groups.
    pub gid: u32,
}

impl fmt::Display for RunAs {
    /// `uid:gid`, as the engine's `User` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// Why `run.user` cannot be run as in this image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RunAsError {
    /// The image's files give the user or the group id 0.
    #[error("{what} {name:?} is {id_kind} 0 in the image ({file} says {line:?}): skills never run as root or with group 0, use an id such as 10001")]
    Root {
        what: &'static str,
        name: String,
        id_kind: &'static str,
        file: &'static str,
        line: String,
    },
    /// A name the image's files do not have.
    #[error("{what} {name:?} is not in the image's {file}: add it there, or give a number")]
    Unknown {
        what: &'static str,
        name: String,
        file: &'static str,
    },
}

/// One line of `/etc/passwd` or `/etc/group`: its name, its id, and (passwd) its group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    id: u32,
    group: Option<u32>,
    line: String,
}

/// The entries of a passwd (`with_group`) or group file; lines that do not parse are
/// skipped, as the C library skips them.
fn entries(text: &str, with_group: bool) -> Vec<Entry> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?.to_string();
            let _password = fields.next()?;
            let id = fields.next()?.trim().parse().ok()?;
            let group = if with_group {
                Some(fields.next()?.trim().parse().ok()?)
            } else {
                None
            };
            Some(Entry {
                name,
                id,
                group,
                line: line.to_string(),
            })
        })
        .collect()
}

/// Whether `spec` (`uid[:gid]` or `name[:group]`, already refused for literal root)
/// needs the image's files: anything but two numbers does.
pub(crate) fn numeric(spec: &str) -> Option<RunAs> {
    let (user, group) = spec.split_once(':')?;
    let number = |part: &str| {
        part.chars()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse::<u32>().ok())
            .flatten()
            .filter(|id| *id != 0)
    };
    Some(RunAs {
        uid: number(user)?,
        gid: number(group)?,
    })
}

/// Resolve `spec` against the image's passwd and group files (`None` where the image has
/// none). A number is taken as it is; a name must be in its file. Without a group, the
/// user's passwd entry gives it, and a uid the image does not list gets the same number
/// as its gid (where the engine would give 0).
pub(crate) fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<RunAs, RunAsError> {
    let users = entries(passwd.unwrap_or_default(), true);
    let groups = entries(group.unwrap_or_default(), false);
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, entry) = lookup(&users, user_part, Kind::User)?;
    let gid = match (group_part, entry) {
        (Some(part), _) => lookup(&groups, part, Kind::Group)?.0,
        (None, Some(entry)) => match entry.group {
            Some(0) => return Err(Kind::User.root(user_part, "gid", &entry.line)),
            Some(gid) => gid,
            None => uid,
        },
        (None, None) => uid,
    };
    // Literal zeros never pass manifest validation; this holds whatever the caller gave.
    if uid == 0 || gid == 0 {
        let kind = if uid == 0 { "uid" } else { "gid" };
        return Err(RunAsError::Root {
            what: "user",
            name: spec.to_string(),
            id_kind: kind,
            file: "the manifest",
            line: spec.to_string(),
        });
    }
    Ok(RunAs { uid, gid })
}

/// Which file a part of `run.user` is looked up in.
#[derive(Debug, Clone, Copy)]
enum Kind {
    User,
    Group,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Kind::User => "/etc/passwd",
            Kind::Group => "/etc/group",
        }
    }

    fn root(self, name: &str, id_kind: &'static str, line: &str) -> RunAsError {
        RunAsError::Root {
            what: self.what(),
            name: name.to_string(),
            id_kind,
            file: self.file(),
            line: line.to_string(),
        }
    }

    fn unknown(self, name: &str) -> RunAsError {
        RunAsError::Unknown {
            what: self.what(),
            name: name.to_string(),
            file: self.file(),
        }
    }
}

/// A part of `run.user` as an id, with its entry when the file has one: a number as it
/// is, a name from the file (and never one the file makes 0).
fn lookup<'e>(
    entries: &'e [Entry],
    part: &str,
    kind: Kind,
) -> Result<(u32, Option<&'e Entry>), RunAsError> {
    if !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()) {
        let id: u32 = part.parse().map_err(|_| kind.unknown(part))?;
        return Ok((id, entries.iter().find(|e| e.id == id)));
    }
    let entry = entries
        .iter()
        .find(|e| e.name == part)
        .ok_or_else(|| kind.unknown(part))?;
    if entry.id == 0 {
        let id_kind = match kind {
            Kind::User => "uid",
            Kind::Group => "gid",
        };
        return Err(kind.root(part, id_kind, &entry.line));
    }
    Ok((entry.id, Some(entry)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          # a comment\n\
                          evil:x:0:0::/:/bin/sh\n\
                          gz:x:10002:0::/:/bin/sh\n\
                          app:x:10001:10001::/:/bin/sh\n\
                          broken line\n";
    const GROUP: &str = "root:x:0:\nevilg:x:0:\napp:x:10001:\nstaff:x:50:app\n";

    fn run_as(spec: &str) -> Result<RunAs, RunAsError> {
        resolve(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn a_name_the_image_maps_to_uid_0_is_refused() {
        let err = run_as("evil:evilg").unwrap_err();
        assert!(
            matches!(
                &err,
                RunAsError::Root {
                    id_kind: "uid",
                    file: "/etc/passwd",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("evil:x:0:0"), "{err}");
        assert!(matches!(
            run_as("app:evilg"),
            Err(RunAsError::Root {
                id_kind: "gid",
                file: "/etc/group",
                ..
            })
        ));
    }

    #[test]
    fn a_primary_group_0_from_the_images_passwd_is_refused() {
        for spec in ["10002", "gz"] {
            let err = run_as(spec).unwrap_err();
            assert!(
                matches!(&err, RunAsError::Root { id_kind: "gid", .. }),
                "{spec}: {err:?}"
            );
        }
        // An explicit group overrides the passwd entry's, as the engine does.
        assert_eq!(
            run_as("10002:10002"),
            Ok(RunAs {
                uid: 10002,
                gid: 10002
            })
        );
    }

    #[test]
    fn names_and_bare_ids_resolve_to_numbers() {
        assert_eq!(
            run_as("app"),
            Ok(RunAs {
                uid: 10001,
                gid: 10001
            })
        );
        assert_eq!(
            run_as("app:staff"),
            Ok(RunAs {
                uid: 10001,
                gid: 50
            })
        );
        assert_eq!(
            run_as("10001:staff"),
            Ok(RunAs {
                uid: 10001,
                gid: 50
            })
        );
        // A uid the image does not list takes its own number as its group, not 0.
        assert_eq!(
            run_as("20000"),
            Ok(RunAs {
                uid: 20000,
                gid: 20000
            })
        );
        assert_eq!(
            resolve("20000", None, None),
            Ok(RunAs {
                uid: 20000,
                gid: 20000
            })
        );
        assert_eq!(RunAs { uid: 1, gid: 2 }.to_string(), "1:2");
    }

    #[test]
    fn unknown_names_are_refused_with_their_file() {
        assert_eq!(
            run_as("nobody2"),
            Err(RunAsError::Unknown {
                what: "user",
                name: "nobody2".into(),
                file: "/etc/passwd"
            })
        );
        assert!(matches!(
            resolve("app", None, None),
            Err(RunAsError::Unknown { .. })
        ));
        assert!(matches!(
            run_as("10001:wheel"),
            Err(RunAsError::Unknown { what: "group", .. })
        ));
    }

    #[test]
    fn only_two_nonzero_numbers_skip_the_images_files() {
        assert_eq!(
            numeric("10001:10001"),
            Some(RunAs {
                uid: 10001,
                gid: 10001
            })
        );
        for spec in ["10001", "app:10001", "10001:app", "0:1", "1:0", "1:+2"] {
            assert_eq!(numeric(spec), None, "{spec}");
        }
    }
}
