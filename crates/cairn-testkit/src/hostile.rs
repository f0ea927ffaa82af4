//! Hostile files for the loaders' tests, built in memory: decompression
//! bombs (a PDF content stream, a DOCX main part, any part of a zip
//! container, the pixels of a PNG, that inflate to any size from a few
//! kilobytes) and deeply nested HTML.
//!
//! A bomb's compressed stream is one deflate run of zeros (or spaces),
//! ended with a sync flush so that it is byte-aligned and can be repeated:
//! each copy inflates to the same run again, since its back-references
//! reach only bytes of the same content. A final empty block and the zlib
//! checksum close it. So a 1 GiB bomb takes milliseconds to build.

use flate2::{Compress, Compression, FlushCompress};

const RUN: usize = 1 << 20;

/// A raw deflate stream (no header) inflating to `mib` MiB of `byte`, and
/// the same content's Adler-32 and CRC-32.
fn deflate_run(byte: u8, mib: usize) -> (Vec<u8>, u32, u32) {
    let run = vec![byte; RUN];
    let mut c = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(RUN);
    c.compress_vec(&run, &mut block, FlushCompress::Sync)
        .expect("deflate");
    assert_eq!(c.total_in(), RUN as u64, "one call takes the whole run");
    let mut out = Vec::with_capacity(block.len() * mib + 2);
    for _ in 0..mib {
        out.extend_from_slice(&block);
    }
    // A final, empty block with fixed codes: BFINAL=1, BTYPE=01, EOB.
    out.extend_from_slice(&[0x03, 0x00]);
    let total = (RUN * mib) as u64;
    // Adler-32 of `total` copies of `byte`.
    let a = (1 + (byte as u64) * total) % 65521;
    let b = (total + (byte as u64) * (total * (total + 1) / 2 % 65521)) % 65521;
    let adler = ((b << 16) | a) as u32;
    let mut crc = crc32fast::Hasher::new();
    for _ in 0..mib {
        crc.update(&run);
    }
    (out, adler, crc.finalize())
}

/// A zlib stream inflating to `mib` MiB of `byte`.
pub fn zlib_bomb(byte: u8, mib: usize) -> Vec<u8> {
    let (raw, adler, _) = deflate_run(byte, mib);
    let mut out = vec![0x78, 0xDA];
    out.extend_from_slice(&raw);
    out.extend_from_slice(&adler.to_be_bytes());
    out
}

/// A PNG whose pixels inflate to `mib` MiB: 8-bit grey, 16 383 pixels
/// wide and `64 × mib` rows (each row a filter byte and its pixels, all
/// zero: black), a few hundred bytes per MiB.
pub fn png_bomb(mib: usize) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    let (width, height) = (RUN as u32 / 64 - 1, 64 * mib as u32);
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_bomb(0, mib));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A PDF of two pages: page 1 says `text`; page 2's content stream is a
/// Flate bomb of `mib` MiB of spaces.
pub fn pdf_bomb(text: &str, mib: usize) -> Vec<u8> {
    let bomb = zlib_bomb(b' ', mib);
    let escaped = text
        .replace('\\', "\\\\")
        .replace('(', "\\(")
        .replace(')', "\\)");
    let page1 = format!("BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET");
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 7 0 R >> >> >>".to_vec(),
        stream(b"", page1.as_bytes()),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 6 0 R /Resources << /Font << /F1 7 0 R >> >> >>".to_vec(),
        stream(b"/Filter /FlateDecode ", &bomb),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.drain(..).enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend_from_slice(&body);
        pdf.extend_from_slice(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1).as_bytes(),
    );
    for o in &offsets {
        pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            offsets.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

fn stream(dict_extra: &[u8], data: &[u8]) -> Vec<u8> {
    let mut s = b"<< ".to_vec();
    s.extend_from_slice(dict_extra);
    s.extend_from_slice(format!("/Length {} >>\nstream\n", data.len()).as_bytes());
    s.extend_from_slice(data);
    s.extend_from_slice(b"\nendstream");
    s
}

/// A DOCX whose `word/document.xml` opens with a paragraph saying `text`
/// and then inflates to `mib` MiB more (spaces between elements: markup,
/// no text).
pub fn docx_bomb(text: &str, mib: usize) -> Vec<u8> {
    let head = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p>"
    );
    let types = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>"#;
    zip_with_bombs(
        &[("[Content_Types].xml", types.as_bytes())],
        &[("word/document.xml", &head, "</w:body></w:document>", mib)],
    )
}

