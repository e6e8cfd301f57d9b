//! Character text and time series: vocabularies, windows and their targets, the split by
//! position or time, normalisation and the persistence baseline.

use std::path::{Path, PathBuf};

use data::{
    Batches, CharCorpus, Forecast, Inputs, SplitMix64, Targets, encode_with, load_series_csv, naive_mae,
    persistence_rmse, season, seasonal_naive_rmse,
};

fn shipped(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets").join(path)
}

#[test]
fn the_shipped_corpus_has_its_documented_characters_and_split() {
    let corpus = CharCorpus::load(&shipped("shakespeare/shakespeare-9-plays.txt"), 0.1).unwrap();
    // datasets/SOURCES.md: 1,257,981 ASCII characters, 78 distinct.
    assert_eq!(corpus.vocabulary.len(), 78);
    assert_eq!(corpus.parts(), (1_132_183, 125_798));
    assert!(corpus.vocabulary.windows(2).all(|w| w[0] < w[1]), "sorted, so ids are stable");
}

#[test]
fn windows_predict_the_next_character() {
    let corpus = CharCorpus::new("abcabcabcdabcabcabcd", 0.25).unwrap();
    assert_eq!(corpus.vocabulary, ['a', 'b', 'c', 'd']);
    assert_eq!(corpus.parts(), (15, 5));
    let train = corpus.random_windows(4, 50, 7, 0);
    assert_eq!((train.len(), train.sample_shape.clone(), train.inputs), (50, vec![4], Inputs::Tokens { vocab: 4 }));
    let text: Vec<u32> = encode_with(&corpus.vocabulary, "abcabcabcdabcabcabcd").unwrap();
    let Targets::Classes { labels, per_sample: 4, classes: 4 } = &train.targets else { panic!("{:?}", train.targets) };
    for w in 0..train.len() {
        let ids: Vec<u32> = train.sample(w).iter().map(|&x| x as u32).collect();
        // Each window is a run of the training part, its targets the same run one later.
        let start = (0..=11).find(|&s| text[s..s + 4] == ids[..] && text[s + 1..s + 5] == labels[w * 4..w * 4 + 4]);
        assert!(start.is_some(), "window {w}: {ids:?} -> {:?}", &labels[w * 4..w * 4 + 4]);
    }
    assert_eq!(corpus.random_windows(4, 50, 7, 0), train, "seeded");
    assert_ne!(corpus.random_windows(4, 50, 7, 1), train, "new windows each epoch");
    // The held-out part "cabcd": one window "cabc" predicting "abcd".
    let test = corpus.held_out_windows(4);
    assert_eq!(test.samples, [2.0, 0.0, 1.0, 2.0]);
    assert_eq!(test.labels(), [0, 1, 2, 3]);
    assert_eq!(encode_with(&corpus.vocabulary, "abz"), Err('z'));
    assert!(CharCorpus::new("ab", 0.1).is_err());
}

#[test]
fn a_batch_pads_every_position_of_its_padding_rows() {
    let corpus = CharCorpus::new(&"hello world ".repeat(20), 0.5).unwrap();
    let test = corpus.held_out_windows(8);
    let batches: Vec<_> = Batches::in_order(&test, 4).collect();
    let last = batches.last().unwrap();
    assert_eq!(test.len(), 14);
    assert_eq!((last.valid, last.labels.len()), (2, 32));
    assert!(last.labels[16..].iter().all(|&l| l == data::PADDING_LABEL));
    assert!(last.labels[..16].iter().all(|&l| l != data::PADDING_LABEL));
}

