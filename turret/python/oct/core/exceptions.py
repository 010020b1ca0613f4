"""OCT's exceptions, by the names OCT scripts catch them."""


class OctConfigurationError(Exception):
    """A bad OCT configuration."""


class OctGenericException(Exception):
    """A generic OCT error."""


class FormNotFoundException(Exception):
    """Browser.get_form found no form for its selector and number."""


class NoUrlOpen(Exception):
    """The Browser was asked about a page before opening one."""


class LinkNotFound(Exception):
    """Browser.follow_link found no link for its selector (and regex)."""


class NoFormWaiting(Exception):
    """Browser.submit_form without a form taken by get_form."""
