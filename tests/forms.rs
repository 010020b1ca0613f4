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
