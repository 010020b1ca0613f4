"""oct.core: `browser` (OCT's Browser) and `exceptions`; OCT's own modules if it is installed."""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
