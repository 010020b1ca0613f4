"""OCT's Browser, as OCT scripts use it: `from oct.core.browser import Browser`.

A minimal browser over a `requests` session, with pages parsed by `lxml.html` and found by CSS
selectors (`lxml.cssselect`): open_url, get_form / form_data / submit_form, follow_link, back
and history, add_header, clean_session, as in OCT. It needs the Python packages requests, lxml
and cssselect in the Python that runs the turret's scripts (`python3`, or `$OCT_PYTHON`).

Where OCT's own Browser misbehaved, this one does what a browser does (docs/python.md):
relative links resolve against the page when no base_url is given, history holds only pages
actually visited (never None) and only the last 100 of them, a GET form sends its fields in the query string, the added
headers go with form submissions too, a failed get_form forgets the previous form, and
connections are kept alive.
"""
import re
import sys

_missing = []
try:
    import requests
except ImportError:
    _missing.append("requests")
try:
    import lxml.html as _html
except ImportError:
    _missing.append("lxml")
try:
    import cssselect  # noqa: F401 - lxml.cssselect needs it
except ImportError:
    _missing.append("cssselect")
if _missing:
    raise ImportError(
        "oct.core.browser needs the Python package%s %s, not installed for %s: pip install %s"
        % ("s" if len(_missing) > 1 else "", ", ".join(_missing), sys.executable, " ".join(_missing))
    )
from lxml.cssselect import CSSSelector  # noqa: E402

from oct.core.exceptions import FormNotFoundException, LinkNotFound, NoFormWaiting, NoUrlOpen  # noqa: E402


# A canon's browser lives as long as the test: its history keeps this many pages, not all.
HISTORY = 100


class Browser(object):
    """A minimal browser for OCT scripts.

    :param session: the requests session to use (a new requests.Session if None)
    :param base_url: what relative links and form actions resolve against (the page's own URL
        if empty)
    """

    def __init__(self, session=None, base_url=""):
        self._sess_bak = session
        self._history = []
        self._html = None
        self._url = None
        self._base_url = base_url
        self._headers = {}
        self.form = None
        self.form_data = None
        self.session = session or requests.Session()

    def add_header(self, name, value):
        """Sends header `name: value` with every request from now on (replacing one so named)."""
        self._headers[name] = value

    def del_header(self, key):
        """Stops sending header `key`, if it was added."""
        self._headers.pop(key, None)

    def set_headers(self, headers):
        """Replaces all added headers with the dict `headers`."""
        self._headers = headers

    def clean_session(self):
        """Starts over with a fresh session (no cookies), or the one given at creation."""
        self.session = self._sess_bak or requests.Session()

    @property
    def history(self):
        """The URLs of the pages visited before the current one, oldest first."""
        return self._history

    def _parse_html(self, response):
        """Gives `response` an `html` attribute: its body as an lxml tree, links made absolute."""
        if not hasattr(response, "html"):
            tree = _html.fromstring(response.content or b"<html></html>")
            tree.make_links_absolute(base_url=self._base_url or response.url)
            response.html = tree
        self._html = response.html
        return response

    def open_url(self, url, data=None, back=False, **kwargs):
        """Opens `url` (a POST of `data` if given, else a GET) and returns the requests
        Response, with `response.html` its parsed page. `back` is for back(): it leaves the
        history alone. Other keyword arguments go to requests."""
        if data:
            response = self.session.post(url, data, headers=self._headers, **kwargs)
        else:
            response = self.session.get(url, headers=self._headers, **kwargs)
        if not back:
            self._remember()
        self._url = url
        return self._parse_html(response)

    def _remember(self):
        """Puts the current page on the history, which keeps the last HISTORY pages."""
        if self._url is not None:
            self._history.append(self._url)
            del self._history[:-HISTORY]

    def back(self):
        """Opens the previous page of the history again and returns its Response."""
        if not self._history:
            raise Exception("No history, cannot go back")
        response = self.open_url(self._history[-1], back=True)
        del self._history[-1]
        return response

    def get_form(self, selector=None, nr=0, at_base=False):
        """Takes the form to fill: the `nr`-th form of the page, or of what the CSS `selector`
        matches. Its fields are then in `form_data`, a dict to change before submit_form().
        `at_base`: the form's action really is the base_url (else an empty action means the
        current page)."""
        if self._html is None:
            raise NoUrlOpen("No url open")
        self.form, self.form_data = None, None
        if selector is None:
            forms = self._html.forms
        else:
            forms = [f for el in CSSSelector(selector)(self._html) for f in el.forms]
        if nr < len(forms):
            self.form = forms[nr]
            self.form_data = dict(self.form.fields)
        if self.form is None:
            raise FormNotFoundException("Form not found with selector {0} and nr {1}".format(selector, nr))
        # An empty action resolved against base_url means "this page".
        if self._base_url and self.form.action == self._base_url and self._url != self._base_url and not at_base:
            self.form.action = self._url

    def get_select_values(self):
        """The options of each select of the taken form: {name: [values]}."""
        return {i.name: i.value_options for i in self.form.inputs if isinstance(i, _html.SelectElement)}

    def submit_form(self):
        """Submits the taken form with `form_data` and returns the Response of its action."""
        if self.form is None:
            raise NoFormWaiting("No form waiting to be send")
        self.form.fields = self.form_data
        values = self.form.form_values()
        method = (self.form.method or "GET").upper()
        url = self.form.action or self._url
        if method == "GET":
            response = self.session.get(url, params=values, headers=self._headers)
        else:
            response = self.session.request(method, url, data=values, headers=self._headers)
        self._remember()
        self._url = response.url
        self.form, self.form_data = None, None
        return self._parse_html(response)

    def follow_link(self, selector, url_regex=None):
        """Opens the first link that the CSS `selector` matches (and, with `url_regex`, whose
        href or text matches it) and returns its Response."""
        if self._html is None:
            raise NoUrlOpen("No url open")
        pattern = re.compile(url_regex) if url_regex else None
        for el in CSSSelector(selector)(self._html):
            href = el.get("href")
            if href is None:
                continue
            if pattern is None or pattern.match(href) or pattern.match(el.xpath("string()")):
                return self.open_url(href)
        raise LinkNotFound("Link not found")

    @staticmethod
    def open_in_browser(response):
        """Shows a response's page in a desktop browser (lxml's open_in_browser): debugging only."""
        _html.open_in_browser(response.html)
