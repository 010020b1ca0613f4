//! Lua's `http` against a real nginx (issue: scripting beyond GET): every method, query and
//! form and JSON bodies, response headers, the cookie jar, opt-in redirects, and a page nginx
//! serves parsed with `html.parse` and its form submitted.

mod util;

use serde_json::json;
use util::nginx::Nginx;
use util::*;

const LOCATIONS: &str = r#"
    location = /method { return 200 "$request_method $args $content_type $http_x_mine"; }
    location = /redirect { return 302 /landing; }
    location = /moved { return 301 http://127.0.0.1:$server_port/landing?from=moved; }
    location = /landing { return 200 "landed $args"; }
    location = /cookie { add_header Set-Cookie "sid=n1; Path=/"; return 200 "set"; }
    location = /forget { add_header Set-Cookie "sid=; Max-Age=0; Path=/"; return 200 "forgot"; }
    location = /needs-cookie { if ($cookie_sid = "n1") { return 200 "yes"; } return 403 "no"; }
    location = /search { return 200 "<h1>found $arg_q in $arg_cat</h1>"; }
"#;

const PAGE: &str = r#"<!doctype html><title>Catalogue</title>
<a class="more" href="/landing?page=2">more</a>
<form id="find" action="/search"><input name="q" value="hat">
<select name="cat"><option>shoes<option selected>hats</select><input type="submit" value="Go"></form>"#;

const SCRIPT: &str = r##"
function run(t)
  -- A canon's cookies last from one iteration to the next: start without the one set below.
  http.get(N .. "/forget")
  -- {response, status, body (nil: any)}
  local want = {
    {http.get(N .. "/method", {query = {a = "1 2"}, headers = {["X-Mine"] = "m"}}), 200, "GET a=1%202  m"},
    {http.head(N .. "/method"), 200, ""},
    {http.delete(N .. "/method"), 200, "DELETE   "},
    {http.put(N .. "/method", "x", {headers = {["Content-Type"] = "text/plain"}}), 200, "PUT  text/plain "},
    {http.patch(N .. "/method", nil, {json = {k = 1}}), 200, "PATCH  application/json "},
    {http.post(N .. "/method", {b = "2"}), 200, "POST  application/x-www-form-urlencoded "},
    {http.request{method = "OPTIONS", url = N .. "/method"}, 200, "OPTIONS   "},
    {http.get(N .. "/redirect"), 302, nil},
    {http.get(N .. "/redirect", {redirects = 1}), 200, "landed "},
    {http.post(N .. "/moved", "x", {redirects = true}), 200, "landed from=moved"},
    {http.get(N .. "/needs-cookie"), 403, "no"},
    {http.get(N .. "/cookie"), 200, "set"},
    {http.get(N .. "/needs-cookie"), 200, "yes"},
    {http.get(N .. "/forget"), 200, "forgot"},
    {http.get(N .. "/needs-cookie"), 403, "no"},
  }
  for i, w in ipairs(want) do
    local r, status, b = w[1], w[2], w[3]
    assert(r.status == status and (b == nil or r.body == b),
      "request " .. i .. ": " .. r.status .. " " .. r.body .. " ~= " .. status .. " " .. tostring(b))
  end
  local r = http.get(N .. "/redirect", {redirects = 1})
  assert(r.url == N .. "/landing", r.url)
  assert(http.get(N .. "/cookie").headers["set-cookie"] == "sid=n1; Path=/")
  local page = html.parse(http.get(N .. "/catalogue.html"))
  assert(page.title == "Catalogue", tostring(page.title))
  assert(page:links("a.more")[1] == N .. "/landing?page=2")
  local found = http.submit(page:form("#find"))
  assert(found.body == "<h1>found hat in hats</h1>", found.body)
  found = http.submit(page:form("#find"), {q = "cap", cat = "shoes"})
  assert(found.body == "<h1>found cap in shoes</h1>", found.body)
  local more = http.get(page:first("a.more"):url())
  assert(more.body == "landed page=2", more.body)
end
"##;

#[test]
fn a_lua_user_exercises_http_against_a_real_nginx() {
    let nginx = Nginx::start(LOCATIONS, &[("catalogue.html", PAGE)]);
    let p = Project::new(config(
        30.0,
        1,
        json!([{"name": "web", "cannons": 2, "rampup": 0, "iterations": 5, "script": "web.lua"}]),
    ));
    p.write(
        "web.lua",
        &format!("local N = \"{}\"\n{SCRIPT}", nginx.url("")),
    );
    let (status, out) = p.run_local();
    assert!(status.success(), "{out}");
    let errors = texts(&p.db(), "SELECT error FROM result");
    assert_eq!(errors, vec![String::new(); 10], "{out}");
}
