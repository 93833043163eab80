"""tierstream's pure logic: customer state, features, policies, lifecycle (no I/O; see scoring.accel)."""

from scoring.accel import extend_path

__path__ = extend_path(__path__, __name__)  # the compiled build of this package's hot modules first (make native)
