//! The `html` table of Lua scripts: `html.parse(response | text [, base_url])` gives a document
//! to query with CSS selectors (html5ever's parser and Servo's selectors, through `scraper`),
//! its links as absolute URLs, and its forms as tables that `http.submit` sends.
//!
//! A document is a userdata holding the parsed tree; an element is the document and a node id,
//! so elements stay valid as long as a script holds them. Selectors are parsed once and kept
//! (a script asks for the same few over and over). Nothing here does I/O: parsing happens
//! where the script calls it, between two requests.

use std::cell::RefCell;
use std::rc::Rc;

use mlua::{Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods, Value as LuaValue};
use scraper::{ElementRef, Html, Selector};

struct Doc {
    html: Html,
    /// What relative links and form actions resolve against: the response's final URL or the
    /// base the script gave, overridden by the page's own `<base href>`.
    base: Option<url::Url>,
}

/// `html.parse`'s result.
#[derive(Clone)]
pub struct Document(Rc<Doc>);

/// One element of a document.
#[derive(Clone)]
pub struct Element {
    doc: Rc<Doc>,
    id: ego_tree::NodeId,
}

fn rt(message: String) -> mlua::Error {
    mlua::Error::RuntimeError(message)
}

thread_local! {
    /// Selectors parsed so far on this thread, newest last; a few dozen at most.
    static SELECTORS: RefCell<Vec<(String, Rc<Selector>)>> = const { RefCell::new(Vec::new()) };
}
const KEEP_SELECTORS: usize = 64;

fn selector(css: &str) -> mlua::Result<Rc<Selector>> {
    SELECTORS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((_, s)) = cache.iter().find(|(k, _)| k == css) {
            return Ok(Rc::clone(s));
        }
        let s = Rc::new(
            Selector::parse(css).map_err(|e| rt(format!("html: bad CSS selector {css:?}: {e}")))?,
        );
        if cache.len() == KEEP_SELECTORS {
            cache.remove(0);
        }
        cache.push((css.to_owned(), Rc::clone(&s)));
        Ok(s)
    })
}

impl Doc {
    fn element(&self, id: ego_tree::NodeId) -> ElementRef<'_> {
        ElementRef::wrap(self.html.tree.get(id).expect("a node of this document"))
            .expect("an element node")
    }

    /// `href` as an absolute URL, if it is one once resolved.
    fn absolute(&self, href: &str) -> String {
        match &self.base {
            Some(base) => base
                .join(href.trim())
                .map(|u| u.as_str().to_owned())
                .unwrap_or_else(|_| href.to_owned()),
            None => href.to_owned(),
        }
    }
}

/// `html.parse(r)` or `html.parse(text [, base_url])`.
fn parse(_: &Lua, (what, base): (LuaValue, Option<String>)) -> mlua::Result<Document> {
    let (body, from_response) = match &what {
        LuaValue::String(s) => (s.to_string_lossy(), None),
        LuaValue::Table(t) => match t.get::<LuaValue>("body")? {
            LuaValue::String(s) => (s.to_string_lossy(), t.get::<Option<String>>("url")?),
            _ => {
                return Err(rt(
                    "html.parse: the table has no body (pass a response)".into()
                ))
            }
        },
        other => {
            return Err(rt(format!(
                "html.parse: expects a response or a string, not a {}",
                crate::engine::lua::type_of(other)
            )))
        }
    };
    let base = match base.or(from_response) {
        Some(b) => Some(
            url::Url::parse(&b).map_err(|e| rt(format!("html.parse: bad base URL {b:?}: {e}")))?,
        ),
        None => None,
    };
    let html = Html::parse_document(&body);
    let own_base = html
        .select(&*selector("base[href]")?)
        .next()
        .and_then(|b| b.attr("href"))
        .map(str::to_owned);
    let base = match (base, own_base) {
        (Some(b), Some(href)) => b.join(&href).ok().or(Some(b)),
        (None, Some(href)) => url::Url::parse(&href).ok(),
        (b, None) => b,
    };
    Ok(Document(Rc::new(Doc { html, base })))
}

fn select(doc: &Rc<Doc>, scope: Option<ego_tree::NodeId>, css: &str) -> mlua::Result<Vec<Element>> {
    let sel = selector(css)?;
    let found: Vec<ego_tree::NodeId> = match scope {
        Some(id) => doc.element(id).select(&sel).map(|e| e.id()).collect(),
        None => doc.html.select(&sel).map(|e| e.id()).collect(),
    };
    Ok(found
        .into_iter()
        .map(|id| Element {
            doc: Rc::clone(doc),
            id,
        })
        .collect())
}

