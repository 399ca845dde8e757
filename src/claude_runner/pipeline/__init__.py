"""The pipeline executor: runs a resolved plan's stages and tasks with the real CLI.

Modules, one job each:

- ``executor``  ``run_pipeline``: stages in order, the parallel scheduler, fail_fast and
  cancellation, the final result.
- ``task``      one task: workspace, config dir, the CLI, its stream, its outcome.
- ``stream``    bounded, line-aligned reading of stream-json; finds init and result.
- ``events``    the versioned event contract and its single writer.
- ``result``    per-task results and the aggregated ``pipeline_result``.
- ``classify``  an attempt's failure kind from the CLI's result, exit and stderr.
- ``taskspace`` the run directory, task workspace copies, per-slot config dirs.
- ``preserve``  a worktree task's changes as a branch and a patch.
- ``orphans``   finding and killing what a task left behind; the stream watchdog.
"""
