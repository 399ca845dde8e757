"""Keeping a worktree task's work: a commit, a branch and a patch, made without ever
running git with anything the workspace controls.

What a task gets
----------------
``snapshot_start`` records the task's copy right after it is made: the *start* commit is
the workspace as the task found it (HEAD, or, when it had uncommitted changes or
untracked files, a commit of that state on top of HEAD). ``preserve`` records the copy
when the task is over: a commit on top of the start commit, the branch
``refs/heads/pipeline/<planRunId>/<stageId>/<taskId>`` (components encoded by
``branch_name``: valid and distinct for every id) in the workspace's repository, and
``git diff --binary <start> <end>``, which ``git apply`` applies to a checkout of the
start commit to give the end tree byte for byte. ``changed_files`` counts paths. A state
holds what ``git add -A`` would stage, with these differences: bytes are stored as they
are on disk (no attribute or config conversion); nested repositories (a directory with a
``.git`` of its own that the index does not track) are kept as ordinary files, never as
a gitlink and never with their ``.git``; a registered submodule stays the gitlink the
index records while nothing below it changes, and becomes its files when something
does; ignore rules are the copy's ``.gitignore`` files and the workspace's
``.git/info/exclude`` (read once at the start of the run), never a user or system
excludes file (an agent could write those to hide its work); FIFOs, sockets and devices
are not stored (as git does). Nothing changed: no commit, no branch, no patch. The
workspace's checkout, index and HEAD are never touched.

A path that cannot be preserved (a name git refuses such as ``.GIT`` or ``git~1``, an
unreadable file) does not lose the others: the branch and patch are made from the rest
and ``PreserveError`` names the paths (``kept`` carries what was made), so the task does
not pass as succeeded.

A workspace that is not a git repository (no ``.git``, a subdirectory of a repository, a
``.git`` that is a file or symlink, a reftable repository): the same commits are made in
the runner-owned repository (``<run dir>/git``, the start commit without a
parent) and the patch is against
the task's starting copy. ``Preserved.branch`` is then None: no branch exists in the
workspace, and a consumer must not look for one there; the commit is in the runner's
repository under the same branch name (``Preserved.repository``, ``Preserved.commit``),
and ``Repository.note`` says why the workspace was not used as a repository.

Why this is safe (the mechanism)
--------------------------------
The workspace and the task's copy are untrusted: an agent may have written the
repository's config, hooks, attributes, ``objects/info/alternates``, symlinks inside
``.git``, and, running as the same user, ``~/.gitconfig`` and XDG config. git acts on
such input in many places (hooks of every kind, ``core.fsmonitor``, ``core.hooksPath``,
filter drivers, ``diff.external``/textconv, pagers, editors, signing programs,
credential helpers, ``core.sshCommand``, lazy fetches of a partial clone, ``include``
indirections, ``core.worktree``...), and a list of ``-c`` overrides on the workspace's
repository can always miss one. So git never runs with the workspace's ``.git``:

- Every git process runs with ``GIT_DIR`` = a runner-owned bare repository made by
  ``git init --template=`` (no hooks), an environment built from nothing but ``PATH``
  (``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=/dev/null``, a private ``HOME`` and
  ``XDG_CONFIG_HOME``, ``GIT_ATTR_NOSYSTEM``: no system, user or XDG config, attributes
  or excludes), and command-line settings that switch off hooks, fsmonitor, attribute
  and excludes files, signing, pagers, transports and the untracked cache even if that
  repository's config were changed (``gitcmd``). With no driver, helper or program
  configured anywhere, no attribute in the copy can name a command; the runner's
  ``info/attributes`` (which outranks every ``.gitattributes``) unsets ``text``, ``eol``,
  ``crlf``, ``ident``, ``filter`` and ``working-tree-encoding`` for every path, so blobs
  are the files' bytes. The workspace's objects are reached through
  ``objects/info/alternates`` (object data only: its config, hooks and refs are not read
  that way).
- Each task has a temporary index there, started from the copy's ``.git/index`` read as a
  file (the workspace's own index is never used or written). The commands: ``ls-files
  -m -d -o --exclude-standard`` and ``update-index`` with the copy as work tree (read the
  copy's files and ``.gitignore`` patterns; no hook runs), ``write-tree``,
  ``commit-tree``, ``update-ref`` (the runner's refs), ``rev-list``, ``cat-file``, ``diff
  --binary --no-ext-diff --no-textconv`` between two commits of a bare repository (no
  work tree: no ``.gitattributes`` read), ``check-ignore`` for nested repositories'
  files. Every path git lists is checked by the runner before git records it (reached
  without a symlink, a regular file or symlink, readable, a name git accepts), so one
  bad path is a reported problem, not a failed batch.
- The workspace's repository is reached as files (``wsgit``): ``HEAD``, refs and the
  index are read without following symlinks, size-capped and never blocking; the only
  writes are the new loose objects and one new ref, made through directory descriptors
  (a symlink anywhere on the way is an error, never followed) with ``link(2)``, so
  nothing existing is replaced and a half-written file is never seen.
- git's walk of the copy reads a nested repository's ``.git`` to recognise it (data
  only); a FIFO planted where git reads can only make a step block until its time limit.

Time: every git process and every loop of the runner's own has a time limit and stops as
soon as the run's ``cancel`` event is set (``proc.run_bytes``).

Speed: the copy keeps sizes and modification times, so with ``core.checkStat=minimal``
the copied index is a valid stat cache: only files that differ from it are hashed at the
start, only files the task touched at the end ("racy" entries are re-hashed: see
``repository._rehash_same_second``). Copies of one workspace state share the gitlink
list and HEAD's tree id; a non-git workspace's latest snapshot index serves its next
copies.

``changed_paths`` (for overlay workspaces, whose upper layer lists what changed): only
those paths are examined (git's listing is limited to them), everything else is taken
from the start; the result is the same as the full scan's for the same changes.
"""

from claude_runner.errors import PreserveError
from claude_runner.pipeline.preserve.names import branch_name, decode_component, encode_component
from claude_runner.pipeline.preserve.repository import (
    Base,
    Preserved,
    Repository,
    open_repository,
)

__all__ = [
    "Base",
    "PreserveError",
    "Preserved",
    "Repository",
    "branch_name",
    "decode_component",
    "encode_component",
    "open_repository",
]
