"""oct's stand-in for the `oct` package, as OCT scripts import it in a turret:
`from oct.core.browser import Browser`. If OCT itself is installed, its other modules stay
importable beside these (the package path is extended, not replaced)."""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
