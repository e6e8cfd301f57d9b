use std::path::{Path, PathBuf};

use data::{Batches, load_digits};

fn digits_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits/digits.csv.gz")
}

#[test]
fn digits_load_with_the_documented_class_counts() {
    let digits = load_digits(&digits_path()).unwrap();
    assert_eq!(digits.len(), 1797);
    assert_eq!(digits.sample_shape, [1, 8, 8]);
    let mut counts = [0usize; 10];
    digits.labels().iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    assert!(digits.samples.iter().all(|&p| (0.0..=1.0).contains(&p)));
}

#[test]
fn split_is_stratified_disjoint_and_seeded() {
    let digits = load_digits(&digits_path()).unwrap();
    let (train, test) = digits.split(0.2, 7);
    assert_eq!(train.len() + test.len(), digits.len());
    for class in 0..10 {
        let n = test.labels().iter().filter(|&&l| l == class).count();
        assert!((34..=37).contains(&n), "class {class}: {n} test samples");
    }
    assert_eq!(digits.split(0.2, 7), (train.clone(), test.clone()));
    assert_ne!(digits.split(0.2, 8).1, test);
    // No test image is also a training image at the same position of the original order.
    let key = |d: &data::Dataset, i: usize| d.sample(i).iter().map(|p| p.to_bits()).collect::<Vec<_>>();
    let train_keys: std::collections::HashSet<_> = (0..train.len()).map(|i| key(&train, i)).collect();
    let shared = (0..test.len()).filter(|&i| train_keys.contains(&key(&test, i))).count();
    assert!(shared < 5, "{shared} test images also in train");
}

#[test]
fn batches_cover_every_sample_and_pad_the_last() {
    let digits = load_digits(&digits_path()).unwrap();
    let batches: Vec<_> = Batches::in_order(&digits, 100).collect();
    assert_eq!(batches.len(), 18);
    assert_eq!(batches.iter().map(|b| b.valid).sum::<usize>(), 1797);
    assert!(batches.iter().all(|b| b.labels.len() == 100 && b.samples.len() == 6400));
    let last = batches.last().unwrap();
    assert_eq!(last.valid, 97);
    assert!(last.labels[97..].iter().all(|&l| l == data::PADDING_LABEL));
    let shuffled: Vec<_> = Batches::shuffled(&digits, 100, 1, 0).collect();
    assert_eq!(shuffled.len(), 17);
    assert_ne!(shuffled[0].labels, batches[0].labels);
    assert_eq!(Batches::shuffled(&digits, 100, 1, 0).next(), Some(shuffled[0].clone()));
    assert_ne!(Batches::shuffled(&digits, 100, 1, 1).next(), Some(shuffled[0].clone()));
}

#[test]
fn a_malformed_line_is_named() {
    let dir = std::env::temp_dir().join(format!("dlcli-digits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, format!("{}0\n1,2,3\n", "1,".repeat(64)).as_bytes()).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let err = load_digits(&path).unwrap_err().to_string();
    assert!(err.contains("bad.csv.gz:2:") && err.contains("3 values"), "{err}");
    let missing = load_digits(&dir.join("none.csv.gz")).unwrap_err().to_string();
    assert!(missing.contains("none.csv.gz") && missing.contains("datasets/SOURCES.md"), "{missing}");
}

fn mnist(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist").join(file)
}

#[test]
fn mnist_test_set_loads_with_the_documented_counts() {
    let test = data::load_idx(&mnist("t10k-images-idx3-ubyte.gz"), &mnist("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!((test.len(), test.sample_shape.clone(), test.classes()), (10_000, vec![1, 28, 28], 10));
    let mut counts = [0usize; 10];
    test.labels().iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    assert!(test.samples.iter().all(|&p| (0.0..=1.0).contains(&p)));
}

#[test]
fn damaged_idx_files_are_named() {
    let dir = std::env::temp_dir().join(format!("dlcli-idx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let labels = mnist("t10k-labels-idx1-ubyte.gz");
    let swapped = data::load_idx(&labels, &labels).unwrap_err().to_string();
    assert!(swapped.contains("not an IDX images file (magic 2051)"), "{swapped}");
    let cut = dir.join("cut-images");
    let mut header = 2051u32.to_be_bytes().to_vec();
    for d in [10u32, 28, 28] {
        header.extend(d.to_be_bytes());
    }
    header.extend(vec![0u8; 100]);
    std::fs::write(&cut, header).unwrap();
    let err = data::load_idx(&cut, &labels).unwrap_err().to_string();
    assert!(err.contains("cut-images") && err.contains("truncated"), "{err}");
}

#[test]
fn cifar10_records_and_image_folders_load() {
    let dir = std::env::temp_dir().join(format!("dlcli-formats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Two CIFAR-10 records: labels 3 and 9, pixels = index mod 256.
    let mut bytes = Vec::new();
    for label in [3u8, 9] {
        bytes.push(label);
        bytes.extend((0..3072).map(|i| (i % 256) as u8));
    }
    let batch = dir.join("data_batch_1.bin");
    std::fs::write(&batch, &bytes).unwrap();
    let cifar = data::load_cifar10(std::slice::from_ref(&batch)).unwrap();
    assert_eq!((cifar.len(), cifar.labels().to_vec(), cifar.sample_shape.clone()), (2, vec![3, 9], vec![3, 32, 32]));
    assert_eq!(cifar.sample(1)[255], 1.0);
    std::fs::write(&batch, &bytes[..3000]).unwrap();
    let err = data::load_cifar10(&[batch]).unwrap_err().to_string();
    assert!(err.contains("data_batch_1.bin") && err.contains("3073-byte"), "{err}");

    // Image folder: classes "cat" and "dog" (sorted), a 4x4 white and a 4x4 black image.
    for (class, value) in [("dog", 0u8), ("cat", 255)] {
        std::fs::create_dir_all(dir.join("images").join(class)).unwrap();
        image::GrayImage::from_pixel(4, 4, image::Luma([value]))
            .save(dir.join("images").join(class).join("a.png"))
            .unwrap();
    }
    let (set, names) = data::load_image_folder(&dir.join("images"), [1, 2, 2]).unwrap();
    assert_eq!(names, ["cat", "dog"]);
    assert_eq!(
        (set.labels().to_vec(), set.samples.clone()),
        (vec![0, 1], vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    );
    std::fs::write(dir.join("images/cat/broken.png"), b"not a png").unwrap();
    let err = data::load_image_folder(&dir.join("images"), [1, 2, 2]).unwrap_err().to_string();
    assert!(err.contains("broken.png") && err.contains("not a readable PNG or JPEG image"), "{err}");
}