fn first(
    doc: &Rc<Doc>,
    scope: Option<ego_tree::NodeId>,
    css: &str,
) -> mlua::Result<Option<Element>> {
    let sel = selector(css)?;
    let found = match scope {
        Some(id) => doc.element(id).select(&sel).next().map(|e| e.id()),
        None => doc.html.select(&sel).next().map(|e| e.id()),
    };
    Ok(found.map(|id| Element {
        doc: Rc::clone(doc),
        id,
    }))
}

/// The absolute URLs of the `href`s of what `css` selects (`a[href]` by default), in order.
fn links(
    doc: &Rc<Doc>,
    scope: Option<ego_tree::NodeId>,
    css: Option<String>,
) -> mlua::Result<Vec<String>> {
    let css = css.as_deref().unwrap_or("a[href]");
    Ok(select(doc, scope, css)?
        .iter()
        .filter_map(|e| doc.element(e.id).attr("href").map(|h| doc.absolute(h)))
        .collect())
}

/// `doc:form()` (the first), `doc:form(n)` (the n-th, from 1) or `doc:form(css)`.
fn form(lua: &Lua, doc: &Rc<Doc>, which: LuaValue) -> mlua::Result<Table> {
    let forms = select(doc, None, "form")?;
    let pick = match &which {
        LuaValue::Nil => forms.first().cloned(),
        LuaValue::Integer(n) => {
            let n = *n;
            if n < 1 || n as usize > forms.len() {
                return Err(rt(format!(
                    "html: the page has {} form{}, not a form number {n}",
                    forms.len(),
                    if forms.len() == 1 { "" } else { "s" }
                )));
            }
            forms.get(n as usize - 1).cloned()
        }
        LuaValue::String(css) => {
            let css = css.to_str()?.to_owned();
            let found = first(doc, None, &css)?;
            match found {
                Some(e) if doc.element(e.id).value().name() == "form" => Some(e),
                Some(e) => first(doc, Some(e.id), "form")?,
                None => return Err(rt(format!("html: no form matches {css:?}"))),
            }
        }
        other => {
            return Err(rt(format!(
                "html: form() takes a CSS selector or a number, not a {}",
                crate::engine::lua::type_of(other)
            )))
        }
    };
    match pick {
        Some(e) => form_table(lua, &e),
        None => Err(rt(match which {
            LuaValue::String(css) => {
                format!("html: no form in what {:?} matches", css.to_string_lossy())
            }
            _ => "html: the page has no form".to_owned(),
        })),
    }
}

/// What a browser would submit from this form without a click: its controls' names and
/// current values in document order (checked boxes only, the selected options, no buttons,
/// nothing disabled or nameless), as `{action, method, enctype, fields, order}`.
fn form_table(lua: &Lua, form: &Element) -> mlua::Result<Table> {
    let doc = &form.doc;
    let el = doc.element(form.id);
    let action = match el.attr("action").map(str::trim) {
        Some(a) if !a.is_empty() => doc.absolute(a),
        _ => doc
            .base
            .as_ref()
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default(),
    };
    let method = el
        .attr("method")
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| m == "POST" || m == "GET")
        .unwrap_or_else(|| "GET".into());
    let mut pairs: Vec<(String, String)> = Vec::new();
    for control in el.select(&*selector("input, select, textarea")?) {
        let v = control.value();
        let Some(name) = v.attr("name").filter(|n| !n.is_empty()) else {
            continue;
        };
        if v.attr("disabled").is_some() {
            continue;
        }
        match v.name() {
            "textarea" => pairs.push((name.into(), control.text().collect())),
            "select" => {
                let options: Vec<ElementRef> = control.select(&*selector("option")?).collect();
                let value = |o: &ElementRef| -> String {
                    o.attr("value")
                        .map(str::to_owned)
                        .unwrap_or_else(|| o.text().collect::<String>().trim().to_owned())
                };
                let selected: Vec<&ElementRef> = options
                    .iter()
                    .filter(|o| o.attr("selected").is_some())
                    .collect();
                if v.attr("multiple").is_some() {
                    pairs.extend(selected.iter().map(|o| (name.to_owned(), value(o))));
                } else if let Some(o) = selected.last().copied().or(options.first()) {
                    pairs.push((name.into(), value(o)));
                }
            }
            _ => {
                let kind = v.attr("type").unwrap_or("text").to_ascii_lowercase();
                match kind.as_str() {
                    "submit" | "image" | "reset" | "button" | "file" => {}
                    "checkbox" | "radio" => {
                        if v.attr("checked").is_some() {
                            pairs.push((name.into(), v.attr("value").unwrap_or("on").into()));
                        }
                    }
                    _ => pairs.push((name.into(), v.attr("value").unwrap_or("").into())),
                }
            }
        }
    }
    let t = lua.create_table()?;
    t.set("action", action)?;
    t.set("method", method)?;
    t.set(
        "enctype",
        el.attr("enctype")
            .unwrap_or("application/x-www-form-urlencoded"),
    )?;
    let fields = lua.create_table()?;
    let order = lua.create_table()?;
    for (name, value) in &pairs {
        match fields.get::<LuaValue>(name.as_str())? {
            LuaValue::Nil => {
                fields.set(name.as_str(), value.as_str())?;
                order.push(name.as_str())?;
            }
            LuaValue::Table(many) => many.push(value.as_str())?,
            first => {
                fields.set(
                    name.as_str(),
                    lua.create_sequence_from([first, LuaValue::String(lua.create_string(value)?)])?,
                )?;
            }
        }
    }
    t.set("fields", fields)?;
    t.set("order", order)?;
    Ok(t)
}

