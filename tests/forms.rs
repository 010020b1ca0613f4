//! Websites as users see them (issue: scripting beyond GET): links, forms, cookies and redirects
//! against a real local site (tests/sites/shop.py on python3's http.server), from a Lua script
//! (`html.parse`, `http.submit`, `redirects`) and from an OCT script using OCT's `Browser`.

mod util;

use std::time::Duration;

use serde_json::json;
use util::site::Shop;
use util::*;

/// A user that browses, searches, logs in through the login form (CSRF token and cookie),
/// follows the redirect to its account, logs out; every fifth iteration does one thing wrong.
const SHOPPER: &str = r##"
local BASE = "@BASE@"
local n = 0
function run(t)
  n = n + 1
  local home = html.parse(http.get(BASE .. "/"))
  check(home, {["two products"] = function(d) return #d:select("a.product") == 2 end})
  if n % 5 == 0 then home:form("#login") end
  if n % 5 == 1 and n > 1 then http.get(BASE .. "/loop", {redirects = 3}) end
  local product = html.parse(http.get(home:links("a.product")[2]))
  assert(product:first("h1"):text() == "Product 2", product:html())
  local found = html.parse(http.submit(product:form(".search"), {q = "red shoes"}))
  assert(found:first("h1"):text() == "Results for red shoes", found:html())
  local login = html.parse(http.request{method = "GET", url = BASE .. "/login"})
  local account = t:timer("login", http.submit, login:form("#login"),
    {user = "bob", password = "secret"}, {redirects = 3})
  check(account, {
    ["logged in"] = function(r) return r.status == 200 and r.url == BASE .. "/account" end,
  })
  assert(html.parse(account):first("#hello"):text() == "Hello bob", account.body)
  local out = http.get(html.parse(account):first("#logout"):url(), {redirects = true})
  assert(out.url == BASE .. "/", out.url)
  local again = http.get(BASE .. "/account")
  assert(again.status == 302 and again.headers.location == "/login", "still logged in")
  local echo = json.decode(http.post(BASE .. "/echo", {b = "2", a = "1 2"}).body)
  assert(echo.body == "a=1%202&b=2" and echo.type == "application/x-www-form-urlencoded", echo.body)
end
"##;

#[test]
fn a_lua_user_browses_logs_in_through_a_form_and_logs_out() {
    let shop = Shop::start();
    let p = Project::new(config(
        30.0,
        1,
        json!([{"name": "shop", "cannons": 2, "rampup": 0, "iterations": 10, "script": "shop.lua"}]),
    ));
    p.write("shop.lua", &SHOPPER.replace("@BASE@", &shop.base()));
    let (status, out) = p.run_local();
    assert!(status.success(), "{out}");
    let errors = texts(&p.db(), "SELECT error FROM result ORDER BY error");
    assert_eq!(errors.len(), 20, "{out}");
    // Iterations 5 and 10 of each canon: a selector that matches no form; 6: a redirect loop.
    let wrong: Vec<&String> = errors.iter().filter(|e| !e.is_empty()).collect();
    assert_eq!(wrong.len(), 6, "{errors:?}");
    assert_eq!(
        wrong
            .iter()
            .filter(|e| e.contains("html: no form matches \"#login\""))
            .count(),
        4,
        "{errors:?}"
    );
    let loop_error = format!("GET {}/loop: more than 3 redirects", shop.base());
    assert_eq!(
        wrong.iter().filter(|e| e.contains(&loop_error)).count(),
        2,
        "{errors:?}"
    );
    // The site saw every step of the 14 iterations that went all the way.
    assert_eq!(shop.asked("POST /login"), 14);
    assert_eq!(shop.asked("GET /account"), 28);
    assert_eq!(shop.asked("GET /search"), 14);
    assert_eq!(shop.asked("GET /loop"), 2 * 4);
    let summary = p.rebuild();
    assert_eq!(
        summary["checks"],
        json!([
            {"name": "logged in", "passed": 14, "failed": 0, "rate": 1.0},
            {"name": "two products", "passed": 20, "failed": 0, "rate": 1.0},
        ])
    );
}

/// An OCT tutorial-style script: OCT's `Browser` drives the shop, with OCT's CustomTimer, and
/// this project's checks and counters; every fourth iteration follows a link that is not there.
const OCT_SHOPPER: &str = r##"
from oct_turrets.base import BaseTransaction
from oct_turrets.tools import CustomTimer
from oct.core.browser import Browser

BASE = "@BASE@"


class Transaction(BaseTransaction):
    def __init__(self, config, context=None):
        super(Transaction, self).__init__(config, context)
        self.browser = Browser()
        self.browser.add_header("X-Shopper", "oct")
        self.n = 0

    def run(self):
        self.n += 1
        br = self.browser
        br.clean_session()
        resp = br.open_url(BASE + "/")
        assert resp.status_code == 200, resp.status_code
        resp = br.follow_link("a.product", ".*/products/2")
        assert resp.html.cssselect("h1")[0].text == "Product 2"
        br.get_form(selector="form.search")
        br.form_data["q"] = "red shoes"
        resp = br.submit_form()
        assert resp.html.cssselect("h1")[0].text == "Results for red shoes", resp.text
        assert br.history[-2:] == [BASE + "/", BASE + "/products/2"], br.history
        resp = br.back()
        assert resp.url == BASE + "/products/2" and br.history[-1] == BASE + "/", br.history
        assert len(br.history) <= 100, len(br.history)
        with CustomTimer(self, "login"):
            br.open_url(BASE + "/login")
            br.get_form(selector="#login")
            br.form_data["user"] = "alice"
            br.form_data["password"] = "secret"
            resp = br.submit_form()
        self.check(resp, {"logged in": lambda r: r.url == BASE + "/account",
                          "welcomed": lambda r: r.html.cssselect("#hello")[0].text == "Hello alice"})
        self.counter("pages", 6)
        if self.n % 4 == 0:
            br.follow_link("a.missing")
"##;

#[test]
fn an_oct_script_drives_the_site_with_octs_browser() {
    let shop = Shop::start();
    let python = browser_python();
    let p = Project::new(config(
        60.0,
        1,
        json!([{"name": "py", "cannons": 2, "rampup": 0, "iterations": 8, "script": "shop.py"}]),
    ));
    p.write("shop.py", &OCT_SHOPPER.replace("@BASE@", &shop.base()));
    let mut cmd = oct_run(p.path(), &p.results_dir(), &["--local", "--no-results"]);
    cmd.env("OCT_PYTHON", &python);
    let (status, out) = Proc::spawn(cmd).wait_exit(Duration::from_secs(120));
    assert!(status.success(), "{out}");
    let errors = texts(&p.db(), "SELECT error FROM result ORDER BY error");
    assert_eq!(errors.len(), 16, "{out}");
    let wrong: Vec<&String> = errors.iter().filter(|e| !e.is_empty()).collect();
    assert_eq!(wrong, vec!["Link not found"; 4], "{errors:?}");
    assert_eq!(shop.asked("POST /login"), 16);
    assert_eq!(shop.asked("GET /account"), 16);
    assert_eq!(shop.asked("GET /search"), 16);
    // The search page was left with back(): product 2 was asked twice each time.
    assert_eq!(shop.asked("GET /products/2"), 32);
    assert_eq!(
        count_rows(
            &p.db(),
            "SELECT count(*) FROM result WHERE custom_timers LIKE '%\"login\":%'"
        ),
        16
    );
    let summary = p.rebuild();
    assert_eq!(
        summary["checks"],
        json!([
            {"name": "logged in", "passed": 16, "failed": 0, "rate": 1.0},
            {"name": "welcomed", "passed": 16, "failed": 0, "rate": 1.0},
        ])
    );
    assert_eq!(
        summary["counters"]["pages"]["total"], 96.0,
        "{}",
        summary["counters"]
    );
}

#[test]
fn without_requests_and_lxml_the_browser_says_what_to_install() {
    let p = Project::new(config(
        5.0,
        1,
        json!([{"name": "py", "cannons": 1, "script": "shop.py"}]),
    ));
    p.write(
        "shop.py",
        &OCT_SHOPPER.replace("@BASE@", "http://127.0.0.1:9"),
    );
    let mut cmd = oct_run(p.path(), &p.results_dir(), &["--local", "--no-results"]);
    cmd.env("OCT_PYTHON", bare_python());
    let (status, text) = Proc::spawn(cmd).wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{text}");
    let log_path = text.split("; see ").nth(1).unwrap().lines().next().unwrap();
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(
        log.contains(
            "oct.core.browser needs the Python packages requests, lxml, cssselect, not installed for "
        ) && log.contains("pip install requests lxml cssselect"),
        "{log}"
    );
}
