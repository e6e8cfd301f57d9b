//! Next-character language modelling: each window of `context` characters is a sample, each
//! position's target the character after it. Reads a text file (`[data] kind = "text"`),
//! trains on windows at random offsets drawn anew each epoch and holds out the file's tail.
//! Its figures are the accuracy per position and the perplexity; its models decode one
//! character at a time (`generate`), and `predict` gives the next character's distribution.

use anyhow::{Context, Result, bail};
use data::{Batch, CharCorpus, Dataset, Inputs, encode_with};
use explain::Attribution;
use graph::{Feed, Model, Supervised, TensorId};

use super::{
    Evaluation, Figure, Predictor, Registration, Report, Sample, SampleSource, Shapes, Sums, Task, labelled,
    ranked_report, top,
};
use crate::config::{DataConfig, DataSource, TrainConfig};
use crate::dataset::{Data, TrainSet};

pub const REGISTRATION: Registration = Registration { load, load_test, restore: Some(restore) };

/// Windows of characters of a vocabulary, each position predicting the next.
pub struct LanguageModel {
    shapes: Shapes,
    /// Every character of the text, sorted: a character's id is its index here.
    vocabulary: Vec<char>,
}

impl LanguageModel {
    /// Windows of `context` characters of `vocabulary`.
    pub fn new(context: usize, vocabulary: Vec<char>) -> Self {
        let vocab = vocabulary.len();
        let shapes = Shapes { sample: vec![context], inputs: Inputs::Tokens { vocab }, output: vec![context, vocab] };
        LanguageModel { shapes, vocabulary }
    }

    fn context(&self) -> usize {
        self.shapes.sample[0]
    }

    /// `text`'s last window of characters as a sample of token ids, padded after its end to
    /// the window (which positions before it do not see in a causal model), and how many
    /// characters are real.
    fn window(&self, text: &str) -> Result<(Vec<f32>, usize)> {
        let ids = encode(&self.vocabulary, text, "--text")?;
        let ids = &ids[ids.len().saturating_sub(self.context())..];
        let mut sample: Vec<f32> = ids.iter().map(|&id| id as f32).collect();
        sample.resize(self.context(), 0.0);
        Ok((sample, ids.len()))
    }
}

/// The ids of `text` in `vocabulary`, or an error naming the flag and the first character
/// the model does not know.
pub fn encode(vocabulary: &[char], text: &str, flag: &str) -> Result<Vec<u32>> {
    let ids = encode_with(vocabulary, text).map_err(|c| {
        anyhow::anyhow!("{flag}: {c:?} is not in the model's vocabulary of {} characters", vocabulary.len())
    })?;
    if ids.is_empty() {
        bail!("{flag}: give at least one character");
    }
    Ok(ids)
}

impl Task for LanguageModel {
    fn shapes(&self) -> &Shapes {
        &self.shapes
    }

    fn advice(&self) -> String {
        format!("a linear layer of out_features = {} on the sequence (one class per position)", self.vocabulary.len())
    }

    fn head(&self, model: Model, x: TensorId, output: TensorId, train: &TrainConfig) -> graph::Result<Supervised> {
        Supervised::classifier(model, x, output, train.label_smoothing)
    }

    fn feed(&self, batch: &Batch, set: &Dataset) -> Feed {
        labelled(batch, set)
    }

    fn kept(&self) -> String {
        serde_json::json!({ "vocabulary": self.vocabulary.iter().collect::<String>() }).to_string()
    }

    fn figure(&self) -> Figure {
        Figure { name: "accuracy", higher_is_better: true }
    }

    /// The accuracy is per position.
    fn score(&self, sums: Sums) -> (f64, f64) {
        let n = sums.samples.max(1) as f64;
        (sums.loss / n, sums.metric / (n * self.context() as f64))
    }

    fn extra(&self, loss: f64) -> Vec<(&'static str, f64)> {
        vec![("perplexity", loss.exp())]
    }

    fn show(&self, figure: f64) -> String {
        format!("accuracy {:.2}%", 100.0 * figure)
    }

