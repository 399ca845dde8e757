"""The pipeline executor: runs a resolved plan's tasks with the real CLI.

Modules, one job each:

- ``executor``  ``run_pipeline``: the run directory, the graph, the final result.
- ``scheduler`` the run's one loop: which task starts when, pipes, exits, helper threads.
- ``task``      one task: workspace, config dir, the CLI, its stream, its outcome (the
  one owner of a task's state).
- ``state``     the closed vocabularies: task status, failure kind.
- ``stream``    bounded, line-aligned reading of stream-json; finds init and result.
- ``events``    the versioned event contract and its single writer.
- ``result``    per-task results and the aggregated ``pipeline_result``.
- ``classify``  an attempt's failure kind from the CLI's result, exit and stderr.
- ``taskspace`` the run directory layout, task workspace copies, per-slot config dirs.
- ``preserve``  a worktree task's changes as a branch and a patch.
"""
