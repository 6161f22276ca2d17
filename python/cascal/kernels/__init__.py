"""Public, validated entry points of the Rust kernels (docs/architecture.md#kernels-and-references).

Each submodule wraps one kernel family of :mod:`cascal._core`: it checks shapes and dtypes, makes
C-contiguous input without copying what already is, and raises :class:`~cascal.errors.KernelError`
(a ``ValueError``) naming the argument.
An output or working buffer too large to allocate raises ``MemoryError`` (naming the kernel, the
argument and the bytes) before any work starts, instead of aborting the interpreter; the limit is the
physical memory, or ``CASCAL_MAX_OUTPUT_BYTES`` when set.
"""

from cascal.kernels.calibration import *  # noqa: F401,F403
from cascal.kernels.consensus import *  # noqa: F401,F403
from cascal.kernels.distance import *  # noqa: F401,F403
from cascal.kernels.linkage import *  # noqa: F401,F403
from cascal.kernels.niche import *  # noqa: F401,F403
from cascal.kernels.routing import *  # noqa: F401,F403
from cascal.kernels.silhouette import *  # noqa: F401,F403
