//! `cards`: one printable page of login cards, self-contained: one card per
//! participant, six to an A4 sheet; a ready participant's card has the full
//! login URL (token included: the card is how they log in) and a QR code
//! of it as inline SVG. Nothing is loaded from anywhere (a Content Security
//! Policy forbids it), and everything that came from the stack is escaped.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

use crate::input::{Participant, Room, State};
use crate::text::{self, one_line};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The QR code of `url` as an inline `<svg>` element: one unit per module,
/// a quiet zone of four, black on white, scaled by the page's CSS. The same
/// URL always gives the same SVG. Error correction M (15 %) keeps a typical
/// login URL (about 90 characters) at version 5 or 6: large modules, easy
/// to scan from paper.
pub fn qr_svg(url: &str) -> Result<String, String> {
    let code = QrCode::with_error_correction_level(url.as_bytes(), EcLevel::M)
        .map_err(|e| format!("no QR code for a URL of {} bytes: {e}", url.len()))?;
    let image = code
        .render::<svg::Color>()
        .module_dimensions(1, 1)
        .quiet_zone(true)
        .dark_color(svg::Color("#000"))
        .light_color(svg::Color("#fff"))
        .build();
    // Inline in HTML: without the XML declaration.
    let start = image.find("<svg").ok_or("the QR renderer made no <svg> element")?;
    Ok(image[start..].replacen("<svg ", "<svg aria-hidden=\"true\" ", 1))
}