/// A zip archive holding `parts` stored as they are, then `bombs`, each
/// `(name, head, tail, mib)`: a deflated part that opens with `head`,
/// inflates to `mib` MiB of spaces and ends with `tail` (heads and tails
/// under 64 KiB).
pub fn zip_with_bombs(parts: &[(&str, &[u8])], bombs: &[(&str, &str, &str, usize)]) -> Vec<u8> {
    let mut built = Vec::new();
    for (name, head, tail, mib) in bombs {
        // One deflate stream: the head stored, the spaces, the tail stored.
        let (spaces, _, _) = deflate_run(b' ', *mib);
        let mut data = Vec::new();
        stored_block(&mut data, head.as_bytes(), false);
        data.extend_from_slice(&spaces[..spaces.len() - 2]); // without the final block
        stored_block(&mut data, tail.as_bytes(), true);
        let size = head.len() as u64 + (RUN * mib) as u64 + tail.len() as u64;
        let mut crc = crc32fast::Hasher::new();
        crc.update(head.as_bytes());
        let run = vec![b' '; RUN];
        for _ in 0..*mib {
            crc.update(&run);
        }
        crc.update(tail.as_bytes());
        built.push((*name, data, size, crc.finalize()));
    }
    let mut entries: Vec<ZipEntry<'_>> = parts
        .iter()
        .map(|(name, data)| ZipEntry {
            name,
            method: 0,
            data,
            size: data.len() as u64,
            crc: crc32fast::hash(data),
        })
        .collect();
    for (name, data, size, crc) in &built {
        entries.push(ZipEntry {
            name,
            method: 8,
            data,
            size: *size,
            crc: *crc,
        });
    }
    zip(&entries)
}

/// A stored (uncompressed) deflate block holding `bytes` (< 64 KiB).
fn stored_block(out: &mut Vec<u8>, bytes: &[u8], last: bool) {
    let len = bytes.len() as u16;
    out.push(if last { 1 } else { 0 });
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct ZipEntry<'a> {
    name: &'a str,
    method: u16,
    data: &'a [u8],
    size: u64,
    crc: u32,
}

/// A zip archive of `entries` (sizes below 4 GiB: no Zip64).
fn zip(entries: &[ZipEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&e.method.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // time
            v.extend_from_slice(&0x21u16.to_le_bytes()); // 1980-01-01
            v.extend_from_slice(&e.crc.to_le_bytes());
            v.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(e.size as u32).to_le_bytes());
            v.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(&0x04034b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(e.name.as_bytes());
        out.extend_from_slice(e.data);
        central.extend_from_slice(&0x02014b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(e.name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x06054b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// An HTML page with `depth` nested `<div>`s around `inner`.
pub fn nested_html(depth: usize, inner: &str) -> String {
    let mut s = String::with_capacity(depth * 12 + 200);
    s.push_str("<html><head><title>Deep</title></head><body>");
    s.push_str(&"<div>".repeat(depth));
    s.push_str(inner);
    s.push_str(&"</div>".repeat(depth));
    s.push_str("</body></html>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_zlib_bomb_inflates_to_its_size_with_a_valid_checksum() {
        let bomb = zlib_bomb(b' ', 3);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&bomb[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), 3 * RUN);
        assert!(out.iter().all(|&b| b == b' '));
    }

    #[test]
    fn a_docx_bomb_is_a_valid_zip_with_the_right_crc() {
        let docx = docx_bomb("Hello", 2);
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(docx)).unwrap();
        let mut xml = String::new();
        z.by_name("word/document.xml")
            .unwrap()
            .read_to_string(&mut xml)
            .unwrap();
        assert!(xml.contains("<w:t>Hello</w:t>"));
        assert!(xml.ends_with("</w:body></w:document>"));
        assert!(xml.len() > 2 * RUN);
    }
}