    fn report(&self, mut evaluation: Evaluation) -> Result<Report> {
        let (loss, figure) = self.score(evaluation.pass(self, false)?.0);
        let (file, samples) = (evaluation.checkpoint.display().to_string(), evaluation.test.len());
        let mut json = serde_json::json!({ "checkpoint": file, "samples": samples, "loss": loss, "accuracy": figure });
        let mut text = format!("{file}: {samples} test samples, loss {loss:.4} {}", self.show(figure));
        for (name, value) in self.extra(loss) {
            json[name] = value.into();
            text += &format!(", {name} {value:.3}");
        }
        Ok(Report { json, text })
    }

    /// The next character's distribution after `--text`, the model reading it one character
    /// at a time.
    fn predict(&self, source: &SampleSource, model: &mut dyn Predictor, top_k: usize) -> Result<Report> {
        let Some(text) = &source.text else { bail!("a character model predicts from --text \"...\"") };
        let logits = model.next_logits(&encode(&self.vocabulary, text, "--text")?)?;
        let ranked = top(&explain::softmax(&logits), top_k);
        let named: Vec<_> = ranked.into_iter().map(|(c, p)| (self.vocabulary[c].to_string().into(), p)).collect();
        Ok(ranked_report(&named, "character"))
    }

    fn sample(&self, source: &SampleSource, test: &Dataset) -> Result<Sample> {
        match (source.index, &source.input[..], &source.text, &source.values) {
            (Some(i), [], None, None) => Sample::of_test(test, i),
            (None, [], Some(text), None) => {
                let (values, real) = self.window(text)?;
                Ok(Sample { label: format!("{text:?}"), values, real })
            }
            (None, [_], None, None) => bail!("this model takes {:?} samples, not images", self.shapes.sample),
            _ => bail!("give exactly one of --input IMAGE, --text \"...\" or --index N"),
        }
    }

    fn explained(&self, attribution: &Attribution) -> String {
        let class = attribution.target.class;
        format!(
            "next character {:?} (probability {:.2}%)",
            self.vocabulary[class],
            100.0 * attribution.probabilities[class]
        )
    }

    fn text(&self, ids: &[f32]) -> Option<Vec<char>> {
        Some(ids.iter().map(|&id| self.vocabulary[id as usize]).collect())
    }

    fn decodes(&self) -> Option<&[char]> {
        Some(&self.vocabulary)
    }
}

/// The text's training windows (drawn each epoch) and its held-out tail cut into windows.
fn load(data: &DataConfig, _seed: u64) -> Result<(Data, Box<dyn Task>)> {
    let &DataSource::Text { ref path, context, held_out, windows } = &data.source else {
        unreachable!("{:?} is not registered for language modelling", data.source)
    };
    let corpus = CharCorpus::load(path, held_out).context("loading [data] path")?;
    let (train_chars, held_out_chars) = corpus.parts();
    if held_out_chars <= context || train_chars <= context {
        bail!(
            "[data] context = {context}: the text's training part has {train_chars} characters and its \
             held-out part {held_out_chars}; both need more than one window (lower context or held_out)"
        );
    }
    let windows = if windows == 0 { train_chars / context } else { windows };
    let test = corpus.held_out_windows(context);
    let task = Box::new(LanguageModel::new(context, corpus.vocabulary.clone()));
    Ok((Data { train: TrainSet::Text { corpus, context, windows }, test }, task))
}

/// The held-out windows, with the vocabulary the checkpoint kept.
fn load_test(data: &DataConfig, seed: u64, kept: Option<&str>) -> Result<(Dataset, Box<dyn Task>)> {
    let (read, task) = load(data, seed)?;
    Ok((read.test, kept.map_or(Ok(task), |kept| restore(data, kept))?))
}

/// The vocabulary kept in a checkpoint, and the window of the config.
fn restore(data: &DataConfig, kept: &str) -> Result<Box<dyn Task>> {
    let DataSource::Text { context, .. } = data.source else {
        unreachable!("{:?} is not registered for language modelling", data.source)
    };
    let value: serde_json::Value = serde_json::from_str(kept).context("the checkpoint's data metadata")?;
    let Some(chars) = value["vocabulary"].as_str() else {
        bail!("the checkpoint holds no vocabulary; was it trained on text? (its data metadata: {kept})");
    };
    Ok(Box::new(LanguageModel::new(context, chars.chars().collect())))
}