const STYLE: &str = r#"
@page { size: A4; margin: 10mm; }
* { box-sizing: border-box; }
html { color: #000; background: #fff; }
body { margin: 0; font-family: "Helvetica Neue", Arial, "Noto Sans", "PingFang SC", "Microsoft YaHei", sans-serif; }
header { margin: 0 0 6mm; }
header h1 { font-size: 16pt; margin: 0 0 2mm; }
header p { margin: 0 0 1mm; font-size: 10pt; }
.warning { font-weight: bold; }
.cards { display: grid; grid-template-columns: repeat(2, 1fr); gap: 5mm; }
.card { height: 88mm; padding: 5mm; border: 0.4mm dashed #777; break-inside: avoid; page-break-inside: avoid;
        display: flex; flex-direction: column; align-items: center; text-align: center; overflow: hidden; }
.card h2 { margin: 0 0 3mm; font-size: 15pt; line-height: 1.2; overflow-wrap: anywhere; }
.qr svg { display: block; width: 48mm; height: 48mm; }
.url { margin: 3mm 0 0; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 8.5pt;
       line-height: 1.3; word-break: break-all; overflow-wrap: anywhere; }
.url a { color: #000; text-decoration: none; }
.hint { margin: auto 0 0; font-size: 8.5pt; color: #333; }
.state { margin: 8mm 0 3mm; font-size: 13pt; font-weight: bold; }
.reason { margin: 0; font-size: 9.5pt; overflow-wrap: anywhere; }
.not-ready { border-style: solid; background: repeating-linear-gradient(45deg, #fff, #fff 3mm, #f2f2f2 3mm, #f2f2f2 6mm); }
@media screen { body { max-width: 200mm; margin: 8mm auto; padding: 0 4mm; } }
@media print { header { display: none; } .card { border-color: #999; } }
"#;

/// The whole page.
pub fn html(room: &Room) -> String {
    let stack_name = room.stack.as_ref().and_then(|s| s.name.as_deref()).map(one_line);
    let title = match &stack_name {
        Some(name) => format!("Jupyter logins: {name}"),
        None => "Jupyter logins".to_string(),
    };
    let counts = room.counts();
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // Self-contained by construction: the page may load nothing, run nothing.
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    out.push_str("<meta name=\"referrer\" content=\"no-referrer\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!("<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n", escape(&title)));
    out.push_str(&format!(
        "<header>\n<h1>{}</h1>\n<p>{}</p>\n<p class=\"warning\">Every ready card holds its participant's login \
         token: hand each card to its participant only, and delete this file after the workshop.</p>\n\
         <p>Print it (A4, six cards to a page; this header is not printed) and cut along the dashed lines.</p>\n\
         </header>\n",
        escape(&title),
        escape(&crate::show::summary(counts)),
    ));
    out.push_str("<main class=\"cards\">\n");
    for p in &room.participants {
        out.push_str(&card(p));
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

fn card(p: &Participant) -> String {
    let name = escape(&one_line(&p.name));
    match &p.state {
        State::Ready { url, .. } => {
            let url_text = escape(url);
            let qr = match qr_svg(url) {
                Ok(svg) => {
                    format!("<div class=\"qr\" role=\"img\" aria-label=\"QR code of the login URL\">{svg}</div>")
                }
                Err(why) => format!("<p class=\"reason\">{}</p>", escape(&why)),
            };
            format!(
                "<section class=\"card ready\">\n<h2>{name}</h2>\n{qr}\n<p class=\"url\"><a href=\"{url_text}\">{url_text}</a></p>\n\
                 <p class=\"hint\">Scan the code, or type the address into a browser.</p>\n</section>\n"
            )
        }
        State::Failed { step, reason } => {
            let what = match step {
                Some(step) => format!("{step}: {reason}"),
                None => reason.clone(),
            };
            format!(
                "<section class=\"card not-ready failed\">\n<h2>{name}</h2>\n<p class=\"state\">Not ready: the setup failed</p>\n\
                 <p class=\"reason\">{}</p>\n<p class=\"hint\">Please ask the organiser for help.</p>\n</section>\n",
                escape(&one_line(&text::scrub(&what)))
            )
        }
        State::Waiting => format!(
            "<section class=\"card not-ready waiting\">\n<h2>{name}</h2>\n<p class=\"state\">Not ready yet</p>\n\
             <p class=\"reason\">This machine has not reported back yet.</p>\n\
             <p class=\"hint\">Please ask the organiser for help.</p>\n</section>\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse;
    use std::collections::BTreeSet;

    const URL: &str = "http://47.1.2.3:8888/?token=0123456789abcdef0123456789abcdef0123456789abcdef";

    /// The dark modules an SVG of [`qr_svg`] draws: one `M{x} {y}h1v1H{x}V{y}` per module.
    fn drawn_modules(svg: &str) -> BTreeSet<(usize, usize)> {
        let d_at = svg.find(" d=\"").expect("a path") + 4;
        let d = &svg[d_at..d_at + svg[d_at..].find('"').unwrap()];
        d.split('M')
            .filter(|s| !s.is_empty())
            .map(|seg| {
                let (x, rest) = seg.split_once(' ').expect("M<x> <y>");
                let y = rest.split('h').next().unwrap();
                assert_eq!(rest, format!("{y}h1v1H{x}V{y}"), "one module per rectangle: {seg}");
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn the_qr_svg_draws_exactly_the_codes_modules_and_is_deterministic() {
        let svg = qr_svg(URL).unwrap();
        assert!(svg.starts_with("<svg aria-hidden=\"true\" xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        assert!(svg.ends_with("</svg>") && !svg.contains("<?xml"), "{svg}");
        assert_eq!(svg, qr_svg(URL).unwrap(), "the same URL gives the same SVG");
        assert_ne!(svg, qr_svg(&URL.replace("abc", "abd")).unwrap(), "another URL, another code");

        // The SVG is the code of the URL, module for module, in a quiet zone of 4.
        let code = QrCode::with_error_correction_level(URL.as_bytes(), EcLevel::M).unwrap();
        let w = code.width();
        assert!(svg.contains(&format!("viewBox=\"0 0 {0} {0}\"", w + 8)), "{svg}");
        let expected: BTreeSet<(usize, usize)> = code
            .to_colors()
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == qrcode::Color::Dark)
            .map(|(i, _)| (i % w + 4, i / w + 4))
            .collect();
        assert_eq!(drawn_modules(&svg), expected);
        assert!(w <= 41, "a login URL stays at version 6 or below (41 modules), got {w}");
    }

    #[test]
    fn a_url_too_long_for_a_qr_code_is_said_so() {
        let long = format!("http://h/?token={}", "x".repeat(5000));
        assert!(qr_svg(&long).unwrap_err().contains("no QR code for a URL of 5016 bytes"));
    }

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape("张伟"), "张伟");
    }

    #[test]
    fn the_page_has_a_card_per_participant_with_the_full_url_for_the_ready() {
        let room = parse(&format!(
            r#"{{"StackName": "room-<42>", "StackId": "s", "Status": "CREATE_COMPLETE", "Outputs": [
              {{"OutputKey": "Participants", "OutputValue": "alice,bob,carol"}},
              {{"OutputKey": "Room", "OutputValue": {{"alice": {{"url": "{URL}"}},
                 "bob": {{"error": "pull failed for https://u:secret@reg/x?token=t0k", "step": "image"}}}}}}]}}"#
        ))
        .unwrap();
        let page = html(&room);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<title>Jupyter logins: room-&lt;42&gt;</title>"), "{page}");
        assert_eq!(page.matches("<section class=\"card").count(), 3);
        assert!(page.contains(&format!("<a href=\"{URL}\">{URL}</a>")), "the full URL, token included");
        assert_eq!(page.matches("<svg ").count(), 1, "a QR code for the ready card only");
        assert!(page.contains(&qr_svg(URL).unwrap()));
        assert!(page.contains("image: pull failed for https://***@reg/x?token=&lt;redacted&gt;"), "{page}");
        assert!(!page.contains("secret") && !page.contains("t0k"), "a reason's secrets stay out");
        assert!(page.contains("<h2>carol</h2>\n<p class=\"state\">Not ready yet</p>"), "{page}");
        assert!(page.contains("1 ready, 1 failed, 1 waiting"));
        // Self-contained: nothing to fetch.
        assert!(page.contains("default-src 'none'"));
        for external in ["<script", "<link", "<img", "<iframe", "src=", "url(", "@import"] {
            assert!(!page.contains(external), "{external} in the page");
        }
        assert!(page.contains("@page { size: A4"));
    }

    #[test]
    fn everything_from_the_stack_is_escaped() {
        let room = parse(
            r#"{"<script>alert(1)</script>": {"url": "http://h/?a=1&b=\"x\"><img/src=x>"},
                "o'neil": {"error": "</p><script>x</script>", "step": "<b>"}}"#,
        )
        .unwrap();
        let page = html(&room);
        assert!(!page.contains("<script") && !page.contains("<img") && !page.contains("<b>"), "{page}");
        assert!(page.contains("<h2>&lt;script&gt;alert(1)&lt;/script&gt;</h2>"));
        assert!(page.contains("href=\"http://h/?a=1&amp;b=&quot;x&quot;&gt;&lt;img/src=x&gt;\""), "{page}");
        assert!(page.contains("<h2>o&#39;neil</h2>"));
        assert!(page.contains("&lt;b&gt;: &lt;/p&gt;&lt;script&gt;x&lt;/script&gt;"));
    }
}
