"""Load benchmark of the ``cascal serve`` gateway on 127.0.0.1 (same as ``cascal serve-bench``).

Run: ``python benches/bench_serve.py [--seconds S]``. It trains a small router on the simulated pool,
starts the simulator and a ``cascal serve`` process, and prints /v1/route decisions per second with
p50/p99 latency at 1, 16 and 64 concurrent clients, and the gateway's added median latency on
/v1/chat/completions over calling the upstream directly. Bounded: about 4 x S seconds plus setup.
"""

from __future__ import annotations

import sys

from cascal.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve-bench", *sys.argv[1:]]))
