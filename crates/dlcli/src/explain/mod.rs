//! `dlcli explain`: what a model looks at in one input, by any method of the explain crate:
//! the map as a PNG (an overlay on an image, bars or a heatmap over a series, a highlighted
//! text as HTML), a JSON sidecar with the method, its settings, the target, the raw
//! attribution with its shape and the figures that say how far to trust it, the same arrays
//! as `.npy` on request, and `--check`'s faithfulness table.

mod attention;
mod check;
mod render;
mod report;
mod settings;

#[cfg(test)]
mod golden;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use explain::{Attribution, Explainer, Features, Method};
use serde_json::json;

use crate::context::{self, Loaded, Located, ModelSource};
use crate::plots;
use crate::task::{self, SampleSource, Task};
use render::{Layout, Picture, beside, highlighted_ansi, highlighted_html};
use settings::{MethodArg, Settings};

/// Samples per run of a method that needs many passes (IG's steps, SmoothGrad's copies, the
/// perturbation methods' draws, the checks' curves).
const EXPLAIN_BATCH: usize = 32;

#[derive(clap::Args)]
pub struct Args {
    /// The method, or for --report several, comma-separated (--report without it: every
    /// attribution method that applies to the model).
    #[arg(long, value_enum, value_delimiter = ',', required_unless_present = "report")]
    method: Vec<MethodArg>,
    #[command(flatten)]
    model: ModelSource,
    #[command(flatten)]
    sample: SampleSource,
    #[command(flatten)]
    settings: Settings,
    /// The class (or output index) to explain (default: the predicted class).
    #[arg(long)]
    target: Option<usize>,
    /// The position whose prediction a language model's explanation is of (default: the last
    /// character of --text, the last position of a test window).
    #[arg(long)]
    position: Option<usize>,
    /// Also run the faithfulness checks (cascading randomisation, deletion and insertion
    /// against random orders) and print their table.
    #[arg(long)]
    check: bool,
    /// N test samples from --index (default 0): what --check averages over and --report shows
    /// (or several --input files).
    #[arg(long)]
    samples: Option<usize>,
    /// An image's PNG: the map over the input, or input | map | overlay side by side.
    #[arg(long, value_enum, default_value_t = Layout::Overlay)]
    layout: Layout,
    /// Also write the raw attribution and the map as NumPy arrays (NAME.npy, NAME-map.npy).
    #[arg(long)]
    npy: bool,
    /// The PNG to write (the map, or attention's grid); the JSON sidecar goes beside it (same
    /// name, .json), a text's highlighting as NAME.html.
    #[arg(long, required_unless_present = "report")]
    out: Option<PathBuf>,
    /// One self-contained HTML page: every --method on every sample, with --check's figures,
    /// methods sortable by faithfulness.
    #[arg(long, conflicts_with_all = ["out", "npy"])]
    report: Option<PathBuf>,
}

/// One sample a command explains.
struct Sample {
    /// What it is, for people: "test sample 3", a file name, the text.
    label: String,
    /// The model's input (values, or token ids as f32).
    values: Vec<f32>,
    /// Its real positions (a text's characters before the padding; all of any other input).
    real: usize,
    /// The output row explained.
    row: usize,
}

/// What every path of the command shares: the model, its task, its explainer and the samples.
struct Session<'g> {
    loaded: Loaded,
    task: Box<dyn Task>,
    explainer: Explainer<Box<dyn graph::Executor + 'g>>,
    samples: Vec<Sample>,
    executor: &'static str,
}

impl<'g> Session<'g> {
    fn open(args: &Args, (loaded, task): (Loaded, Box<dyn Task>), gpu: Option<&'g kernels::Gpu>) -> Result<Self> {
        let explainer = loaded.explainer(gpu)?;
        let (rows, classes) = (explainer.rows(), explainer.classes());
        if let Some(t) = args.target.filter(|&t| t >= classes) {
            bail!("--target {t} is not a class or output of this model (0..{classes})");
        }
        let row = |sample: task::Sample| {
            let row = match args.position {
                Some(p) if p >= rows => {
                    bail!("--position {p} is past the model's {rows} output positions (0..{rows})")
                }
                Some(p) => p,
                None if args.sample.text.is_some() => sample.real - 1,
                None => rows - 1,
            };
            Ok(Sample { label: sample.label, values: sample.values, real: sample.real, row })
        };
        let files = &args.sample.input;
        let samples = match args.samples {
            None if files.len() > 1 => {
                if args.report.is_none() && !args.check {
                    bail!("several --input files are for --report or --check; explain one at a time otherwise");
                }
                let one = |f: &PathBuf| SampleSource { input: vec![f.clone()], ..SampleSource::default() };
                files.iter().map(|f| row(task.sample(&one(f), &loaded.test)?)).collect::<Result<_>>()?
            }
            Some(n) => {
                if !files.is_empty() || args.sample.text.is_some() {
                    bail!("--samples N takes test samples from --index; leave out --input and --text");
                }
                let (start, len) = (args.sample.index.unwrap_or(0), loaded.test.len());
                if n == 0 || start + n > len {
                    bail!("--samples {n} from --index {start}: the test set has {len} samples");
                }
                (start..start + n).map(|i| row(task::Sample::of_test(&loaded.test, i)?)).collect::<Result<_>>()?
            }
            None => vec![row(task.sample(&args.sample, &loaded.test)?)?],
        };
        let executor = if gpu.is_some() { "gpu" } else { "cpu" };
        Ok(Session { loaded, task, explainer, samples, executor })
    }

