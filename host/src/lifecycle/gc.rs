//! `skillhost gc`: containers of dead hosts, and the image tags of the skills in scope
//! that nothing needs any more.
//!
//! Scoped to what it is told: the repositories (`skill-<name>`) of the skills found in
//! the skills directories and of the skills of the given locks, nothing else on the
//! engine. Within them it keeps every image the current sources build to (by tag and by
//! image ID) and every image a given lock pins, however old; the engine keeps any image a
//! container still uses.

use std::collections::BTreeSet;

use serde::Serialize;

use super::leftovers::{self, Judge};
use crate::engine::{Engine, EngineError};

/// What gc may remove and what it must keep: the default (nothing in scope), with the
/// sets filled in. Fields may be added in any release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcScope {
    /// The repositories it may prune, `skill-<name>`.
    pub repositories: BTreeSet<String>,
    /// Tags kept: the current sources' images and the locks' tags.
    pub keep_tags: BTreeSet<String>,
    /// Image IDs kept: the current sources' images and the images locks pin.
    pub keep_ids: BTreeSet<String>,
    /// Only say what would be removed.
    pub dry_run: bool,
}

/// What `skillhost gc` removed, or with `dry_run` would remove.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Whether nothing was removed, only listed.
    pub dry_run: bool,
    /// Containers of host processes that are gone.
    pub containers_removed: Vec<String>,
    /// Tags in scope that neither current sources nor a given lock need.
    pub images_removed: Vec<String>,
    /// Tags that were to go but stay: a container still uses them, or removal failed.
    pub images_kept: Vec<String>,
}

/// The tags to remove: in a repository of the scope, not a tag it keeps, and not of an
/// image it keeps. `images` are (tag, image ID) pairs.
pub(crate) fn doomed<'i>(images: &'i [(String, String)], scope: &GcScope) -> Vec<&'i str> {
    images
        .iter()
        .filter(|(tag, id)| {
            let in_scope = tag
                .rsplit_once(':')
                .is_some_and(|(repo, _)| scope.repositories.contains(repo));
            in_scope && !scope.keep_tags.contains(tag) && !scope.keep_ids.contains(id)
        })
        .map(|(tag, _)| tag.as_str())
        .collect()
}

/// Remove (or list) leftover containers and the tags in scope nothing needs.
pub async fn gc(engine: &Engine, scope: &GcScope) -> Result<GcReport, EngineError> {
    let containers = engine.containers();
    let mut report = GcReport {
        dry_run: scope.dry_run,
        ..Default::default()
    };
    report.containers_removed = if scope.dry_run {
        let mut judge = Judge::new(containers.as_ref());
        leftovers::dead_instances_containers(containers.as_ref(), &mut judge).await?
    } else {
        leftovers::reap_dead_instances(containers.as_ref()).await?
    };
    let images = engine.image_tags().await?;
    let mut doomed = doomed(&images, scope);
    doomed.sort_unstable();
    for tag in doomed {
        if scope.dry_run {
            report.images_removed.push(tag.to_string());
            continue;
        }
        match engine.remove_tag_unless_used(tag).await {
            Ok(()) => report.images_removed.push(tag.to_string()),
            Err(e) => {
                tracing::info!(image = %tag, "kept: {e}");
                report.images_kept.push(tag.to_string());
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(t, i)| (t.to_string(), i.to_string()))
            .collect()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn only_tags_in_scope_that_nothing_needs_go() {
        let images = pairs(&[
            ("skill-a:new", "sha256:1"),
            ("skill-a:old", "sha256:2"),
            ("skill-a:locked", "sha256:3"),
            ("skill-a:alias", "sha256:1"),
            ("skill-b:any", "sha256:4"),
            ("skill-ab:x", "sha256:5"),
            ("other:latest", "sha256:6"),
        ]);
        let scope = GcScope {
            repositories: set(&["skill-a"]),
            keep_tags: set(&["skill-a:new"]),
            keep_ids: set(&["sha256:1", "sha256:3"]),
            dry_run: false,
        };
        // The lock's older image stays (kept by ID); another tag of the current image
        // stays; other skills and repositories are not in scope.
        assert_eq!(doomed(&images, &scope), vec!["skill-a:old"]);
    }

    #[test]
    fn an_empty_scope_removes_nothing() {
        let images = pairs(&[("skill-a:x", "sha256:1")]);
        assert!(doomed(&images, &GcScope::default()).is_empty());
    }
}
