//! [`Continuation`]: what a region created by a restarting vRouter took over from the file
//! its previous run left at the same path.
//!
//! The `create_continuing` constructors of the regions ([`crate::stats::StatsRegion`],
//! [`crate::mirror::MirrorRegion`], [`crate::trace::TraceRegion`]) look at the previous file
//! with [`shm::previous`] before the new one replaces it, and seed the new region from it
//! inside its creation, so a reader never sees a counter go backwards across the restart:
//!
//! - no previous file: [`Continued::First`], nothing to say;
//! - a file of this build's layout: [`Continued::Continued`], what was carried and, in
//!   `notes`, what could not be (vifs no longer configured, another lcore count, rings that
//!   do not fit);
//! - a file this build may not trust (another layout version, truncated, foreign): set aside
//!   as `<path>.old`, the region starts at zero, [`Continued::Fresh`] with the one-line reason
//!   (a warning: the vRouter runs on).
//!
//! [`Continuation::line`] is the line the vRouter prints at start.

use std::path::PathBuf;

/// What a region's `create_continuing` did with the previous run's file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Continuation {
    /// The region ("stats region", "mirror region", "trace region").
    pub kind: &'static str,
    /// The region file.
    pub path: PathBuf,
    /// What continues ("counters", "trace rings").
    pub what: &'static str,
    /// The outcome.
    pub outcome: Continued,
}

/// The outcome of a [`Continuation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Continued {
    /// No previous file: everything starts at zero.
    First,
    /// Seeded from the previous run's file; `notes` says what could not be carried.
    Continued {
        /// One short clause each, e.g. "4 lcores before, 2 now: the previous per-lcore
        /// counters are summed into lcore 0".
        notes: Vec<String>,
    },
    /// The previous file was not trusted: kept at `kept_at`, the region starts at zero.
    Fresh {
        /// Why (one line naming the region kind and the file).
        reason: String,
        /// Where the previous file is now (`<path>.old`).
        kept_at: PathBuf,
    },
}

impl Continuation {
    /// The outcome of [`shm::previous`] for a region that found no file, or set one aside
    /// (`None` for a compatible one, which the region continues from itself).
    pub(crate) fn from_previous<L>(
        kind: &'static str,
        path: PathBuf,
        what: &'static str,
        previous: &shm::Previous<L>,
    ) -> Option<Continuation> {
        let outcome = match previous {
            shm::Previous::None => Continued::First,
            shm::Previous::SetAside { reason, kept_at } => {
                Continued::Fresh { reason: reason.to_string(), kept_at: kept_at.clone() }
            }
            shm::Previous::Compatible(..) => return None,
        };
        Some(Continuation { kind, path, what, outcome })
    }

    /// Whether the previous file was set aside (the line is a warning).
    pub fn is_warning(&self) -> bool {
        matches!(self.outcome, Continued::Fresh { .. })
    }

    /// The one line to print at start (`None` on a first start):
    /// `<kind> <path>: continuing <what> from the previous run[ (<notes>)]`, or for a file
    /// set aside, `<reason>; kept it at <path>.old and created the region fresh`.
    pub fn line(&self) -> Option<String> {
        match &self.outcome {
            Continued::First => None,
            Continued::Continued { notes } => {
                let mut s =
                    format!("{} {}: continuing {} from the previous run", self.kind, self.path.display(), self.what);
                if !notes.is_empty() {
                    s.push_str(&format!(" ({})", notes.join("; ")));
                }
                Some(s)
            }
            Continued::Fresh { reason, kept_at } => {
                Some(format!("{reason}; kept it at {} and created the region fresh", kept_at.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let c =
            |outcome| Continuation { kind: "stats region", path: "/run/vr/stats".into(), what: "counters", outcome };
        assert_eq!(c(Continued::First).line(), None);
        assert_eq!(
            c(Continued::Continued { notes: vec![] }).line().unwrap(),
            "stats region /run/vr/stats: continuing counters from the previous run"
        );
        assert_eq!(
            c(Continued::Continued { notes: vec!["a".into(), "b".into()] }).line().unwrap(),
            "stats region /run/vr/stats: continuing counters from the previous run (a; b)"
        );
        let fresh = c(Continued::Fresh { reason: "/run/vr/stats: bad".into(), kept_at: "/run/vr/stats.old".into() });
        assert!(fresh.is_warning());
        assert_eq!(
            fresh.line().unwrap(),
            "/run/vr/stats: bad; kept it at /run/vr/stats.old and created the region fresh"
        );
    }
}