#[test]
fn a_series_is_windowed_split_by_time_and_normalised_by_its_training_part() {
    let dir = std::env::temp_dir().join(format!("dlcli-series-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("s.csv");
    std::fs::write(&csv, "t,\"value\"\n1,1\n2,\n3,3\n4,4\n5,5\n6,6\n7,7\n8,8\n9,9\n10,10\n").unwrap();
    let values = load_series_csv(&csv, Some("value")).unwrap();
    assert_eq!(values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], "the gap interpolated");
    let f = Forecast::new(&values, 3, 0.2).unwrap();
    // Training part 1..=8: mean 4.5, population std sqrt(5.25).
    assert!((f.normalisation.mean - 4.5).abs() < 1e-12 && (f.normalisation.std - 5.25f64.sqrt()).abs() < 1e-12);
    assert_eq!((f.train.len(), f.test.len(), f.train.sample_shape.clone()), (5, 2, vec![3, 1]));
    let back = |x: f32| f.normalisation.invert(x);
    assert!((back(f.test.sample(0)[0]) - 6.0).abs() < 1e-5, "test windows reach back into the training part");
    let Targets::Values { values: targets, per_sample: 1 } = &f.test.targets else { panic!() };
    assert!((back(targets[0]) - 9.0).abs() < 1e-5 && (back(targets[1]) - 10.0).abs() < 1e-5);
    assert!((persistence_rmse(&f.test, &f.normalisation) - 1.0).abs() < 1e-5, "a step of 1 each month");
    let err = load_series_csv(&csv, Some("count")).unwrap_err().to_string();
    assert!(err.contains("no column \"count\"") && err.contains("value"), "{err}");
    std::fs::write(&csv, "t,v\n1,1\n2,x\n").unwrap();
    assert!(load_series_csv(&csv, None).unwrap_err().to_string().contains(":3: \"x\" is not a number"));
    assert!(Forecast::new(&values, 9, 0.2).is_err());
}

/// The seasonal naive forecast and MASE's scale by hand: a pattern of 4 on a rising line is
/// off by the line's rise over a season, 4 × 0.5, at every step.
#[test]
fn the_seasonal_naive_forecast_is_off_by_what_changed_in_a_season() {
    let pattern = [1.0, 3.0, 2.0, 5.0];
    let series: Vec<f64> = (0..40).map(|t| pattern[t % 4] + 0.5 * t as f64).collect();
    assert!((seasonal_naive_rmse(&series, 32, 4) - 2.0).abs() < 1e-12);
    assert!((naive_mae(&series[..32], 4) - 2.0).abs() < 1e-12);
    // One step back: |3-1+.5|, |2-3+.5|, |5-2+.5|, |1-5+.5| = 2.5, 0.5, 3.5, 3.5 in turn.
    let persistence = ((2.5f64.powi(2) + 0.5f64.powi(2) + 2.0 * 3.5f64.powi(2)) / 4.0).sqrt();
    assert!((seasonal_naive_rmse(&series, 32, 1) - persistence).abs() < 1e-12);
    assert!((naive_mae(&series[..32], 1) - 2.5).abs() < 0.1);
}

/// The season is read off the autocorrelation of each shipped series' training part (its
/// first 80%, as the forecasting task splits it): a year of months and of weeks, the solar
/// cycle in years and in months; noise and a bare trend have none.
#[test]
fn the_season_is_the_autocorrelations_most_prominent_peak() {
    let cases = [
        ("airline-passengers.csv", None, Some(12)),
        ("co2_weekly.csv", None, Some(52)),
        ("sunspots_yearly.csv", None, Some(11)),
        ("monthly-sunspots.csv", Some("Sunspots"), Some(127)),
    ];
    for (file, column, want) in cases {
        let values = load_series_csv(&shipped(&format!("timeseries/{file}")), column).unwrap();
        let split = Forecast::new(&values, 2, 0.2).unwrap().split;
        assert_eq!(season(&values[..split]), want, "{file}");
    }
    let mut rng = SplitMix64(7);
    let noise: Vec<f64> = (0..600).map(|_| rng.next_normal()).collect();
    assert_eq!(season(&noise), None);
    let line: Vec<f64> = (0..600).map(|t| 3.0 + 0.1 * t as f64).collect();
    assert_eq!(season(&line), None);
}

#[test]
fn the_shipped_monthly_sunspots_have_their_documented_mean() {
    let values = load_series_csv(&shipped("timeseries/monthly-sunspots.csv"), Some("Sunspots")).unwrap();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    // datasets/SOURCES.md: 2820 months, mean 51.26596 (R's value).
    assert_eq!(values.len(), 2820);
    assert!((mean - 51.26596).abs() < 1e-5, "{mean}");
}
