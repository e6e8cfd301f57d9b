//! `dlcli explain --report FILE.html`: one self-contained page (images embedded as data URLs,
//! no network) of every `--method` on every sample: the inputs with the model's prediction,
//! each method's maps, and with `--check` its faithfulness figures beside them; buttons sort
//! the methods by faithfulness or by sensitivity to the model.

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};
use explain::{Attribution, FAITHFUL_MARGIN, INSENSITIVE};

use super::check::Checked;
use super::render::{self, highlighted_spans};
use super::settings::MethodArg;
use super::{Args, Sample, Session};
use crate::plots;

/// One method's row: its maps, one per sample, and its checks.
struct Row {
    method: MethodArg,
    cells: Vec<String>,
    checked: Option<Checked>,
}

/// The page of `methods` on the session's samples, at `path`.
pub fn write(path: &Path, methods: &[MethodArg], args: &Args, session: &mut Session) -> Result<()> {
    let mut rows = Vec::new();
    let mut predictions: Vec<Option<String>> = vec![None; session.samples.len()];
    for &method in methods {
        let mut cells = Vec::new();
        for (i, sample) in session.samples.iter().enumerate() {
            let resolved = session.resolve(method, &args.settings, sample)?;
            let attribution = session.explainer.explain(&sample.values, &resolved.method, sample.row, args.target)?;
            predictions[i].get_or_insert_with(|| predicted(session, &attribution));
            cells.push(cell(session, method, sample, &attribution, args)?);
        }
        let checked = if args.check { Some(session.check(method, args)?) } else { None };
        rows.push(Row { method, cells, checked });
    }
    let inputs = session
        .samples
        .iter()
        .zip(&predictions)
        .map(|(sample, prediction)| input_cell(session, sample, prediction.as_deref().unwrap_or("")))
        .collect::<Result<Vec<_>>>()?;
    let page = page(session, args, &inputs, &rows);
    std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    println!("report of {} method(s) on {} sample(s): {}", rows.len(), inputs.len(), path.display());
    Ok(())
}

/// What the model predicts, in the data's terms (the class of the largest probability).
fn predicted(session: &Session, attribution: &Attribution) -> String {
    let best = (0..attribution.probabilities.len())
        .fold(0, |b, c| if attribution.probabilities[c] > attribution.probabilities[b] { c } else { b });
    let mut shown = attribution.clone();
    shown.target.class = best;
    session.task.explained(&shown)
}

fn cell(
    session: &Session,
    method: MethodArg,
    sample: &Sample,
    attribution: &Attribution,
    args: &Args,
) -> Result<String> {
    Ok(match session.chars(sample) {
        Some(chars) => {
            let weights: Vec<f64> = attribution.map[..sample.real].iter().map(|&w| w as f64).collect();
            format!("<pre class=\"text\">{}</pre>", highlighted_spans(&chars, &weights))
        }
        None => img(&session.image((method, sample, attribution), args.layout, false)?, &method.name())?,
    })
}

fn input_cell(session: &Session, sample: &Sample, prediction: &str) -> Result<String> {
    let shown = match (session.chars(sample), &session.loaded.test.sample_shape[..]) {
        (Some(chars), _) => format!("<pre class=\"text\">{}</pre>", escape(&chars.iter().collect::<String>())),
        (None, &[channels, height, width]) => img(&render::input(&sample.values, channels, height, width), "input")?,
        (None, shape) => {
            let features = shape.get(1).copied().unwrap_or(1);
            img(&plots::sequence_map(&sample.values[..sample.real * features], features, "input")?, "input")?
        }
    };
    Ok(format!("{shown}<div class=\"label\">{}<br><b>{}</b></div>", escape(&sample.label), escape(prediction)))
}

/// An `<img>` of `image` as an embedded PNG.
fn img(image: &image::RgbImage, alt: &str) -> Result<String> {
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding a report image as PNG")?;
    Ok(format!("<img alt=\"{}\" src=\"data:image/png;base64,{}\">", escape(alt), base64(&png)))
}