/// What documents and elements share: querying below them.
fn add_queries<T, M>(methods: &mut M, parts: fn(&T) -> (&Rc<Doc>, Option<ego_tree::NodeId>))
where
    T: 'static,
    M: UserDataMethods<T>,
{
    methods.add_method("select", move |_, this, css: String| {
        let (doc, scope) = parts(this);
        select(doc, scope, &css)
    });
    methods.add_method("first", move |_, this, css: String| {
        let (doc, scope) = parts(this);
        first(doc, scope, &css)
    });
    methods.add_method("links", move |_, this, css: Option<String>| {
        let (doc, scope) = parts(this);
        links(doc, scope, css)
    });
    methods.add_method("text", move |_, this, ()| {
        let (doc, scope) = parts(this);
        Ok(match scope {
            Some(id) => doc.element(id).text().collect::<String>(),
            None => doc.html.root_element().text().collect::<String>(),
        })
    });
}

impl UserData for Document {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("url", |_, this| {
            Ok(this.0.base.as_ref().map(|u| u.as_str().to_owned()))
        });
        fields.add_field_method_get("title", |_, this| {
            let title = selector("title")?;
            Ok(this
                .0
                .html
                .select(&title)
                .next()
                .map(|t| t.text().collect::<String>().trim().to_owned()))
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        add_queries(methods, |d: &Document| (&d.0, None));
        methods.add_method("form", |lua, this, which: LuaValue| {
            form(lua, &this.0, which)
        });
        methods.add_method("forms", |lua, this, ()| {
            select(&this.0, None, "form")?
                .iter()
                .map(|f| form_table(lua, f))
                .collect::<mlua::Result<Vec<Table>>>()
        });
        methods.add_method("html", |_, this, ()| Ok(this.0.html.html()));
    }
}

impl UserData for Element {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("tag", |_, this| {
            Ok(this.doc.element(this.id).value().name().to_owned())
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        add_queries(methods, |e: &Element| (&e.doc, Some(e.id)));
        methods.add_method("attr", |_, this, name: String| {
            Ok(this.doc.element(this.id).attr(&name).map(str::to_owned))
        });
        methods.add_method("url", |_, this, name: Option<String>| {
            let el = this.doc.element(this.id);
            let v = match name {
                Some(n) => el.attr(&n),
                None => el.attr("href").or(el.attr("src")).or(el.attr("action")),
            };
            Ok(v.map(|h| this.doc.absolute(h)))
        });
        methods.add_method("html", |_, this, ()| Ok(this.doc.element(this.id).html()));
        methods.add_method("inner_html", |_, this, ()| {
            Ok(this.doc.element(this.id).inner_html())
        });
        methods.add_method("form", |lua, this, ()| {
            if this.doc.element(this.id).value().name() != "form" {
                return Err(rt(format!(
                    "html: form() on a <{}>, not a <form>",
                    this.doc.element(this.id).value().name()
                )));
            }
            form_table(lua, this)
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("<{}>", this.doc.element(this.id).value().name()))
        });
    }
}

/// The `html` table.
pub fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("parse", lua.create_function(parse)?)?;
    Ok(t)
}

#[cfg(test)]
mod tests;
