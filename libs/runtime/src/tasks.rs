//! Waiting for the tasks a service spawned.

use tokio::task::{JoinError, JoinSet};

/// Waits until every task in `tasks` has ended, logs each failure under `service`, and
/// returns the first one. A task that panicked or was cancelled becomes an error through
/// `join_error`.
pub async fn join_tasks<E>(
    service: &str,
    mut tasks: JoinSet<Result<(), E>>,
    join_error: impl Fn(JoinError) -> E,
) -> Result<(), E>
where
    E: std::fmt::Display + 'static,
{
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let error = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error,
            Err(failure) => join_error(failure),
        };
        tracing::error!(service, %error, "service task stopped with an error");
        first_error.get_or_insert(error);
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_task_error_is_returned() {
        let mut tasks: JoinSet<Result<(), String>> = JoinSet::new();
        tasks.spawn(async { Ok(()) });
        tasks.spawn(async { Err("broken".to_owned()) });

        let result = join_tasks("test", tasks, |failure| failure.to_string()).await;

        assert_eq!(result, Err("broken".to_owned()));
    }

    #[tokio::test]
    async fn all_tasks_ending_well_is_ok() {
        let mut tasks: JoinSet<Result<(), String>> = JoinSet::new();
        tasks.spawn(async { Ok(()) });

        let result = join_tasks("test", tasks, |failure| failure.to_string()).await;

        assert_eq!(result, Ok(()));
    }
}
