use mlua::Lua;

const PAGE: &str = r#"<!doctype html>
<html><head><title> Log in </title></head><body>
<a class="nav" href="/">Home</a> <a class="nav" href="products/1?x=1">Product</a>
<form id="search" action="search"><input name="q" value="shoes"><input type="submit" value="Go"></form>
<div id="box">
<form id="login" method="post">
  <input type="hidden" name="csrf" value="t0k3n">
  <input name="user"><input type="password" name="password" value="">
  <input type="checkbox" name="remember" value="yes" checked>
  <input type="checkbox" name="spam" value="yes">
  <input type="checkbox" name="tag" value="a" checked><input type="checkbox" name="tag" value="b" checked>
  <input type="radio" name="plan" value="free"><input type="radio" name="plan" value="pro" checked>
  <select name="lang"><option value="en">English<option value="fr" selected>French</select>
  <select name="size"><option>S</option><option>M</option></select>
  <textarea name="note">hi there</textarea>
  <input name="off" value="x" disabled><input value="nameless">
  <input type="submit" name="go" value="Go">
</form></div></body></html>"#;

fn lua() -> Lua {
    let lua = Lua::new();
    lua.globals()
        .set("html", super::table(&lua).unwrap())
        .unwrap();
    lua.globals().set("PAGE", PAGE).unwrap();
    lua
}

fn eval(code: &str) -> String {
    lua().load(code).eval::<String>().unwrap()
}

fn error(code: &str) -> String {
    lua().load(code).exec().unwrap_err().to_string()
}

#[test]
fn selects_elements_text_attributes_and_absolute_links() {
    let got = eval(
        r##"local d = html.parse({body = PAGE, url = "http://127.0.0.1:9/shop/login"})
        local a = d:select("a.nav")
        return table.concat({d.title, #a, a[2].tag, a[2]:attr("href"), a[2]:url(), a[2]:text(),
          table.concat(d:links(), " "), tostring(d:first("h1")), d:first("#box"):first("form"):attr("id")}, "|")"##,
    );
    assert_eq!(
        got,
        "Log in|2|a|products/1?x=1|http://127.0.0.1:9/shop/products/1?x=1|Product|\
         http://127.0.0.1:9/ http://127.0.0.1:9/shop/products/1?x=1|nil|login"
    );
}

#[test]
fn a_form_is_what_a_browser_would_submit() {
    let got = eval(
        r##"local d = html.parse(PAGE, "http://127.0.0.1:9/shop/login")
        local f = d:form("#login")
        local out = {f.action, f.method, table.concat(f.order, ",")}
        for _, k in ipairs(f.order) do
          local v = f.fields[k]
          out[#out + 1] = k .. "=" .. (type(v) == "table" and table.concat(v, "+") or v)
        end
        local s = d:form(1)
        out[#out + 1] = s.action .. " " .. s.method .. " q=" .. s.fields.q
        return table.concat(out, "|")"##,
    );
    assert_eq!(
        got,
        "http://127.0.0.1:9/shop/login|POST|csrf,user,password,remember,tag,plan,lang,size,note|\
         csrf=t0k3n|user=|password=|remember=yes|tag=a+b|plan=pro|lang=fr|size=S|note=hi there|\
         http://127.0.0.1:9/shop/search GET q=shoes"
    );
}

#[test]
fn base_href_wins_over_the_response_url() {
    let got = eval(
        r##"local d = html.parse('<base href="/v2/"><a href="x">x</a>', "http://h:1/a/b")
        return d:links()[1]"##,
    );
    assert_eq!(got, "http://h:1/v2/x");
}

#[test]
fn bad_use_is_a_clear_error() {
    for (code, want) in [
        (
            "html.parse(42)",
            "html.parse: expects a response or a string, not a number",
        ),
        ("html.parse({})", "html.parse: the table has no body"),
        (
            "html.parse('<p>', 'not a url')",
            "html.parse: bad base URL \"not a url\"",
        ),
        (
            "html.parse(PAGE):select('a[')",
            "html: bad CSS selector \"a[\"",
        ),
        (
            "html.parse(PAGE):form('#nope')",
            "html: no form matches \"#nope\"",
        ),
        (
            "html.parse(PAGE):form(3)",
            "html: the page has 2 forms, not a form number 3",
        ),
        (
            "html.parse('<p>x</p>'):form()",
            "html: the page has no form",
        ),
        (
            "html.parse(PAGE):form(true)",
            "form() takes a CSS selector or a number, not a boolean",
        ),
        (
            "html.parse(PAGE):first('a'):form()",
            "html: form() on a <a>, not a <form>",
        ),
    ] {
        let e = error(code);
        assert!(e.contains(want), "{code}: {e}");
    }
}

#[test]
fn a_selector_that_matches_nothing_is_an_empty_list_or_nil() {
    assert_eq!(
        eval("local d = html.parse(PAGE) return #d:select('table') .. tostring(d:first('table'))"),
        "0nil"
    );
}
