"""Redis read model of live tiers for support routing: key layout, guarded writer, reader.

The worker writes through :class:`ReadModelWriter`; the HTTP API reads through :class:`ReadModelReader`.
"""

from tierstream.readmodel.keys import Keys
from tierstream.readmodel.reader import ReadModelReader
from tierstream.readmodel.writer import ReadModelWriter, ResyncResult

__all__ = ["Keys", "ReadModelReader", "ReadModelWriter", "ResyncResult"]
