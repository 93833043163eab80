"""The Faust application: topology, worker, tables, sinks (the hot path's pure part: batch, decide)."""

from scoring.accel import extend_path

__path__ = extend_path(__path__, __name__)  # the compiled build of this package's hot modules first (make native)