/// The checks' figures as the report shows them.
fn check_cell(checked: &Checked) -> String {
    let flag = |ok: bool| if ok { "good" } else { "bad" };
    let mut out = format!(
        "<div>randomised-model Spearman <b class=\"{}\">{:.3}</b> <small>(flagged above {INSENSITIVE})</small></div>",
        flag(checked.sensitive()),
        checked.randomised()
    );
    let _ = write!(
        out,
        "<div>deletion AUC <b>{:.3}</b> <small>(random {:.3})</small></div>\
         <div>insertion AUC <b>{:.3}</b> <small>(random {:.3})</small></div>\
         <div>insertion − deletion <b class=\"{}\">{:.3}</b> <small>(random {:.3}; faithful needs {FAITHFUL_MARGIN} more)</small></div>",
        checked.curves.deletion,
        checked.random.deletion,
        checked.curves.insertion,
        checked.random.insertion,
        flag(checked.faithful()),
        checked.curves.margin(),
        checked.random.margin()
    );
    for (name, value) in &checked.figures {
        let _ = write!(out, "<div>{} <b>{value:.4}</b></div>", name.replace('_', " "));
    }
    let _ = write!(out, "<div><small>over {} sample(s)</small></div>", checked.samples);
    out
}

fn page(session: &Session, args: &Args, inputs: &[String], rows: &[Row]) -> String {
    let model = session.loaded.file.display().to_string();
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>dlcli explain: {}</title>\n<style>{STYLE}</style></head>\n<body>\n\
         <h1>What the model looks at</h1>\n<p class=\"meta\">{} &middot; {} executor &middot; seed {}</p>\n",
        escape(&model),
        escape(&model),
        session.executor,
        args.settings.seed
    );
    if args.check {
        html += "<p>Sort methods by <button onclick=\"sortBy('margin', -1)\">faithfulness</button> \
                 <button onclick=\"sortBy('randomised', 1)\">sensitivity to the model</button> \
                 <button onclick=\"sortBy('order', 1)\">as given</button></p>\n";
    }
    html += "<table>\n<thead><tr><th>method</th>";
    if args.check {
        html += "<th>checks</th>";
    }
    for input in inputs {
        let _ = write!(html, "<th class=\"input\">{input}</th>");
    }
    html += "</tr></thead>\n<tbody id=\"methods\">\n";
    for (order, row) in rows.iter().enumerate() {
        let (margin, randomised) =
            row.checked.as_ref().map_or((0.0, 0.0), |c| (c.curves.margin() - c.random.margin(), c.randomised()));
        let _ = write!(
            html,
            "<tr data-order=\"{order}\" data-margin=\"{margin:.6}\" data-randomised=\"{randomised:.6}\"><th>{}</th>",
            row.method.name()
        );
        if let Some(checked) = &row.checked {
            let _ = write!(html, "<td class=\"check\">{}</td>", check_cell(checked));
        }
        for cell in &row.cells {
            let _ = write!(html, "<td>{cell}</td>");
        }
        html += "</tr>\n";
    }
    html += "</tbody></table>\n<p class=\"meta\">Orange and red for the class, blue against it; saliency, SmoothGrad and \
             the class activation maps show magnitudes. Deletion and insertion: the target's probability as the map's \
             positions are removed (or revealed) in its order, against random orders.</p>\n";
    html += SCRIPT;
    html += "</body></html>\n";
    html
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222}\
h1{font-size:22px;margin:0 0 4px}.meta{color:#666;font-size:13px}\
table{border-collapse:collapse;margin-top:12px}th,td{border:1px solid #ddd;padding:6px;vertical-align:top;text-align:left}\
tbody th{font-size:15px;white-space:nowrap}img{max-width:340px;display:block}\
td.check{font-size:13px;min-width:230px}td.check div{margin:2px 0}.good{color:#17803d}.bad{color:#c0262d}\
.label{font-size:13px;margin-top:4px;font-weight:normal}pre.text{font-size:15px;white-space:pre-wrap;max-width:420px;margin:0}\
button{font-size:13px;margin-right:4px}";

/// Sorting the methods' rows, and a count of the images that decoded (`data-images` on the
/// body: what the rendering test reads).
const SCRIPT: &str = "<script>\
function sortBy(key, sign){const body=document.getElementById('methods');\
[...body.rows].sort((a,b)=>sign*(a.dataset[key]-b.dataset[key])).forEach(r=>body.appendChild(r));}\
window.addEventListener('load',()=>{const all=[...document.images];\
document.body.dataset.images=all.filter(i=>i.complete&&i.naturalWidth>0).length+'/'+all.length;});\
</script>\n";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Standard base64 with padding (RFC 4648), for data URLs.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            out.push(if k <= chunk.len() { ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648() {
        // RFC 4648 section 10's test vectors.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(plain.as_bytes()), encoded);
        }
    }
}
