//! EPUB: the package document named by `META-INF/container.xml` gives the
//! book's title and its spine (the reading order); each (X)HTML item of the
//! spine is read by the HTML loader, in that order, its heading paths under
//! the book's title. The navigation document (the table of contents) is
//! left out.

use crate::compose::Composer;
use crate::package::{attr, local, resolve, walk_part, Package, XmlEvent};
use crate::{IngestError, LoadLimits};
use cairn_core::{Document, Format};
use std::collections::HashMap;
use std::path::Path;

pub(crate) fn load(
    path: &Path,
    bytes: &[u8],
    limits: &LoadLimits,
) -> Result<Document, IngestError> {
    let mut pkg = Package::open(path, bytes, "EPUB", limits)?;
    let container = "META-INF/container.xml";
    let (xml, cut) = pkg.require(container)?;
    let mut opf = None;
    walk_part(&pkg, container, &xml, cut, |ev| {
        if let XmlEvent::Open(e) | XmlEvent::Empty(e) = ev {
            if local(e) == "rootfile" && opf.is_none() {
                opf = attr(e, "full-path");
            }
        }
    })?;
    let opf = opf
        .map(|p| resolve("", &p))
        .ok_or_else(|| pkg.corrupt(format!("{container} names no package document (rootfile)")))?;
    let (xml, cut) = pkg.require(&opf)?;
    let dir = opf
        .rsplit_once('/')
        .map(|(d, _)| d)
        .unwrap_or("")
        .to_string();
    let mut title = String::new();
    let mut in_title = false;
    // id → (part name, media type, properties)
    let mut items: HashMap<String, (String, String, String)> = HashMap::new();
    let mut spine: Vec<String> = Vec::new();
    walk_part(&pkg, &opf, &xml, cut, |ev| match ev {
        XmlEvent::Open(e) | XmlEvent::Empty(e) => {
            let open = matches!(ev, XmlEvent::Open(_));
            match local(e).as_str() {
                "title" if open && title.is_empty() => in_title = true,
                "item" => {
                    if let (Some(id), Some(href)) = (attr(e, "id"), attr(e, "href")) {
                        let media = attr(e, "media-type").unwrap_or_default();
                        let props = attr(e, "properties").unwrap_or_default();
                        items.insert(id, (resolve(&dir, &href), media, props));
                    }
                }
                "itemref" => {
                    if let Some(id) = attr(e, "idref") {
                        spine.push(id);
                    }
                }
                _ => {}
            }
        }
        XmlEvent::Close(n) => {
            if n == "title" {
                in_title = false;
            }
        }
        XmlEvent::Text(t) => {
            if in_title {
                title.push_str(t);
            }
        }
    })?;
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if spine.is_empty() {
        return Err(pkg.corrupt(format!("the spine of {opf} lists no items")));
    }
    let prefix: Vec<String> = if title.is_empty() {
        Vec::new()
    } else {
        vec![title]
    };
    let mut doc = Composer::new();
    for id in &spine {
        if pkg.exhausted() {
            break;
        }
        let Some((href, media, props)) = items.get(id) else {
            pkg.warnings
                .push(format!("spine item {id:?} is not in the manifest"));
            continue;
        };
        let is_html = media.contains("html")
            || href.ends_with(".xhtml")
            || href.ends_with(".html")
            || href.ends_with(".htm");
        // The navigation document is the book's table of contents.
        if !is_html || props.split_whitespace().any(|p| p == "nav") {
            continue;
        }
        let Some((raw, _)) = pkg.read_bytes(href)? else {
            pkg.warnings.push(format!("{href} is listed but missing"));
            continue;
        };
        let chapter = crate::html::load(&raw);
        doc.push_doc(&prefix, chapter, Some(href));
    }
    doc.warnings.append(&mut pkg.warnings);
    Ok(doc.finish(Format::Epub))
}