    /// The model as the methods' settings are resolved for it.
    fn model(&self) -> settings::Model<'_> {
        settings::Model { loaded: &self.loaded, task: self.task.as_ref(), layout: self.explainer.layout() }
    }

    /// `method` resolved for `sample` (LIME's and SHAP's groups depend on it).
    fn resolve(&self, method: MethodArg, settings: &Settings, sample: &Sample) -> Result<settings::Resolved> {
        settings::resolve(method, settings, &self.model(), &sample.values, sample.real)
    }

    /// The checks of `method` over every sample.
    fn check(&mut self, method: MethodArg, args: &Args) -> Result<check::Checked> {
        let methods = self
            .samples
            .iter()
            .map(|s| Ok(self.resolve(method, &args.settings, s)?.method))
            .collect::<Result<Vec<_>>>()?;
        let stages = check::stages(&self.loaded, self.task.as_ref(), self.explainer.batch())?;
        let baseline = settings::baseline(&args.settings, &self.model())?;
        let items: Vec<(&[f32], usize, &Method)> =
            self.samples.iter().zip(&methods).map(|(s, m)| (s.values.as_slice(), s.row, m)).collect();
        check::run(&mut self.explainer, &stages, &items, &baseline, args.target, args.settings.seed)
    }

    /// The characters of a text model's sample (None for other models).
    fn chars(&self, sample: &Sample) -> Option<Vec<char>> {
        self.task.text(&sample.values[..sample.real])
    }

    /// The attribution's map drawn as the command's PNG shows it: an image's picture, a
    /// series' (or text's) bars or heatmap, with a title naming the method and the prediction
    /// when `titled` (the report's rows name them already).
    fn image(
        &self,
        (method, sample, attribution): (MethodArg, &Sample, &Attribution),
        layout: Layout,
        titled: bool,
    ) -> Result<image::RgbImage> {
        let title = match titled {
            true => format!("{} of {}", method.name(), self.task.explained(attribution)),
            false => String::new(),
        };
        match self.loaded.test.sample_shape[..] {
            [channels, height, width] => {
                let (input, map, signed) = (&sample.values, &attribution.map, method.signed());
                render::picture(&Picture { input, channels, height, width, map, signed, title }, layout)
            }
            _ => {
                let features = attribution.width;
                plots::sequence_map(&attribution.map[..sample.real * features], features, &title)
            }
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    args.settings.check()?;
    let attention = args.method.contains(&MethodArg::Attention);
    if args.check && attention {
        bail!("--check is for attribution methods; attention maps have no target to check against");
    }
    if args.report.is_none() && args.method.len() > 1 {
        bail!("--method takes one method, or several with --report FILE.html");
    }
    if args.report.is_none() && args.samples.is_some() && !args.check {
        bail!("--samples N is for --check (the checks' mean over N test samples) and --report");
    }
    let target = args.report.as_ref().or(args.out.as_ref()).expect("clap requires --out or --report");
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let many = args.method.iter().any(|m| m.many_passes()) || args.check || args.report.is_some();
    let loaded = Located::of(&args.model)?.load(Some(if many && !attention { EXPLAIN_BATCH } else { 1 }))?;
    if attention {
        if args.report.is_some() {
            bail!("--report shows attribution methods; run --method attention on its own");
        }
        return attention::run(args, &loaded.0, loaded.1.as_ref());
    }
    let gpu = context::open_device(args.model.device)?;
    let mut session = Session::open(args, loaded, gpu.as_ref())?;
    match &args.report {
        Some(path) => {
            let methods = match &args.method[..] {
                [] => settings::applicable(&session.loaded),
                given => given.to_vec(),
            };
            report::write(path, &methods, args, &mut session)
        }
        None => explain_one(args, args.method[0], args.out.as_deref().expect("clap requires --out"), &mut session),
    }
}

/// The method on the first sample: its PNG, sidecar, `.npy` arrays and check table.
fn explain_one(args: &Args, method: MethodArg, out: &Path, session: &mut Session) -> Result<()> {
    let sample = &session.samples[0];
    let resolved = session.resolve(method, &args.settings, sample)?;
    let started = Instant::now();
    let attribution = session.explainer.explain(&sample.values, &resolved.method, sample.row, args.target)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut sidecar = json!({
        "method": method.name(), "settings": resolved.settings, "layer": resolved.layer,
        "target": attribution.target.class, "position": attribution.target.row, "score": attribution.score,
        "probability": attribution.probabilities[attribution.target.class], "input": input(args),
        "shape": attribution.shape, "attributions": attribution.values,
        "height": attribution.height, "width": attribution.width, "map": attribution.map,
        "figures": attribution.figures.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "seconds": seconds, "executor": session.executor,
    });
    if let Some((features, weights)) = &attribution.groups {
        sidecar["groups"] = json!({"of_position": features.group, "weights": weights});
    }
    session
        .image((method, sample, &attribution), args.layout, true)?
        .save(out)
        .with_context(|| format!("writing {}", out.display()))?;
    let mut written = vec![out.display().to_string()];
    let chars = session.chars(sample);
    if let Some(chars) = &chars {
        let weights: Vec<f64> = attribution.map[..sample.real].iter().map(|&w| w as f64).collect();
        let html = beside(out, "", "html");
        let what = format!(
            "{} of the prediction after character {} (class {}): the stronger the background, the larger the \
             character's attribution (orange for, blue against).",
            method.name(),
            sample.row,
            attribution.target.class
        );
        std::fs::write(&html, highlighted_html(chars, &weights, &what))
            .with_context(|| format!("writing {}", html.display()))?;
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            println!("{}", highlighted_ansi(chars, &weights));
        }
        sidecar["tokens"] = chars.iter().collect::<String>().into();
        written.push(html.display().to_string());
    }
    if args.npy {
        let (raw, map) = (beside(out, "", "npy"), beside(out, "-map", "npy"));
        crate::npy::write(&raw, &attribution.shape, &attribution.values)?;
        crate::npy::write(&map, &[attribution.height, attribution.width], &attribution.map)?;
        written.extend([raw.display().to_string(), map.display().to_string()]);
    }
    let explained = session.task.explained(&attribution);
    let checked = if args.check { Some(session.check(method, args)?) } else { None };
    if let Some(checked) = &checked {
        sidecar["check"] = checked.to_json();
    }
    let path = out.with_extension("json");
    std::fs::write(&path, sidecar.to_string()).with_context(|| format!("writing {}", path.display()))?;
    written.push(path.display().to_string());

    println!("{} of {explained}: {}", method.name(), written.join(", "));
    for (name, value) in &attribution.figures {
        println!("  {name} {value:.6}");
    }
    if let Some((features, weights)) = &attribution.groups {
        print_top_groups(features, weights, chars.as_deref(), attribution.width);
    }
    if let Some(checked) = checked {
        print!("{}", checked.table(&method.name()));
    }
    Ok(())
}

