"""Plain numpy/scipy references of every Rust kernel: slow, obvious, and the ground truth of tests
and benchmarks."""

from cascal.reference.calibration import *  # noqa: F401,F403
from cascal.reference.consensus import *  # noqa: F401,F403
from cascal.reference.distance import *  # noqa: F401,F403
from cascal.reference.linkage import *  # noqa: F401,F403
from cascal.reference.niche import *  # noqa: F401,F403
from cascal.reference.routing import *  # noqa: F401,F403
from cascal.reference.silhouette import *  # noqa: F401,F403
