//! Character-level text: the vocabulary of a corpus, the text as ids, and windows of it for
//! next-character prediction (each window's targets are its ids shifted by one).

use std::path::Path;

use crate::dataset::{Dataset, Inputs, SplitMix64, Targets};
use crate::error::{DataError, Result};

/// A corpus as character ids, its last part held out.
#[derive(Debug, Clone, PartialEq)]
pub struct CharCorpus {
    /// Every distinct character of the corpus, sorted: a character's id is its index.
    pub vocabulary: Vec<char>,
    ids: Vec<u32>,
    /// Where the held-out part starts.
    split: usize,
}

impl CharCorpus {
    /// Reads a UTF-8 text file, holding out its last `held_out` fraction.
    pub fn load(path: &Path, held_out: f64) -> Result<Self> {
        let bad = |detail: String| DataError::Format { path: path.to_owned(), line: 0, detail };
        let bytes = std::fs::read(path).map_err(|error| DataError::Io { path: path.to_owned(), error })?;
        let text = String::from_utf8(bytes).map_err(|e| bad(format!("not UTF-8 text ({e})")))?;
        Self::new(&text, held_out).map_err(bad)
    }

    /// The corpus of `text`, its last `held_out` fraction kept apart.
    pub fn new(text: &str, held_out: f64) -> Result<Self, String> {
        let mut vocabulary: Vec<char> = text.chars().collect();
        vocabulary.sort_unstable();
        vocabulary.dedup();
        let ids = encode_with(&vocabulary, text).expect("every character is in the vocabulary");
        let split = ids.len() - (ids.len() as f64 * held_out).round() as usize;
        if split < 2 || ids.len() - split < 2 {
            return Err(format!(
                "{} characters are too few to hold out {held_out} of them and train on the rest",
                ids.len()
            ));
        }
        Ok(CharCorpus { vocabulary, ids, split })
    }

    /// The training part's and the held-out part's lengths in characters.
    pub fn parts(&self) -> (usize, usize) {
        (self.split, self.ids.len() - self.split)
    }

    /// `count` windows of `context` characters at random offsets of the training part, drawn
    /// by (`seed`, `epoch`).
    pub fn random_windows(&self, context: usize, count: usize, seed: u64, epoch: u64) -> Dataset {
        let train = &self.ids[..self.split];
        let room = train.len().saturating_sub(context) as u64;
        let mut draw = SplitMix64(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ epoch);
        let starts: Vec<usize> = (0..count).map(|_| (draw.next_u64() % room.max(1)) as usize).collect();
        self.windows(train, context, &starts)
    }

    /// The held-out part cut into consecutive windows of `context` characters.
    pub fn held_out_windows(&self, context: usize) -> Dataset {
        let held_out = &self.ids[self.split..];
        let starts: Vec<usize> = (0..held_out.len().saturating_sub(1) / context).map(|w| w * context).collect();
        self.windows(held_out, context, &starts)
    }

    /// Windows of `ids` at `starts`, each with the next character of each position as targets.
    fn windows(&self, ids: &[u32], context: usize, starts: &[usize]) -> Dataset {
        let window = |s: usize, shift: usize| ids[s + shift..s + shift + context].iter().copied();
        Dataset {
            samples: starts.iter().flat_map(|&s| window(s, 0).map(|id| id as f32)).collect(),
            sample_shape: vec![context],
            inputs: Inputs::Tokens { vocab: self.vocabulary.len() },
            targets: Targets::Classes {
                labels: starts.iter().flat_map(|&s| window(s, 1)).collect(),
                per_sample: context,
                classes: self.vocabulary.len(),
            },
        }
    }
}

/// The ids of `text`'s characters in `vocabulary`, or the first character it lacks.
pub fn encode_with(vocabulary: &[char], text: &str) -> Result<Vec<u32>, char> {
    text.chars().map(|c| vocabulary.binary_search(&c).map(|i| i as u32).map_err(|_| c)).collect()
}