/// What the input was, for the sidecar.
fn input(args: &Args) -> serde_json::Value {
    match (args.sample.input.first(), args.sample.index, &args.sample.text) {
        (Some(path), _, _) => json!({"file": path.display().to_string()}),
        (_, Some(index), _) => json!({"index": index}),
        (_, _, Some(text)) => json!({"text": text}),
        _ => serde_json::Value::Null,
    }
}

/// A perturbation method's five heaviest groups with their weights.
fn print_top_groups(features: &Features, weights: &[f64], text: Option<&[char]>, width: usize) {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[b].abs().total_cmp(&weights[a].abs()));
    println!("  top features:");
    for &g in order.iter().take(5) {
        let positions: Vec<usize> = (0..features.group.len()).filter(|&p| features.group[p] == g).collect();
        let what = match text {
            Some(chars) => {
                let shown: String = positions.iter().filter_map(|&p| chars.get(p)).collect();
                if shown.is_empty() { "(padding)".to_string() } else { format!("{shown:?}") }
            }
            None => {
                let (first, last) = (positions[0], positions[positions.len() - 1]);
                let (rows, cols) = (first / width..=last / width, positions.iter().map(|p| p % width));
                let (left, right) = cols.fold((usize::MAX, 0), |(l, r), c| (l.min(c), r.max(c)));
                format!("{} positions, rows {}-{}, columns {left}-{right}", positions.len(), rows.start(), rows.end())
            }
        };
        println!("    group {g:>3} {:+.5}  {what}", weights[g]);
    }
}
