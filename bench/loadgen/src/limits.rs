//! The per-process limit on open files, which caps the subscribers one worker can hold.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors a worker keeps for itself: stdio, the runtime's own, and a margin.
pub const RESERVED_FILES: u64 = 64;

/// Error from checking the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "--per-worker {per_worker} needs {needed} open files per process, but the hard limit \
         is {limit}; lower --per-worker and more workers are started"
    )]
    PerWorkerTooLarge {
        per_worker: u32,
        needed: u64,
        limit: u64,
    },
}

/// Checks that a worker with `per_worker` subscribers fits under the hard limit on open files.
pub fn check_per_worker(per_worker: u32) -> Result<(), LimitError> {
    let needed = u64::from(per_worker) + RESERVED_FILES;
    let Some(limit) = getrlimit(Resource::Nofile).maximum else {
        return Ok(());
    };
    if needed > limit {
        return Err(LimitError::PerWorkerTooLarge {
            per_worker,
            needed,
            limit,
        });
    }
    Ok(())
}

/// Raises this process's soft limit on open files to its hard limit, and returns the soft
/// limit in force afterwards (`None` when unlimited).
pub fn raise_open_files() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            eprintln!("loadgen: cannot raise the open file limit to the hard limit: {error}");
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_worker_beyond_hard_limit_rejected() {
        let Some(limit) = getrlimit(Resource::Nofile).maximum else {
            return;
        };
        let too_many = u32::try_from(limit).unwrap_or(u32::MAX);
        assert!(matches!(
            check_per_worker(too_many),
            Err(LimitError::PerWorkerTooLarge { .. })
        ));
        assert_eq!(check_per_worker(1), Ok(()));
    }
}
